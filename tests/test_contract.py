"""The OpenAPI contract, fuzzed: schemathesis generates valid and invalid requests for every
operation of /api/schema/ and runs all its checks on the answers (no 5xx, every status code
and header documented, bodies matching their schemas, bad input refused, auth enforced),
then walks operations statefully (create → read → update → delete), against the real app
and database, with a key holding every scope."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.db import connection, transaction
from hypothesis import HealthCheck
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.core.warnings import SchemathesisWarning

from outcomes.models import APIKey
from tests import contract_hooks  # noqa: F401  the rules across fields, shared with the CLI
from tests.servers import ROOT, free_port, start_api, stop

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


FUZZ = hypothesis.settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure is reproducible, never flaky
    suppress_health_check=list(HealthCheck),
    database=None,
)


_KEY: list[str] = []  # the current test's key, for the auth provider below


@schema.auth(refresh_interval=None)
class AdminKey:
    """Every generated request carries the test's admin key (schemathesis' own auth checks
    then try it without, and with a broken one, expecting 401)."""

    def get(self, case, context):
        return _KEY[-1] if _KEY else None

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Api-Key {data}"}


@pytest.fixture
def admin_key(db):
    key = APIKey.objects.create_key(name="contract", scopes=["admin"])[1]
    _KEY.append(key)
    yield key
    _KEY.remove(key)


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    """Requests go through the plain WSGI handler here; like Django's test client, keep it
    from closing the test's connection (inside the test's transaction) after each request."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def stored(outcome_factory):
    return outcome_factory(3)


@schema.parametrize()
@FUZZ
@pytest.mark.django_db
def test_every_operation_keeps_its_contract(case, admin_key, stored):
    case.call_and_validate()


class _EachRunFromTheSameData(schema.as_state_machine()):
    """Every sequence starts from the same stored outcomes: its changes are rolled back after
    it. Hypothesis replays sequences (to shrink, and to check they are reproducible); one that
    met the changes of an earlier one would get other answers and be reported as flaky."""

    def setup(self):
        self._atomic = transaction.atomic()
        self._atomic.__enter__()

    def teardown(self):
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)


@pytest.mark.django_db
def test_stateful_sequences_keep_the_contract(admin_key, stored):
    run_state_machine_as_test(
        _EachRunFromTheSameData,
        settings=hypothesis.settings(
            max_examples=30,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )


# Schemathesis's default warnings (low_valid_rate is opt-in) but one: see the run below.
WARNINGS = [
    w.value
    for w in SchemathesisWarning
    if w not in (SchemathesisWarning.MISSING_TEST_DATA, SchemathesisWarning.LOW_VALID_RATE)
]


@pytest.mark.django_db(transaction=True)
def test_the_schemathesis_command_line_finds_nothing_against_a_running_server(tmp_path):
    """What a user runs against ``make run``: the command line, all checks and phases
    (examples, coverage, fuzzing, stateful) over HTTP, against gunicorn as shipped with DEBUG
    on, with this module's rules (``SCHEMATHESIS_HOOKS``) and an admin key. It found what the
    in-process test missed: an HTML 404 under DEBUG, ``enriched: null`` accepted against the
    schema, and a PUT without its bid id."""
    key = APIKey.objects.create_key(name="cli", scopes=["admin"])[1]
    port = free_port()
    # LOG_LEVEL=ERROR: thousands of refused requests would fill the server's stderr pipe.
    server = start_api(
        port, API_RATE_LIMIT_KEY="off", API_RATE_LIMIT_ANON="off", GUNICORN_WORKERS="2", LOG_LEVEL="ERROR"
    )
    db = connection.settings_dict
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.contract_hooks",
        "PYTHONPATH": str(ROOT),  # it runs in tmp_path: its crash cache (.schemathesis/) stays out of the checkout
        "DJANGO_SETTINGS_MODULE": "analytics.settings",
        "DEBUG": "true",
        "DB_NAME": db["NAME"],
        "DB_HOST": db["HOST"],
        "DB_PORT": str(db["PORT"]),
        "DB_USER": db["USER"],
        "DB_PASSWORD": db["PASSWORD"],
    }
    try:
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"http://127.0.0.1:{port}/api/schema/",
                "--checks",
                "all",
                "-H",
                f"Authorization: Api-Key {key}",
                "--seed",
                "20261129",
                "--max-examples",
                "60",
                # Two requests in flight: the fuzzer's generation overlaps the server's work
                # (one at a time left a core idle: 160 s; two: 105 s; four: no better).
                "--workers",
                "2",
                "--no-color",
                # Every warning but "missing test data": random ids against a fresh database
                # name nothing stored (a statement about the fuzzer's data, not the API; the
                # stateful phase follows the ids POSTs return).
                "--warnings",
                ",".join(WARNINGS),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        stop(server)
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert "No issues found" in report, report
    generated = re.search(r"(\d+) generated, \1 passed", report)  # every case passed, and there were many
    assert generated and int(generated.group(1)) > 1000, report
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in report, report
