"""Realistic synthetic auction outcomes, for ``make run``, demos and benchmarks.

Pure and seeded: the same seed gives the same stream. The shape follows what an RTB
exchange sees: ~100k users, 2,000 site domains with Zipf-like popularity (the top one
holds about an eighth of the traffic), log-normal bid prices around a dollar, a few
currencies, most traffic enriched with a stable set of interests per user.

Bidding matters: each auction is a **second-price auction** against a market price (the
highest competing bid) drawn log-normally around its site domain's own level. A bid above
it wins and pays it; ~70% of bids win. So the win rate rises with the bid along the market
price's distribution, and a shaded bid wins less often and pays less — the bid landscape and
the experiment below have real, known shapes (``make run`` sets ``AUCTION_TYPE=second_price``).
"""

from __future__ import annotations

import itertools
import math
import random
import uuid
from bisect import bisect_left
from datetime import UTC, datetime, timedelta
from statistics import NormalDist

from outcomes.buckets import iso_utc

INTERESTS = (
    "technology",
    "sports",
    "travel",
    "finance",
    "fashion",
    "food",
    "gaming",
    "music",
    "movies",
    "health",
    "automotive",
    "real-estate",
    "parenting",
    "education",
    "news",
    "science",
    "pets",
    "home-garden",
    "beauty",
    "business",
)
CURRENCIES = (("USD", 0.80), ("EUR", 0.10), ("GBP", 0.06), ("CAD", 0.04))
# The experiment the simulated bidder runs, with a known effect: one user in five takes part,
# half of them (by user) in variant B, which shades its bids by 10% and so wins 5 points less
# often. Its plan, as the registry holds it (``simulate_auctions --register-experiment``).
EXPERIMENT = {
    "key": "shading-v2",
    "name": "Bid shading v2 (simulated)",
    "hypothesis": "Bidding 10% lower pays less per win at a cost of 5 points of win rate.",
    "unit": "user",
    "variants": [{"name": "control", "share": 0.5}, {"name": "B", "share": 0.5}],
    "primary_metric": "avg_win_price",
    "guardrail_metrics": ["win_rate"],
}
EXPERIMENT_USERS = 5  # one user in this many takes part
EFFECT_BID = 0.90  # variant B's bids, as a fraction of the control's
# The auctions: log bids ~ N(BID_MU, BID_SIGMA); log market prices ~ N(domain level,
# MARKET_SIGMA), the domains' levels ~ N(market level, DOMAIN_SIGMA) around the level that
# makes WIN_RATE of the bids win.
BID_MU, BID_SIGMA, MARKET_SIGMA, DOMAIN_SIGMA = -0.3, 0.6, 0.5, 0.2
WIN_RATE = 0.70
_SPREAD = math.sqrt(BID_SIGMA**2 + MARKET_SIGMA**2 + DOMAIN_SIGMA**2)  # of log bid − log market price


def market_level(win_rate: float) -> float:
    """The mean log market price at which ``win_rate`` of the bids win."""
    return BID_MU - NormalDist().inv_cdf(win_rate) * _SPREAD


# Variant B's win rate against the control's, as the auction model makes it: a bid shaded by
# EFFECT_BID beats the market price less often (about −4.7 points).
EFFECT_WIN_RATE = NormalDist().cdf((BID_MU + math.log(EFFECT_BID) - market_level(WIN_RATE)) / _SPREAD) - WIN_RATE
_TLDS = ("com", "net", "org", "io", "co.uk", "de", "news", "tv")
_WORDS = (
    "daily",
    "sport",
    "tech",
    "market",
    "travel",
    "food",
    "games",
    "music",
    "auto",
    "home",
    "style",
    "health",
    "money",
    "world",
    "city",
    "star",
    "media",
    "post",
    "hub",
    "zone",
)


