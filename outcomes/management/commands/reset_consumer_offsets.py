"""``manage.py reset_consumer_offsets``: an operator's explicit decision where a consumer group
resumes reading a partition, stored where the consumer reads it (PostgreSQL).

The consumer pauses a partition whose stored offset lies beyond the partition's end (the
topic was deleted and recreated, or truncated) rather than guess; this command tells it
where to go on. Running consumers notice within seconds and resume. Each change is printed
and logged with the old and the new offset.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from outcomes.writes import offsets_reset, stored_offsets

logger = logging.getLogger("outcomes.consumer")


class Command(BaseCommand):
    help = "Set where a consumer group resumes a partition: its earliest or latest offset in Kafka, or a given one."

    def add_arguments(self, parser):
        parser.add_argument("--topic", default=None, help="Topic (default: KAFKA_TOPIC_AUCTION_OUTCOMES).")
        parser.add_argument("--group", default=None, help="Consumer group (default: KAFKA_CONSUMER_GROUP).")
        parser.add_argument(
            "--partition",
            type=int,
            action="append",
            dest="partitions",
            default=None,
            help="Partition to reset (repeatable; default: every partition of the topic).",
        )
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--to-earliest", action="store_true", help="The partition's first offset still in Kafka.")
        where.add_argument("--to-latest", action="store_true", help="The partition's end: skip what is there now.")
        where.add_argument("--to-offset", type=int, default=None, help="This offset (within the partition's log).")
        parser.add_argument("--dry-run", action="store_true", help="Print what would change; change nothing.")

    def handle(self, *args, **options):
        topic = options["topic"] or settings.CONSUMER.topic
        group = options["group"] or settings.CONSUMER.group
        first, end = self._log_ranges(topic, options["partitions"])
        stored = stored_offsets(consumer_group=group, topic=topic)
        for partition in sorted(first):
            if options["to_earliest"]:
                target = first[partition]
            elif options["to_latest"]:
                target = end[partition]
            else:
                target = options["to_offset"]
                if not first[partition] <= target <= end[partition]:
                    raise CommandError(
                        f"--to-offset {target} is outside {topic}[{partition}], which holds offsets "
                        f"{first[partition]} to {end[partition]} (the end is where the next message goes)."
                    )
            old = stored.get(partition)
            line = f"{group} {topic}[{partition}]: {old if old is not None else 'nothing stored'} -> {target}"
            if options["dry_run"]:
                self.stdout.write(f"would reset {line}")
                continue
            if not offsets_reset(consumer_group=group, topic=topic, partition=partition, to=target, expected=old):
                raise CommandError(f"{group} {topic}[{partition}] moved while resetting it (a consumer is writing it)")
            logger.warning(
                "consumer offset reset by an operator",
                extra={"group": group, "topic": topic, "partition": partition, "old": old, "new": target},
            )
            self.stdout.write(f"reset {line}")

    def _log_ranges(self, topic: str, partitions: list[int] | None) -> tuple[dict[int, int], dict[int, int]]:
        brokers = list(settings.CONSUMER.brokers)
        try:
            kafka = KafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False, request_timeout_ms=10_000)
        except KafkaError as exc:
            raise CommandError(f"cannot reach Kafka at {','.join(brokers)}: {exc!r}") from exc
        try:
            known = kafka.partitions_for_topic(topic)
            if not known:
                raise CommandError(f"topic {topic} does not exist in Kafka at {','.join(brokers)}")
            unknown = sorted(set(partitions or ()) - known)
            if unknown:
                raise CommandError(f"topic {topic} has partitions {sorted(known)}, not {unknown}")
            tps = [TopicPartition(topic, p) for p in sorted(partitions or known)]
            first = kafka.beginning_offsets(tps)
            end = kafka.end_offsets(tps)
        except KafkaError as exc:
            raise CommandError(f"cannot read the offsets of {topic}: {exc!r}") from exc
        finally:
            kafka.close()
        return {tp.partition: first[tp] for tp in tps}, {tp.partition: end[tp] for tp in tps}
