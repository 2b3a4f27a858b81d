"""Shared fixtures: real PostgreSQL (pytest-django's test database) and the real Kafka broker.

Every Kafka test gets fresh topics and consumer groups (random names), so runs and tests
never see each other's messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.factories import BROKERS, ROOT, parse_document, wait_until


# ---------------------------------------------------------------------------- database
@pytest.fixture(autouse=True)
def _fresh_planner_extent():
    """The planner caches where the stored outcomes begin and end (a cost hint, per process):
    each test starts without another test's data in that cache."""
    from outcomes.queries import routing

    routing.forget_extent()


@pytest.fixture(autouse=True)
def _no_statement_timeout_left_for_the_flush(request):
    """A test that answers requests leaves its database connection under the API's statement
    timeout (set for the session, as in production: ``analytics.guards``), often a short one the
    test chose. pytest-django empties the tables after a transactional test on that connection,
    and a TRUNCATE of every table on a busy machine may take longer than 300 ms: the timeout is
    lifted before that flush (this fixture is torn down before the database helper)."""
    if "_django_db_helper" not in request.fixturenames and request.node.get_closest_marker("django_db") is None:
        yield
        return
    request.getfixturevalue("_django_db_helper")  # set up first, so torn down after this
    yield
    from django.db import DatabaseError, connections

    for each in connections.all(initialized_only=True):
        if each.connection is None or each.in_atomic_block:
            continue
        with contextlib.suppress(DatabaseError), each.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', '0', false)")
        each.__dict__.pop("_statement_timeout_of", None)


@pytest.fixture
def person(db):
    """``person("add_auctionoutcome", …, staff=True)``: a user with those model permissions
    (codenames), as the admin grants them; ``person.client(user)`` logs them in to the API."""
    from django.contrib.auth.models import Permission, User
    from rest_framework.test import APIClient

    made = iter(range(10**6))

    def make(*codenames: str, staff: bool = False, superuser: bool = False):
        user = User.objects.create_user(
            f"person-{next(made)}", password="a-long-password-1", is_staff=staff or superuser, is_superuser=superuser
        )
        if codenames:
            user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
        return user

    def client(user):
        api = APIClient()
        api.force_login(user)
        return api

    make.client = client
    return make


@pytest.fixture
def outcome_factory(db):
    """Store outcomes through the write service (rollups included), as the consumer would:
    ``outcome_factory(n=3, win_status=False, ...)``. ``raw_data`` adds fields to the stored
    message. Returns the stored rows in creation order. ``outcome_factory.many([fields, …])``
    stores one outcome per dictionary, all in one batch (as one consumer poll would)."""
    from outcomes import writes
    from outcomes.models import AuctionOutcome

    counter = iter(range(10**9))

    def create(n: int = 1, **fields):
        return many([fields] * n)

    def many(rows: list[dict]):
        batch = writes.Batch()
        bids = []
        for fields in rows:
            fields = dict(fields)
            extra = fields.pop("raw_data", None) or {}
            values = {
                "bid_id": f"bid-{uuid.uuid4()}",
                "user_id": "user-1",
                "site_domain": "news.example",
                "win_status": True,
                "win_price": Decimal("0.80"),
                "bid_price": Decimal("1.00"),
                "currency": "USD",
                "enriched": True,
                "user_interests": ["sports"],
                "auction_timestamp": datetime(2025, 10, 25, 12, 0, tzinfo=UTC),
            }
            values.update(fields)
            document = {**{k: v for k, v in extra.items() if k != "bid_request_id"}, **values}
            document = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in document.items()}
            document = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in document.items()}
            parsed = parse_document(document)
            batch.events.append((parsed, writes.Position("factory", 0, next(counter))))
            bids.append(parsed.bid_id)
        result = writes.write_batch(batch, consumer_group="factory")
        assert result.stored == len(rows), result
        stored = {row.bid_id: row for row in AuctionOutcome.objects.filter(bid_id__in=bids)}
        return [stored[bid] for bid in bids]

    create.many = many
    return create


# ---------------------------------------------------------------------------- Kafka
@pytest.fixture(scope="session")
def kafka_admin():
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=BROKERS, request_timeout_ms=10000)
    except Exception as exc:  # the broker must be running: `scripts/services.sh up`
        pytest.fail(f"Kafka is not reachable at {BROKERS} ({exc!r}); run `scripts/services.sh up` (make test does)")
    yield admin
    admin.close()


