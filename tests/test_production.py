"""The API as deployed: DEBUG off, started by the entrypoint, behind a TLS ingress.

Real gunicorn over the test database: what a browser and the cluster's probes see, and
what stops a role from starting (analytics/roles.py).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import uuid
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.db import connection

from outcomes.models import AuctionOutcome
from tests.factories import ROOT, encode, message, wait_until
from tests.servers import free_port, production, start_api, stop

HOST = "analytics.example.com"
TOKEN = "m" * 8 + uuid.uuid4().hex


@pytest.fixture(scope="session")
def deployed(django_db_setup, django_db_blocker, tmp_path_factory):
    """``./entrypoint.sh api`` as the ConfigMap configures it, from a checkout whose static
    files were never collected (STATIC_ROOT empty). Started once for the run: pytest-django
    runs this module's transactional test after everyone's others, and collecting (compressing)
    the static files takes ~40 s here."""
    static_root = tmp_path_factory.mktemp("static")
    port = free_port()
    with django_db_blocker.unblock():
        server = start_api(
            port,
            entrypoint=True,
            timeout=180,  # collectstatic compresses every file once
            **production(
                ALLOWED_HOSTS=HOST,
                CSRF_TRUSTED_ORIGINS=f"https://{HOST}",
                DJANGO_SECURE_PROXY_SSL_HEADER="true",
                API_METRICS_TOKEN=TOKEN,
                STATIC_ROOT=str(static_root),
                LOG_LEVEL="INFO",
            ),
        )
    yield port, static_root
    stop(server)


def request(port, method, path, *, host=HOST, https=True, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sent = {"Host": host, **({"X-Forwarded-Proto": "https"} if https else {}), **(headers or {})}
    conn.request(method, path, body=body, headers=sent)
    response = conn.getresponse()
    content = response.read()
    conn.close()
    return response, content


def cookies(response) -> SimpleCookie:
    jar = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return jar


def test_the_entrypoint_collects_static_files_a_checkout_lacks(deployed):
    port, static_root = deployed
    assert (static_root / "staticfiles.json").exists()
    response, page = request(port, "GET", "/admin/login/")
    assert response.status == 200, page[:500]
    stylesheet = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]+\.css)"', page)
    assert stylesheet, page[:2000]
    css, _ = request(port, "GET", stylesheet.group(1).decode())
    assert css.status == 200


def test_probes_and_metrics_answer_by_pod_ip_and_no_other_host_is_served(deployed):
    port, _ = deployed
    pod = "10.12.0.7:8000"
    for path in ("/healthz", "/readyz"):
        response, body = request(port, "GET", path, host=pod, https=False)
        assert (response.status, json.loads(body)) == (200, {"status": "ok"}), path
    response, body = request(
        port, "GET", "/metrics", host=pod, https=False, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status == 200 and b"analytics_api_requests_total" in body
    response, _ = request(port, "GET", "/metrics", host=pod, https=False)
    assert response.status == 401
    for path in ("/api/outcomes/", "/admin/login/", "/dashboard/"):
        response, _ = request(port, "GET", path, host="attacker.example")
        assert response.status == 400, path
        response, _ = request(port, "GET", path, host=pod)
        assert response.status == 400, path


@pytest.mark.django_db(transaction=True)
def test_the_admin_login_works_behind_the_tls_ingress(deployed):
    port, _ = deployed
    User.objects.create_user("operator", password="a long passphrase", is_staff=True)
    response, page = request(port, "GET", "/admin/login/")
    assert response.status == 200
    # HTTPS as the ingress says: HSTS, secure cookies, and a policy that allows no inline script.
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["script-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    csrf = cookies(response)["csrftoken"]
    assert csrf["secure"] and csrf["samesite"] == "Lax"
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    form = urlencode({"csrfmiddlewaretoken": token, "username": "operator", "password": "a long passphrase"})
    headers = {
        "Cookie": f"csrftoken={csrf.value}",
        "Origin": f"https://{HOST}",
        "Referer": f"https://{HOST}/admin/login/",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    response, body = request(port, "POST", "/admin/login/?next=/admin/", headers=headers, body=form)
    assert response.status == 302 and response.headers["Location"] == "/admin/", body[:1000]
    session = cookies(response)["sessionid"]
    assert session["secure"] and session["httponly"]
    # A form posted from another site is refused.
    foreign = {**headers, "Origin": "https://attacker.example", "Referer": "https://attacker.example/"}
    response, _ = request(port, "POST", "/admin/login/?next=/admin/", headers=foreign, body=form)
    assert response.status == 403
    # Plain HTTP (a probe, an in-cluster call) gets no HSTS.
    response, _ = request(port, "GET", "/admin/login/", https=False)
    assert "Strict-Transport-Security" not in response.headers


def directives(policy: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())


def test_the_dashboard_and_admin_pages_carry_the_content_security_policy(deployed):
    port, _ = deployed
    for path in ("/admin/login/", "/dashboard/?window=24h", "/admin/"):
        response, _ = request(port, "GET", path)
        assert response.status in (200, 302), path
        policy = directives(response.headers["Content-Security-Policy"])
        assert policy["default-src"] == policy["script-src"] == policy["style-src"] == "'self'", path
        assert policy["object-src"] == policy["base-uri"] == policy["frame-ancestors"] == "'none'", path


def test_readiness_tells_the_public_only_ready_or_not(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        port = free_port()
        server = start_api(port, DB_PORT=str(free_port()), LOG_LEVEL="WARNING")  # nothing listens there
    try:
        response, body = request(port, "GET", "/readyz", host="127.0.0.1", https=False)
        assert response.status == 503
        assert json.loads(body) == {"status": "unavailable"}
        response, _ = request(port, "GET", "/healthz", host="127.0.0.1", https=False)
        assert response.status == 200
    finally:
        out, err = stop(server)
    (line,) = [json.loads(x) for x in (out + err).splitlines() if "not ready" in x]
    assert line["message"] == "not ready: the database does not answer" and "Connection refused" in line["error"]


@pytest.mark.parametrize("how", ["gunicorn", "entrypoint"])
def test_the_api_does_not_start_without_what_it_needs(how, tmp_path):
    env = production(DB_PASSWORD="pw", DB_NAME=f"absent_{uuid.uuid4().hex[:8]}")
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    command = (
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "analytics.wsgi:application"]
        if how == "gunicorn"
        else ["./entrypoint.sh", "api"]
    )
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={**base, **env, "PYTHON": sys.executable, "GUNICORN_BIND": f"127.0.0.1:{free_port()}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "The api role cannot start" in output and "REDIS_URL is required" in output
    assert "migrat" not in output.lower()  # stopped before touching the (absent) database
    assert "Traceback" not in output


@pytest.mark.kafka
@pytest.mark.django_db(transaction=True)
def test_a_consumer_only_host_needs_no_api_setting(make_topic, produce, consumer_process):
    """DEBUG off, no Redis, no host names, no session key: the consumer runs all the same;
    without the privacy key it stops at once, saying so."""
    topic = make_topic()
    produce(topic, [encode(message()) for _ in range(3)])
    bare = {
        "DEBUG": "false",
        "DB_PASSWORD": connection.settings_dict["PASSWORD"],
        **{name: "" for name in ("REDIS_URL", "ALLOWED_HOSTS", "DJANGO_SECRET_KEY", "PRIVACY_HASH_KEY")},
    }
    refused = consumer_process("--topic", topic, "--group", topic, "--max-messages", "3", env=bare)
    assert refused.wait(timeout=60) == 1
    assert "The consumer role cannot start: PRIVACY_HASH_KEY is required" in refused.log()
    assert "Traceback" not in refused.log()
    env = {**bare, "PRIVACY_HASH_KEY": "p" * 8 + uuid.uuid4().hex}
    ran = consumer_process("--topic", topic, "--group", topic, "--max-messages", "3", "--timeout", "20000", env=env)
    assert ran.wait(timeout=90) == 0, ran.log()
    assert wait_until(lambda: AuctionOutcome.objects.count() == 3, timeout=5)


@pytest.mark.parametrize(("mode", "encrypted"), [("require", "True"), ("disable", "False")])
def test_db_sslmode_reaches_the_database_connection(django_db_setup, mode, encrypted):
    """The local PostgreSQL (Debian's cluster) has TLS on, as a managed one would."""
    code = (
        "from django.db import connection; connection.ensure_connection(); "
        "print(connection.connection.pgconn.ssl_in_use)"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env={**os.environ, "DEBUG": "true", "DB_NAME": connection.settings_dict["NAME"], "DB_SSLMODE": mode},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == encrypted
