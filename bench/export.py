#!/usr/bin/env python
"""Export benchmark: GET /api/outcomes/export/ through gunicorn, against PostgreSQL's own COPY.

1. loads ``--rows`` realistic outcomes through the write service into a scratch database
   (or measures ``--db``, an existing one);
2. the raw limit, in the same run: ``COPY (SELECT …the export's columns…) TO STDOUT`` in
   CSV, read by a client that throws the bytes away — what PostgreSQL itself can hand out;
3. the export as shipped (gunicorn.conf.py, DEBUG off, one worker): CSV, NDJSON and the Excel
   workbook (xlsx), all rows, and a filtered window, each read to the end by a client; prints rows/s, time to first
   byte, the ratio to the raw COPY, and the worker's peak RSS while it streamed (sampled
   every 20 ms from /proc), beside its RSS before.

Benchmarks print numbers; they never pass or fail.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import threading
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics.settings")

from bench.harness import api_env, drop_database, free_port, load, setup_django, start_api  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", help="measure this existing database instead of loading one")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each export (best and median printed)")
    args = parser.parse_args()
    name = args.db or f"analytics_export_{uuid.uuid4().hex[:8]}"  # the prefix bench/prune.py accepts
    conninfo, admin = setup_django(name)
    import psycopg

    if not args.db:
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
    env = api_env(name, conninfo["password"], GUNICORN_WORKERS="1", API_RATE_LIMIT_KEY="off", API_RATE_LIMIT_ANON="off")
    server = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        if not args.db:
            loaded = load(args.rows, 10_000, seed=0)
            print(f"loaded {loaded['rows']:,} outcomes through the write service at {loaded['rows_per_s']:,.0f} rows/s")
        with closing(psycopg.connect(dbname=name, **conninfo)) as conn, conn.cursor() as cursor:
            conn.autocommit = True
            cursor.execute("ANALYZE outcomes_auctionoutcome")  # as autovacuum would have by now
            cursor.execute("SELECT count(*) FROM outcomes_auctionoutcome")
            total = cursor.fetchone()[0]
        print(f"\n== export of {total:,} outcomes")
        raw = best_of(args.repeat, lambda: raw_copy(name, conninfo))
        print(f"{'raw COPY … TO STDOUT (CSV)':<40}{raw['rows_per_s']:>12,.0f} rows/s  {raw['mb']:.0f} MB")

        port = free_port()
        server = start_api(port, env)
        worker = gunicorn_worker(server.pid)
        now = datetime.now(UTC)
        week = {"start": (now - timedelta(days=7)).isoformat(), "end": now.isoformat()}
        print(f"{'':<40}{'rows/s':>12}{'× raw':>8}{'1st byte':>11}{'MB':>7}{'peak RSS':>11}{'RSS before':>12}")
        for label, params in [
            ("CSV, every row", {"format": "csv"}),
            ("NDJSON, every row", {"format": "ndjson"}),
            ("Excel (xlsx), every row", {"format": "xlsx"}),
            ("CSV, last 7 days, currency=EUR", {"format": "csv", "currency": "EUR", **week}),
        ]:
            runs = [http_export(port, params, worker, total) for _ in range(args.repeat)]
            best = max(runs, key=lambda r: r["rows_per_s"])
            first = sorted(r["first_byte_ms"] for r in runs)[len(runs) // 2]
            peak = max(r["peak_rss_mb"] for r in runs)
            print(
                f"{label:<40}{best['rows_per_s']:>12,.0f}{best['rows_per_s'] / raw['rows_per_s']:>8.2f}"
                f"{first:>9.0f}ms{best['mb']:>7.0f}{peak:>9.0f}MB{runs[0]['rss_before_mb']:>10.0f}MB"
                f"   ({best['rows']:,} rows)"
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        if args.keep_db or args.db:
            print(f"database {name} kept")
        else:
            drop_database(admin, name)
        admin.close()


def best_of(times: int, run) -> dict:
    return max((run() for _ in range(times)), key=lambda r: r["rows_per_s"])


class _Sink:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data) -> int:
        self.bytes += len(data)
        return len(data)


def raw_copy(name: str, conninfo: dict) -> dict:
    """The export's query, handed out by PostgreSQL's COPY: the limit an export can approach."""
    import psycopg
    from django.db import connections

    from outcomes import exports
    from outcomes.models import AuctionOutcome

    # The query of the export as shipped (formula-like text escaped, the default).
    queryset = exports._csv_values(AuctionOutcome.objects.order_by(*exports.DEFAULT_ORDERING), escape_formulas=True)
    sql, params = queryset.query.get_compiler(using="default").as_sql()
    with connections["default"].cursor() as django_cursor:
        statement = django_cursor.mogrify(sql, params)
    sink = _Sink()
    with closing(psycopg.connect(dbname=name, **conninfo)) as conn, conn.cursor() as cursor:
        started = time.monotonic()
        with cursor.copy(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            for row in copy:
                sink.write(row)
        elapsed = time.monotonic() - started
        cursor.execute("SELECT count(*) FROM outcomes_auctionoutcome")
        rows = cursor.fetchone()[0]
    return {"rows": rows, "seconds": elapsed, "rows_per_s": rows / elapsed, "mb": sink.bytes / 2**20}


def gunicorn_worker(master: int) -> int:
    import psutil

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        children = psutil.Process(master).children()
        if children:
            return children[0].pid
        time.sleep(0.1)
    raise RuntimeError("no gunicorn worker")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def http_export(port: int, params: dict, worker: int, total: int) -> dict:
    """One export read to the end. Rows are counted as lines; a workbook (compressed) is
    every row, ``total`` (only measured unfiltered)."""
    before = rss_mb(worker)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_mb(worker))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.monotonic()
    connection.request("GET", f"/api/outcomes/export/?{urlencode(params)}")
    response = connection.getresponse()
    assert response.status == 200, response.read()[:500]
    first = response.read1(65536)
    first_byte = time.monotonic() - started
    size, lines = len(first), first.count(b"\n")
    while chunk := response.read1(1 << 20):
        size += len(chunk)
        lines += chunk.count(b"\n")
    elapsed = time.monotonic() - started
    done.set()
    sampler.join()
    connection.close()
    rows = {"csv": lines - 1, "ndjson": lines}.get(params["format"], total)
    return {
        "rows": rows,
        "rows_per_s": rows / elapsed,
        "first_byte_ms": first_byte * 1000,
        "mb": size / 2**20,
        "peak_rss_mb": peak[0],
        "rss_before_mb": before,
    }


if __name__ == "__main__":
    main()
