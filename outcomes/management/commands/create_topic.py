"""``manage.py create_topic``: the outcomes topic, created if it does not exist (idempotent).

A consumer or producer that starts before its topic exists makes the broker auto-create it
(if allowed) and logs "not found in cluster metadata" errors meanwhile; creating it first,
with the partitions wanted, avoids both. In production the topic is usually managed with
the cluster; this is for local runs and first deployments.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError


class Command(BaseCommand):
    help = "Create the outcomes topic (KAFKA_TOPIC_AUCTION_OUTCOMES) if it does not exist."

    def add_arguments(self, parser):
        parser.add_argument("--topic", default=None, help="Topic (default: KAFKA_TOPIC_AUCTION_OUTCOMES).")
        parser.add_argument("--partitions", type=int, default=3, help="Partitions of a new topic (default 3).")
        parser.add_argument("--replication-factor", type=int, default=1)

    def handle(self, *args, **options):
        topic = options["topic"] or settings.CONSUMER.topic
        if options["partitions"] < 1 or options["replication_factor"] < 1:
            raise CommandError("--partitions and --replication-factor must be at least 1.")
        try:
            admin = KafkaAdminClient(bootstrap_servers=list(settings.CONSUMER.brokers), request_timeout_ms=10_000)
        except KafkaError as exc:
            raise CommandError(f"cannot reach Kafka at {','.join(settings.CONSUMER.brokers)}: {exc!r}") from exc
        try:
            if topic in admin.list_topics():
                self.stdout.write(f"topic {topic} exists")
                return
            admin.create_topics([NewTopic(topic, options["partitions"], options["replication_factor"])])
            self.stdout.write(f"created topic {topic} ({options['partitions']} partitions)")
        except TopicAlreadyExistsError:
            self.stdout.write(f"topic {topic} exists")
        except KafkaError as exc:
            raise CommandError(f"cannot create topic {topic}: {exc!r}") from exc
        finally:
            admin.close()
