"""The statistics of experiment results (``outcomes.inference``), pure: checked against the
libraries' own answers and, over thousands of simulated experiments, for the error rates
they promise (fixed-horizon: alpha when read once; sequential: at most alpha however often
it is read)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.proportion import confint_proportions_2indep

from outcomes import inference
from outcomes.inference import OUTCOMES, REVENUE, WINS, WON_BID, Arm, pair

pytestmark = pytest.mark.fast
ALPHA = 0.05


def auctions(wins: np.ndarray, prices: np.ndarray, bids: np.ndarray) -> Arm:
    """An arm randomised by auction from its outcomes (win flags, win prices, bids)."""
    won = wins.astype(bool)
    return Arm.of_auctions(
        outcomes=len(wins),
        wins=int(won.sum()),
        revenue=Decimal(repr(float(prices[won].sum()))),
        won_bid=Decimal(repr(float(bids[won].sum()))),
        revenue_sq=Decimal(repr(float((prices[won] ** 2).sum()))),
        won_bid_sq=Decimal(repr(float((bids[won] ** 2).sum()))),
        revenue_won_bid=Decimal(repr(float((prices[won] * bids[won]).sum()))),
    )


def users(per_user: dict[str, np.ndarray]) -> Arm:
    """An arm randomised by user from each user's sums."""
    q = {name: [Decimal(repr(float(v))) for v in values] for name, values in per_user.items()}
    moments = {
        pair(a, b): sum((x * y for x, y in zip(q[a], q[b], strict=True)), Decimal(0))
        for a in inference.QUANTITIES
        for b in inference.QUANTITIES
    }
    return Arm(len(q[OUTCOMES]), {name: sum(values, Decimal(0)) for name, values in q.items()}, moments)


def test_newcombe_interval_and_score_test_are_statsmodels_answers():
    control = Arm.of_auctions(
        outcomes=1000, wins=500, revenue=0, won_bid=0, revenue_sq=0, won_bid_sq=0, revenue_won_bid=0
    )
    treatment = Arm.of_auctions(
        outcomes=1000, wins=560, revenue=0, won_bid=0, revenue_sq=0, won_bid_sq=0, revenue_won_bid=0
    )
    found = inference.compare(control, treatment, "win_rate", confidence=0.95, inference="fixed", unit="auction")
    low, high = confint_proportions_2indep(560, 1000, 500, 1000, method="newcomb", compare="diff", alpha=0.05)
    assert found.method == "newcombe"
    assert found.difference == pytest.approx(6.0)  # percentage points, as the reports' win rate
    assert (found.ci_low, found.ci_high) == pytest.approx((low * 100, high * 100))
    assert found.significant and found.p_value < 0.01
    assert found.relative_lift == pytest.approx(0.12)
    assert found.relative_lift_ci_low < 0.12 < found.relative_lift_ci_high


def test_the_delta_method_on_per_user_sums_is_the_textbook_variance_of_a_ratio():
    rng = np.random.default_rng(7)
    n = rng.integers(1, 30, size=400)
    w = rng.binomial(n, 0.4)
    r = w * rng.gamma(2.0, 0.5, size=400)
    arm = users({OUTCOMES: n, WINS: w, REVENUE: r, WON_BID: r * 1.25})
    found = inference.ratio(arm, "avg_win_price")
    # Var(Ȳ/X̄) ≈ (1/(k·μx²))·(σy² − 2R·σxy + R²·σx²), sample (co)variances over the k users.
    ratio = r.sum() / w.sum()
    cov = np.cov(np.vstack([r, w]), ddof=1)
    expected = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (len(n) * w.mean() ** 2)
    assert found.value == pytest.approx(ratio)
    assert found.variance == pytest.approx(expected, rel=1e-9)
    assert inference.ratio(arm, "shading_ratio").value == pytest.approx(0.8)
    assert inference.ratio(arm, "ecpm").value == pytest.approx(ratio * 1000)


def test_per_user_analysis_is_wider_than_pretending_outcomes_are_independent():
    """Users differ: their outcomes are correlated, so the user-level interval is the honest, wider one."""
    rng = np.random.default_rng(11)
    k = 2000
    n = rng.integers(5, 40, size=k)
    propensity = rng.beta(2, 3, size=k)  # each user wins at their own rate
    w = rng.binomial(n, propensity)
    by_user = inference.ratio(users({OUTCOMES: n, WINS: w, REVENUE: w * 1.0, WON_BID: w * 1.0}), "win_rate")
    flat = Arm.of_auctions(
        outcomes=int(n.sum()), wins=int(w.sum()), revenue=0, won_bid=0, revenue_sq=0, won_bid_sq=0, revenue_won_bid=0
    )
    naive = inference.ratio(flat, "win_rate")
    assert by_user.value == pytest.approx(naive.value)
    assert by_user.variance > 2 * naive.variance


