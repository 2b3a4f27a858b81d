"""The statistics of an experiment's results (pure: sums in, estimates and intervals out).

Every metric is a ratio of two sums over the units of randomisation (auctions or users),
defined as the reports define it (docs/api.md): the win rate is wins over outcomes, eCPM a
thousand times revenue over wins (won impressions), the average win price revenue over wins,
the shading ratio revenue over the bids that won, revenue per outcome revenue over outcomes. From the
exact sums the rollups keep — per unit the totals and every second moment — follow:

* a ratio's variance by the **delta method** (Deng et al., "Applying the Delta Method in
  Metric Analytics", KDD 2018): for units randomised by user, a user's outcomes are not
  independent, and the ratio of per-user sums is what keeps the analysis honest;
* for the win rate of an experiment randomised by auction (a proportion of independent
  Bernoulli outcomes): **Newcombe's hybrid score interval** of the difference of two Wilson
  intervals and the score test, from statsmodels;
* the **relative lift** (treatment over control, minus one) with its own delta-method
  interval (for the proportion, the Katz log interval of the risk ratio);
* **always-valid intervals**: the asymptotic confidence sequence of Waudby-Smith et al.
  ("Time-uniform central limit theory and asymptotic confidence sequences", 2023), in
  GrowthBook's parametrisation (tuning parameter: the sample size at which the interval is
  tightest). Looking at it every day does not raise the false-positive rate above alpha,
  where the fixed-horizon interval's does (``tests/test_inference.py`` measures both).
* the **sample-ratio mismatch** check: Pearson's chi-square of the units per variant against
  the planned shares (scipy), flagged below p = 0.001 as GrowthBook and Statsig do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from math import exp, isfinite, log, sqrt
from statistics import NormalDist

from scipy import stats as scipy_stats

# What a unit sums: its outcomes, wins, revenue and the bids that won (money in currency
# units); ONE is the constant 1 (per-unit metrics).
OUTCOMES, WINS, REVENUE, WON_BID, ONE = "outcomes", "wins", "revenue", "won_bid", "one"
QUANTITIES = (OUTCOMES, WINS, REVENUE, WON_BID)
# metric → (numerator, denominator, scale)
RATIOS: dict[str, tuple[str, str, int]] = {
    "win_rate": (WINS, OUTCOMES, 100),  # a percentage, as the reports give it
    "revenue": (REVENUE, ONE, 1),  # compared per unit: the total depends on the traffic split
    "ecpm": (REVENUE, WINS, 1000),
    "avg_win_price": (REVENUE, WINS, 1),
    "shading_ratio": (REVENUE, WON_BID, 1),
    "revenue_per_outcome": (REVENUE, OUTCOMES, 1),
}
SEQUENTIAL, FIXED = "sequential", "fixed"
INFERENCES = (SEQUENTIAL, FIXED)
# The sample size (both arms) at which the confidence sequence is tightest (GrowthBook's default).
SEQUENTIAL_TUNING = 5000
SRM_THRESHOLD = 0.001
MIN_UNITS = 100  # fewer units in a variant than this: a warning (the normal approximations are rough)


def pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


@dataclass(frozen=True)
class Arm:
    """One variant's exact sums: ``units``; per quantity its sum; per pair of quantities the
    sum over units of their product (``moments[pair(a, b)]``)."""

    units: int
    sums: Mapping[str, Decimal | int]
    moments: Mapping[tuple[str, str], Decimal | int] = field(default_factory=dict)

    @classmethod
    def of_auctions(cls, *, outcomes: int, wins: int, revenue, won_bid, revenue_sq, won_bid_sq, revenue_won_bid) -> Arm:
        """An arm randomised by auction: each outcome a unit, whose outcomes is 1, wins 0 or 1,
        revenue and won bid 0 unless won — so most moments are sums already."""
        return cls(
            units=outcomes,
            sums={OUTCOMES: outcomes, WINS: wins, REVENUE: revenue, WON_BID: won_bid},
            moments={
                pair(OUTCOMES, OUTCOMES): outcomes,
                pair(OUTCOMES, WINS): wins,
                pair(WINS, WINS): wins,
                pair(OUTCOMES, REVENUE): revenue,
                pair(WINS, REVENUE): revenue,
                pair(OUTCOMES, WON_BID): won_bid,
                pair(WINS, WON_BID): won_bid,
                pair(REVENUE, REVENUE): revenue_sq,
                pair(WON_BID, WON_BID): won_bid_sq,
                pair(REVENUE, WON_BID): revenue_won_bid,
            },
        )

    def total(self, quantity: str) -> Decimal:
        return Decimal(self.units if quantity == ONE else self.sums[quantity])

    def cross(self, a: str, b: str) -> Decimal:
        if a == ONE:
            return self.total(b)
        if b == ONE:
            return self.total(a)
        return Decimal(self.moments[pair(a, b)])


@dataclass(frozen=True)
class Estimate:
    value: float | None  # None: undefined (a zero denominator)
    variance: float | None  # of the estimate; None: fewer than two units


def ratio(arm: Arm, metric: str) -> Estimate:
    """The metric's value in an arm and the delta-method variance of that estimate:
    Var(Y/X) ≈ (σ²_Y − 2R·σ_XY + R²·σ²_X) / (n·μ²_X), with R = ΣY/ΣX and the unit-level
    (co)variances computed exactly (decimal) from the sums before any rounding."""
    numerator, denominator, scale = RATIOS[metric]
    n = arm.units
    sy, sx = arm.total(numerator), arm.total(denominator)
    if n == 0 or sx == 0:
        return Estimate(None, None)
    with localcontext() as ctx:
        ctx.prec = 60
        r = sy / sx
        if n < 2:
            return Estimate(float(r) * scale, None)
        mx = sx / n
        vyy = (arm.cross(numerator, numerator) - sy * sy / n) / (n - 1)
        vxx = (arm.cross(denominator, denominator) - sx * sx / n) / (n - 1)
        vxy = (arm.cross(numerator, denominator) - sx * sy / n) / (n - 1)
        variance = (vyy - 2 * r * vxy + r * r * vxx) / (n * mx * mx)
    return Estimate(float(r) * scale, max(0.0, float(variance)) * scale * scale)


@dataclass(frozen=True)
class Comparison:
    metric: str
    control_value: float | None
    value: float | None
    difference: float | None
    relative_lift: float | None
    ci_low: float | None
    ci_high: float | None
    relative_lift_ci_low: float | None
    relative_lift_ci_high: float | None
    p_value: float | None
    significant: bool
    method: str


_NORMAL = NormalDist()


def _z(alpha: float) -> float:
    return _NORMAL.inv_cdf(1 - alpha / 2)


def sequential_halfwidth(variance: float, n: int, alpha: float, tuning: int = SEQUENTIAL_TUNING) -> float:
    """Half the width of the asymptotic confidence sequence for an estimate of ``variance``
    from ``n`` units (both arms): with s² = n·variance and ρ² = (−2 ln α + ln(1 − 2 ln α)) / tuning,
    √(s² · 2(nρ² + 1) / (n²ρ²) · ln(√(nρ² + 1) / α))."""
    rho2 = (-2 * log(alpha) + log(-2 * log(alpha) + 1)) / tuning
    s2 = variance * n
    return sqrt(s2 * 2 * (n * rho2 + 1) / (n * n * rho2) * log(sqrt(n * rho2 + 1) / alpha))


def sequential_p_value(
    estimate: float, variance: float, n: int, alpha: float, tuning: int = SEQUENTIAL_TUNING
) -> float:
    """The always-valid p-value: the α' at which the sequence (with ρ tuned for α) just
    reaches 0; below α exactly when the interval at α excludes 0."""
    if variance <= 0:
        return 0.0 if estimate != 0 else 1.0
    rho2 = (-2 * log(alpha) + log(-2 * log(alpha) + 1)) / tuning
    s2 = variance * n
    exponent = -(estimate**2) * n * n * rho2 / (2 * s2 * (n * rho2 + 1))
    return min(1.0, sqrt(n * rho2 + 1) * exp(exponent))


def _normal(estimate: float, variance: float, n: int, alpha: float, inference: str) -> tuple[float, float, float]:
    """(low, high, p) of an estimate with a normal sampling distribution."""
    if inference == SEQUENTIAL:
        half = sequential_halfwidth(variance, n, alpha)
        return estimate - half, estimate + half, sequential_p_value(estimate, variance, n, alpha)
    sd = sqrt(variance)
    half = _z(alpha) * sd
    p = 2 * (1 - _NORMAL.cdf(abs(estimate) / sd)) if sd > 0 else (0.0 if estimate else 1.0)
    return estimate - half, estimate + half, p


def compare(control: Arm, treatment: Arm, metric: str, *, confidence: float, inference: str, unit: str) -> Comparison:
    """``treatment`` against ``control`` on ``metric``: the difference and the relative lift,
    their intervals at ``confidence``, the p-value, and whether the interval excludes 0."""
    alpha = 1 - confidence
    c, t = ratio(control, metric), ratio(treatment, metric)
    empty = Comparison(metric, c.value, t.value, None, None, None, None, None, None, None, False, "")
    if c.value is None or t.value is None or c.variance is None or t.variance is None:
        return empty
    difference = t.value - c.value
    lift = t.value / c.value - 1 if c.value else None
    n = control.units + treatment.units
    proportion = metric == "win_rate" and unit == "auction"
    if proportion and inference == FIXED:
        low, high, p, lift_low, lift_high = _proportions(control, treatment, alpha)
        low, high = low * RATIOS[metric][2], high * RATIOS[metric][2]  # in percentage points
        method = "newcombe"
    else:
        variance = c.variance + t.variance
        if variance == 0 and difference == 0:
            return Comparison(metric, c.value, t.value, 0.0, lift, 0.0, 0.0, None, None, 1.0, False, "")
        low, high, p = _normal(difference, variance, n, alpha, inference)
        lift_low = lift_high = None
        if lift is not None:
            lift_variance = t.variance / c.value**2 + t.value**2 * c.variance / c.value**4
            lift_low, lift_high, _p = _normal(lift, lift_variance, n, alpha, inference)
        method = "confidence-sequence" if inference == SEQUENTIAL else "delta"
    values = (low, high, p, lift_low, lift_high)
    low, high, p, lift_low, lift_high = (v if v is None or isfinite(v) else None for v in values)
    significant = low is not None and high is not None and (low > 0 or high < 0)
    return Comparison(
        metric, c.value, t.value, difference, lift, low, high, lift_low, lift_high, p, significant, method
    )


def _proportions(control: Arm, treatment: Arm, alpha: float):
    """Newcombe's interval of the difference, the score test's p-value, the Katz log interval of the ratio."""
    from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

    counts = (int(treatment.sums[WINS]), int(treatment.units), int(control.sums[WINS]), int(control.units))
    low, high = confint_proportions_2indep(*counts, method="newcomb", compare="diff", alpha=alpha)
    p = float(test_proportions_2indep(*counts, method="score", compare="diff").pvalue)
    lift_low = lift_high = None
    if counts[0] and counts[2]:
        ratio_low, ratio_high = confint_proportions_2indep(*counts, method="log-adjusted", compare="ratio", alpha=alpha)
        lift_low, lift_high = float(ratio_low) - 1, float(ratio_high) - 1
    return float(low), float(high), p, lift_low, lift_high


@dataclass(frozen=True)
class SampleRatio:
    p_value: float
    mismatch: bool
    observed: dict[str, int]
    expected: dict[str, float]


def sample_ratio(observed: Mapping[str, int], planned: Mapping[str, float]) -> SampleRatio | None:
    """Pearson's chi-square of the units per planned variant against their planned proportions
    (None with no units)."""
    counts = {name: int(observed.get(name, 0)) for name in planned}
    total = sum(counts.values())
    if total == 0:
        return None
    expected = {name: total * share for name, share in planned.items()}
    result = scipy_stats.chisquare(list(counts.values()), list(expected.values()))
    p_value = float(result.pvalue)
    return SampleRatio(p_value, p_value < SRM_THRESHOLD, counts, expected)
