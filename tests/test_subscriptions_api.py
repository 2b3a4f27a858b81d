"""``/api/subscriptions/`` and ``/api/alerts/``: what the scheduler or the sender would fail
on is refused when saved, saying why; addresses are never public; the webhook secret is
shown once; records are listed."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from outcomes.models import Alert, APIKey, Delivery, SavedReport, Subscription

pytestmark = pytest.mark.django_db


def client(*scopes: str) -> APIClient:
    secret = APIKey.objects.create_key(name="t", scopes=list(scopes))[1]
    return APIClient(HTTP_AUTHORIZATION=f"Api-Key {secret}")


@pytest.fixture
def saved():
    return SavedReport.objects.create(name="Daily", report="stats", params={}, window="yesterday")


def subscribe(api, saved, **fields):
    body = {
        "report": saved.pk,
        "rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=8",
        "timezone": "Europe/Berlin",
        "format": "xlsx",
        "recipients": ["ana@example.com"],
    } | fields
    return api.post("/api/subscriptions/", body, format="json")


def test_a_subscription_is_armed_from_now_and_its_secret_shown_once(saved):
    api = client("read", "write")
    response = subscribe(api, saved, webhook_url="https://hooks.example.com/analytics")
    assert response.status_code == 201, response.content
    created = response.json()
    assert len(created["webhook_secret"]) == 64
    subscription = Subscription.objects.get(pk=created["id"])
    assert subscription.webhook_secret == created["webhook_secret"]
    # the next Monday 08:00 in Berlin, after now; nothing before creation is delivered
    local = subscription.next_run_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.weekday(), local.hour, local.minute) == (0, 8, 0)
    assert timezone.now() < subscription.next_run_at <= timezone.now() + timedelta(days=7)
    assert subscription.last_scheduled_for <= timezone.now()
    again = api.get(f"/api/subscriptions/{created['id']}/")
    assert again.status_code == 200 and "webhook_secret" not in again.json()
    assert api.get("/api/subscriptions/").json()["count"] == 1


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"rrule": "FREQ=MINUTELY"}, "rrule", "FREQ is one of"),
        ({"rrule": "FREQ=DAILY;BYHOUR=25"}, "rrule", "Not a valid RRULE"),
        ({"rrule": "FREQ=DAILY;BYHOUR=8;UNTIL=20200101T000000"}, "rrule", "no occurrence left"),
        ({"rrule": "FREQ=DAILY;COUNT=3;UNTIL=20300101T000000"}, "rrule", "not both"),
        ({"rrule": "DTSTART:20260101T000000\nRRULE:FREQ=DAILY"}, "rrule", "The rule alone"),
        ({"timezone": "Mars/Olympus"}, "timezone", "not a valid choice"),
        ({"recipients": ["not an address"]}, "recipients", "valid email"),
        ({"recipients": [], "webhook_url": ""}, "recipients", "At least one recipient"),
        ({"recipients": [f"r{i}@example.com" for i in range(51)]}, "recipients", "no more than 50"),
        ({"webhook_url": "ftp://hooks.example.com/"}, "webhook_url", "http:// or https://"),
        ({"webhook_url": "https://user:pw@hooks.example.com/"}, "webhook_url", "No credentials"),
        ({"webhook_url": "http://10.0.0.7/hook"}, "webhook_url", "not a public address"),
        ({"webhook_url": "http://169.254.169.254/latest/meta-data/"}, "webhook_url", "not a public address"),
        ({"webhook_url": "http://localhost:8000/api/"}, "webhook_url", "localhost"),
        ({"format": "pdf"}, "format", "not a valid choice"),
        ({"report": 999999}, "report", "does not exist"),
        ({"colour": "blue"}, "colour", "Unknown field"),
    ],
)
def test_what_would_fail_later_is_refused_now_saying_why(saved, settings, fields, field, words):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    response = subscribe(client("read", "write"), saved, **fields)
    assert response.status_code == 400, response.content
    assert field in response.json() and words in str(response.json()[field]), response.json()
    assert not Subscription.objects.exists()


def test_an_export_is_not_sent_as_html(saved):
    export = SavedReport.objects.create(name="All rows", report="export", params={}, window="yesterday")
    response = subscribe(client("read", "write"), export, format="html")
    assert response.status_code == 400 and "xlsx or csv" in str(response.json()["format"])


def test_addresses_are_never_public_and_writing_needs_the_scopes(saved, settings):
    settings.API_READ_ACCESS = "public"
    assert subscribe(client("read", "write"), saved).status_code == 201
    anonymous = APIClient()
    assert anonymous.get("/api/subscriptions/").status_code in (401, 403)
    assert anonymous.get("/api/alerts/").status_code in (401, 403)
    assert anonymous.get("/api/outcomes/stats/").status_code == 200  # reads stay public
    assert client("read").get("/api/subscriptions/").status_code == 200
    assert subscribe(client("read"), saved).status_code == 403
    staff = User.objects.create_user("viewer", password="x", is_staff=True)
    person = APIClient()
    person.force_authenticate(staff)
    refused = person.get("/api/subscriptions/")
    assert refused.status_code == 403 and "view subscription" in refused.json()["detail"]
    subscription = Subscription.objects.get()
    assert client("read", "write").delete(f"/api/subscriptions/{subscription.pk}/").status_code == 403
    assert client("admin").delete(f"/api/subscriptions/{subscription.pk}/").status_code == 204


def test_changing_the_rule_rearms_and_the_deliveries_are_listed(saved):
    api = client("read", "write")
    created = subscribe(api, saved).json()
    subscription = Subscription.objects.get(pk=created["id"])
    Delivery.objects.create(subscription=subscription, scheduled_for=timezone.now(), status="sent", bytes=10)
    changed = api.patch(f"/api/subscriptions/{created['id']}/", {"rrule": "FREQ=HOURLY"}, format="json")
    assert changed.status_code == 200, changed.content
    subscription.refresh_from_db()
    assert subscription.next_run_at - timezone.now() <= timedelta(hours=1)
    records = api.get(f"/api/subscriptions/{created['id']}/deliveries/")
    assert records.status_code == 200 and records.json()["results"][0]["status"] == "sent"
    assert api.get(f"/api/subscriptions/{created['id']}/deliveries/", {"status": "x"}).status_code == 400


def alert(api, **fields):
    body = {
        "name": "news.example win rate",
        "measure": "win_rate",
        "params": {"site_domain": "news.example"},
        "window_minutes": 60,
        "condition": "below",
        "threshold": 20,
        "recipients": ["ops@example.com"],
    } | fields
    return api.post("/api/alerts/", body, format="json")


def test_an_alert_takes_the_stats_filters_and_refuses_what_stats_refuses():
    api = client("read", "write")
    created = alert(api)
    assert created.status_code == 201, created.content
    assert Alert.objects.get().state == "ok"
    endpoint = api.get("/api/outcomes/stats/", {"win_status": "maybe"})
    refused = alert(api, params={"win_status": "maybe"})
    assert refused.status_code == 400 and refused.json() == {"params": endpoint.json()}
    windowed = alert(api, params={"start": "2026-12-01T00:00:00Z"})
    assert windowed.status_code == 400 and "window_minutes" in str(windowed.json()["params"]["start"])
    assert alert(api, measure="profit").status_code == 400
    assert alert(api, window_minutes=0).status_code == 400
    assert alert(api, compare_to="previous_year").status_code == 400
    assert api.get(f"/api/alerts/{created.json()['id']}/events/").json()["count"] == 0


def test_send_now_is_a_delivery_once_a_minute_and_the_counts_are_bounded(saved, settings):
    api = client("read", "write")
    created = subscribe(api, saved).json()
    first = api.post(f"/api/subscriptions/{created['id']}/send/")
    assert first.status_code == 202 and first.json()["status"] == "pending"
    again = api.post(f"/api/subscriptions/{created['id']}/send/")
    assert again.status_code == 429 and 0 < int(again["Retry-After"]) <= 61
    assert "less than 60 s ago" in again.json()["detail"]
    assert Delivery.objects.count() == 1
    settings.SUBSCRIPTIONS_MAX = 1
    refused = subscribe(api, saved)
    assert refused.status_code == 400 and "SUBSCRIPTIONS_MAX" in str(refused.json())
    settings.ALERTS_MAX = 1
    assert alert(api).status_code == 201
    assert "ALERTS_MAX" in str(alert(api).json())


def test_the_worker_runs_reports_under_the_api_statement_timeout(settings):
    from django.db import connection

    from outcomes.report_runs import bounded

    settings.API_STATEMENT_TIMEOUT_MS = 1234

    def timeout() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            return cursor.fetchone()[0]

    with bounded():
        assert timeout() == "1234ms"
    assert timeout() == "0"
