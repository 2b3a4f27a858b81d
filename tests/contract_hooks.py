"""What schemathesis must know beyond the OpenAPI schema, for the test suite and for a fuzzer
run against a live server.

Rules across parameters or fields, which an OpenAPI schema cannot state (the API answers them
with a 400, as documented: start before end, min_price at most max_price, pages by number only
so deep, a won auction pays at most its bid, a stored outcome keeps its bid id, an outcome
carries an experiment and a variant or neither; an experiment's
variants have different names, its guardrails are not its primary metric, it ends after it
starts, and its key is new and never changes), taught to the generator for requests meant to
be valid. Requests meant to be invalid are left as generated.

``tests/test_contract.py`` imports this module. Against a running server (``make run``), from
the checkout, with the database the server uses (stored outcomes are looked up for PUT and
PATCH bodies)::

    export DEBUG=true
    SCHEMATHESIS_HOOKS=tests.contract_hooks .venv/bin/schemathesis run \\
        http://127.0.0.1:8000/api/schema/ --checks all -H "Authorization: Api-Key $KEY"
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import schemathesis
from django.apps import apps  # noqa: E402
from schemathesis.core.parameters import ParameterLocation

if not apps.ready:  # the schemathesis command line (pytest-django has set Django up)
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics.settings")
    django.setup()

from django.conf import settings  # noqa: E402

from outcomes.models import AuctionOutcome, Experiment, SavedReport  # noqa: E402
from outcomes.xlsx import CONTENT_TYPE as XLSX  # noqa: E402


@schemathesis.deserializer(XLSX)
def workbook(ctx, response):
    """A report's ``?format=xlsx`` answer must be a workbook a reader opens (the schema says
    it is a file: the checks then validate a string)."""
    import io

    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True)
    if "Query" not in book.sheetnames:
        raise ValueError(f"a report's workbook has a Query sheet; this one has {book.sheetnames}")
    return f"workbook of {len(book.sheetnames)} sheets"


# Paths another endpoint owns: an invalid {id} spelled like one of them is that endpoint.
SIBLING_ROUTES = {
    "/api/outcomes/{id}/": {
        "stats",
        "daily_stats",
        "timeseries",
        "breakdown",
        "histogram",
        "reach",
        "winners",
        "export",
    },
}


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    owned = SIBLING_ROUTES.get(case.path, set())
    if owned and isinstance(case.path_parameters, dict) and str(case.path_parameters.get("id")) in owned:
        case.path_parameters = {**case.path_parameters, "id": "not-an-id"}
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
        if case.path == "/api/reports/{id}/run/" and "format" in query:  # the formats its endpoint speaks
            report_id = _whole((case.path_parameters or {}).get("id"))
            stored = SavedReport.objects.filter(id=report_id).first() if report_id and 0 < report_id < 2**63 else None
            export = stored is not None and stored.report == "export"
            if (query["format"] == "json" and export) or (query["format"] in ("csv", "ndjson") and not export):
                query = {**query, "format": "xlsx"}
        case.query = query
    return case


@schemathesis.hook
def before_call(context, case, kwargs):
    """Bodies, set last (stateful links fill them after map_case): a won auction pays at
    most its bid — the body merged over the stored outcome, for a PATCH — and a PUT or PATCH
    keeps the outcome's bid id."""
    body = case.body
    if not isinstance(body, dict) or (case.meta is not None and case.meta.is_negative_at(ParameterLocation.BODY)):
        return
    if case.path.startswith("/api/experiments/"):
        _sound_plan(case, body)
        return
    if case.path.startswith("/api/reports/"):
        _sound_report(case, body)
        return
    if case.path.startswith(("/api/subscriptions/", "/api/alerts/")):
        _sound_channels(case, body)
        return
    stored = None
    outcome_id = _whole((case.path_parameters or {}).get("id"))
    if case.method in ("PUT", "PATCH") and outcome_id is not None and 0 < outcome_id < 2**63:
        stored = AuctionOutcome.objects.filter(id=outcome_id).first()
    merged = dict(body)
    if case.method == "PATCH" and stored is not None:
        current = {"win_status": stored.win_status, "win_price": stored.win_price, "bid_price": stored.bid_price}
        current |= {"experiment": stored.experiment, "variant": stored.variant}
        merged = {**current, **body}
    bid, win = _number(merged.get("bid_price")), _number(merged.get("win_price"))
    if merged.get("win_status") is True and bid is not None and (win is None or win > bid):
        # A number, as the schema types prices (a stored Decimal would go out as a string).
        body["win_price"] = merged["bid_price"] if isinstance(merged["bid_price"], int | float) else bid
    if stored is not None and "bid_id" in body:
        body["bid_id"] = stored.bid_id
    if (merged.get("experiment") is None) != (merged.get("variant") is None):  # both or neither
        body["experiment"] = body["variant"] = None


