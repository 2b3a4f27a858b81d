"""What each rollup grain costs a write: the deltas statement of a consumer's batch (10,000
live outcomes: the last minute, Zipf-like domains, 30% lost, one in five tagged with an
experiment) timed with the whole catalogue and with each grain written by rows left out,
alternating, in one run — a grain's cost is the difference. Every statement runs in a
transaction that is rolled back: nothing is kept.

    .venv/bin/python bench/grains.py [--db NAME] [--rows 10000] [--repeat 15]

Without ``--db`` it uses a scratch database (created, then dropped).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics.settings")
os.environ.setdefault("DEBUG", "true")

from bench.harness import drop_database, setup_django  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="an existing database (its tables are only read; writes are rolled back)")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    name = args.db or f"analytics_grains_{uuid.uuid4().hex[:6]}"
    _conninfo, admin = setup_django(name)
    if not args.db:
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        if not args.db:
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
        measure(args.rows, args.repeat)
    finally:
        if not args.db:
            from django.db import connections

            connections.close_all()
            drop_database(admin, name)


def measure(rows: int, repeat: int) -> None:
    from django.db import connection, transaction

    from outcomes import grains
    from outcomes.rollups import deltas

    full = list(grains.GRAINS)
    written = [g for g in full if g.written_by_rows or g.summed_from]
    configurations = {"all grains": full}
    for grain in written:
        if grain.key == grains.COUNTED.key or any(g.summed_from == grain.key for g in full):
            continue  # others are computed from it
        configurations[f"without {grain.key}"] = [g for g in full if g is not grain]
    timings: dict[str, list[float]] = {label: [] for label in configurations}
    with connection.cursor() as cursor:  # rows of the deltas' shape (``grains.DELTA_COLUMNS``)
        cursor.execute(
            "CREATE TEMP TABLE bench_rows AS SELECT now() - random() * interval '1 minute' AS event_time, "
            "'site' || floor(exp(random() * ln(2000)))::int || '.example' AS site_domain, "
            "win AS win_status, CASE WHEN win THEN (bd * (0.4 + random() * 0.6))::bigint ELSE 0 END AS w, bd, "
            "(ARRAY['USD', 'USD', 'USD', 'EUR', 'GBP'])[1 + floor(random() * 5)::int] AS currency, "
            'random() < 0.85 AS enriched, \'["sports", "news"]\'::jsonb AS user_interests, '
            "CASE WHEN tagged THEN 'shading-v2' ELSE '' END AS experiment, "
            "CASE WHEN NOT tagged THEN '' WHEN random() < 0.5 THEN 'control' ELSE 'B' END AS variant, "
            "'user-' || floor(random() * 100000)::int AS user_id "
            "FROM (SELECT random() < 0.7 AS win, (20 + random() * 280)::bigint AS bd, random() < 0.2 AS tagged "
            "FROM generate_series(1, %s)) g",
            [rows],
        )
        cursor.execute("ANALYZE bench_rows")
    source = "SELECT * FROM bench_rows"
    for _ in range(repeat):
        for label, catalogue in configurations.items():
            grains.GRAINS = tuple(catalogue)
            statement = deltas.deltas_statement(source, 1)
            grains.GRAINS = tuple(full)
            with transaction.atomic(), connection.cursor() as cursor:
                started = time.perf_counter()
                cursor.execute(statement)
                timings[label].append((time.perf_counter() - started) * 1000)
                transaction.set_rollback(True)
    whole = statistics.median(timings["all grains"])
    print(f"deltas statement of a {rows:,}-row batch, median of {repeat} (alternating):")
    print(f"  {'all grains':<34}{whole:>8.1f} ms")
    for label, values in timings.items():
        if label == "all grains":
            continue
        cost = whole - statistics.median(values)
        print(f"  {label.replace('without ', ''):<34}{cost:>8.1f} ms  ({cost / whole:.0%} of the statement)")


if __name__ == "__main__":
    main()
