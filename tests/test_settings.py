"""Settings fail fast, naming the variable, when a production value is missing or unsafe."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = secrets.token_urlsafe(50)


def check(**env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DB_", "CONSUMER_", "API_"))}
    base.pop("DEBUG", None)
    base.pop("ALLOWED_HOSTS", None)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env={**base, **env}, capture_output=True, text=True
    )


PRODUCTION = {"DEBUG": "false", "DJANGO_SECRET_KEY": GOOD_KEY, "ALLOWED_HOSTS": "api.example", "DB_PASSWORD": "pw"}


def test_production_settings_start():
    result = check(**PRODUCTION)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DJANGO_SECRET_KEY": None}, "DJANGO_SECRET_KEY is required"),
        ({"DJANGO_SECRET_KEY": "production-secret-key"}, "DJANGO_SECRET_KEY is unsafe"),
        ({"DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY is unsafe"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS is required"),
        ({"DB_PASSWORD": None}, "DB_PASSWORD is required"),
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"DB_PORT": "fivefour"}, "DB_PORT='fivefour' is not an integer"),
        ({"CONSUMER_BATCH_SIZE": "0"}, "CONSUMER_BATCH_SIZE=0 must be at least 1"),
        ({"CONSUMER_DLQ_MAX_RATIO": "2"}, "CONSUMER_DLQ_MAX_RATIO=2.0 must be at most 1.0"),
        ({"CONSUMER_AUTO_OFFSET_RESET": "middle"}, "CONSUMER_AUTO_OFFSET_RESET='middle'"),
        ({"CONSUMER_METRICS_ADDR": "localhost:9108"}, "CONSUMER_METRICS_ADDR='localhost:9108' must be an IP address"),
        ({"API_PAGE_SIZE": "2000"}, "API_PAGE_SIZE=2000 exceeds API_MAX_PAGE_SIZE=1000"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL='LOUD'"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_variable(change, message):
    env = {k: v for k, v in {**PRODUCTION, **change}.items() if v is not None}
    result = check(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_debug_runs_without_secrets():
    result = check(DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_production_settings_pass_the_deployment_checklist():
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DB_", "CONSUMER_", "API_"))}
    base.pop("DEBUG", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**base, **PRODUCTION, "DJANGO_SECURE_PROXY_SSL_HEADER": "true"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
