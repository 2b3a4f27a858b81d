"""Alerts against real data, a real SMTP server and a real webhook receiver: evaluated each
minute on a moved clock, they notify on a change of state (firing, resolved) once, not at
every evaluation; a comparison against last week fires on a drop."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from outcomes import alerting, webhooks
from outcomes.models import Alert, AlertEvent
from tests.receivers import SmtpSink, WebhookReceiver

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


@pytest.fixture
def smtp(settings):
    with SmtpSink() as sink:
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", sink.port
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        yield sink


def win_rate_alert(hook_url: str = "") -> Alert:
    return Alert.objects.create(
        name="news win rate",
        measure="win_rate",
        params={"site_domain": "news.example"},
        window_minutes=60,
        condition="below",
        threshold=20,
        recipients=["ops@example.com"],
        webhook_url=hook_url,
        webhook_secret=webhooks.new_secret(),
    )


def test_firing_and_resolving_notify_once_each(outcome_factory, smtp, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with WebhookReceiver() as hook:
        alert = win_rate_alert(hook.url)
        # 10% won on news.example in the hour before 14:00, 90% elsewhere (not in the filter)
        outcome_factory(1, win_status=True, auction_timestamp=NOW - timedelta(minutes=30))
        outcome_factory(9, win_status=False, win_price=None, auction_timestamp=NOW - timedelta(minutes=20))
        outcome_factory(9, site_domain="other.example", auction_timestamp=NOW - timedelta(minutes=20))
        [event_id] = alerting.evaluate_alerts(NOW)
        assert alerting.evaluate_alerts(NOW) == []  # the same minute again: nothing new
        assert alerting.evaluate_alerts(NOW + timedelta(minutes=1)) == []  # still firing: not told again
        alert.refresh_from_db()
        assert alert.state == "firing" and alert.last_value == pytest.approx(10.0)
        alerting.send_alert_event(event_id)
        [message] = smtp.messages
        assert message["Subject"] == "[FIRING] news win rate" and message["List-Unsubscribe"]
        assert "Value: 10" in message.get_body(preferencelist=("plain",)).get_content()
        [received] = hook.received
        assert webhooks.verify(
            alert.webhook_secret, received.headers[webhooks.SIGNATURE_HEADER], received.body, now=time.time()
        )
        body = json.loads(received.body)
        assert (body["state"], body["previous_state"], body["value"]) == ("firing", "ok", pytest.approx(10.0))

        # wins come in: 11 of 20 won within the window ending 14:05
        outcome_factory(10, win_status=True, auction_timestamp=NOW + timedelta(minutes=2))
        [resolved] = alerting.evaluate_alerts(NOW + timedelta(minutes=5))
        alerting.send_alert_event(resolved)
        assert [m["Subject"] for m in smtp.messages] == ["[FIRING] news win rate", "[resolved] news win rate"]
        assert AlertEvent.objects.filter(alert=alert).count() == 2
        assert AlertEvent.objects.get(pk=resolved).status == "sent"


def test_no_data_is_not_a_low_win_rate(outcome_factory):
    alert = win_rate_alert()
    assert alerting.evaluate_alerts(NOW) == []
    alert.refresh_from_db()
    assert alert.state == "no_data" and alert.last_value is None
    assert not AlertEvent.objects.exists()  # ok → no data is recorded on the alert, not sent


def test_revenue_down_half_against_the_same_hour_last_week(outcome_factory):
    alert = Alert.objects.create(
        name="revenue drop",
        measure="total_revenue",
        params={"currency": "USD"},
        window_minutes=60,
        condition="below",
        threshold=-0.5,
        compare_to="previous_week",
        recipients=["ops@example.com"],
    )
    week_ago = NOW - timedelta(days=7)
    outcome_factory(10, win_price=Decimal("1.00"), auction_timestamp=week_ago - timedelta(minutes=10))
    outcome_factory(4, win_price=Decimal("1.00"), auction_timestamp=NOW - timedelta(minutes=10))
    [event] = alerting.evaluate_alerts(NOW)
    recorded = AlertEvent.objects.get(pk=event)
    assert (recorded.value, recorded.baseline, recorded.state) == (pytest.approx(4.0), pytest.approx(10.0), "firing")
    outcome_factory(2, win_price=Decimal("1.00"), auction_timestamp=NOW + timedelta(minutes=1))
    # 6 against 10: down 40%, above the -50% threshold: resolved
    assert len(alerting.evaluate_alerts(NOW + timedelta(minutes=2))) == 1
    assert Alert.objects.get(pk=alert.pk).state == "ok"


@pytest.mark.parametrize(
    ("condition", "threshold", "value", "baseline", "compare", "state"),
    [
        ("below", 20, 10.0, None, "", "firing"),
        ("below", 20, 20.0, None, "", "ok"),
        ("above", 100, 150.0, None, "", "firing"),
        ("below", 20, None, None, "", "no_data"),
        ("below", -0.5, 4.0, 10.0, "previous_week", "firing"),
        ("below", -0.5, 4.0, 0.0, "previous_week", "no_data"),
        ("above", 0.5, 16.0, 10.0, "previous_day", "firing"),
    ],
)
def test_decide(condition, threshold, value, baseline, compare, state):
    alert = Alert(condition=condition, threshold=threshold, compare_to=compare)
    assert alerting.decide(alert, value, baseline) == state


def test_only_firing_and_leaving_it_are_told():
    assert alerting.notifies("ok", "firing") and alerting.notifies("firing", "ok")
    assert alerting.notifies("firing", "no_data")
    assert not alerting.notifies("ok", "no_data") and not alerting.notifies("no_data", "ok")
    assert not alerting.notifies("firing", "firing")


@pytest.mark.kafka
def test_ingestion_measures_are_the_ingestion_status():
    from outcomes import ingestion

    stalled = Alert.objects.create(
        name="stalled", measure="ingestion_stalled", condition="above", threshold=0, recipients=["ops@example.com"]
    )
    status = ingestion.ingestion_status()
    assert alerting.measure(stalled, NOW) == (1.0 if status["status"] == "stalled" else 0.0)
    lag = Alert(measure="ingestion_lag", condition="above", threshold=1000)
    assert alerting.measure(lag, NOW) == (None if status["lag"] is None else float(status["lag"]))
