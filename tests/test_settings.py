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
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DB_", "CONSUMER_", "API_", "REDIS_"))}
    base.pop("DEBUG", None)
    base.pop("ALLOWED_HOSTS", None)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env={**base, **env}, capture_output=True, text=True
    )


PRODUCTION = {
    "DEBUG": "false",
    "DJANGO_SECRET_KEY": GOOD_KEY,
    "ALLOWED_HOSTS": "api.example",
    "DB_PASSWORD": "pw",
    "REDIS_URL": "redis://redis.example:6379/0",
}


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
        ({"REDIS_URL": None}, "REDIS_URL is required with DEBUG=False while API_RATE_LIMIT_KEY"),
        ({"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL='127.0.0.1:6379' must start with redis://"),
        ({"API_RATE_LIMIT_ANON": "lots"}, "API_RATE_LIMIT_ANON='lots' must be N/second"),
        ({"API_RATE_LIMIT_KEY": "10/fortnight"}, "API_RATE_LIMIT_KEY='10/fortnight' must be N/second"),
        ({"API_STATEMENT_TIMEOUT_MS": "-1"}, "API_STATEMENT_TIMEOUT_MS=-1 must be at least 0"),
        ({"API_READ_ACCESS": "everyone"}, "API_READ_ACCESS='everyone' must be 'public' or 'authenticated'"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_variable(change, message):
    env = {k: v for k, v in {**PRODUCTION, **change}.items() if v is not None}
    result = check(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_production_runs_without_redis_only_with_limits_off():
    env = {k: v for k, v in PRODUCTION.items() if k != "REDIS_URL"}
    result = check(**env, API_RATE_LIMIT_KEY="off", API_RATE_LIMIT_ANON="off")
    assert result.returncode == 0, result.stderr


def test_debug_runs_without_secrets():
    result = check(DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_production_settings_pass_the_deployment_checklist():
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DB_", "CONSUMER_", "API_", "REDIS_"))}
    base.pop("DEBUG", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**base, **PRODUCTION, "DJANGO_SECURE_PROXY_SSL_HEADER": "true"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_secrets_can_come_from_files(tmp_path):
    (tmp_path / "key").write_text(GOOD_KEY + "\n")
    (tmp_path / "pw").write_text("pw\n")
    env = {k: v for k, v in PRODUCTION.items() if k not in ("DJANGO_SECRET_KEY", "DB_PASSWORD")}
    result = check(**env, DJANGO_SECRET_KEY_FILE=str(tmp_path / "key"), DB_PASSWORD_FILE=str(tmp_path / "pw"))
    assert result.returncode == 0, result.stderr
    missing = check(**env, DJANGO_SECRET_KEY_FILE=str(tmp_path / "nope"), DB_PASSWORD_FILE=str(tmp_path / "pw"))
    assert missing.returncode != 0
    assert f"DJANGO_SECRET_KEY_FILE='{tmp_path / 'nope'}': cannot read it" in missing.stderr
