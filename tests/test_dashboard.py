"""/dashboard/ (who may see it) and /api/ingestion/ (what its health panel shows), server side.

The page itself is tested in a real browser in tests/test_browser.py.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from outcomes import ingestion
from outcomes.models import AuctionOutcome, ConsumerOffset, DeadLetter
from tests.factories import BROKERS, encode, message
from tests.servers import free_port

pytestmark = pytest.mark.django_db


def test_the_dashboard_is_behind_the_admin_login():
    response = Client().get("/dashboard/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/?next=/dashboard/")


def test_staff_and_readers_see_it_others_are_refused(person):
    nobody, reader, staff = Client(), Client(), Client()
    nobody.force_login(person())
    reader.force_login(person("view_auctionoutcome"))
    staff.force_login(person(staff=True))
    assert nobody.get("/dashboard/").status_code == 403
    for client in (reader, staff):
        page = client.get("/dashboard/")
        assert page.status_code == 200
        html = page.content.decode()
        assert 'id="dashboard-config"' in html and "uPlot.iife.min.js" in html and "dashboard.js" in html


def test_the_admin_and_the_root_lead_to_it(admin_client):
    assert 'href="/dashboard/"' in admin_client.get("/admin/").content.decode()  # "View site"
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"] == "/dashboard/"


@pytest.fixture
def ingestion_settings(settings, make_topic):
    """settings.CONSUMER on a fresh topic and group; the offsets answer is not reused."""
    topic = make_topic(2)
    settings.CONSUMER = dataclasses.replace(django_settings.CONSUMER, brokers=(BROKERS,), topic=topic, group="dash")
    ingestion.topic_offsets.forget()
    yield settings.CONSUMER
    ingestion.topic_offsets.forget()


def store_offset(config, partition: int, next_offset: int, age: timedelta = timedelta(0)) -> None:
    row = ConsumerOffset.objects.create(
        consumer_group=config.group, topic=config.topic, partition=partition, next_offset=next_offset
    )
    ConsumerOffset.objects.filter(pk=row.pk).update(updated_at=timezone.now() - age)


@pytest.mark.kafka
def test_lag_per_partition_and_a_stalled_consumer(ingestion_settings, produce):
    config = ingestion_settings
    produce(config.topic, [(0, None, encode(message())) for _ in range(5)] + [(1, None, encode(message()))])
    store_offset(config, 0, 2, age=timedelta(minutes=5))
    answer = APIClient().get("/api/ingestion/").json()
    assert answer["topic"] == config.topic and answer["broker"] == {"reachable": True, "error": ""}
    assert answer["partitions"][0] | {"updated_at": None} == {
        "partition": 0,
        "stored_offset": 2,
        "first_offset": 0,
        "end_offset": 5,
        "lag": 3,
        "position": "ok",
        "updated_at": None,
    }
    assert answer["partitions"][1]["stored_offset"] is None and answer["partitions"][1]["lag"] == 1
    assert answer["lag"] == 4
    assert answer["status"] == "stalled" and "4 messages wait" in answer["status_detail"]


@pytest.mark.kafka
def test_caught_up_is_flowing_then_idle(ingestion_settings, produce, outcome_factory):
    config = ingestion_settings
    produce(config.topic, [(0, None, encode(message())) for _ in range(3)])
    store_offset(config, 0, 3)
    store_offset(config, 1, 0)
    outcome_factory(4)
    answer = APIClient().get("/api/ingestion/").json()
    assert (answer["status"], answer["lag"]) == ("flowing", 0)
    assert answer["stored_last_minute"] == 4 and answer["stored_per_second"] == round(4 / 60, 1)
    assert answer["last_stored_age_seconds"] < 60
    ConsumerOffset.objects.update(updated_at=timezone.now() - timedelta(minutes=10))
    ingestion.topic_offsets.forget()
    answer = APIClient().get("/api/ingestion/").json()  # the consumer rests; outcomes came in by the API
    assert answer["status"] == "flowing" and "through the API" in answer["status_detail"]
    AuctionOutcome.objects.update(timestamp=timezone.now() - timedelta(minutes=10))
    ingestion.topic_offsets.forget()
    answer = APIClient().get("/api/ingestion/").json()
    assert answer["status"] == "idle" and "no traffic" in answer["status_detail"]


def test_an_unreachable_broker_is_unknown_not_an_error(settings):
    settings.CONSUMER = dataclasses.replace(django_settings.CONSUMER, brokers=(f"127.0.0.1:{free_port()}",))
    ingestion.topic_offsets.forget()
    try:
        response = APIClient().get("/api/ingestion/")
    finally:
        ingestion.topic_offsets.forget()
    answer = response.json()
    assert response.status_code == 200
    assert answer["status"] == "unknown" and answer["lag"] is None
    assert answer["broker"]["reachable"] is False and "Kafka did not answer" in answer["broker"]["error"]


def test_dead_letters_by_reason_codes(settings):
    now = timezone.now()
    for offset, reason in enumerate(["invalid_json", "invalid_json", "negative_price"]):
        DeadLetter.objects.create(topic="t", partition=0, offset=offset, reason=reason, value=b"x")
    DeadLetter.objects.create(topic="t", partition=0, offset=9, reason="invalid_json", replayed_at=now)
    settings.CONSUMER = dataclasses.replace(django_settings.CONSUMER, brokers=(f"127.0.0.1:{free_port()}",))
    ingestion.topic_offsets.forget()
    try:
        dead = APIClient().get("/api/ingestion/").json()["dead_letters"]
    finally:
        ingestion.topic_offsets.forget()
    assert dead["unreplayed"] == 3 and dead["last_hour"] == 3
    assert [(r["reason"], r["count"], r["label"]) for r in dead["by_reason"]] == [
        ("invalid_json", 2, "Not JSON"),
        ("negative_price", 1, "Negative price"),
    ]


def test_ingestion_refuses_parameters():
    response = APIClient().get("/api/ingestion/", {"verbose": "1"})
    assert response.status_code == 400 and "verbose" in response.json()


@pytest.mark.kafka
def test_asking_about_a_missing_topic_does_not_create_it(settings, kafka_admin):
    topic = f"never-created-{uuid.uuid4().hex[:8]}"
    settings.CONSUMER = dataclasses.replace(django_settings.CONSUMER, brokers=(BROKERS,), topic=topic)
    ingestion.topic_offsets.forget()
    try:
        answer = APIClient().get("/api/ingestion/").json()
    finally:
        ingestion.topic_offsets.forget()
    assert answer["partitions"] == [] and answer["lag"] == 0 and answer["status"] == "idle"
    assert topic not in kafka_admin.list_topics()