def test_sample_ratio_mismatch_is_pearsons_chi_square_against_the_plan():
    planned = {"control": 0.5, "B": 0.5}
    fine = inference.sample_ratio({"control": 10_000, "B": 10_050}, planned)
    assert not fine.mismatch and fine.p_value > 0.5
    lost = inference.sample_ratio({"control": 60_000, "B": 58_800}, planned)  # B lost 2% of its traffic
    expected = scipy_stats.chisquare([60_000, 58_800], [59_400, 59_400]).pvalue
    assert lost.mismatch and lost.p_value == pytest.approx(expected)
    assert lost.expected == {"control": 59_400, "B": 59_400}
    weighted = inference.sample_ratio({"control": 2000, "B": 1000}, {"control": 2 / 3, "B": 1 / 3})
    assert not weighted.mismatch
    assert inference.sample_ratio({}, planned) is None


def test_no_data_or_a_zero_denominator_gives_no_estimate_rather_than_a_crash():
    empty = Arm(0, {OUTCOMES: 0, WINS: 0, REVENUE: 0, WON_BID: 0})
    some = Arm.of_auctions(outcomes=10, wins=0, revenue=0, won_bid=0, revenue_sq=0, won_bid_sq=0, revenue_won_bid=0)
    assert inference.ratio(empty, "win_rate").value is None
    found = inference.compare(some, some, "avg_win_price", confidence=0.95, inference="sequential", unit="auction")
    assert found.difference is None and not found.significant
    same = inference.compare(some, some, "win_rate", confidence=0.95, inference="sequential", unit="auction")
    assert same.difference == 0 and not same.significant


def test_the_sequential_p_value_crosses_alpha_where_the_interval_crosses_zero():
    variance, n = 4.0, 5000
    half = inference.sequential_halfwidth(variance, n, ALPHA)
    assert inference.sequential_p_value(half * 1.001, variance, n, ALPHA) < ALPHA
    assert inference.sequential_p_value(half * 0.999, variance, n, ALPHA) > ALPHA
    # Wider than the fixed-horizon interval: the price of reading it at any time.
    assert half > 1.96 * np.sqrt(variance)


# ---------------------------------------------------------------------------- error rates
EXPERIMENTS, DAYS, PER_DAY = 2000, 14, 150


def simulated_aa(seed: int):
    """EXPERIMENTS A/A experiments by auction, DAYS days of PER_DAY auctions per arm: per
    experiment, arm and day the sums an arm holds (cumulated over the days)."""
    rng = np.random.default_rng(seed)
    shape = (EXPERIMENTS, 2, DAYS, PER_DAY)
    won = rng.random(shape) < 0.3
    bids = rng.uniform(0.5, 2.0, size=shape)
    prices = np.where(won, bids * rng.uniform(0.6, 1.0, size=shape), 0.0)
    bids = np.where(won, bids, 0.0)

    def cumulated(values):
        return np.cumsum(values.sum(axis=3), axis=2)

    return {
        "wins": cumulated(won.astype(np.int64)),
        "revenue": cumulated(prices),
        "won_bid": cumulated(bids),
        "revenue_sq": cumulated(prices**2),
        "won_bid_sq": cumulated(bids**2),
        "revenue_won_bid": cumulated(prices * bids),
    }


def arm_on(sums, experiment: int, arm: int, day: int) -> Arm:
    pick = {name: values[experiment, arm, day] for name, values in sums.items()}
    return Arm.of_auctions(
        outcomes=PER_DAY * (day + 1),
        wins=int(pick["wins"]),
        **{name: Decimal(repr(float(v))) for name, v in pick.items() if name != "wins"},
    )


def false_positive_rate(sums, metric: str, method: str, *, peek: bool) -> float:
    days = range(DAYS) if peek else [DAYS - 1]
    rejected = 0
    for e in range(EXPERIMENTS):
        for day in days:
            found = inference.compare(
                arm_on(sums, e, 0, day),
                arm_on(sums, e, 1, day),
                metric,
                confidence=1 - ALPHA,
                inference=method,
                unit="auction",
            )
            if found.significant:
                rejected += 1
                break
    return rejected / EXPERIMENTS


@pytest.fixture(scope="module")
def aa():
    return simulated_aa(2026)


SAMPLING_ERROR = 3 * np.sqrt(ALPHA * (1 - ALPHA) / EXPERIMENTS)  # three standard errors of a rate near alpha


@pytest.mark.parametrize("metric", ["win_rate", "avg_win_price"])
def test_a_fixed_horizon_test_read_once_rejects_alpha_of_a_a_experiments(aa, metric):
    rate = false_positive_rate(aa, metric, "fixed", peek=False)
    assert abs(rate - ALPHA) <= SAMPLING_ERROR, rate


def test_reading_a_fixed_horizon_test_every_day_inflates_its_false_positives(aa):
    assert false_positive_rate(aa, "avg_win_price", "fixed", peek=True) > ALPHA + SAMPLING_ERROR


@pytest.mark.parametrize("metric", ["win_rate", "avg_win_price"])
def test_a_sequential_test_read_every_day_stays_within_alpha(aa, metric):
    assert false_positive_rate(aa, metric, "sequential", peek=True) <= ALPHA


if __name__ == "__main__":  # the rates themselves, for the documentation
    sums = simulated_aa(2026)
    for metric in ("win_rate", "avg_win_price"):
        for method, peek in (("fixed", False), ("fixed", True), ("sequential", True), ("sequential", False)):
            rate = false_positive_rate(sums, metric, method, peek=peek)
            print(f"{metric:14} {method:10} {'daily' if peek else 'once':5} {rate:.4f}")
