"""The consumer's steps alone: batch builder, parse step, retry helper, commit step. No
broker, no database: milliseconds."""

from __future__ import annotations

import threading
from decimal import Decimal
from types import SimpleNamespace

import pytest
from kafka.structs import TopicPartition

from outcomes.ingest.batching import BatchBuilder, next_offsets
from outcomes.ingest.committing import CommitStep
from outcomes.ingest.limits import RunLimits
from outcomes.ingest.metrics import ConsumerMetrics
from outcomes.ingest.parsing import DeadLetterLimit, DeadLetterLimitExceeded, ParseStep
from outcomes.ingest.retry import Abandoned, retry
from outcomes.writes import Position, Rejected
from tests.factories import encode, message

pytestmark = pytest.mark.fast
P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def item(partition: int, offset: int):
    return ("event", Position("t", partition, offset, 0))


def rejected(partition: int, offset: int) -> Rejected:
    return Rejected(Position("t", partition, offset, 0), None, b"x", "invalid_json", "no")


# ---------------------------------------------------------------------------- batch builder
def test_a_batch_is_due_when_full_or_old_enough():
    builder = BatchBuilder(max_size=3, max_time_s=1.0)
    assert not builder.due(now=100.0) and builder.wait_ms(100.0, idle_ms=500) == 500
    builder.add(P0, 0, item(0, 0), now=100.0)
    assert not builder.due(now=100.5) and builder.wait_ms(100.5, idle_ms=500) == 500
    assert builder.due(now=101.0)  # old enough
    builder.add(P0, 1, item(0, 1), now=100.1)
    builder.add(P1, 7, rejected(1, 7), now=100.2)
    assert builder.due(now=100.3) and builder.room() == 0  # full
    batch = builder.take()
    assert len(batch) == 3 and len(batch.rejected) == 1 and len(builder) == 0
    assert next_offsets(batch) == {("t", 0): 2, ("t", 1): 8}
    assert builder.read_to == {P0: 2, P1: 8}  # positions outlive the batch


def test_dropping_partitions_keeps_the_others():
    builder = BatchBuilder(max_size=100, max_time_s=1.0)
    for offset in range(3):
        builder.add(P0, offset, item(0, offset), now=0.0)
        builder.add(P1, offset, rejected(1, offset), now=0.0)
    assert builder.drop({P1}) == 3
    assert len(builder) == 3 and P1 not in builder.read_to and builder.read_to[P0] == 3
    assert builder.drop({TopicPartition("t", 9)}) == 0


# ---------------------------------------------------------------------------- parse step
def record(value: bytes, offset: int = 0):
    return SimpleNamespace(topic="t", partition=0, offset=offset, timestamp=0, key=None, value=value)


def test_parse_step_gives_an_outcome_or_a_dead_letter():
    parse = ParseStep(
        max_bytes=65536, max_price=Decimal("1000"), limit=DeadLetterLimit(max_consecutive=0, max_ratio=1, window=10)
    )
    event, position = parse(record(encode(message(bid_request_id="ok-1")), offset=4))
    assert event.bid_id == "ok-1" and (position.partition, position.offset) == (0, 4)
    dead = parse(record(b"{nope", offset=5))
    assert isinstance(dead, Rejected) and dead.reason == "invalid_json" and dead.value == b"{nope"


def test_the_dead_letter_cap_trips():
    parse = ParseStep(
        max_bytes=65536, max_price=Decimal("1000"), limit=DeadLetterLimit(max_consecutive=3, max_ratio=1, window=10)
    )
    parse(record(b"x"))
    parse(record(b"x"))
    parse(record(encode(message())))  # a valid one resets the run
    parse(record(b"x"))
    parse(record(b"x"))
    with pytest.raises(DeadLetterLimitExceeded, match="3 invalid messages in a row"):
        parse(record(b"x"))


# ---------------------------------------------------------------------------- retry
def test_retry_backs_off_then_succeeds():
    calls, waits = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionError("down")
        return "done"

    result = retry(
        flaky,
        transient=(ConnectionError,),
        initial_ms=1,
        max_ms=4,
        stop=threading.Event(),
        on_failure=lambda exc, delay: waits.append(delay),
    )
    assert result == "done" and waits == [0.001, 0.002, 0.004]


def test_retry_gives_up_when_stopped_and_passes_other_errors():
    stop = threading.Event()

    def down():
        stop.set()  # a stop request arrives during the outage
        raise ConnectionError("down")

    seen = []
    with pytest.raises(Abandoned):
        retry(down, transient=(ConnectionError,), initial_ms=1, max_ms=1, stop=stop, on_failure=seen.append)
    with pytest.raises(ValueError):
        retry(
            lambda: int("x"),
            transient=(ConnectionError,),
            initial_ms=1,
            max_ms=1,
            stop=threading.Event(),
            on_failure=seen.append,
        )


# ---------------------------------------------------------------------------- commit step
class _Recorder:
    def __init__(self) -> None:
        self.commits = []

    def highwater(self, tp):
        return 10

    def commit_async(self, offsets, callback=None):
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})


def test_commit_step_commits_after_the_database_and_reports_lag():
    kafka, metrics = _Recorder(), ConsumerMetrics()
    step = CommitStep(kafka, metrics)
    step.commit({})
    step.commit({P0: 7})
    assert kafka.commits == [{P0: 7}]
    assert metrics.registry.get_sample_value("analytics_consumer_lag", {"topic": "t", "partition": "0"}) == 3
    step.forget(P0)
    assert metrics.registry.get_sample_value("analytics_consumer_lag", {"topic": "t", "partition": "0"}) is None


# ---------------------------------------------------------------------------- run limits
def test_a_run_ends_after_max_messages_or_an_idle_timeout():
    limits = RunLimits(max_messages=10, idle_timeout_ms=500, now=100.0)
    assert limits.remaining(consumed=4) == 6 and limits.remaining(consumed=12) == 0
    assert not limits.idle(now=100.4) and limits.idle(now=100.5)
    limits.saw_messages(now=100.4)
    assert not limits.idle(now=100.8)
    unlimited = RunLimits(max_messages=None, idle_timeout_ms=None, now=0.0)
    assert unlimited.remaining(consumed=10**9) is None and not unlimited.idle(now=10**9)
