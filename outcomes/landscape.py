"""The bid landscape (pure: counts per price bucket in; curves, models and bids out).

What a bidder learns from its own outcomes about the market (Cui et al., "Bid landscape
forecasting in online ad exchange marketplace", KDD 2011; Wu et al., "Predicting winning
price in real time bidding with censored data", KDD 2015):

* **W(b)**, the probability that a bid of b wins: the share of outcomes won per bid bucket,
  with Wilson intervals, and a fitted curve — isotonic regression (scikit-learn), the
  monotone least-squares fit the field uses for exactly this: a higher bid never wins less
  often, and no parametric shape is assumed. Its quality is measured on held-out outcomes
  (log loss, against the empirical curve and the one-rate baseline).
* **The market price** (the highest competing bid): in a second-price auction a win reveals it
  (the price paid) and a loss only says it was at least the bid — a right-censored
  observation. Kaplan–Meier (statsmodels' ``SurvfuncRight``, frequency-weighted) estimates its
  distribution from both, where averaging the prices paid would see only the cheap side.
* **The optimal bid** for a value v: first price, argmax_b (v − b)·W(b); second price, the
  expected surplus ∫₀ᵇ (v − m) dF(m), with F the market price's distribution (W).

Prices here are in currency units; the rollups keep cents (``grains.PRICE_STEPS``, and
``DOMAIN_PRICE_STEPS`` per site domain).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AUCTION_TYPES = ("first_price", "second_price")
HOLDOUT_SHARE = 0.2
PRIOR_PER_BUCKET = 5.0  # a segment's curve is shrunk toward its parent's by this many outcomes per bucket
_EPS = 1e-6


@dataclass(frozen=True)
class Bucket:
    cents: int  # lower bound
    bids: int
    bid_wins: int
    paid: int
    width: int = 1  # cents

    @property
    def mid(self) -> float:
        """The bucket's representative price: its only price when one cent wide, else its middle."""
        return (self.cents + (self.width - 1) / 2) / 100


def wilson(wins: np.ndarray, outcomes: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score intervals of wins/outcomes (statsmodels), 0–1."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(wins, np.maximum(outcomes, 1), alpha=1 - confidence, method="wilson")
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


@dataclass(frozen=True)
class Curve:
    """A fitted W(b): linear between (x, y) knots, constant beyond them."""

    x: list[float]
    y: list[float]

    def __call__(self, prices) -> np.ndarray:
        return np.interp(np.asarray(prices, dtype=float), self.x, self.y)


@dataclass(frozen=True)
class Fit:
    curve: Curve
    outcomes: int
    holdout_outcomes: int
    log_loss: float | None
    empirical_log_loss: float | None
    baseline_log_loss: float | None
    method: str = "isotonic"
    details: dict = field(default_factory=dict)


def _isotonic(x: np.ndarray, rate: np.ndarray, weight: np.ndarray) -> Curve:
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    model.fit(x, rate, sample_weight=weight)
    return Curve([float(v) for v in model.X_thresholds_], [float(v) for v in model.y_thresholds_])


def _log_loss(p: np.ndarray, wins: np.ndarray, outcomes: np.ndarray) -> float | None:
    total = outcomes.sum()
    if total == 0:
        return None
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-(wins * np.log(p) + (outcomes - wins) * np.log(1 - p)).sum() / total)


def fit_curve(buckets: list[Bucket], *, parent: Curve | None = None, seed: int = 0) -> Fit | None:
    """W(b) fitted to the buckets' outcomes (shrunk toward ``parent`` if given), with its log
    loss on a random HOLDOUT_SHARE of the outcomes held out of a first fit; the curve served
    is then fitted on all of them. None without any outcome."""
    used = [b for b in buckets if b.bids > 0]
    if not used:
        return None
    x = np.array([b.mid for b in used])
    n = np.array([b.bids for b in used], dtype=np.int64)
    k = np.array([b.bid_wins for b in used], dtype=np.int64)
    rng = np.random.default_rng(seed)
    held = rng.binomial(n, HOLDOUT_SHARE)
    held_wins = rng.hypergeometric(k, n - k, held) if held.sum() else np.zeros_like(k)
    train_n, train_k = n - held, k - held_wins

    def fitted(outcomes: np.ndarray, wins: np.ndarray) -> Curve:
        keep = outcomes > 0 if parent is None else np.ones_like(outcomes, dtype=bool)
        prior = PRIOR_PER_BUCKET if parent is not None else 0.0
        prior_rate = parent(x) if parent is not None else 0.0
        weight = outcomes + prior
        rate = (wins + prior * prior_rate) / np.maximum(weight, _EPS)
        return _isotonic(x[keep], rate[keep], weight[keep])

    losses: tuple[float | None, float | None, float | None] = (None, None, None)
    if held.sum() and train_n.sum():
        first = fitted(train_n, train_k)
        overall = train_k.sum() / train_n.sum()
        empirical = np.where(train_n > 0, train_k / np.maximum(train_n, 1), overall)
        losses = (
            _log_loss(first(x), held_wins, held),
            _log_loss(empirical, held_wins, held),
            _log_loss(np.full(len(x), overall), held_wins, held),
        )
    return Fit(fitted(n, k), int(n.sum()), int(held.sum()), *losses)


