"""Sending one message (a subscription's delivery or an alert's change of state) to its
channels, once per recipient whatever happens to the worker.

``send`` mails each recipient not yet recorded on the row (``recipients_sent``), recording
each as soon as the SMTP server has accepted it, then posts the webhook unless it already
answered 2xx. A worker killed mid-send leaves a row that a retry completes without mailing
anyone twice; the one window left — a server that accepted a message just before the worker
died, before the row was updated — is the unavoidable one of any SMTP client (no transaction
spans two systems), and the message keeps the same ``Message-ID`` so mail clients show it
once.

Each e-mail carries a signed unsubscribe link (no login: the signature is the proof) as a
link in the body and as ``List-Unsubscribe`` with RFC 8058 one-click ``POST``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.utils import timezone
from django.utils.html import escape

from outcomes import webhooks
from outcomes.models import Alert, Subscription
from outcomes.models.reporting import Channels, Sendout

UNSUBSCRIBE_SALT = "outcomes.unsubscribe"
# Where an HTML body puts each recipient's own unsubscribe link.
UNSUBSCRIBE_PLACEHOLDER = "__UNSUBSCRIBE_URL__"
KINDS = {"subscription": Subscription, "alert": Alert}
# A message still unsent this long after it was due: is a worker running?
STUCK_AFTER = timedelta(hours=1)


class SendFailed(Exception):
    """Some channel failed; what was sent is recorded, the rest is retried."""


@dataclass
class Message:
    subject: str
    text: str
    html: str
    webhook_body: dict
    attachment: tuple[str, bytes, str] | None = None  # filename, content, type
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.attachment[1]) if self.attachment else len(self.html.encode())


def unsubscribe_token(kind: str, owner_id: int, recipient: str) -> str:
    return signing.dumps({"k": kind, "id": owner_id, "to": recipient.lower()}, salt=UNSUBSCRIBE_SALT)


def unsubscribe_url(kind: str, owner_id: int, recipient: str) -> str:
    return f"{settings.PUBLIC_URL}/api/unsubscribe/{unsubscribe_token(kind, owner_id, recipient)}/"


def read_token(token: str) -> tuple[type[Channels], int, str]:
    """(model, id, recipient) of a token, or signing.BadSignature."""
    data = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    if not isinstance(data, dict) or data.get("k") not in KINDS:
        raise signing.BadSignature("not an unsubscribe token")
    return KINDS[data["k"]], int(data["id"]), str(data["to"])


def unsubscribe(model: type[Channels], owner_id: int, recipient: str) -> bool:
    """Remove ``recipient``; True when they were subscribed. A subscription left with no
    recipient and no webhook is switched off."""
    with transaction.atomic():
        owner = model.objects.select_for_update().filter(pk=owner_id).first()
        if owner is None:
            return False
        kept = [r for r in owner.recipients if r.lower() != recipient.lower()]
        if len(kept) == len(owner.recipients):
            return False
        owner.recipients = kept
        if not kept and not owner.webhook_url:
            owner.active = False
        owner.save(update_fields=["recipients", "active", "updated_at"])
        return True


def message_id(record: Sendout, recipient: str) -> str:
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip("> ") or "localhost"
    digest = hashlib.sha256(recipient.lower().encode()).hexdigest()[:16]
    return f"<{record._meta.model_name}-{record.pk}.{digest}@{domain}>"


def _record(record: Sendout, **changes) -> None:
    type(record).objects.filter(pk=record.pk).update(**changes)
    for name, value in changes.items():
        setattr(record, name, value)


def send(record: Sendout, owner: Channels, kind: str, message: Message) -> None:
    """Mail every recipient not yet recorded on ``record``, then the webhook; SendFailed
    naming what failed (what succeeded stays recorded)."""
    errors: list[str] = []
    pending = [r for r in owner.recipients if r.lower() not in {s.lower() for s in record.recipients_sent}]
    if pending:
        try:
            connection = get_connection(fail_silently=False)
            connection.open()
        except OSError as exc:
            raise SendFailed(f"SMTP {settings.EMAIL_HOST}:{settings.EMAIL_PORT}: {exc}") from None
        try:
            for recipient in pending:
                link = unsubscribe_url(kind, owner.pk, recipient)
                mail = EmailMultiAlternatives(
                    subject=message.subject,
                    body=f"{message.text}\n\nUnsubscribe: {link}\n",
                    from_email=settings.DEFAULT_FROM_EMAIL,
                    to=[recipient],
                    connection=connection,
                    headers={
                        "Message-ID": message_id(record, recipient),
                        "List-Unsubscribe": f"<{link}>",
                        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                        "Auto-Submitted": "auto-generated",
                        **message.headers,
                    },
                )
                mail.attach_alternative(message.html.replace(UNSUBSCRIBE_PLACEHOLDER, escape(link)), "text/html")
                if message.attachment:
                    mail.attach(*message.attachment)
                try:
                    mail.send()
                except Exception as exc:  # noqa: BLE001 - any SMTP failure is recorded and retried
                    errors.append(f"{recipient}: {exc.__class__.__name__}: {exc}"[:500])
                    continue
                _record(record, recipients_sent=[*record.recipients_sent, recipient])
        finally:
            with contextlib.suppress(OSError):
                connection.close()
    if owner.webhook_url and not (record.webhook_status and 200 <= record.webhook_status < 300):
        body = json.dumps(message.webhook_body, separators=(",", ":"), default=str).encode()
        try:
            status = webhooks.post(
                owner.webhook_url,
                body,
                secret=owner.webhook_secret,
                timestamp=int(time.time()),
                timeout=settings.WEBHOOK_TIMEOUT,
                allow_private=settings.WEBHOOK_ALLOW_PRIVATE,
                headers={"X-Analytics-Delivery": f"{record._meta.model_name}-{record.pk}"},
            )
            _record(record, webhook_status=status)
        except webhooks.WebhookError as exc:
            errors.append(f"webhook: {exc}"[:500])
    if errors:
        raise SendFailed("; ".join(errors))


def claim(model: type[Sendout], pk: int) -> Sendout | None:
    """The row, marked sending and its attempt counted; None when it is finished already
    (a job that ran twice sends nothing the second time)."""
    with transaction.atomic():
        record = model.objects.select_for_update().filter(pk=pk).first()
        if record is None or record.status in (Sendout.Status.SENT, Sendout.Status.FAILED):
            return None
        record.status = Sendout.Status.SENDING
        record.attempts += 1
        record.save(update_fields=["status", "attempts"])
        return record


def finish(record: Sendout, owner: Channels, *, error: str | None, retry) -> None:
    """Record how the attempt ended. A failure below DELIVERY_ATTEMPTS is retried (``retry``:
    defers the job again after a backoff doubling from DELIVERY_RETRY_SECONDS, in this
    transaction); the last marks the row failed and counts a failure on its owner, which is
    marked failing after SUBSCRIPTION_FAILING_AFTER in a row. Success resets the count."""
    now = timezone.now()
    with transaction.atomic():
        owner = type(owner).objects.select_for_update().get(pk=owner.pk)
        if error is None:
            _record(record, status=Sendout.Status.SENT, error="", finished_at=now)
            owner.consecutive_failures = 0
            owner.failing = False
        elif record.attempts < settings.DELIVERY_ATTEMPTS:
            _record(record, status=Sendout.Status.PENDING, error=error)
            retry(settings.DELIVERY_RETRY_SECONDS * 2 ** (record.attempts - 1))
            return
        else:
            _record(record, status=Sendout.Status.FAILED, error=error, finished_at=now)
            owner.consecutive_failures += 1
            owner.failing = owner.consecutive_failures >= settings.SUBSCRIPTION_FAILING_AFTER
        owner.save(update_fields=["consecutive_failures", "failing"])


class DeliveryMetrics:
    """Scraped from the database by ``/metrics`` (``analytics.metrics.SCRAPED``): what the
    alert rules ``AnalyticsSubscriptionFailing`` and ``AnalyticsDeliveriesStuck`` watch."""

    FAMILIES = {
        "analytics_subscriptions_failing": "Active subscriptions whose last deliveries all failed "
        "(SUBSCRIPTION_FAILING_AFTER in a row).",
        "analytics_alerts_failing": "Active alerts whose last notifications all failed.",
        "analytics_alerts_firing": "Active alerts in the firing state.",
        "analytics_deliveries_unfinished_stale": "Deliveries and alert notifications still unsent an hour after "
        "they were created (no worker running?).",
    }

    def describe(self):
        """The families without values (no database access at registration)."""
        from prometheus_client.core import GaugeMetricFamily

        return [GaugeMetricFamily(name, help) for name, help in self.FAMILIES.items()]

    def collect(self):
        from django.db.models import Count, Q
        from prometheus_client.core import GaugeMetricFamily

        from outcomes.models import AlertEvent, Delivery

        subscriptions = Subscription.objects.filter(active=True).aggregate(failing=Count("pk", filter=Q(failing=True)))
        alerts = Alert.objects.filter(active=True).aggregate(
            failing=Count("pk", filter=Q(failing=True)), firing=Count("pk", filter=Q(state=Alert.State.FIRING))
        )
        stuck_before = timezone.now() - STUCK_AFTER
        unfinished = (Sendout.Status.PENDING, Sendout.Status.SENDING)
        stuck = Delivery.objects.filter(status__in=unfinished, created_at__lt=stuck_before).count()
        stuck += AlertEvent.objects.filter(status__in=unfinished, created_at__lt=stuck_before).count()
        values = {
            "analytics_subscriptions_failing": subscriptions["failing"],
            "analytics_alerts_failing": alerts["failing"],
            "analytics_alerts_firing": alerts["firing"],
            "analytics_deliveries_unfinished_stale": stuck,
        }
        for name, help in self.FAMILIES.items():
            yield GaugeMetricFamily(name, help, value=values[name])
