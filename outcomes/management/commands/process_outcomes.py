"""``manage.py process_outcomes``: consume auction outcomes from Kafka into PostgreSQL.

Thin: options → settings → ``OutcomeConsumer.run()``.
"""

from __future__ import annotations

import dataclasses

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analytics import roles
from outcomes.ingest.consumer import DeadLetterLimitExceeded, OutcomeConsumer


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Consume auction outcomes from Kafka and store them in PostgreSQL, exactly once."
    # The system checks import the whole HTTP side (URLs, the schema generator): a second
    # of start-up a restarted consumer does not need. Deployments run `manage.py check`.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--max-messages",
            type=_positive,
            default=None,
            metavar="N",
            help="Process N messages (valid or not), then exit.",
        )
        parser.add_argument(
            "--timeout",
            type=_positive,
            default=None,
            metavar="MS",
            help="Exit after MS milliseconds without a new message.",
        )
        parser.add_argument(
            "--batch-size",
            type=_positive,
            default=None,
            metavar="N",
            help="Messages per database transaction (CONSUMER_BATCH_SIZE).",
        )
        parser.add_argument(
            "--batch-time",
            type=_positive,
            default=None,
            metavar="MS",
            help="Longest wait before writing a partial batch (CONSUMER_BATCH_TIME_MS).",
        )
        parser.add_argument("--topic", default=None, help="Topic (KAFKA_TOPIC_AUCTION_OUTCOMES).")
        parser.add_argument("--group", default=None, help="Consumer group (KAFKA_CONSUMER_GROUP).")
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            metavar="PORT",
            help="Prometheus metrics port, 0 to disable (CONSUMER_METRICS_PORT).",
        )
        parser.add_argument(
            "--metrics-addr",
            default=None,
            metavar="ADDR",
            help="Address the metrics server listens on (CONSUMER_METRICS_ADDR).",
        )

    def handle(self, *args, **options):
        roles.require("consumer", CommandError)
        overrides = {
            "batch_size": options["batch_size"],
            "batch_time_ms": options["batch_time"],
            "topic": options["topic"],
            "group": options["group"],
            "metrics_port": options["metrics_port"],
            "metrics_addr": options["metrics_addr"],
        }
        config = dataclasses.replace(settings.CONSUMER, **{k: v for k, v in overrides.items() if v is not None})
        consumer = OutcomeConsumer(config, max_messages=options["max_messages"], idle_timeout_ms=options["timeout"])
        if config.metrics_port:
            try:
                consumer.metrics.serve(config.metrics_port, config.metrics_addr)
            except OSError as exc:  # e.g. a second consumer on one machine: the port is taken
                raise CommandError(
                    f"cannot serve metrics on {config.metrics_addr}:{config.metrics_port} ({exc.strerror or exc}): "
                    "set CONSUMER_METRICS_PORT (or --metrics-port) to a free port, or 0 to turn metrics off; "
                    "CONSUMER_METRICS_ADDR (or --metrics-addr) sets the address"
                ) from None
        try:
            summary = consumer.run()
        except DeadLetterLimitExceeded as exc:
            raise CommandError(f"dead-letter limit exceeded, stopping: {exc}") from exc
        if self.stdout.isatty():  # for a person at a terminal; logs carry it as JSON ("consumer stopped")
            self.stdout.write(
                f"consumed={summary.consumed} stored={summary.stored} duplicates={summary.duplicates} "
                f"dead_lettered={summary.dead_lettered} batches={summary.batches}"
            )
