"""The OpenAPI contract, fuzzed: schemathesis generates valid and invalid requests for every
operation of /api/schema/ and runs all its checks on the answers (no 5xx, every status code
and header documented, bodies matching their schemas, bad input refused, auth enforced),
then walks operations statefully (create → read → update → delete), against the real app
and database, with a key holding every scope."""

from __future__ import annotations

from datetime import UTC, datetime

import hypothesis
import pytest
import schemathesis
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.db import transaction
from hypothesis import HealthCheck
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.core.parameters import ParameterLocation

from outcomes.models import APIKey, AuctionOutcome

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


# Rules across parameters or fields, which an OpenAPI schema cannot state (the API answers
# them with a 400, as documented): taught to the generator for requests meant to be valid.
# Requests meant to be invalid are left as generated.
@schema.hook
def map_case(context, case):
    meta = case.meta
    if meta is not None and not meta.is_negative_at(ParameterLocation.QUERY) and isinstance(case.query, dict):
        query = _ordered(_ordered(case.query, "start", "end", _moment), "min_price", "max_price", _number)
        if query.get("cursor"):  # cursors come from a page's next link: an invented one is refused
            query = {k: v for k, v in query.items() if k != "cursor"}
        if "cursor" in query:  # one way to page at a time
            query = {k: v for k, v in query.items() if k != "page"}
        page, size = _number(query.get("page")), _number(query.get("page_size")) or 100
        if page is not None and page * size > settings.API_MAX_PAGE_OFFSET:  # deeper: cursors
            query = {k: v for k, v in query.items() if k != "page"}
        if case.path.endswith("/timeseries/") and not _few_buckets(query):
            query = {k: v for k, v in query.items() if k not in ("start", "end")}
        case.query = query
    return case


@schemathesis.hook  # a global hook (schemathesis allows before_call on no narrower scope)
def before_call(context, case, kwargs):
    """Bodies, set last (stateful links fill them after map_case): a won auction pays at
    most its bid — the body merged over the stored outcome, for a PATCH — and a PUT or PATCH
    keeps the outcome's bid id."""
    body = case.body
    if not isinstance(body, dict) or (case.meta is not None and case.meta.is_negative_at(ParameterLocation.BODY)):
        return
    stored = None
    if case.method in ("PUT", "PATCH") and _KEY:
        stored = AuctionOutcome.objects.filter(id=int(_number(case.path_parameters.get("id")) or 0)).first()
    merged = dict(body)
    if case.method == "PATCH" and stored is not None:
        current = {"win_status": stored.win_status, "win_price": stored.win_price, "bid_price": stored.bid_price}
        merged = {**current, **body}
    bid, win = _number(merged.get("bid_price")), _number(merged.get("win_price"))
    if merged.get("win_status") is True and bid is not None and (win is None or win > bid):
        body["win_price"] = merged["bid_price"] if isinstance(merged["bid_price"], int | float | str) else str(bid)
    if stored is not None and "bid_id" in body:
        body["bid_id"] = stored.bid_id


def _few_buckets(query: dict) -> bool:
    """At most 2,000 buckets between start and end (without end: now) at the granularity,
    and start before that end."""
    start, end = _moment(query.get("start")), _moment(query.get("end"))
    if start is None:
        return True
    unit = {"minute": 60, "hour": 3600, "day": 86400, "week": 604800, "month": 2678400}
    seconds = unit.get(query.get("granularity", "hour"), 3600)
    try:
        span = ((end or datetime.now(UTC)) - start).total_seconds()
    except TypeError:
        return False
    return 0 < span / seconds < 1900


def _number(value):
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _moment(value):
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _ordered(query: dict, low: str, high: str, parse) -> dict:
    """Drop ``high`` when it is not after ``low`` (start before end, min_price ≤ max_price)."""
    a, b = parse(query.get(low)), parse(query.get(high))
    if a is not None and b is not None:
        try:
            wrong = a >= b if low == "start" else a > b
        except TypeError:  # naive against aware times
            wrong = True
        if wrong:
            query = {k: v for k, v in query.items() if k != high}
    return query


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
