"""The benchmarks still run: each script at a tiny size, end to end against the real services.

Only what they print is checked (the figures are not: a benchmark is not a timed test).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from django.db import connection

from tests.factories import ROOT

pytestmark = pytest.mark.django_db


def scratch_databases() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'analytics\\_bench\\_%' "
            "OR datname LIKE 'analytics\\_export\\_%'"
        )
        return {name for (name,) in cursor.fetchall()}


def bench(script: str, *args: str) -> str:
    env = {**os.environ, "DEBUG": "true"}
    done = subprocess.run(
        [sys.executable, f"bench/{script}", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_the_ingest_benchmark_stores_every_message_and_prints_its_ratios():
    before = scratch_databases()
    output = bench("ingest.py", "--messages", "3000", "--orm-sample", "200", "--batch-size", "1000")
    assert "stored 3,000 outcomes, 0 dead letters" in output, output
    assert re.search(r"ratio consumer / raw COPY\s+\d+\.\d\d", output), output
    assert re.search(r"raw COPY, same run\s+[\d,]+ rows/s", output), output
    assert scratch_databases() == before  # its database dropped


def test_the_export_benchmark_exports_every_row_beside_the_raw_copy():
    before = scratch_databases()
    output = bench("export.py", "--rows", "3000", "--repeat", "1")
    assert re.search(r"raw COPY … TO STDOUT \(CSV\)\s+[\d,]+ rows/s", output), output
    for label in ("CSV, every row", "NDJSON, every row", "Excel (xlsx), every row"):
        line = next(line for line in output.splitlines() if line.startswith(label))
        assert line.endswith("(3,000 rows)"), line
    assert scratch_databases() == before


def test_the_live_benchmark_streams_every_batch_to_every_subscriber():
    before = scratch_databases()
    output = bench("live.py", "--subscribers", "20", "--messages", "3000", "--batch-size", "500")
    assert "subscribers connected              20  (refused 0)" in output, output
    assert re.search(r"publish → client  p50 \d+ ms   p95 \d+ ms", output), output
    assert "told to resync (fell behind)        0" in output, output
    assert scratch_databases() == before
