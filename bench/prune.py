"""What retention costs: ``prune_outcomes``' batched deletes on a large table, with and
without ingestion running beside them.

    bench/prune.py --db analytics_qbench_xxxxxx [--keep-days 28] [--batches 20]

Runs against an existing database (``bench/queries.py --keep-db`` leaves one with 10M rows
over 30 days). Measures, on this machine:

1. ingestion alone: ``--batches`` batches of 10,000 new outcomes through the write service;
2. the same again while ``outcomes_prune`` deletes every outcome older than ``--keep-days``
   (whole days) in 5,000-row transactions: ingestion rows/s beside it, and the prune's rows/s;
3. the ratio of (2) to (1): what a nightly prune takes from ingestion.

It deletes data: point it at a benchmark database only.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="a benchmark database (its old outcomes are deleted)")
    parser.add_argument("--keep-days", type=int, default=28)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    if not args.db.startswith("analytics_"):
        sys.exit("refusing: --db must be a benchmark database (analytics_…)")
    os.environ["DB_NAME"] = args.db

    import django

    django.setup()
    from django.db import connection

    from outcomes import rollups, writes

    def batches(seed: int) -> list:
        import orjson

        from outcomes.messages import parse_outcome
        from outcomes.simulation import OutcomeSimulator

        made, batch = [], writes.Batch()
        stream = OutcomeSimulator(seed=seed).stream(count=args.batches * 10_000, days=1, now=datetime.now(UTC))
        for offset, message in enumerate(stream):
            message["bid_request_id"] = f"prune{seed}-{time.time_ns()}-{message['bid_request_id']}"
            batch.events.append((parse_outcome(orjson.dumps(message)), writes.Position(f"prune{seed}", 0, offset)))
            if len(batch.events) == 10_000:
                made.append(batch)
                batch = writes.Batch()
        return made

    def ingest(prepared: list) -> float:
        started = time.monotonic()
        for batch in prepared:
            writes.write_batch(batch, consumer_group="prune-bench")
        return sum(len(b.events) for b in prepared) / (time.monotonic() - started)

    before = rollups.truncate(datetime.now(UTC) - timedelta(days=args.keep_days), "day")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM outcomes_auctionoutcome")
        total = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM outcomes_auctionoutcome WHERE event_time < %s", [before])
        doomed = cursor.fetchone()[0]
    print(f"{total:,} outcomes; {doomed:,} with event time before {before.date()} will be pruned")

    alone = ingest(batches(1))
    print(f"ingestion alone:          {alone:>10,.0f} rows/s")

    prune_result: dict = {}

    def prune() -> None:
        from django.db import connections

        started = time.monotonic()
        deleted = 0
        for progress in writes.outcomes_prune(before=before, batch_size=5_000):
            deleted = progress.deleted
        prune_result.update(deleted=deleted, seconds=time.monotonic() - started)
        connections.close_all()

    second = batches(2)
    pruner = threading.Thread(target=prune)
    pruner.start()
    beside = ingest(second)
    pruning_during = pruner.is_alive()
    pruner.join()
    rate = prune_result["deleted"] / prune_result["seconds"] if prune_result["seconds"] else 0.0
    print(f"ingestion beside a prune: {beside:>10,.0f} rows/s  ({beside / alone:.2f} of alone)")
    print(
        f"prune:                    {rate:>10,.0f} rows/s  ({prune_result['deleted']:,} rows in "
        f"{prune_result['seconds']:.0f} s{'; it outlasted the ingestion run' if pruning_during else ''})"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT date_trunc('day', event_time, 'UTC')) FROM outcomes_auctionoutcome")
        days = cursor.fetchone()[0] or 1
    per_day = (total - prune_result["deleted"]) / days
    print(f"a day of this table (~{per_day:,.0f} rows) prunes in ~{per_day / rate if rate else 0:,.0f} s")


if __name__ == "__main__":
    main()
