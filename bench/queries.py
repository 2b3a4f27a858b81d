#!/usr/bin/env python
"""Query benchmark: every report and list through HTTP, against the naive raw-table answer.

1. loads N realistic outcomes (outcomes.simulation, 30 days, in time order as a replayed
   topic delivers them) through the real write service in consumer-sized batches, so the
   rollups are built exactly as ingestion builds them, and prints the write rate;
2. starts gunicorn as shipped (gunicorn.conf.py, DEBUG off) on the scratch database;
3. for each request: warm-up, then p50/p95 of sequential requests; beside each report, the
   same report computed naively from the raw table (the router forced to ``raw``) in the
   same run — the ratio is the point;
4. a load phase: ``--clients`` concurrent clients (threads with keep-alive connections)
   running a dashboard-like mix for ``--load-seconds``; prints throughput, p50/p99, errors.

Everything runs in a scratch database (dropped at the end) on the local services. Writes
the figures as JSON to ``--json``. Benchmarks print numbers; they never pass or fail.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics.settings")
BENCH_DB = f"analytics_qbench_{uuid.uuid4().hex[:6]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=40, help="sequential requests per measured endpoint")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--load-seconds", type=float, default=30.0)
    parser.add_argument("--json", default=str(ROOT / "bench" / "queries-result.json"))
    args = parser.parse_args()
    os.environ["DB_NAME"] = BENCH_DB

    import django
    import psycopg2

    django.setup()
    from django.conf import settings

    db = settings.DATABASES["default"]
    conninfo = {"host": db["HOST"], "port": db["PORT"], "user": db["USER"], "password": db["PASSWORD"]}
    admin = psycopg2.connect(dbname="postgres", **conninfo)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{BENCH_DB}"')
    env = {
        **os.environ,
        "DB_NAME": BENCH_DB,
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DB_PASSWORD": db["PASSWORD"],
        "GUNICORN_ACCESS_LOG": "false",
        "LOG_LEVEL": "WARNING",
    }
    server = None
    results: dict = {"rows": args.rows, "measured_at": datetime.now(UTC).isoformat()}
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        results["load"] = load(args.rows, args.batch_size)
        print(f"loaded {args.rows:,} outcomes through the write service at {results['load']['rows_per_s']:,.0f} rows/s")
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
            cursor.execute("SELECT site_domain FROM outcomes_auctionoutcome GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
            busiest = cursor.fetchone()[0]
            cursor.execute("SELECT user_id, id FROM outcomes_auctionoutcome ORDER BY id LIMIT 1")
            user, some_id = cursor.fetchone()
            cursor.execute("SELECT max(event_time) FROM outcomes_auctionoutcome")
            newest = cursor.fetchone()[0]
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "analytics.wsgi:application"],
            cwd=ROOT,
            env={**env, "GUNICORN_BIND": f"127.0.0.1:{port}"},
        )
        wait_for(port)
        day = newest.replace(hour=0, minute=0, second=0, microsecond=0)
        week = {"start": iso(day - timedelta(days=7)), "end": iso(day)}
        reports = [
            ("stats", "stats/", {}, {}),
            ("stats busiest domain", "stats/", {"site_domain": busiest}, {}),
            ("stats one user", "stats/", {"user_id": user}, {}),
            ("stats one week", "stats/", week, {}),
            ("daily_stats", "daily_stats/", {}, {}),
            ("timeseries hour x 7 days", "timeseries/", {"granularity": "hour", **week}, {}),
            (
                "timeseries minute x 1 day",
                "timeseries/",
                {"granularity": "minute", "start": iso(day - timedelta(days=1)), "end": iso(day)},
                {},
            ),
            ("breakdown top 20 domains", "breakdown/", {"by": "site_domain", "limit": 20}, {}),
            ("reach one week", "reach/", week, {}),
        ]
        lists = [
            ("list page 1", "", {}),
            ("winners page 1", "winners/", {}),
            ("list busiest domain", "", {"site_domain": busiest}),
            ("list min/max price", "", {"min_price": "1", "max_price": "2"}),
            ("list ordering=-win_price", "", {"ordering": "-win_price"}),
            ("retrieve by id", f"{some_id}/", {}),
        ]
        client = Client(port)
        results["reports"] = []
        print(f"\n{'request':<28}{'p50 ms':>9}{'p95 ms':>9}{'naive p50':>11}{'ratio':>8}  source")
        for name, path, params, _ in reports:
            stats = client.measure(path, params, args.requests)
            naive = naive_ms(path, params)
            ratio = naive / stats["p50"] if naive and stats["p50"] else None
            results["reports"].append({"name": name, **stats, "naive_p50": naive, "ratio": ratio})
            naive_text = f"{naive:>11.1f}" if naive is not None else f"{'-':>11}"
            ratio_text = f"{ratio:>7.0f}x" if ratio else f"{'-':>8}"
            print(f"{name:<28}{stats['p50']:>9.1f}{stats['p95']:>9.1f}{naive_text}{ratio_text}  {stats['source']}")
        results["lists"] = []
        for name, path, params in lists:
            stats = client.measure(path, params, args.requests)
            results["lists"].append({"name": name, **stats})
            print(f"{name:<28}{stats['p50']:>9.1f}{stats['p95']:>9.1f}")
        deep = cursor_deep(client, args.rows // 2)
        results["lists"].append({"name": "cursor page half-way", **deep})
        print(f"{'cursor page ' + format(args.rows // 2, ',') + ' deep':<28}{deep['p50']:>9.1f}{deep['p95']:>9.1f}")
        mix = [("stats/", {}), ("timeseries/", {"granularity": "hour", **week}), ("", {}), (f"{some_id}/", {})]
        mix += [("breakdown/", {"by": "site_domain", "limit": 20}), ("stats/", {"site_domain": busiest})]
        results["load_phase"] = load_phase(port, mix, args.clients, args.load_seconds)
        lp = results["load_phase"]
        print(
            f"\nload: {args.clients} clients for {args.load_seconds:.0f}s: {lp['rps']:,.0f} req/s, "
            f"p50 {lp['p50']:.1f} ms, p99 {lp['p99']:.1f} ms, errors {lp['errors']}"
        )
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
        print(f"figures written to {args.json}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        from bench.ingest import drop_database

        drop_database(admin, BENCH_DB)
        admin.close()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def load(rows: int, batch_size: int) -> dict:
    import orjson

    from outcomes import writes
    from outcomes.ingest.messages import parse_outcome
    from outcomes.simulation import OutcomeSimulator

    started = time.monotonic()
    batch = writes.Batch()
    stream = OutcomeSimulator(seed=7).stream(count=rows, days=30, in_order=True)
    for offset, message in enumerate(stream):
        batch.events.append((parse_outcome(orjson.dumps(message)), writes.Position("bench", 0, offset)))
        if len(batch.events) >= batch_size:
            writes.write_batch(batch, consumer_group="bench")
            batch = writes.Batch()
    if batch.events:
        writes.write_batch(batch, consumer_group="bench")
    from outcomes import rollups

    while any(rollups.compact().values()):
        pass
    elapsed = time.monotonic() - started
    return {"seconds": elapsed, "rows_per_s": rows / elapsed}


def naive_ms(path: str, params: dict) -> float | None:
    """The same report from the raw table (what the service did before rollups)."""
    from outcomes import queries

    name = path.rstrip("/")
    query = queries.OutcomeQuery.from_filters(
        {k: (datetime.fromisoformat(v) if k in ("start", "end") else v) for k, v in params.items()}
    )
    calls = {
        "stats": lambda: queries._run_raw_measures(query, group="one"),
        "daily_stats": lambda: queries._run_raw_measures(query, group="day"),
        "breakdown": lambda: queries._run_raw_measures(query, group="dimension", dimension="site_domain"),
    }
    if name == "timeseries":
        from zoneinfo import ZoneInfo

        bounds = queries.timeseries_buckets(
            granularity=params["granularity"], start=query.start, end=query.end, tz=ZoneInfo("UTC")
        )
        calls[name] = lambda: queries._run_raw_measures(query, group="buckets", boundaries=bounds)
    if name == "reach":
        from django.db import connection

        def exact():
            where, args = queries._raw_where(query)
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT count(DISTINCT user_id) FROM {queries.RAW} WHERE {where}", args)

        calls[name] = exact
    if name not in calls:
        return None
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        calls[name]()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str, params: dict) -> tuple[int, dict, bytes]:
        url = f"/api/outcomes/{path}" + (f"?{urlencode(params)}" if params else "")
        self.conn.request("GET", url)
        response = self.conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()

    def measure(self, path: str, params: dict, count: int) -> dict:
        for _ in range(3):
            status, headers, body = self.get(path, params)
            if status != 200:
                raise SystemExit(f"{path} {params}: HTTP {status}: {body[:300]!r}")
        timings = []
        for _ in range(count):
            started = time.perf_counter()
            self.get(path, params)
            timings.append((time.perf_counter() - started) * 1000)
        return {
            "p50": statistics.median(timings),
            "p95": percentile(timings, 95),
            "source": headers.get("X-Report-Source", ""),
        }


def cursor_deep(client: Client, depth: int) -> dict:
    """Walk to ``depth`` rows with cursors of 1000 rows, then time 1 page of 100 there."""
    status, _h, body = client.get("", {"cursor": "", "page_size": 1000})
    data = json.loads(body)
    walked = len(data["results"])
    while walked < depth and data["next_cursor"]:
        status, _h, body = client.get("", {"cursor": data["next_cursor"], "page_size": 1000})
        data = json.loads(body)
        walked += len(data["results"])
    token = data["next_cursor"]
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        client.get("", {"cursor": token})
        timings.append((time.perf_counter() - started) * 1000)
    return {"p50": statistics.median(timings), "p95": percentile(timings, 95), "depth": walked}


def load_phase(port: int, mix: list, clients: int, seconds: float) -> dict:
    timings: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        client = Client(port)
        local, bad = [], 0
        while time.monotonic() < deadline:
            path, params = rng.choice(mix)
            started = time.perf_counter()
            try:
                status, _h, _b = client.get(path, params)
                if status != 200:
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                client = Client(port)
            local.append((time.perf_counter() - started) * 1000)
        with lock:
            timings.extend(local)
            errors[0] += bad

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {
        "requests": len(timings),
        "rps": len(timings) / elapsed,
        "p50": statistics.median(timings),
        "p99": percentile(timings, 99),
        "errors": errors[0],
    }


def percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-pct * len(ordered) // 100) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


if __name__ == "__main__":
    main()
