"""Live-stream benchmark: the real consumer ingests at full speed (publishing each committed
batch's event), one live server process (``./entrypoint.sh live``, uvicorn) streams to N
concurrent subscribers, and each event's delay from the batch's publication (the Redis
stream entry's id is its millisecond, taken right after the commit) to every client is
measured, with the server's memory per connection and CPU.

    .venv/bin/python bench/live.py [--subscribers 1000] [--messages 300000] [--server uvicorn]

``--server`` serves the same ASGI application with another server for comparison
(``daphne`` or ``granian``, development dependencies); the role ships uvicorn.

Subscribers filter differently (none, a currency, a site domain), as dashboards would. A
client that fell behind is told (``resync``) and counted; none may fall behind silently.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.ingest import delete_topic, produce, run_consumer  # noqa: E402

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics.settings")
BENCH_DB = "analytics_bench_live"
REDIS = os.environ.get("LIVE_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
FILTERS = ["", "?currency=USD", "?currency=EUR", "?site_domain=news.example"]


async def subscriber(port: int, query: str, delays: list, counts: dict, ready: asyncio.Event, stop: asyncio.Event):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(f"GET /api/live/{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        counts["refused"] += 1
        writer.close()
        return
    counts["connected"] += 1
    if counts["connected"] >= counts["wanted"]:
        ready.set()
    # Whatever arrived is read at once and its lines scanned (chunk sizes are lines too, and
    # ignored): a client must not be the bottleneck it measures. Reading line by line under
    # a per-line timeout cost ~25 µs a line — 1,000 clients × 8 lines an event put ~200 ms
    # of the clients' own work into every delay measured.
    entry, pending = None, b""
    try:
        while not stop.is_set():
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            arrived = time.time() * 1000
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if line.startswith(b"id: "):
                    entry = line[4:].strip().decode()
                elif line.startswith(b"event: resync"):
                    counts["resync"] += 1
                elif line.startswith(b"data: ") and entry:
                    delays.append(arrived - int(entry.split("-")[0]))
                    counts["events"] += 1
                    entry = None
    except ConnectionError:
        pass
    finally:
        writer.close()


async def subscribers(port: int, n: int, delays: list, counts: dict, stop: asyncio.Event, ready: asyncio.Event):
    tasks = [
        asyncio.create_task(subscriber(port, FILTERS[i % len(FILTERS)], delays, counts, ready, stop)) for i in range(n)
    ]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


SERVERS = {
    # The role as shipped: ./entrypoint.sh live (uvicorn).
    "uvicorn": lambda port, clients: ["./entrypoint.sh", "live"],
    "daphne": lambda port, clients: [
        sys.executable,
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "analytics.asgi:application",
    ],
    "granian": lambda port, clients: [
        str(Path(sys.executable).parent / "granian"),
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-ws",
        "--log-level",
        "warning",
        "--backpressure",
        str(clients + 100),
        "analytics.asgi:application",
    ],
}


class Tree:
    """A server and the processes it started (uvicorn's shell, granian's worker): their
    memory and CPU together."""

    def __init__(self, root) -> None:
        self.root = root

    def processes(self):
        return [self.root, *self.root.children(recursive=True)]

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in self.processes())

    def cpu(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.processes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--batch-size", type=int, default=10000, help="the consumer's (an event per batch)")
    parser.add_argument(
        "--server", choices=sorted(SERVERS), default="uvicorn", help="the ASGI server (the role's: uvicorn)"
    )
    args = parser.parse_args()

    import psutil

    conninfo, admin = harness.setup_django(BENCH_DB)
    import orjson
    import psycopg
    from django.conf import settings

    brokers = ",".join(settings.CONSUMER.brokers)
    stream = f"bench:live:{uuid.uuid4().hex[:8]}"
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}"')
    admin.cursor().execute(f'CREATE DATABASE "{BENCH_DB}"')
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("ALLOWED_HOSTS", "DJANGO_SECRET_KEY")},
        "DB_NAME": BENCH_DB,
        "DB_PASSWORD": conninfo["password"],
        "KAFKA_BROKERS": brokers,
        "CONSUMER_METRICS_PORT": "0",
        "PRIVACY_HASH_KEY": secrets.token_urlsafe(32),
        "LIVE_REDIS_URL": REDIS,
        "LIVE_STREAM": stream,
    }
    port = harness.free_port()
    live = bench = stop = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        live = subprocess.Popen(
            SERVERS[args.server](port, args.subscribers),
            cwd=ROOT,
            env={
                **env,
                "DEBUG": "true",
                "RUN_MIGRATIONS": "false",
                "PYTHON": sys.executable,
                "LIVE_HOST": "127.0.0.1",
                "LIVE_PORT": str(port),
                "LIVE_MAX_CLIENTS": str(args.subscribers + 10),
                "API_READ_ACCESS": "public",
                "DB_CONN_MAX_AGE": "0",  # as the role sets it under ASGI
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not harness.answers_healthz(port):
            if time.monotonic() > deadline:
                raise SystemExit("the live server did not start")
            time.sleep(0.2)
        server = Tree(psutil.Process(live.pid))
        rss_idle = server.rss()

        from outcomes.simulation import OutcomeSimulator

        messages = [orjson.dumps(m) for m in OutcomeSimulator(seed=5).stream(count=args.messages, days=0)]
        topic = f"bench-live-{uuid.uuid4().hex[:8]}"
        produce(brokers, topic, messages, 1)

        delays: list[float] = []
        counts = {"connected": 0, "refused": 0, "events": 0, "resync": 0, "wanted": args.subscribers}
        loop = asyncio.new_event_loop()
        stop, ready = asyncio.Event(), asyncio.Event()
        thread = threading.Thread(
            target=loop.run_until_complete,
            args=(subscribers(port, args.subscribers, delays, counts, stop, ready),),
            daemon=True,
        )
        thread.start()
        started = time.monotonic()
        while counts["connected"] + counts["refused"] < args.subscribers and time.monotonic() - started < 60:
            time.sleep(0.1)
        rss_connected = server.rss()
        cpu_before = server.cpu()
        bench = psycopg.connect(dbname=BENCH_DB, **conninfo)
        consumer = run_consumer(env, topic, len(messages), args.batch_size, bench)
        time.sleep(2)  # the last events reach every client
        cpu_after = server.cpu()
        delete_topic(brokers, topic)
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=30)
        if bench is not None:
            bench.close()
        if live is not None:
            live.terminate()
            live.wait(timeout=30)
        harness.drop_database(admin, BENCH_DB)
        admin.close()

    busy = cpu_after - cpu_before
    batches = counts["events"] / max(1, counts["connected"])
    print(
        f"live benchmark: {args.subscribers:,} subscribers on one {args.server} server process, consumer at full speed"
    )
    print(f"consumer sustained         {consumer['rate']:>10,.0f} msg/s  ({consumer['seconds']:.1f}s)")
    print(f"subscribers connected      {counts['connected']:>10,}  (refused {counts['refused']})")
    print(f"events delivered           {counts['events']:>10,}  ({batches:.1f} per subscriber)")
    print(f"told to resync (fell behind) {counts['resync']:>8,}")
    p50, p95, p99 = (harness.percentile(delays, pct) for pct in (50, 95, 99))
    worst = max(delays, default=0)
    print(f"publish → client  p50 {p50:.0f} ms   p95 {p95:.0f} ms   p99 {p99:.0f} ms   max {worst:.0f} ms")
    per_connection = (rss_connected - rss_idle) / max(1, counts["connected"]) / 1024
    print(
        f"server RSS                 {rss_idle / 2**20:.0f} MiB idle, {rss_connected / 2**20:.0f} MiB connected "
        f"({per_connection:.0f} KiB per connection)"
    )
    print(f"server CPU while streaming {busy / consumer['wall'] * 100:.0f}% of a core")


if __name__ == "__main__":
    main()
