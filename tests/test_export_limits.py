"""Exports under hostile and careless clients, against gunicorn as shipped and real PostgreSQL:
a client that hangs up cancels its query (before or after the first byte), a process runs
at most API_EXPORT_CONCURRENCY exports and the probes still answer, a cancelled export ends
in a visibly truncated transfer, and every export leaves one audit line."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import psycopg
import pytest
from django.db import connection

from tests.factories import raw_outcomes, wait_until
from tests.servers import exports_in_progress, free_port, start_api, stop

pytestmark = pytest.mark.django_db(transaction=True)
EXPORT = "/api/outcomes/export/?format=csv"


def raw_request(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


@pytest.fixture
def locked_table():
    """Another session holds the outcomes table: every export waits before its first row."""
    params = connection.get_connection_params()
    holder = psycopg.connect(**params)
    holder.cursor().execute("BEGIN; LOCK TABLE outcomes_auctionoutcome IN ACCESS EXCLUSIVE MODE")
    yield holder
    holder.rollback()
    holder.close()


def test_clients_that_hang_up_before_the_first_byte_cancel_their_exports_and_probes_answer(locked_table):
    port = free_port()
    server = start_api(port, GUNICORN_WORKERS="1", GUNICORN_THREADS="4", API_EXPORT_CONCURRENCY="2", LOG_LEVEL="INFO")
    try:
        clients = [raw_request(port, EXPORT) for _ in range(16)]
        assert wait_until(lambda: exports_in_progress() == 2, timeout=10)  # 2 in the process, no more
        # The others were refused at once, with a reason and when to come back.
        refused = 0
        for sock in clients:
            sock.settimeout(1.0)  # the two accepted ones wait for the lock: 1 s each, not longer
            try:
                head = sock.recv(4096).decode(errors="replace")
            except TimeoutError:
                continue
            if head.startswith("HTTP/1.1 429"):
                refused += 1
                assert "Retry-After: 10" in head and "API_EXPORT_CONCURRENCY" in head
        assert refused == 14
        # The probes (and ordinary requests) still find a thread, quickly.
        for _ in range(5):
            started = time.monotonic()
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            probe.request("GET", "/readyz")
            assert probe.getresponse().status == 200
            assert time.monotonic() - started < 1
        time.sleep(1)
        for sock in clients:  # every client hangs up
            sock.close()
        left = time.monotonic()
        assert wait_until(lambda: exports_in_progress() == 0, timeout=3), "exports still running after the clients left"
        assert time.monotonic() - left < 2.5
        # Their slots are free again (a moment after their queries end): two new exports are
        # accepted (they wait for the lock), a third is refused.
        again = []

        def accepted() -> bool:
            sock = raw_request(port, EXPORT)
            sock.settimeout(0.3)
            try:
                sock.recv(100)  # an answer at once: a 429
            except TimeoutError:
                again.append(sock)  # waiting for its rows
                return len(again) == 2
            sock.close()
            return False

        assert wait_until(accepted, timeout=5)
        assert exports_in_progress() == 2
        for sock in again:
            sock.close()
        assert wait_until(lambda: exports_in_progress() == 0, timeout=3)
    finally:
        out, _err = stop(server)
    audit = [json.loads(line) for line in out.splitlines() if '"logger": "outcomes.audit"' in line]
    assert len(audit) == 4 and {line["ended"] for line in audit} == {"client_disconnected"}


def test_an_export_over_its_statement_timeout_ends_in_a_truncated_transfer():
    raw_outcomes(150_000)  # ~30 MB of NDJSON: more than every buffer between COPY and the client
    port = free_port()
    server = start_api(port, API_EXPORT_STATEMENT_TIMEOUT_MS="1000", LOG_LEVEL="INFO")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", EXPORT.replace("csv", "ndjson"))
        response = conn.getresponse()
        assert response.status == 200
        slow_until = time.monotonic() + 2.5
        with pytest.raises(http.client.IncompleteRead):  # no final zero-length chunk: cut, not complete
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    break
                if time.monotonic() < slow_until:
                    time.sleep(0.05)  # a slow reader: the statement outlives its 1 s timeout
                # then what the buffers hold is read at once (the cut is already made)
    finally:
        out, _err = stop(server)
    assert "export cut short" in out and "statement_timeout" in out
    [audit] = [json.loads(line) for line in out.splitlines() if '"logger": "outcomes.audit"' in line]
    assert audit["ended"] == "statement_timeout" and audit["rows"] > 0


def test_every_export_leaves_one_audit_line_without_user_ids(settings):
    raw_outcomes(50)
    port = free_port()
    server = start_api(port, LOG_LEVEL="INFO")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", EXPORT + "&user_id=user-7&site_domain=site-7.example")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200 and body.count(b"\n") == 2  # header + u-7's one row
    finally:
        out, _err = stop(server)
    [audit] = [json.loads(line) for line in out.splitlines() if '"logger": "outcomes.audit"' in line]
    assert audit["event"] == "export" and audit["ended"] == "complete"
    assert audit["rows"] == 1 and audit["bytes"] == len(body) and audit["seconds"] >= 0
    assert audit["filters"] == {"format": "csv", "user_id": "redacted", "site_domain": "site-7.example"}
    assert audit["who"].startswith("anonymous:")
    assert "user-7" not in out


def test_many_concurrent_exports_never_outnumber_the_cap(locked_table):
    port = free_port()
    server = start_api(port, GUNICORN_THREADS="3", API_EXPORT_CONCURRENCY="1")
    seen = []
    stop_watching = threading.Event()

    def watch():
        while not stop_watching.is_set():
            seen.append(exports_in_progress())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        clients = [raw_request(port, EXPORT) for _ in range(6)]
        time.sleep(1.5)
        for sock in clients:
            sock.close()
        assert wait_until(lambda: exports_in_progress() == 0, timeout=3)
    finally:
        stop_watching.set()
        watcher.join()
        stop(server)
    assert max(seen) == 1


@pytest.mark.parametrize(("threads", "exports", "refused"), [("4", "2", False), ("4", "4", True), ("2", "3", True)])
def test_gunicorn_refuses_an_export_cap_that_would_take_every_thread(threads, exports, refused):
    import os
    import subprocess
    import sys

    from tests.servers import ROOT

    result = subprocess.run(
        [sys.executable, "-c", "exec(open('gunicorn.conf.py').read())"],
        cwd=ROOT,
        env={**os.environ, "GUNICORN_THREADS": threads, "API_EXPORT_CONCURRENCY": exports},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode != 0) == refused
    if refused:
        assert f"API_EXPORT_CONCURRENCY={exports} must be below GUNICORN_THREADS={threads}" in result.stderr
