"""What one request can make a worker hold, measured on a real gunicorn worker's RSS."""

from __future__ import annotations

import http.client
import subprocess
from pathlib import Path

import pytest

from tests.factories import raw_outcomes
from tests.servers import free_port, production, start_api, stop

pytestmark = pytest.mark.django_db(transaction=True)


def worker_rss_mib(master_pid: int) -> float:
    [worker] = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout.split()
    for line in Path(f"/proc/{worker}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_300_distinct_1000_row_pages_grow_a_worker_by_less_than_50_mib():
    raw_outcomes(3000, raw_bytes=20_000)  # messages of ~20 KB: lists never load them
    port = free_port()
    server = start_api(
        port,
        **production(
            GUNICORN_WORKERS="1", API_READ_ACCESS="public", API_RATE_LIMIT_KEY="off", API_RATE_LIMIT_ANON="off"
        ),
    )
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def page(i: int) -> int:
            conn.request("GET", f"/api/outcomes/?page_size=1000&max_price={500 + i / 100:.2f}")
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200, body[:300]
            return len(body)

        sizes = [page(i) for i in range(10)]  # warmed up: imports, connections, first pages
        before = worker_rss_mib(server.pid)
        sizes += [page(i) for i in range(10, 310)]
        after = worker_rss_mib(server.pid)
    finally:
        stop(server)
    assert min(sizes) > 300_000  # every answer is a full page of 1,000 outcomes
    assert after - before < 50, f"RSS grew {after - before:.0f} MiB (from {before:.0f})"
