"""What an experiment's plan may say (pure): its unit, its variants and their planned
shares, the metrics it is judged on. The registry (``outcomes.models.Experiment``), its
API and its admin validate with these rules, so they cannot disagree.

The first variant is the control: every other variant is compared with it. Shares are
relative weights, as GrowthBook's are: each variant's planned proportion is its share over
their sum (0.5 and 0.5, or 1 and 1, plan an even split).
"""

from __future__ import annotations

from datetime import datetime
from math import isfinite

from outcomes.validation import slug

UNITS = ("auction", "user")
# What the results report per variant, and what a plan may name as its metrics.
METRICS = (
    "win_rate",
    "revenue",
    "ecpm",
    "avg_win_price",
    "shading_ratio",
    "revenue_per_outcome",
)
METRIC_CHOICES = [(metric, metric) for metric in METRICS]
MAX_VARIANTS = 20
MAX_SHARE = 1_000_000


def plan_errors(
    *,
    variants: object,
    primary_metric: str,
    guardrail_metrics: object,
    start: datetime | None,
    end: datetime | None,
) -> dict[str, list[str]]:
    """Errors by field of an experiment's plan ({} when it holds)."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        add("variants", 'A list of {"name": …, "share": …} objects, the control first.')
    elif not 2 <= len(variants) <= MAX_VARIANTS:
        add("variants", f"An experiment has 2 to {MAX_VARIANTS} variants (the control first); got {len(variants)}.")
    else:
        names = []
        for position, variant in enumerate(variants, start=1):
            if set(variant) != {"name", "share"}:
                add("variants", f'Variant {position}: give exactly "name" and "share".')
                continue
            name, share = variant["name"], variant["share"]
            try:
                names.append(slug(name if isinstance(name, str) else ""))
            except ValueError as exc:
                add("variants", f"Variant {position}: the name {exc}.")
            numeric = isinstance(share, (int, float)) and not isinstance(share, bool) and isfinite(share)
            if not numeric or not 0 < share <= MAX_SHARE:
                add("variants", f"Variant {position}: the share is a positive number (a relative weight).")
        if len(set(names)) != len(names):
            add("variants", "Variant names must differ.")
    if primary_metric not in METRICS:
        add("primary_metric", f"One of {', '.join(METRICS)}.")
    if not isinstance(guardrail_metrics, list) or not all(m in METRICS for m in guardrail_metrics):
        add("guardrail_metrics", f"A list of metrics from {', '.join(METRICS)}.")
    elif primary_metric in guardrail_metrics or len(set(guardrail_metrics)) != len(guardrail_metrics):
        add("guardrail_metrics", "Each metric once, and not the primary metric.")
    if start is not None and end is not None and start >= end:
        add("end", "The end must be after the start.")
    return errors


def planned_proportions(variants: list[dict]) -> dict[str, float]:
    """Each variant's planned share of the traffic: its weight over the weights' sum."""
    total = sum(v["share"] for v in variants)
    return {v["name"]: v["share"] / total for v in variants}
