"""Real API servers for tests: gunicorn as shipped (gunicorn.conf.py), on a free loopback port."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.db import connection

from bench import harness
from bench.harness import free_port

__all__ = ["exports_in_progress", "free_port", "production", "start_api", "start_live", "stop"]

ROOT = Path(__file__).resolve().parent.parent


def production(**env: str) -> dict[str, str]:
    """What the api role needs with DEBUG off (analytics/roles.py), plus ``env``."""
    return {
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "PRIVACY_HASH_KEY": secrets.token_urlsafe(32),
        **env,
    }


def start_api(port: int, *, entrypoint: bool = False, timeout: float = 30, **env: str) -> subprocess.Popen:
    """gunicorn on 127.0.0.1:``port`` against the test database; ``env`` adds settings.
    ``entrypoint``: started as the image starts it (``./entrypoint.sh api``). stdout and
    stderr are pipes (read them after ``stop``)."""
    db = connection.settings_dict
    environment = {
        **os.environ,
        "DEBUG": "true",
        "DB_NAME": db["NAME"],
        "DB_USER": db["USER"],
        "DB_PASSWORD": db["PASSWORD"],
        "DB_HOST": db["HOST"],
        "DB_PORT": str(db["PORT"]),
        "GUNICORN_WORKERS": "1",
        "GUNICORN_ACCESS_LOG": "false",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    command = ["./entrypoint.sh", "api"] if entrypoint else None
    if entrypoint:
        environment = {"PYTHON": sys.executable, "RUN_MIGRATIONS": "false", **environment}
    return harness.start_api(
        port, environment, command=command, timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def stop(process: subprocess.Popen) -> tuple[str, str]:
    """Stop gracefully; returns (stdout, stderr)."""
    process.terminate()
    return process.communicate(timeout=30)


def exports_in_progress() -> int:
    """Sessions of the test database running an export's COPY."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND state = 'active' AND query LIKE 'COPY (SELECT%%'"""
        )
        return cursor.fetchone()[0]


def start_live(port: int, log_path: Path, **env: str) -> subprocess.Popen:
    """The live role (``./entrypoint.sh live``: uvicorn) on 127.0.0.1:``port`` against the
    test database and the local Redis, once it answers ``/healthz``."""
    import http.client

    from tests.factories import wait_until

    db = connection.settings_dict
    environment = {
        **os.environ,
        "PYTHON": sys.executable,
        "DEBUG": "true",
        "RUN_MIGRATIONS": "false",
        "DB_NAME": db["NAME"],
        "DB_USER": db["USER"],
        "DB_PASSWORD": db["PASSWORD"],
        "DB_HOST": db["HOST"],
        "DB_PORT": str(db["PORT"]),
        "LIVE_REDIS_URL": "redis://127.0.0.1:6379/0",
        "LIVE_HOST": "127.0.0.1",
        "LIVE_PORT": str(port),
        **env,
    }
    log = open(log_path, "wb")  # noqa: SIM115 - the process holds it
    process = subprocess.Popen(
        ["./entrypoint.sh", "live"], cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
    )

    def up() -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return process.poll() is not None  # exited: stop waiting (the caller sees it)

    wait_until(up, 30, what=f"the live server ({log_path})")
    assert process.poll() is None, log_path.read_text()
    return process