@dataclass(frozen=True)
class MarketPrice:
    observed: int  # wins: the price paid is the market price
    censored: int  # losses: the market price was at least the bid
    prices: list[float]  # where the distribution steps
    cdf: list[float]  # F at each of them
    p25: float | None
    median: float | None
    p75: float | None


def market_price(buckets: list[Bucket]) -> MarketPrice | None:
    """Kaplan–Meier estimate of a second-price auction's market price: each win an event at
    the price paid, each loss censored at the bid. None without any outcome."""
    from statsmodels.duration.survfunc import SurvfuncRight

    times, status, weights = [], [], []
    for b in buckets:
        if b.paid:
            times.append(b.mid)
            status.append(1)
            weights.append(b.paid)
        if b.bids - b.bid_wins:
            times.append(b.mid)
            status.append(0)
            weights.append(b.bids - b.bid_wins)
    observed = sum(w for w, s in zip(weights, status, strict=True) if s)
    if not times or not observed:
        return None
    fitted = SurvfuncRight(np.array(times), np.array(status), freq_weights=np.array(weights, dtype=float))
    prices = [float(t) for t in fitted.surv_times]
    cdf = [float(1 - s) for s in fitted.surv_prob]

    def quantile(p: float) -> float | None:
        value = fitted.quantile(p)
        return None if value is None or not np.isfinite(value) else float(value)

    censored = sum(w for w, s in zip(weights, status, strict=True) if not s)
    return MarketPrice(int(observed), int(censored), prices, cdf, quantile(0.25), quantile(0.5), quantile(0.75))


@dataclass(frozen=True)
class BidChoice:
    bid: float
    win_probability: float
    expected_cost: float
    expected_surplus: float


def bid_choices(curve: Curve, value: float, auction_type: str, *, step: float = 0.01) -> list[BidChoice]:
    """Every bid from 0 to ``value`` in ``step``s with its win probability, expected cost and
    expected surplus under ``auction_type``: first price pays the bid when it wins; second
    price pays the market price m < b, distributed as W."""
    if auction_type not in AUCTION_TYPES:
        raise ValueError(f"auction type {auction_type!r}: one of {', '.join(AUCTION_TYPES)}")
    bids = np.round(np.arange(0, value + step / 2, step), 10)
    win = np.clip(curve(bids), 0, 1)
    if auction_type == "first_price":
        cost = bids * win
    else:  # the market price's expected payment below b: Σ m·ΔF over the grid
        mass = np.diff(win, prepend=0.0)
        cost = np.cumsum(np.concatenate([[0.0], (bids[:-1] + step / 2) * mass[1:]]))
    surplus = value * win - cost
    return [
        BidChoice(float(b), float(w), float(c), float(s)) for b, w, c, s in zip(bids, win, cost, surplus, strict=True)
    ]


def optimal_bid(curve: Curve, value: float, auction_type: str) -> tuple[BidChoice, list[BidChoice]]:
    """The bid with the largest expected surplus (the lowest such bid on a tie), and the same
    figures at a few other bids (fractions of the value) to show the trade-off."""
    choices = bid_choices(curve, value, auction_type)
    best = max(choices, key=lambda c: (round(c.expected_surplus, 9), -c.bid))
    wanted = sorted({round(value * f, 2) for f in (0.25, 0.5, 0.75, 0.9, 1.0)} | {best.bid})
    by_bid = {round(c.bid, 2): c for c in choices}
    return best, [by_bid[b] for b in wanted if b in by_bid]


def analytic_first_price_optimum(cdf, value: float, *, step: float = 0.0001) -> float:
    """argmax (v − b)·F(b) on a fine grid, for a known F (tests and documentation)."""
    bids = np.arange(0, value, step)
    return float(bids[np.argmax((value - bids) * cdf(bids))])
