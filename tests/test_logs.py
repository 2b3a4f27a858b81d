"""Every log line is one JSON object, and a request's lines carry its request id."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests.factories import ROOT
from tests.servers import free_port, start_api, stop

pytestmark = pytest.mark.django_db


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    return parsed


def test_a_sane_request_id_is_kept_and_echoed():
    response = APIClient().get("/api/outcomes/stats/", HTTP_X_REQUEST_ID="req-42.a_b")
    assert response["X-Request-ID"] == "req-42.a_b"


@pytest.mark.parametrize("given", [None, "", "has space", "x" * 129, "nul\x00", "é"])
def test_otherwise_one_is_made(given):
    headers = {} if given is None else {"HTTP_X_REQUEST_ID": given}
    response = APIClient().get("/api/outcomes/stats/", **headers)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


@pytest.fixture
def stdout_log():
    """What the service's stdout handler writes, while the test runs."""
    (handler,) = [h for h in logging.getLogger().handlers if getattr(h, "name", "") == "stdout"]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def test_a_requests_log_lines_are_json_with_its_id_and_not_repeated(stdout_log):
    response = APIClient().get("/api/outcomes/", {"usr_id": "1"}, HTTP_X_REQUEST_ID="req-400")
    assert response.status_code == 400
    out = stdout_log.getvalue()
    assert not logging.getLogger("django").handlers  # Django's own plain-text handler is gone
    lines = [line for line in json_lines(out) if line.get("request_id") == "req-400"]
    assert len(lines) == 1, out  # Django logs the 4xx once, as JSON (not also as plain text)
    assert lines[0]["level"] == "WARNING" and lines[0]["logger"] == "django.request"
    assert "Bad Request" in lines[0]["message"]


def test_gunicorn_lines_are_json_too(transactional_db):
    port = free_port()
    server = start_api(port, GUNICORN_ACCESS_LOG="true", LOG_LEVEL="INFO")
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/outcomes/stats/", headers={"X-Request-ID": "gu-1"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["X-Request-ID"] == "gu-1"
    out, err = stop(server)
    lines = json_lines(out + err)
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in lines)
    (access,) = [line for line in lines if line["logger"] == "gunicorn.access" and line["path"] != "/healthz"]
    assert access["status"] == 200 and access["path"] == "/api/outcomes/stats/" and access["method"] == "GET"
    assert access["request_id"] == "gu-1" and isinstance(access["duration_ms"], int)


def test_the_consumers_output_is_json_lines_from_start_to_exit(transactional_db):
    """As in a pod (stdout not a terminal): no plain-text summary beside the JSON lines."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DEBUG": "true",
        "LOG_LEVEL": "INFO",
        "DB_NAME": db["NAME"],
        "DB_HOST": db["HOST"],
        "DB_PORT": str(db["PORT"]),
        "DB_USER": db["USER"],
        "DB_PASSWORD": db["PASSWORD"],
    }
    topic = f"logs-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [sys.executable, "manage.py", "process_outcomes", "--topic", topic, "--group", topic]
        + ["--timeout", "1000", "--metrics-port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = json_lines(result.stdout + result.stderr)
    (stopped,) = [line for line in lines if line["message"] == "consumer stopped"]
    assert stopped["consumed"] == 0 and stopped["stored"] == 0


def test_user_ids_never_reach_a_log_line(transactional_db):
    port = free_port()
    server = start_api(port, GUNICORN_ACCESS_LOG="true", LOG_LEVEL="INFO")
    for query in ("user_id=alice%40example&site_domain=x.example", "user_id=alice%40example&nope=1"):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/outcomes/?{query}", timeout=10).read()
        except urllib.error.HTTPError as error:
            assert error.code == 400  # the unknown parameter: Django logs the request
    out, err = stop(server)
    assert "alice" not in out + err
    lines = json_lines(out + err)
    access = [line for line in lines if line["logger"] == "gunicorn.access" and line["path"] == "/api/outcomes/"]
    assert {line["query"] for line in access} == {
        "user_id=redacted&site_domain=x.example",
        "user_id=redacted&nope=1",
    }
    [refused] = [line for line in lines if line["logger"] == "django.request"]
    assert refused["request"] == "GET /api/outcomes/?user_id=redacted&nope=1"
