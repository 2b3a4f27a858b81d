"""Reference data that reports are planned and read with: exchange rates, the experiment
registry and the fitted bid models. None is an outcome, and no rollup depends on them:
changing one changes the next answer and nothing else."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from outcomes import experiments, money
from outcomes.validation import CURRENCY_LENGTH, SLUG_LENGTH, slug


class ExchangeRate(models.Model):
    """A reference exchange rate: how many units of ``currency`` one euro bought on ``day``
    (the ECB's quotation; ``manage.py load_fx_rates``). Reports convert money with them
    (``convert_to``): see ``outcomes.money``."""

    day = models.DateField()
    currency = models.CharField(max_length=CURRENCY_LENGTH)
    per_euro = models.DecimalField(
        max_digits=money.RATE_DIGITS, decimal_places=money.RATE_PLACES, help_text="Units of the currency per euro."
    )
    source = models.CharField(max_length=200, blank=True, help_text="The file the rate was loaded from.")
    loaded_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["currency", "day"], name="exchange_rate_currency_day"),
            models.CheckConstraint(
                condition=Q(per_euro__gt=0),
                name="exchange_rate_positive",
                violation_error_message="A rate is a positive number of units per euro.",
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"),
                name="exchange_rate_currency_code",
                violation_error_message="The currency is an ISO 4217 code: three capital letters, such as USD.",
            ),
        ]

    def __str__(self) -> str:
        return f"1 EUR = {self.per_euro} {self.currency} on {self.day.isoformat()}"


def _slug_validator(value: str) -> None:
    try:
        slug(value)
    except ValueError as exc:
        raise ValidationError(f"The key {exc}.") from None


class Experiment(models.Model):
    """An experiment a bidder runs: outcomes tagged with its ``key`` (``experiment``) are its
    observations, by ``variant``. Outcomes may carry a key the registry does not know yet (a
    bidder can start first): they are stored and reported, marked unregistered."""

    class Unit(models.TextChoices):
        AUCTION = "auction", "Auction"
        USER = "user", "User"

    key = models.CharField(max_length=SLUG_LENGTH, unique=True, validators=[_slug_validator])
    name = models.CharField(max_length=200)
    hypothesis = models.TextField(blank=True)
    unit = models.CharField(
        max_length=10,
        choices=Unit.choices,
        default=Unit.AUCTION,
        help_text="What was randomised: each auction, or each user (then analysed per user).",
    )
    variants = models.JSONField(help_text='[{"name": "control", "share": 0.5}, …]: the control first.')
    primary_metric = models.CharField(max_length=32, choices=experiments.METRIC_CHOICES)
    guardrail_metrics = models.JSONField(default=list, blank=True)
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        errors = experiments.plan_errors(
            variants=self.variants,
            primary_metric=self.primary_metric,
            guardrail_metrics=self.guardrail_metrics,
            start=self.start,
            end=self.end,
        )
        if errors:
            raise ValidationError(errors)


class BidModel(models.Model):
    """A fitted win-probability curve W(b) for one segment — a site domain ('' for every
    domain) and a currency — as ``manage.py fit_bid_models`` stored it: the latest version of a
    segment is what the bid landscape and the optimal bid serve (``outcomes.landscape``)."""

    site_domain = models.CharField(max_length=253, blank=True, help_text="'' for every site domain.")
    currency = models.CharField(max_length=CURRENCY_LENGTH)
    version = models.PositiveIntegerField(help_text="1, 2, … per segment: each fit adds one.")
    fitted_at = models.DateTimeField(auto_now_add=True)
    method = models.CharField(max_length=40, default="isotonic")
    pooled = models.BooleanField(
        default=False, help_text="Fitted with too few outcomes of its own: shrunk toward every domain's curve."
    )
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    outcomes = models.BigIntegerField(help_text="Outcomes fitted on.")
    holdout_outcomes = models.BigIntegerField(default=0)
    log_loss = models.FloatField(null=True, help_text="On the held-out outcomes.")
    empirical_log_loss = models.FloatField(null=True, help_text="The empirical curve's, on the same outcomes.")
    baseline_log_loss = models.FloatField(null=True, help_text="One win rate for every bid, on the same outcomes.")
    prices = models.JSONField(help_text="The curve's knots: prices (currency units) …")
    probabilities = models.JSONField(help_text="… and W at each (linear between them).")

    class Meta:
        ordering = ["site_domain", "currency", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["site_domain", "currency", "version"], name="bid_model_segment_version")
        ]
        verbose_name = "bid model"

    def __str__(self) -> str:
        return f"W(b) for {self.site_domain or 'every domain'} in {self.currency}, v{self.version}"