class OutcomeSimulator:
    def __init__(
        self,
        *,
        seed: int = 42,
        users: int = 100_000,
        domains: int = 2_000,
        win_rate: float = WIN_RATE,
        enriched_rate: float = 0.85,
    ) -> None:
        self.random = random.Random(seed)
        self.users = users
        self.win_rate = win_rate
        self.enriched_rate = enriched_rate
        self.domains = [self._domain_name(i) for i in range(domains)]
        level = market_level(win_rate)
        self._market = [level + random.Random(i).gauss(0, DOMAIN_SIGMA) for i in range(domains)]
        # Zipf(s≈1.0) popularity: cumulative weights for bisect sampling.
        weights = [1 / (rank + 1) ** 1.0 for rank in range(domains)]
        self._domain_cdf = list(itertools.accumulate(weights))
        self._currency_cdf = list(itertools.accumulate(weight for _code, weight in CURRENCIES))
        self._namespace = uuid.UUID(int=self.random.getrandbits(128))

    def _domain_name(self, index: int) -> str:
        word_a = _WORDS[index % len(_WORDS)]
        word_b = _WORDS[(index // len(_WORDS)) % len(_WORDS)]
        tld = _TLDS[(index // (len(_WORDS) ** 2)) % len(_TLDS)]
        return f"{word_a}{word_b}{index}.{tld}"

    def interests_of(self, user_number: int) -> list[str]:
        rng = random.Random(user_number)
        return rng.sample(INTERESTS, rng.randint(1, 4))

    def outcome(self, *, at: datetime, sequence: int) -> dict:
        r = self.random
        user_number = (
            min(self.users - 1, int(r.paretovariate(1.2)) - 1 + r.randrange(self.users) // 50)
            if r.random() < 0.3
            else r.randrange(self.users)
        )
        where = bisect_left(self._domain_cdf, r.random() * self._domain_cdf[-1])
        domain = self.domains[where]
        currency = CURRENCIES[bisect_left(self._currency_cdf, r.random() * self._currency_cdf[-1])][0]
        variant = self.variant_of(user_number)
        shade = EFFECT_BID if variant == "B" else 1.0
        bid_price = round(min(50.0, math.exp(r.gauss(BID_MU, BID_SIGMA)) * shade), 2) or 0.01
        market = math.exp(r.gauss(self._market[where], MARKET_SIGMA))  # the highest competing bid
        won = bid_price > market
        win_price = min(bid_price, max(0.01, round(market, 2))) if won else 0.0  # second price
        enriched = r.random() < self.enriched_rate
        message = {
            "bid_request_id": str(uuid.uuid5(self._namespace, str(sequence))),
            "user_id": f"user-{user_number:06d}",
            "site_domain": domain,
            "bid_price": bid_price,
            "win_status": won,
            "win_price": win_price,
            "currency": currency,
            "enriched": enriched,
            "user_interests": self.interests_of(user_number) if enriched else [],
            "auction_timestamp": iso_utc(at, timespec="milliseconds"),
        }
        if variant is not None:
            message |= {"experiment": EXPERIMENT["key"], "variant": variant}
        return message

    @staticmethod
    def variant_of(user_number: int) -> str | None:
        """The variant a user sees (by user, as ``unit: "user"`` says), or None outside the experiment."""
        if user_number % EXPERIMENT_USERS:
            return None
        return "B" if (user_number // EXPERIMENT_USERS) % 2 else "control"

    def stream(
        self, *, count: int | None = None, days: float = 0.0, now: datetime | None = None, in_order: bool = False
    ):
        """Yield outcomes; with ``days`` > 0 their auction times spread over the last ``days`` days:
        at random, or (``in_order``, with ``count``) advancing through them as a replayed topic
        would, a few seconds of jitter apart."""
        end = now or datetime.now(UTC)
        for sequence in itertools.count() if count is None else range(count):
            moment = now or datetime.now(UTC)
            if days > 0 and in_order and count:
                offset = max(0.0, days * 86400 * (1 - sequence / count) - self.random.uniform(0, 3))
                moment = end - timedelta(seconds=offset)
            elif days > 0:
                moment = moment - timedelta(seconds=self.random.uniform(0, days * 86400))
            yield self.outcome(at=moment, sequence=sequence)


# Euro reference rates to start the simulated ones from (units per euro, late 2026's order of
# magnitude), and how much they move from one working day to the next.
REFERENCE_RATES = {"USD": 1.08, "GBP": 0.85, "CAD": 1.49, "JPY": 161.0, "CHF": 0.94}
_DAILY_MOVE = 0.004


def reference_rates_csv(*, first: datetime, last: datetime, seed: int = 0) -> str:
    """Simulated euro reference rates for every working day from ``first`` to ``last``, in
    the ECB's history layout (newest day first, as ``eurofxref-hist.csv``), so that ``make
    run`` converts the simulated money with rates loaded the way real ones are."""
    rng = random.Random(seed)
    level = dict(REFERENCE_RATES)
    rows = []
    day = first.date()
    while day <= last.date():
        if day.weekday() < 5:  # the ECB publishes on working days only
            level = {code: rate * math.exp(rng.gauss(0, _DAILY_MOVE)) for code, rate in level.items()}
            rows.append(day.isoformat() + "," + ",".join(f"{rate:.4f}" for rate in level.values()) + ",")
        day += timedelta(days=1)
    header = "Date," + ",".join(REFERENCE_RATES) + ","
    return "\n".join([header, *reversed(rows)]) + "\n"
