"""The OpenAPI contract, fuzzed: schemathesis generates valid and invalid requests for every
operation of /api/schema/ and runs all its checks on the answers (no 5xx, every status code
and header documented, bodies matching their schemas, bad input refused, auth enforced),
then walks operations statefully (create → read → update → delete), against the real app
and database, with a key holding every scope."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.db import transaction
from hypothesis import HealthCheck
from hypothesis.stateful import run_state_machine_as_test

from outcomes.models import APIKey
from tests import contract_hooks  # noqa: F401  the rules across fields, shared with the CLI

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
