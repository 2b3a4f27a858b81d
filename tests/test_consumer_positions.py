"""Stored offsets that the real broker no longer has: records deleted by retention, a topic
deleted and recreated. The consumer notices, says so, and follows its policy
(``outcomes.ingest.positions``) — against the real Kafka broker and PostgreSQL."""

from __future__ import annotations

import re
import signal
import time
import urllib.request

import pytest
from django.core.management import call_command
from kafka.admin import NewTopic
from kafka.errors import KafkaError
from kafka.structs import TopicPartition
from rest_framework.test import APIClient

from outcomes.models import AuctionOutcome, ConsumerOffset, LostOffsets
from tests.factories import encode, message, wait_until
from tests.servers import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka]


def metrics(port: int) -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return ""


def test_messages_deleted_before_they_were_stored_are_recorded_as_lost(
    make_topic, produce, consumer_settings, run_consumer, kafka_admin, caplog
):
    topic = make_topic()
    sent = [message() for _ in range(10)]
    bids = [m["bid_request_id"] for m in sent]
    produce(topic, [encode(m) for m in sent])
    config = consumer_settings(topic)
    run_consumer(config, max_messages=3)
    assert ConsumerOffset.objects.get(topic=topic).next_offset == 3
    # Retention (here: kafka-delete-records) removes offsets 0–6 while the consumer is away.
    kafka_admin.delete_records({TopicPartition(topic, 0): 7})

    with caplog.at_level("ERROR", logger="outcomes.consumer"):
        summary = run_consumer(config, max_messages=3)
    assert summary.stored == 3
    assert set(AuctionOutcome.objects.values_list("bid_id", flat=True)) == set(bids[:3] + bids[7:])
    lost = LostOffsets.objects.get()
    assert (lost.topic, lost.partition, lost.first_offset, lost.end_offset, lost.messages) == (topic, 0, 3, 7, 4)
    assert ConsumerOffset.objects.get(topic=topic).next_offset == 10
    [record] = [r for r in caplog.records if "deleted from Kafka before they were stored" in r.getMessage()]
    assert (record.partition, record.stored_offset, record.first_offset, record.end_offset) == (0, 3, 7, 10)
    lost = APIClient().get("/api/ingestion/").json()["lost_messages"]
    assert lost["total"] == 4 and [(r["first_offset"], r["end_offset"]) for r in lost["ranges"]] == [(3, 7)]


def recreate(kafka_admin, topic: str) -> None:
    """Delete the topic and create it again under the same name (once the deletion is done)."""
    kafka_admin.delete_topics([topic])

    def created() -> bool:
        try:
            kafka_admin.create_topics([NewTopic(topic, 1, 1)])
            return True
        except KafkaError:  # TopicAlreadyExists while the deletion completes
            return False

    assert wait_until(created, timeout=30, interval=0.5)


def test_a_recreated_topic_pauses_the_consumer_until_an_operator_resets_the_offset(
    make_topic, produce, consumer_settings, run_consumer, consumer_process, kafka_admin
):
    topic = make_topic()
    produce(topic, [encode(message()) for _ in range(10)])
    config = consumer_settings(topic)
    run_consumer(config, max_messages=10)
    recreate(kafka_admin, topic)
    fresh = [message() for _ in range(4)]
    produce(topic, [encode(m) for m in fresh])

    port = free_port()
    proc = consumer_process(
        "--topic", topic, "--group", config.group, "--timeout", "120000", env={"CONSUMER_METRICS_PORT": str(port)}
    )
    blocked = f'analytics_consumer_partition_blocked{{partition="0",topic="{topic}"}} 1.0'
    assert wait_until(lambda: blocked in metrics(port), timeout=60, interval=0.2), proc.log()
    text = metrics(port)
    # Once per detection: a rebalance meanwhile (the group's first join) detects it again.
    detected = re.search(
        rf'analytics_consumer_offset_out_of_range_total{{kind="beyond_end",partition="0",topic="{topic}"}} (\S+)', text
    )
    assert detected and float(detected.group(1)) >= 1, text
    time.sleep(1)
    assert AuctionOutcome.objects.count() == 10  # nothing guessed
    ingestion = APIClient().get("/api/ingestion/").json()
    assert ingestion["status"] == "stalled" and "reset_consumer_offsets" in ingestion["status_detail"]
    assert [(p["stored_offset"], p["end_offset"], p["position"]) for p in ingestion["partitions"]] == [
        (10, 4, "beyond_end")
    ]
    assert ConsumerOffset.objects.get(topic=topic, consumer_group=config.group).next_offset == 10
    log = proc.log()
    assert "beyond the end of the partition" in log and '"stored_offset": 10' in log and '"end_offset": 4' in log

    call_command("reset_consumer_offsets", "--topic", topic, "--group", config.group, "--to-earliest")
    assert wait_until(lambda: AuctionOutcome.objects.count() == 14, timeout=60, interval=0.2), proc.log()
    assert wait_until(lambda: blocked.replace(" 1.0", " 0.0") in metrics(port), timeout=10, interval=0.2)
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert ConsumerOffset.objects.get(topic=topic, consumer_group=config.group).next_offset == 4
    assert {m["bid_request_id"] for m in fresh} <= set(AuctionOutcome.objects.values_list("bid_id", flat=True))
