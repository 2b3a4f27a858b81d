"""Settings fail fast, naming the variable, when a production value is missing or unsafe;
each role demands only what it reads (analytics/roles.py)."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = secrets.token_urlsafe(50)
_OURS = ("DJANGO_", "DB_", "CONSUMER_", "API_", "REDIS_", "PRIVACY_", "KAFKA_")


def manage(*args: str, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    base.pop("DEBUG", None)
    base.pop("ALLOWED_HOSTS", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True
    )


def check(**env) -> subprocess.CompletedProcess:
    """What gunicorn's start runs: the settings, the system checks and the api role's needs."""
    return manage("check_role", "api", **env)


PRODUCTION = {
    "DEBUG": "false",
    "DJANGO_SECRET_KEY": GOOD_KEY,
    "ALLOWED_HOSTS": "api.example",
    "DB_PASSWORD": "pw",
    "REDIS_URL": "redis://redis.example:6379/0",
    "PRIVACY_HASH_KEY": secrets.token_urlsafe(32),
}
# What a consumer-only host or a migration job is given: no API secret, hosts or Redis.
DATABASE_ONLY = {"DEBUG": "false", "DB_PASSWORD": "pw"}


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
        ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS='*' accepts any Host header"),
        ({"ALLOWED_HOSTS": "api.example,*"}, "ALLOWED_HOSTS='*' accepts any Host header"),
        ({"DB_PASSWORD": None}, "DB_PASSWORD is required"),
        ({"DB_PASSWORD": "your-db-password"}, "DB_PASSWORD is a placeholder"),
        ({"API_METRICS_TOKEN": "your-metrics-token"}, "API_METRICS_TOKEN is a placeholder"),
        ({"PRIVACY_HASH_KEY": None}, "PRIVACY_HASH_KEY is required"),
        ({"PRIVACY_HASH_KEY": "your-privacy-hash-key"}, "PRIVACY_HASH_KEY is a placeholder"),
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"DB_PORT": "fivefour"}, "DB_PORT='fivefour' is not an integer"),
        ({"CONSUMER_BATCH_SIZE": "0"}, "CONSUMER_BATCH_SIZE=0 must be at least 1"),
        ({"CONSUMER_DLQ_MAX_RATIO": "2"}, "CONSUMER_DLQ_MAX_RATIO=2.0 must be at most 1.0"),
        ({"CONSUMER_AUTO_OFFSET_RESET": "middle"}, "CONSUMER_AUTO_OFFSET_RESET='middle'"),
        ({"CONSUMER_METRICS_ADDR": "localhost:9108"}, "CONSUMER_METRICS_ADDR='localhost:9108' must be an IP address"),
        ({"API_PAGE_SIZE": "2000"}, "API_PAGE_SIZE=2000 exceeds API_MAX_PAGE_SIZE=1000"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL='LOUD'"),
        (
            {"DB_SSLMODE": "yes"},
            "DB_SSLMODE='yes' is not one of disable, allow, prefer, require, verify-ca, verify-full",
        ),
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


def test_every_missing_setting_is_named_at_once():
    result = check(**DATABASE_ONLY)
    assert result.returncode == 1
    for name in ("DJANGO_SECRET_KEY", "ALLOWED_HOSTS", "REDIS_URL", "PRIVACY_HASH_KEY"):
        assert f"- {name} is required" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_roles_without_the_api_start_without_its_settings():
    """A migration job and a consumer-only host are not refused for the API's Redis, host
    names or session key; the consumer needs only the privacy key on top."""
    assert manage("check", **DATABASE_ONLY).returncode == 0  # what migrate runs first
    database = manage("check_role", "database", **DATABASE_ONLY)
    assert database.returncode == 0, database.stderr
    consumer = manage("check_role", "consumer", **DATABASE_ONLY)
    assert consumer.returncode == 1
    assert consumer.stderr.count("\n- ") == 1 and "- PRIVACY_HASH_KEY is required" in consumer.stderr
    ready = manage("check_role", "consumer", **DATABASE_ONLY, PRIVACY_HASH_KEY=PRODUCTION["PRIVACY_HASH_KEY"])
    assert ready.returncode == 0, ready.stderr


def test_production_runs_without_redis_only_with_limits_off():
    env = {k: v for k, v in PRODUCTION.items() if k != "REDIS_URL"}
    result = check(**env, API_RATE_LIMIT_KEY="off", API_RATE_LIMIT_ANON="off")
    assert result.returncode == 0, result.stderr


def test_debug_runs_without_secrets():
    result = check(DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_production_settings_pass_the_deployment_checklist():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION, DJANGO_SECURE_PROXY_SSL_HEADER="true")
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
