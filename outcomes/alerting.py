"""Alerts: a threshold on a report measure over a rolling window, evaluated every minute by
the worker (``evaluate_alerts``); a change of state (firing, resolved) is an ``AlertEvent``
whose notification goes out once through the alert's channels (``send_alert_event``).

The measure is the stats report's own figure for the same filters (the endpoint called in
process, ``outcomes.report_runs``), or the ingestion status's: one meaning for "win rate".
With ``compare_to`` the compared value is the relative change against the same window a day
or a week earlier (``-0.5``: down 50%). A ratio over no outcomes, or a baseline of zero, is
"no data", which neither fires nor resolves silently: leaving ``firing`` for it notifies.

Exactly once per change: alerts are evaluated under ``SKIP LOCKED`` (two workers never
evaluate the same alert), and the event is unique per (alert, evaluated minute) and created
with its job in one transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.html import escape
from procrastinate.contrib.django import app

from outcomes import ingestion, notifications
from outcomes.buckets import iso_utc
from outcomes.models import Alert, AlertEvent
from outcomes.report_runs import agent_request, answer_of, bounded, dispatch

log = logging.getLogger(__name__)

SEND_TASK = "outcomes.send_alert_event"
STATS_PATH = "/api/outcomes/stats/"
BASELINES = {Alert.Baseline.DAY: timedelta(days=1), Alert.Baseline.WEEK: timedelta(days=7)}
RATIOS = {Alert.Measure.WIN_RATE, Alert.Measure.ECPM, Alert.Measure.AVG_WIN_PRICE}


class MeasureUnavailable(Exception):
    """The measure could not be read (the report refused or failed): recorded, state kept."""


def _stats(params: dict, start: datetime, end: datetime) -> dict:
    query = {**params, "start": iso_utc(start), "end": iso_utc(end)}
    response = dispatch(agent_request(), STATS_PATH, query)
    if response.status_code != 200:
        raise MeasureUnavailable(f"stats answered HTTP {response.status_code}: {response.content[:300]!r}")
    return answer_of(response)


def measure(alert: Alert, now: datetime, *, shift: timedelta = timedelta(0)) -> float | None:
    """The alert's measure over the window ending ``now - shift`` (None: no data)."""
    if alert.measure in (Alert.Measure.INGESTION_LAG, Alert.Measure.INGESTION_STALLED):
        status = ingestion.ingestion_status()
        if alert.measure == Alert.Measure.INGESTION_STALLED:
            return 1.0 if status["status"] == "stalled" else 0.0
        return None if status["lag"] is None else float(status["lag"])
    end = now.replace(second=0, microsecond=0) - shift
    answer = _stats(alert.params, end - timedelta(minutes=alert.window_minutes), end)
    if alert.measure in RATIOS and not answer.get("total_outcomes"):
        return None
    value = answer.get(alert.measure)
    return None if value is None else float(value)


def decide(alert: Alert, value: float | None, baseline: float | None) -> str:
    """The state for ``value`` (and ``baseline`` when the alert compares). Pure."""
    if value is None:
        return Alert.State.NO_DATA
    if alert.compare_to:
        if not baseline:
            return Alert.State.NO_DATA
        value = value / baseline - 1
    crossed = value < alert.threshold if alert.condition == Alert.Condition.BELOW else value > alert.threshold
    return Alert.State.FIRING if crossed else Alert.State.OK


def notifies(previous: str, state: str) -> bool:
    """Firing, and leaving firing (resolved, or no data any more), are told; the rest is not."""
    return previous != state and Alert.State.FIRING in (previous, state)


