"""``manage.py simulate_auctions``: produce realistic auction outcomes to Kafka."""

from __future__ import annotations

import signal
import time

import orjson
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from kafka import KafkaProducer
from kafka.errors import KafkaError

from outcomes.models import Experiment
from outcomes.simulation import EXPERIMENT, OutcomeSimulator

REPORT_EVERY_S = 5.0  # a progress line this often, whatever the rate


class Command(BaseCommand):
    help = "Produce synthetic auction outcomes to the outcomes topic (for local runs and demos)."

    def add_arguments(self, parser):
        parser.add_argument("--rate", type=float, default=50.0, help="Messages per second; 0 for as fast as possible.")
        parser.add_argument("--count", type=int, default=0, help="Messages to send; 0 to run until interrupted.")
        parser.add_argument(
            "--days", type=float, default=0.0, help="Spread auction times over the last DAYS days (default: now)."
        )
        parser.add_argument("--seed", type=int, default=None, help="Random seed (default: time-based).")
        parser.add_argument(
            "--invalid-every",
            type=int,
            default=0,
            metavar="N",
            help="Make every Nth message malformed, to exercise the dead-letter path.",
        )
        parser.add_argument("--topic", default=None, help="Topic (default KAFKA_TOPIC_AUCTION_OUTCOMES).")
        parser.add_argument(
            "--register-experiment",
            action="store_true",
            help="Register the experiment the simulated bidder runs (shading-v2) in the registry first.",
        )

    def handle(self, *args, **options):
        if options["rate"] < 0 or options["count"] < 0 or options["days"] < 0:
            raise CommandError("--rate, --count and --days must not be negative.")
        topic = options["topic"] or settings.CONSUMER.topic
        seed = options["seed"] if options["seed"] is not None else time.time_ns()
        simulator = OutcomeSimulator(seed=seed)
        if options["register_experiment"]:
            plan = {k: v for k, v in EXPERIMENT.items() if k != "key"}
            _, created = Experiment.objects.update_or_create(key=EXPERIMENT["key"], defaults=plan)
            self.stdout.write(f"experiment {EXPERIMENT['key']} {'registered' if created else 'up to date'}")
        try:
            producer = KafkaProducer(
                bootstrap_servers=list(settings.CONSUMER.brokers),
                linger_ms=20,
                compression_type=None,
                client_id="auction-simulator",
            )
        except KafkaError as exc:
            raise CommandError(f"cannot reach Kafka at {','.join(settings.CONSUMER.brokers)}: {exc!r}") from exc
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
        rate, count, every = options["rate"], options["count"] or None, options["invalid_every"]
        started = time.monotonic()
        next_report = started + REPORT_EVERY_S
        sent = 0
        for message in simulator.stream(count=count, days=options["days"]):
            if stopping:
                break
            payload = orjson.dumps(message)
            if every and (sent + 1) % every == 0:
                payload = payload[: len(payload) // 2]  # truncated JSON
            producer.send(topic, value=payload, key=message["user_id"].encode())
            sent += 1
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0.005:  # sleep in slices of a few ms, not once per message
                    time.sleep(ahead)
            if time.monotonic() >= next_report:
                elapsed = time.monotonic() - started
                self.stdout.write(f"sent {sent} outcomes to {topic} ({sent / elapsed:,.0f}/s)")
                next_report += REPORT_EVERY_S
        producer.flush()
        producer.close()
        self.stdout.write(f"sent {sent} outcomes to {topic} in {time.monotonic() - started:.1f}s")
