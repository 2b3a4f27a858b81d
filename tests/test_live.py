"""The live stream against real servers: uvicorn as the live role starts it, Redis, and the
write service's own events (``write_batch(live=True)``) published as the consumer publishes
them. What a client receives is what the committed batch changed for its filters; access is
the reports'; a reconnect resumes from ``Last-Event-ID`` without loss or double counting;
bounds hold and a client that leaves frees its place."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest

from outcomes import writes
from outcomes.ingest.publishing import LivePublisher
from outcomes.models import APIKey
from tests.factories import parse_document, wait_until
from tests.servers import ROOT, free_port, start_live

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def stream_name():
    return f"test:live:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def server(stream_name, tmp_path):
    port = free_port()
    process = start_live(
        port,
        tmp_path / "live.log",
        API_READ_ACCESS="authenticated",
        LIVE_STREAM=stream_name,
        LIVE_MAX_CLIENTS="2",
        LIVE_HEARTBEAT_S="0.5",
    )
    yield port
    process.terminate()
    assert process.wait(timeout=30) is not None


class Events:
    """An SSE client: ``next()`` is the next event (heartbeats skipped)."""

    def __init__(self, port: int, query: str = "", headers: dict | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.request("GET", f"/api/live/{query}", headers=headers or {})
        self.response = self.conn.getresponse()

    def next(self) -> dict:
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline().decode().rstrip("\n")
            if not line:
                if "event" in fields:
                    return {**fields, "data": json.loads(fields["data"])}
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value

    def close(self) -> None:
        self.conn.close()


def key(*scopes: str) -> dict:
    return {"Authorization": f"Api-Key {APIKey.objects.create_key(name='live', scopes=list(scopes))[1]}"}


def commit(publisher: LivePublisher, rows: list[dict]) -> str:
    """A batch written by the write service and its event published, as the consumer does."""
    batch = writes.Batch()
    for i, fields in enumerate(rows):
        document = {
            "bid_id": f"live-{uuid.uuid4()}",
            "user_id": "u",
            "site_domain": "news.example",
            "win_status": True,
            "win_price": "0.80",
            "bid_price": "1.00",
            "currency": "EUR",
            "enriched": False,
            "user_interests": [],
            "auction_timestamp": datetime(2026, 12, 3, 5, i % 60, tzinfo=UTC).isoformat(),
            **fields,
        }
        batch.events.append((parse_document(document), writes.Position("live", 0, i)))
    result = writes.write_batch(batch, consumer_group="live-test", live=True)
    return publisher.publish(result.live)


def test_a_committed_batch_reaches_the_client_as_its_filters_see_it(server, stream_name):
    publisher = LivePublisher(REDIS, stream_name, 1000)
    headers = key("read")
    everything = Events(server, headers=headers)
    eur = Events(server, "?currency=eur&site_domain=news.example", headers=headers)
    assert everything.response.status == 200 and everything.response.getheader("Content-Type") == "text/event-stream"
    time.sleep(0.5)  # both subscribed
    entry = commit(
        publisher,
        [
            {},
            {"win_status": False, "win_price": None},
            {"currency": "USD", "win_price": "0.50"},
            {"site_domain": "x.io"},
        ],
    )
    first = everything.next()
    assert first["event"] == "batch" and first["id"] == entry
    assert first["data"] == {
        "outcomes": 4,
        "wins": 3,
        "revenue": {"EUR": "1.60", "USD": "0.50"},
        "newest_event_time": "2026-12-03T05:03:00Z",
        "resync": False,
    }
    mine = eur.next()
    assert mine["id"] == entry and (mine["data"]["outcomes"], mine["data"]["wins"]) == (2, 1)
    assert mine["data"]["revenue"] == {"EUR": "0.80"}
    everything.close(), eur.close()


def test_access_is_the_reports_and_parameters_are_checked(server):
    assert Events(server).response.status == 401
    refused = Events(server, headers=key("write"))
    assert refused.response.status == 403 and b"'read' scope" in refused.response.read()
    wrong = Events(server, "?site=news.example", headers=key("read"))
    assert wrong.response.status == 400 and b"Unknown query parameter" in wrong.response.read()
    bad = Events(server, "?currency=euro", headers=key("read"))
    assert bad.response.status == 400 and b"ISO 4217" in bad.response.read()
    forged = Events(server, headers={**key("read"), "Last-Event-ID": "x; DROP"})
    assert forged.response.status == 400


def test_a_reconnect_resumes_after_its_last_event_each_once(server, stream_name):
    publisher = LivePublisher(REDIS, stream_name, 1000)
    headers = key("read")
    client = Events(server, headers=headers)
    time.sleep(0.5)
    first = commit(publisher, [{}])
    assert client.next()["id"] == first
    client.close()  # away while two batches commit
    second, third = commit(publisher, [{}, {}]), commit(publisher, [{}, {}, {}])
    back = Events(server, headers={**headers, "Last-Event-ID": first})
    assert [(e["id"], e["data"]["outcomes"]) for e in (back.next(), back.next())] == [(second, 2), (third, 3)]
    fourth = commit(publisher, [{}])
    assert back.next()["id"] == fourth  # then live, nothing twice
    back.close()


def test_a_client_too_far_behind_the_kept_stream_is_told_to_refetch(server, stream_name):
    publisher = LivePublisher(REDIS, stream_name, 100)
    headers = key("read")
    first = commit(publisher, [{}])
    publisher.client.xtrim(stream_name, maxlen=0)  # everything since was trimmed
    commit(publisher, [{}])
    back = Events(server, headers={**headers, "Last-Event-ID": first})
    assert back.next()["event"] == "resync"
    back.close()


def test_the_client_bound_holds_and_a_client_that_leaves_frees_its_place(server):
    headers = key("read")
    one, two = Events(server, headers=headers), Events(server, headers=headers)
    assert one.response.status == two.response.status == 200
    third = Events(server, headers=headers)
    assert third.response.status == 503 and third.response.getheader("Retry-After") == "5"
    one.close()

    def admitted():
        attempt = Events(server, headers=headers)
        ok = attempt.response.status == 200
        attempt.close()
        return ok

    wait_until(admitted, 10, what="the place of the client that left")
    two.close()


def test_the_live_role_says_which_setting_it_lacks():
    from tests.servers import production

    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env = {**base, **production(), "DB_PASSWORD": "a-real-password-of-some-length", "REDIS_URL": ""}
    result = subprocess.run(
        [sys.executable, "manage.py", "check_role", "live"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1 and "LIVE_REDIS_URL (or REDIS_URL) is required" in result.stderr


def test_the_live_role_logs_json_lines_from_start_to_a_graceful_stop(stream_name, tmp_path):
    """uvicorn's own lines (started, listening, shutting down) are JSON like the app's, and
    SIGTERM ends the process cleanly."""
    log = tmp_path / "live.log"
    process = start_live(free_port(), log, LIVE_STREAM=stream_name, LIVE_GRACEFUL_SECONDS="1")
    process.terminate()
    # uvicorn shuts down gracefully, then re-raises the signal it caught: the exit says SIGTERM.
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    # After the role's one-line settings check, every line is one JSON object.
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines[0] == "live: the settings it needs are set."
    records = [json.loads(line) for line in lines[1:]]
    assert all("color_message" not in record and "\x1b" not in json.dumps(record) for record in records)
    messages = " ".join(record["message"] for record in records)
    assert "Uvicorn running on" in messages and "Finished server process" in messages, messages
    assert {record["logger"] for record in records} >= {"uvicorn.error"}
