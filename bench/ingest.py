#!/usr/bin/env python
"""Ingestion benchmark: the real consumer against the raw limits of this machine, in one run.

1. generates N realistic outcomes (outcomes.simulation) as a live stream carries them
   (auction time = now; ``--days D``: spread over the past D days in order, as a replayed
   topic holds them; ``--shuffled``: at random over those days, the worst case for the
   rollups, whose rows per batch grow with the event-time span a batch covers), and
   produces them to a fresh topic;
2. measures the naive path on a sample: one ``Model.objects.create()`` (one transaction) per message;
3. measures the raw limit: ``COPY`` of the same rows, in batches of the consumer's batch size
   with a commit each, into an identical table (same columns, same indexes);
4. runs the real consumer (``manage.py process_outcomes``) on the topic and measures its
   sustained rate (first committed batch to the last) and its peak RSS;
5. measures the raw limit again: the ratio is to the mean of both, so a machine whose speed
   drifts during the run does not decide it.

Everything runs in a scratch database (dropped at the end) on the local services:
``scripts/services.sh up`` (``make bench`` does it). Prints the figures and the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import drop_database, setup_django  # noqa: E402

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics.settings")
BENCH_DB = f"analytics_bench_{uuid.uuid4().hex[:6]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--orm-sample", type=int, default=5000)
    parser.add_argument(
        "--days",
        type=float,
        default=0.0,
        help="auction times spread over this many past days, in order (default 0: live, auction time = now)",
    )
    parser.add_argument(
        "--shuffled",
        action="store_true",
        help="with --days: auction times at random over the span (worst case for rollups) instead of in order",
    )
    args = parser.parse_args()

    conninfo, admin = setup_django(BENCH_DB)
    import orjson
    import psycopg
    from django.conf import settings

    brokers = ",".join(settings.CONSUMER.brokers)

    span = "live (auction time = now)" if not args.days else f"over {args.days:g} days"
    span += ", shuffled" if args.shuffled and args.days else (", in order" if args.days else "")
    print(
        f"ingest benchmark: {args.messages:,} messages {span}, batch size {args.batch_size}, "
        f"{args.partitions} partition(s), database {BENCH_DB}"
    )
    admin.cursor().execute(f'CREATE DATABASE "{BENCH_DB}"')
    import secrets

    # The consumer runs with production settings (DEBUG off: no query log, as deployed), and
    # only what its role needs (no API secret, host names or Redis).
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "ALLOWED_HOSTS", "DJANGO_SECRET_KEY")},
        "DB_NAME": BENCH_DB,
        "KAFKA_BROKERS": brokers,
        "CONSUMER_METRICS_PORT": "0",
        "DEBUG": "false",
        "PRIVACY_HASH_KEY": secrets.token_urlsafe(32),
        "DB_PASSWORD": conninfo["password"],
    }
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        from outcomes.simulation import OutcomeSimulator

        started = time.monotonic()
        stream = OutcomeSimulator(seed=11).stream(count=args.messages, days=args.days, in_order=not args.shuffled)
        messages = [orjson.dumps(m) for m in stream]
        print(
            f"  generated {len(messages):,} messages ({sum(map(len, messages)) / len(messages):.0f} B avg) "
            f"in {time.monotonic() - started:.1f}s"
        )

        topic = f"bench-outcomes-{uuid.uuid4().hex[:8]}"
        produce_rate = produce(brokers, topic, messages, args.partitions)
        print(f"  produced to {topic} at {produce_rate:,.0f} msg/s")

        bench = psycopg.connect(dbname=BENCH_DB, **conninfo)
        orm_rate = orm_naive_rate(env, args.orm_sample)
        print(f"  naive ORM, one create() per message ({args.orm_sample:,} sample): {orm_rate:,.0f} rows/s")
        copy_before = raw_copy_rate(bench, messages, args.batch_size)
        print(f"  raw COPY into an identical table, {args.batch_size}-row transactions: {copy_before:,.0f} rows/s")

        consumer = run_consumer(env, topic, len(messages), args.batch_size, bench)
        # The raw limit again, after: a machine whose speed drifts during the run moves both
        # figures, and the ratio is taken to their mean.
        copy_after = raw_copy_rate(bench, messages, args.batch_size)
        print(f"  raw COPY again, after the consumer: {copy_after:,.0f} rows/s")
        copy_rate = (copy_before + copy_after) / 2
        bench.close()
        print()
        print(
            f"consumer sustained          {consumer['rate']:>10,.0f} msg/s  "
            f"({consumer['messages']:,} messages in {consumer['seconds']:.1f}s, first to last batch)"
        )
        print(f"consumer incl. start-up     {consumer['wall_rate']:>10,.0f} msg/s  ({consumer['wall']:.1f}s wall)")
        print(
            f"raw COPY, same run          {copy_rate:>10,.0f} rows/s  "
            f"(mean of {copy_before:,.0f} before and {copy_after:,.0f} after)"
        )
        print(f"naive ORM, same run         {orm_rate:>10,.0f} rows/s")
        print(f"ratio consumer / raw COPY   {consumer['rate'] / copy_rate:>10.2f}")
        print(f"ratio consumer / naive ORM  {consumer['rate'] / orm_rate:>10.1f}")
        print(f"consumer peak RSS           {consumer['peak_rss_mb']:>10.0f} MiB")
        print(f"stored {consumer['stored']:,} outcomes, {consumer['dead_letters']} dead letters")
        delete_topic(brokers, topic)
    finally:
        drop_database(admin, BENCH_DB)
        admin.close()


def produce(brokers: str, topic: str, messages: list[bytes], partitions: int) -> float:
    """Send the messages as fast as librdkafka goes (the producer is not what is measured)."""
    from confluent_kafka import Producer
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from bench.produce import send

    admin = KafkaAdminClient(bootstrap_servers=brokers)
    admin.create_topics([NewTopic(topic, partitions, 1)])
    admin.close()
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 50, "queue.buffering.max.messages": 500_000})
    started = time.monotonic()
    for i, value in enumerate(messages):
        send(producer, topic, value=value, partition=i % partitions)
    if producer.flush(120):
        raise RuntimeError("messages left undelivered after 120 s")
    return len(messages) / (time.monotonic() - started)


def delete_topic(brokers: str, topic: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=brokers)
    admin.delete_topics([topic])
    admin.close()


def orm_naive_rate(env: dict, sample: int) -> float:
    """What a home-grown consumer does: json.loads and one create() per message, autocommit."""
    code = f"""
