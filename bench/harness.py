"""What the benchmarks and the tests share to run the service as shipped: a free loopback
port, gunicorn started with gunicorn.conf.py and waited for until it answers, a scratch
database dropped afterwards, and outcomes loaded through the write service.

Nothing here imports Django at module level: a benchmark sets its environment first.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "analytics.wsgi:application"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers_healthz(port: int) -> bool:
    """A worker answers (the master accepts connections before its workers are up)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start_api(
    port: int, env: dict, *, command: list[str] | None = None, timeout: float = 30, **popen
) -> subprocess.Popen:
    """gunicorn (or ``command``) on 127.0.0.1:``port`` with ``env``, once a worker answers
    ``/healthz``; a server that exits or never answers is killed and reported."""
    process = subprocess.Popen(
        command or GUNICORN, cwd=ROOT, env={**env, "GUNICORN_BIND": f"127.0.0.1:{port}"}, **popen
    )
    deadline = time.monotonic() + timeout
    while not answers_healthz(port):
        if process.poll() is not None:
            output = process.stderr.read()[-2000:] if process.stderr else ""
            raise RuntimeError(f"the API exited with {process.returncode} before answering: {output}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the API did not answer /healthz within {timeout:g} s")
        time.sleep(0.1)
    return process


def api_env(database: str, password: str, **overrides: str) -> dict:
    """The environment of the API as shipped (DEBUG off, throwaway secrets), quiet, reads public."""
    return {
        **os.environ,
        "DB_NAME": database,
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PRIVACY_HASH_KEY": secrets.token_urlsafe(32),
        "DB_PASSWORD": password,
        "GUNICORN_ACCESS_LOG": "false",
        "LOG_LEVEL": "WARNING",
        "API_READ_ACCESS": "public",
        **overrides,
    }


def setup_django(database: str) -> tuple[dict, object]:
    """Django set up to use ``database`` (created by the caller if it is new); returns the
    server's connection parameters and an autocommit connection to the ``postgres``
    database, to create and drop it with."""
    os.environ["DB_NAME"] = database
    import django
    import psycopg

    django.setup()
    from django.conf import settings

    db = settings.DATABASES["default"]
    conninfo = {"host": db["HOST"], "port": db["PORT"], "user": db["USER"], "password": db["PASSWORD"]}
    admin = psycopg.connect(dbname="postgres", **conninfo)
    admin.autocommit = True
    return conninfo, admin


def drop_database(admin, name: str) -> None:
    """Plain DROP DATABASE (it makes autovacuum workers exit; WITH (FORCE) would need the
    right to signal them), retried while our own closing sessions go away."""
    import psycopg

    for attempt in range(20):
        try:
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}"')
            return
        except psycopg.errors.ObjectInUse:
            if attempt == 19:
                raise
            time.sleep(0.5)


def load(rows: int, batch_size: int, *, seed: int) -> dict:
    """Realistic outcomes over 30 days through the write service (rollups as ingestion builds
    them), compacted at the end."""
    import orjson

    from outcomes import rollups, writes
    from outcomes.messages import parse_outcome
    from outcomes.simulation import OutcomeSimulator

    started = time.monotonic()
    batch = writes.Batch()
    stream = OutcomeSimulator(seed=seed).stream(count=rows, days=30, in_order=True, now=datetime.now(UTC))
    for offset, message in enumerate(stream):
        message["bid_request_id"] = f"{seed}-{message['bid_request_id']}"
        batch.events.append((parse_outcome(orjson.dumps(message)), writes.Position(f"bench{seed}", 0, offset)))
        if len(batch.events) >= batch_size:
            writes.write_batch(batch, consumer_group="bench")
            batch = writes.Batch()
    if batch.events:
        writes.write_batch(batch, consumer_group="bench")
    while any(rollups.compact().values()):
        pass
    elapsed = time.monotonic() - started
    return {"rows": rows, "seconds": elapsed, "rows_per_s": rows / elapsed}


def percentile(values: list[float], pct: int) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-pct * len(ordered) // 100) - 1))]
