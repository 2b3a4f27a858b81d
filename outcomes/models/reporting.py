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