import json, time, django
django.setup()
from decimal import Decimal
from datetime import datetime
from outcomes.models import AuctionOutcome
from outcomes.simulation import OutcomeSimulator
raw = [json.dumps(m) for m in OutcomeSimulator(seed=99).stream(count={sample}, days=30)]
started = time.monotonic()
for text in raw:
    m = json.loads(text)
    AuctionOutcome.objects.create(
        bid_id=m["bid_request_id"], user_id=m["user_id"], site_domain=m.get("site_domain"),
        win_status=m["win_status"], win_price=Decimal(str(m["win_price"])), bid_price=Decimal(str(m["bid_price"])),
        currency=m.get("currency", "USD"), enriched=m.get("enriched", False),
        user_interests=m.get("user_interests", []),
        auction_timestamp=datetime.fromisoformat(m["auction_timestamp"]), raw_data=m)
print({sample} / (time.monotonic() - started))
AuctionOutcome.objects.all().delete()
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "analytics.settings"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def raw_copy_rate(conn, messages: list[bytes], batch_size: int) -> float:
    """COPY of the same rows into a table like the outcomes table (same indexes), no parsing, no dedupe."""
    import orjson

    rows = io.StringIO()
    write = csv.writer(rows, lineterminator="\n").writerow
    for value in messages:
        m = orjson.loads(value)
        write(
            (
                m["bid_request_id"],
                m["user_id"],
                m["site_domain"],
                "t" if m["win_status"] else "f",
                f"{m['win_price']:.2f}",
                f"{m['bid_price']:.2f}",
                m["currency"],
                "t" if m["enriched"] else "f",
                orjson.dumps(m["user_interests"]).decode(),
                m["auction_timestamp"],
                value.decode(),
            )
        )
    lines = rows.getvalue().splitlines(keepends=True)
    chunks = ["".join(lines[i : i + batch_size]) for i in range(0, len(lines), batch_size)]
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_raw_copy (LIKE outcomes_auctionoutcome INCLUDING ALL)")
        conn.commit()
        columns = (
            "bid_id, user_id, site_domain, win_status, win_price, bid_price, currency, enriched, "
            "user_interests, auction_timestamp, raw_data"
        )
        started = time.monotonic()
        for chunk in chunks:
            with cursor.copy(f"COPY bench_raw_copy ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(chunk)
            conn.commit()
        elapsed = time.monotonic() - started
        cursor.execute("DROP TABLE bench_raw_copy")
        conn.commit()
    return len(messages) / elapsed


def run_consumer(env: dict, topic: str, total: int, batch_size: int, conn) -> dict:
    import psutil

    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "process_outcomes",
            "--topic",
            topic,
            "--group",
            f"bench-{topic}",
            "--max-messages",
            str(total),
            "--batch-size",
            str(batch_size),
        ],
        cwd=ROOT,
        env={**env, "LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    watcher = psutil.Process(proc.pid)
    peak = 0
    first_at = first_count = None
    last_at = None
    conn.autocommit = True
    with conn.cursor() as cursor:
        while True:
            with contextlib.suppress(psutil.NoSuchProcess):
                peak = max(peak, watcher.memory_info().rss)
            cursor.execute(
                "SELECT coalesce(sum(next_offset), 0) FROM outcomes_consumeroffset WHERE topic = %s", [topic]
            )
            done = int(cursor.fetchone()[0])
            now = time.monotonic()
            if done and first_at is None:
                first_at, first_count = now, done
            if done >= total:
                last_at = now
                break
            if proc.poll() is not None:
                raise SystemExit(f"consumer exited early with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        proc.wait()
        wall = time.monotonic() - started
        cursor.execute("SELECT count(*) FROM outcomes_auctionoutcome")
        stored = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM outcomes_deadletter")
        dead = cursor.fetchone()[0]
    seconds = last_at - first_at
    return {
        "rate": (total - first_count) / seconds,
        "messages": total - first_count,
        "seconds": seconds,
        "wall": wall,
        "wall_rate": total / wall,
        "peak_rss_mb": peak / 2**20,
        "stored": stored,
        "dead_letters": dead,
    }


if __name__ == "__main__":
    main()