def evaluate_alerts(now: datetime | None = None) -> list[int]:
    """Evaluate every active alert at ``now`` (the minute); the events created."""
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    created: list[int] = []
    ids = list(Alert.objects.filter(active=True).values_list("pk", flat=True))
    for pk in ids:
        with transaction.atomic():
            alert = Alert.objects.select_for_update(skip_locked=True).filter(pk=pk, active=True).first()
            if alert is None or (alert.last_evaluated_at and alert.last_evaluated_at >= now):
                continue  # another worker has it, or this minute is done
            try:
                with bounded():
                    value = measure(alert, now)
                    baseline = measure(alert, now, shift=BASELINES[alert.compare_to]) if alert.compare_to else None
            except MeasureUnavailable as exc:
                log.warning("alert not evaluated", extra={"alert": alert.pk, "error": str(exc)})
                continue
            state = decide(alert, value, baseline)
            previous = alert.state
            alert.last_value = value
            alert.last_evaluated_at = now
            if state != previous:
                alert.state = state
                alert.state_since = now
                if notifies(previous, state):
                    event, new = AlertEvent.objects.get_or_create(
                        alert=alert,
                        evaluated_at=now,
                        defaults={"state": state, "previous_state": previous, "value": value, "baseline": baseline},
                    )
                    if new:
                        app.configure_task(SEND_TASK).defer(event_id=event.pk)
                        created.append(event.pk)
            alert.save(update_fields=["last_value", "last_evaluated_at", "state", "state_since"])
    return created


def message_for(event: AlertEvent) -> notifications.Message:
    alert = event.alert
    word = {"firing": "FIRING", "ok": "resolved", "no_data": "no data"}[event.state]
    compared = f" against {alert.get_compare_to_display()}" if alert.compare_to else ""
    filters = ", ".join(f"{k}={v}" for k, v in sorted(alert.params.items())) or "all outcomes"
    value = "no data" if event.value is None else f"{event.value:,.4g}"
    rule = f"{alert.get_measure_display()} {alert.condition} {alert.threshold:g}{compared}"
    text = (
        f"Alert “{alert.name}” is {word} at {event.evaluated_at:%Y-%m-%d %H:%M} UTC.\n"
        f"Rule: {rule}, over the last {alert.window_minutes} minutes ({filters}).\n"
        f"Value: {value}" + (f" (baseline {event.baseline:,.4g})" if event.baseline is not None else "") + "\n"
    )
    html = (
        '<!doctype html><html><body style="font-family: system-ui, sans-serif">'
        + "".join(f"<p>{escape(line)}</p>" for line in text.splitlines())
        + f'<p style="color:#57606a;font-size:12px"><a href="{notifications.UNSUBSCRIBE_PLACEHOLDER}">'
        "Unsubscribe</a></p></body></html>"
    )
    body = {
        "type": "alert",
        "alert": {
            "id": alert.pk,
            "name": alert.name,
            "measure": alert.measure,
            "condition": alert.condition,
            "threshold": alert.threshold,
            "compare_to": alert.compare_to or None,
            "window_minutes": alert.window_minutes,
            "params": alert.params,
        },
        "event": event.pk,
        "state": event.state,
        "previous_state": event.previous_state,
        "value": event.value,
        "baseline": event.baseline,
        "evaluated_at": iso_utc(event.evaluated_at),
    }
    return notifications.Message(subject=f"[{word}] {alert.name}", text=text, html=html, webhook_body=body)


def send_alert_event(event_id: int) -> None:
    event = notifications.claim(AlertEvent, event_id)
    if event is None:
        return
    alert = Alert.objects.get(pk=event.alert_id)
    event.alert = alert
    error = None
    try:
        message = message_for(event)
        notifications.send(event, alert, "alert", message)
    except notifications.SendFailed as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - recorded and retried like any failure
        log.exception("alert notification failed", extra={"event": event.pk})
        error = f"{exc.__class__.__name__}: {exc}"[:1000]

    def retry(seconds: int) -> None:
        app.configure_task(SEND_TASK, schedule_in={"seconds": seconds}).defer(event_id=event.pk)

    notifications.finish(event, alert, error=error, retry=retry)
