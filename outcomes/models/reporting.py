"""Saved reports: a report endpoint and its parameters, kept under a name, to run again now
(``/api/reports/{id}/run/``) or on a schedule. What the endpoint would refuse is refused when
the report is saved, with the endpoint's own message (``outcomes.saved_reports``)."""

from __future__ import annotations

from django.db import models

from outcomes import windows


class SavedReport(models.Model):
    class Report(models.TextChoices):
        STATS = "stats", "stats"
        DAILY_STATS = "daily_stats", "daily_stats"
        TIMESERIES = "timeseries", "timeseries"
        BREAKDOWN = "breakdown", "breakdown"
        HISTOGRAM = "histogram", "histogram"
        REACH = "reach", "reach"
        EXPORT = "export", "export"
        RESULTS = "results", "experiment results"
        BID_LANDSCAPE = "bid_landscape", "bid landscape"

    name = models.CharField(max_length=200)
    report = models.CharField(max_length=20, choices=Report.choices)
    params = models.JSONField(
        default=dict,
        blank=True,
        help_text='The endpoint\'s query parameters, as it takes them: {"site_domain": "news.example", …}.',
    )
    window = models.CharField(
        max_length=16,
        choices=[(w, w.replace("_", " ")) for w in windows.WINDOWS],
        blank=True,
        help_text="A period resolved at each run, in the time zone (then params hold no start or end).",
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone of the window.")
    created_by = models.CharField(max_length=150, blank=True, help_text="The key's prefix or the username.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class Channels(models.Model):
    """Where a subscription's reports or an alert's notifications go: e-mail recipients and an
    optional webhook, whose body is signed with ``webhook_secret`` (HMAC-SHA256)."""

    recipients = models.JSONField(default=list, blank=True, help_text="E-mail addresses.")
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret = models.CharField(max_length=64, blank=True, editable=False)
    active = models.BooleanField(default=True)
    failing = models.BooleanField(
        default=False, help_text="Its last deliveries all failed (SUBSCRIPTION_FAILING_AFTER in a row)."
    )
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Subscription(Channels):
    """A saved report sent on a schedule: an iCalendar RRULE on the wall clock of ``timezone``
    (``outcomes.schedules``). ``next_run_at`` is when the scheduler looks at it next;
    ``last_scheduled_for`` the last occurrence it created a delivery for."""

    class Format(models.TextChoices):
        XLSX = "xlsx", "Excel workbook"
        CSV = "csv", "CSV"
        HTML = "html", "HTML (in the e-mail)"

    report = models.ForeignKey(SavedReport, on_delete=models.CASCADE, related_name="subscriptions")
    rrule = models.CharField(max_length=500, help_text="e.g. FREQ=WEEKLY;BYDAY=MO;BYHOUR=8")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone the rule runs in.")
    format = models.CharField(max_length=4, choices=Format.choices, default=Format.XLSX)
    last_scheduled_for = models.DateTimeField(null=True, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["next_run_at"], name="subscription_due", condition=models.Q(active=True))]

    def __str__(self) -> str:
        return f"{self.report} ({self.rrule}, {self.timezone})"


class Sendout(models.Model):
    """One message to a set of channels, sent at most once whatever happens to the worker: the
    row is created with its job in one transaction, each recipient is recorded as it is sent,
    and a retry sends only to those not yet recorded."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENDING = "sending", "sending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"

    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    recipients_sent = models.JSONField(default=list, blank=True)
    webhook_status = models.PositiveIntegerField(null=True, blank=True, help_text="The webhook's HTTP answer.")
    bytes = models.PositiveBigIntegerField(default=0, help_text="Size of the report sent.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class Delivery(Sendout):
    """A subscription's report for one scheduled time (unique: one delivery per occurrence).
    ``skipped``: occurrences missed while nothing ran, covered by this catch-up delivery."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="deliveries")
    scheduled_for = models.DateTimeField()
    skipped = models.PositiveIntegerField(default=0)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-scheduled_for", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["subscription", "scheduled_for"], name="one_delivery_per_occurrence")
        ]

    def __str__(self) -> str:
        return f"{self.subscription_id} @ {self.scheduled_for:%Y-%m-%d %H:%M}Z: {self.status}"


class Alert(Channels):
    """A threshold on a report measure over a rolling window, evaluated every minute; it
    notifies when its state changes (firing, resolved), not at every evaluation."""

    class Measure(models.TextChoices):
        OUTCOMES = "total_outcomes", "outcomes"
        WINS = "total_wins", "wins"
        WIN_RATE = "win_rate", "win rate (%)"
        REVENUE = "total_revenue", "revenue"
        ECPM = "ecpm", "eCPM"
        AVG_WIN_PRICE = "average_win_price", "average win price"
        INGESTION_LAG = "ingestion_lag", "consumer lag (messages)"
        INGESTION_STALLED = "ingestion_stalled", "ingestion stalled (1 or 0)"

    class Condition(models.TextChoices):
        BELOW = "below", "below"
        ABOVE = "above", "above"

    class Baseline(models.TextChoices):
        NONE = "", "the value itself"
        DAY = "previous_day", "change against the same window a day earlier"
        WEEK = "previous_week", "change against the same window a week earlier"

    class State(models.TextChoices):
        OK = "ok", "ok"
        FIRING = "firing", "firing"
        NO_DATA = "no_data", "no data"

    name = models.CharField(max_length=200)
    measure = models.CharField(max_length=20, choices=Measure.choices)
    params = models.JSONField(default=dict, blank=True, help_text="The stats report's filters.")
    window_minutes = models.PositiveIntegerField(default=60)
    condition = models.CharField(max_length=5, choices=Condition.choices)
    threshold = models.FloatField(help_text="With a baseline, a relative change: -0.5 is down 50%.")
    compare_to = models.CharField(max_length=16, choices=Baseline.choices, blank=True, default="")
    state = models.CharField(max_length=8, choices=State.choices, default=State.OK)
    state_since = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class AlertEvent(Sendout):
    """A change of an alert's state, found by the evaluation at ``evaluated_at`` (a minute;
    unique: evaluating the same minute twice notifies once), and its notification."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    evaluated_at = models.DateTimeField()
    state = models.CharField(max_length=8, choices=Alert.State.choices)
    previous_state = models.CharField(max_length=8, choices=Alert.State.choices)
    value = models.FloatField(null=True, blank=True)
    baseline = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-evaluated_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["alert", "evaluated_at"], name="one_event_per_evaluation")]

    def __str__(self) -> str:
        return f"{self.alert_id} {self.previous_state}→{self.state} @ {self.evaluated_at:%Y-%m-%d %H:%M}Z"