VALID_PARAMS = {"results": {"experiment": "floor-test"}, "breakdown": {"by": "currency"}, "export": {}}


def _sound_report(case, body: dict) -> None:
    """A saved report's parameters are checked as its endpoint checks them (names it takes,
    values its filters accept), which a schema of any object cannot say: valid ones here."""
    stored = None
    report_id = _whole((case.path_parameters or {}).get("id"))
    if case.method in ("PUT", "PATCH") and report_id is not None and 0 < report_id < 2**63:
        stored = SavedReport.objects.filter(id=report_id).first()
    report = body.get("report", stored.report if stored else None)
    if case.method == "POST" or "params" in body or "report" in body:
        body["params"] = VALID_PARAMS.get(report, {"currency": "EUR"})


def _sound_channels(case, body: dict) -> None:
    """A subscription's rule, report and recipients, an alert's filters, as the scheduler, the
    sender and the stats endpoint take them (an RRULE, an existing report, addresses Django's
    validator accepts: what no schema says)."""
    if "recipients" in body or case.method in ("POST", "PUT"):
        body["recipients"] = ["ana@example.com"]
    if "params" in body:
        body["params"] = {"currency": "EUR"}
    if body.get("webhook_url"):  # Django's URL validator is stricter than the schema's uri
        body["webhook_url"] = "https://hooks.example.com/analytics"
    if case.path.startswith("/api/subscriptions/"):
        if "rrule" in body:
            body["rrule"] = "FREQ=DAILY;BYHOUR=8"
        if "report" in body:
            report = SavedReport.objects.filter(report="stats").first() or SavedReport.objects.create(
                name="contract", report="stats", params={}, window="yesterday"
            )
            body["report"] = report.pk


def _sound_plan(case, body: dict) -> None:
    """An experiment's plan as the registry takes it (``outcomes.experiments.plan_errors``)."""
    variants = body.get("variants")
    if isinstance(variants, list):
        seen: set = set()
        for position, variant in enumerate(variants):
            if isinstance(variant, dict) and variant.get("name") in seen:
                variant["name"] = f"v{position}-{variant['name']}"[:64]
            if isinstance(variant, dict):
                seen.add(variant.get("name"))
    key = (case.path_parameters or {}).get("key")
    # A PUT or PATCH keeps what it leaves out (DRF's update): the rules hold over both.
    stored = Experiment.objects.filter(key=key).first() if case.method in ("PUT", "PATCH") else None
    guardrails = body.get("guardrail_metrics")
    primary = body.get("primary_metric", stored.primary_metric if stored else None)
    if isinstance(guardrails, list):
        body["guardrail_metrics"] = list(dict.fromkeys(m for m in guardrails if m != primary))
    elif stored is not None and primary in stored.guardrail_metrics:
        body["guardrail_metrics"] = [m for m in stored.guardrail_metrics if m != primary]
    start = _moment(body["start"]) if "start" in body else (stored.start if stored else None)
    end = _moment(body["end"]) if "end" in body else (stored.end if stored else None)
    if start is not None and end is not None:
        try:
            wrong = start >= end
        except TypeError:  # naive against aware
            wrong = True
        if wrong:
            for name in ("start", "end") if stored else ("end",):
                body.pop(name, None)
    if case.method in ("PUT", "PATCH") and isinstance(key, str):
        if "key" in body or case.method == "PUT":
            body["key"] = key  # a key never changes
    elif isinstance(body.get("key"), str) and Experiment.objects.filter(key=body["key"]).exists():
        body["key"] = f"{body['key'][:40]}-{uuid.uuid4().hex[:12]}"


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


def _whole(value) -> int | None:
    """A path's id as the server reads it (an int, or its digits as a string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else None


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