@pytest.fixture
def make_topic(kafka_admin):
    from kafka.admin import NewTopic

    created = []

    def create(partitions: int = 1) -> str:
        name = f"test-outcomes-{uuid.uuid4().hex[:12]}"
        kafka_admin.create_topics([NewTopic(name, partitions, 1)])
        created.append(name)
        _wait_for_topic(name, partitions)
        return name

    yield create
    if created:
        with contextlib.suppress(Exception):
            kafka_admin.delete_topics(created)


def _wait_for_topic(name: str, partitions: int) -> None:
    from kafka import KafkaConsumer

    probe = KafkaConsumer(bootstrap_servers=BROKERS)

    def appeared() -> bool:
        found = probe.partitions_for_topic(name)
        if found and len(found) == partitions:
            return True
        probe.topics()  # refresh metadata
        return False

    try:
        wait_until(appeared, timeout=20, interval=0.1, what=f"topic {name} to appear")
    finally:
        probe.close()


@pytest.fixture
def produce():
    """``produce(topic, [value_bytes | (key, value) | (partition, key, value)])`` — sent and flushed."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=BROKERS, linger_ms=5, max_request_size=4 * 1024 * 1024)

    def send(topic: str, messages) -> None:
        for item in messages:
            if isinstance(item, tuple) and len(item) == 3:
                partition, key, value = item
                producer.send(topic, value=value, key=key, partition=partition)
            elif isinstance(item, tuple):
                key, value = item
                producer.send(topic, value=value, key=key)
            else:
                producer.send(topic, value=item)
        producer.flush()

    yield send
    producer.close()


@pytest.fixture
def consumer_settings(settings, tmp_path):
    """Consumer settings for in-process runs: a fresh group, no metrics port, short timeouts."""

    def build(topic: str, **overrides):
        config = dataclasses.replace(
            django_settings.CONSUMER,
            brokers=(BROKERS,),
            topic=topic,
            group=f"test-group-{uuid.uuid4().hex[:8]}",
            metrics_port=0,
            health_file=str(tmp_path / "alive"),
            ready_file=str(tmp_path / "ready"),
            batch_time_ms=200,
            session_timeout_ms=6000,
            retry_initial_backoff_ms=50,
            retry_max_backoff_ms=1000,
            **overrides,
        )
        settings.CONSUMER = config
        return config

    return build


@pytest.fixture
def run_consumer(consumer_settings):
    """Run the consumer in this process until ``max_messages`` (or ``timeout`` ms idle)."""
    from outcomes.ingest.consumer import OutcomeConsumer

    # The idle timeout only ends a run that is not going to reach max_messages: generous, as a
    # first assignment can come back empty while a new topic's metadata propagates.
    def run(config, *, max_messages=None, timeout_ms=10000):
        previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        try:
            return OutcomeConsumer(config, max_messages=max_messages, idle_timeout_ms=timeout_ms).run()
        finally:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])

    return run


class ConsumerProcess:
    """``manage.py process_outcomes`` in a child process, against the test database."""

    def __init__(self, *args: str, env: dict | None = None, log_path: Path | None = None) -> None:
        child_env = dict(os.environ)
        child_env.update(
            {
                "DEBUG": "true",
                "DB_NAME": connection.settings_dict["NAME"],
                "KAFKA_BROKERS": BROKERS,
                "CONSUMER_METRICS_PORT": "0",
                "CONSUMER_SESSION_TIMEOUT_MS": "3000",
                "CONSUMER_RETRY_INITIAL_BACKOFF_MS": "100",
                "CONSUMER_RETRY_MAX_BACKOFF_MS": "2000",
                "DB_CONN_MAX_AGE": "0",
            }
        )
        child_env.update(env or {})
        self.log_path = log_path
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "process_outcomes", *args],
            cwd=ROOT,
            env=child_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self._log is not subprocess.DEVNULL:
                self._log.close()

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


@pytest.fixture
def consumer_process(tmp_path):
    started: list[ConsumerProcess] = []

    def start(*args: str, env: dict | None = None) -> ConsumerProcess:
        proc = ConsumerProcess(*args, env=env, log_path=tmp_path / f"consumer-{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
