"""Windows with edges at arbitrary seconds: the rollups answer the whole buckets and the raw
table the edges, and every report equals the raw table's own answer exactly."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from outcomes import writes
from outcomes.queries import lists, prices, reports, routing
from tests.factories import parse_document

pytestmark = pytest.mark.django_db
BASE = datetime(2026, 10, 10, tzinfo=UTC)
DOMAINS = ["a.example", "b.example", "c.example", None]


@pytest.fixture
def stored():
    rng = random.Random(16)
    batch = writes.Batch()
    rows = []
    for i in range(2500):
        won = rng.random() < 0.7
        bid = Decimal(rng.randint(1, 500)) / 100
        document = {
            "bid_id": f"w-{i}",
            "user_id": f"user-{rng.randint(1, 400)}",
            "site_domain": rng.choice(DOMAINS),
            "win_status": won,
            "bid_price": str(bid),
            "win_price": str((bid * Decimal(rng.choice(["0.6", "0.9", "1"]))).quantize(Decimal("0.01")) if won else 0),
            "currency": rng.choice(["USD", "USD", "EUR", "GBP"]),
            "enriched": rng.random() < 0.8,
            "user_interests": rng.sample(["sports", "news", "travel"], rng.randint(0, 2)),
            "auction_timestamp": (
                BASE + timedelta(seconds=rng.randrange(4 * 86400), microseconds=rng.randrange(10**6))
            ).isoformat(),
        }
        if i % 3:  # two in three tagged by one experiment
            document |= {"experiment": "exp-a", "variant": "control" if i % 3 == 1 else "B"}
        batch.events.append((parse_document(document), writes.Position("t", 0, i)))
        rows.append(document)
    assert writes.write_batch(batch, consumer_group="t").stored == len(rows)
    return rows


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def random_window(rng: random.Random) -> dict:
    start = BASE + timedelta(
        seconds=rng.randrange(-3600, 3 * 86400), microseconds=rng.choice([0, rng.randrange(10**6)])
    )
    length = timedelta(seconds=rng.choice([rng.randrange(60, 7200), rng.randrange(7200, 4 * 86400), 4 * 86400]))
    return {"start": iso(start), "end": iso(start + length)}


REQUESTS = [
    ("stats/", {}),
    ("stats/", {"win_status": "true"}),
    ("stats/", {"site_domain": "a.example"}),
    ("stats/", {"currency": "eur", "enriched": "false"}),
    ("daily_stats/", {}),
    ("daily_stats/", {"site_domain": "b.example", "win_status": "false"}),
    ("timeseries/", {"granularity": "hour"}),
    ("timeseries/", {"granularity": "day", "tz": "Europe/Paris"}),
    ("timeseries/", {"granularity": "day", "tz": "Asia/Kathmandu", "site_domain": "c.example"}),
    ("breakdown/", {"by": "site_domain", "limit": 2}),
    ("breakdown/", {"by": "interest", "order": "win_rate"}),
    ("breakdown/", {"by": "currency", "win_status": "true"}),
    ("breakdown/", {"by": "enriched", "order": "outcomes"}),
    ("stats/", {"experiment": "exp-a"}),
    ("stats/", {"experiment": "exp-a", "variant": "B", "win_status": "true", "currency": "usd"}),
    ("daily_stats/", {"variant": "control"}),
    ("timeseries/", {"granularity": "hour", "experiment": "exp-a", "variant": "control"}),
    ("breakdown/", {"by": "variant", "experiment": "exp-a"}),
    ("breakdown/", {"by": "experiment", "order": "outcomes"}),
    ("histogram/", {"bins": 7}),
    ("histogram/", {"price": "bid_price", "win_status": "false"}),
    ("", {"page_size": 1}),
]


def raw_only(monkeypatch):
    """The same selectors with the router sending everything to the raw table."""
    for module in (reports, prices, lists):
        monkeypatch.setattr(module, "plan_for", lambda *args, **kwargs: None)


@pytest.mark.parametrize("clock", ["real", "inside"])
def test_random_windows_equal_the_raw_answer(stored, monkeypatch, clock):
    """``clock``: the planner's "now" is today (every window in the past: edges read raw, or
    trimmed where the rest of a bucket is cheaper), or each window's end (as a dashboard's
    window ends now: its last bucket read whole, the rows after "now" — there are some here —
    subtracted)."""
    rng = random.Random(f"1616{clock}")
    client = APIClient()
    answers = []
    sources = set()
    for _ in range(12):
        window = random_window(rng)
        if clock == "inside":
            monkeypatch.setattr(routing, "clock", lambda end=window["end"]: datetime.fromisoformat(end))
        for path, params in REQUESTS:
            if path == "timeseries/" and params["granularity"] == "hour":
                hours = (datetime.fromisoformat(window["end"]) - datetime.fromisoformat(window["start"])) / 3600
                if hours.total_seconds() > 2000:
                    continue
            response = client.get(f"/api/outcomes/{path}", {**params, **window})
            assert response.status_code == 200, (path, params, window, response.json())
            answers.append((path, params, window, response.json()))
            sources.add(response.get("X-Report-Source", "list"))
    # The windows were answered by rollups with raw edges and trims, not by the raw table.
    assert any(s.startswith("rollup:outcomes:day+hour+minute + raw edges") for s in sources), sources
    assert any(s.startswith("rollup:domain:") and "raw edges" in s for s in sources), sources
    assert any(s.startswith("rollup:experiment:hour") and "raw edges" in s for s in sources), sources
    assert any("raw trims" in s for s in sources), sources
    assert any(":all+" in s for s in sources), sources  # everything less what is outside
    raw_only(monkeypatch)
    for path, params, window, body in answers:
        response = client.get(f"/api/outcomes/{path}", {**params, **window})
        assert response.get("X-Report-Source", "raw").startswith("raw")
        assert response.json() == body, (path, params, window)


def test_reach_over_unaligned_windows_keeps_its_bound(stored):
    rng = random.Random(7)
    for _ in range(10):
        window = random_window(rng)
        response = APIClient().get("/api/outcomes/reach/", window)
        body = response.json()
        lo, hi = datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])
        users = {r["user_id"] for r in stored if lo <= datetime.fromisoformat(r["auction_timestamp"]) < hi}
        if response["X-Report-Source"] == "raw":  # no whole hour in the window: exact
            assert body["exact"] and body["reach"] == len(users)
            continue
        assert response["X-Report-Source"].startswith("rollup:reach:")
        assert body["lower_bound"] <= len(users) <= body["upper_bound"]
        assert abs(body["reach"] - len(users)) <= 3 * body["relative_standard_error"] * len(users)


def test_reach_counts_the_users_seen_only_in_the_edges(outcome_factory):
    # 30 users in the window's whole hours, 20 more only in its edges (seconds before the first
    # whole hour and after the last). Few users: the sketches hold them exactly (coupon mode).
    for i in range(30):
        outcome_factory(1, user_id=f"inner-{i}", auction_timestamp=BASE + timedelta(hours=2, minutes=i))
    for i in range(10):
        outcome_factory(1, user_id=f"early-{i}", auction_timestamp=BASE + timedelta(minutes=59, seconds=50 + i))
        outcome_factory(1, user_id=f"late-{i}", auction_timestamp=BASE + timedelta(hours=5, seconds=i))
    window = {"start": iso(BASE + timedelta(minutes=59, seconds=45)), "end": iso(BASE + timedelta(hours=5, seconds=10))}
    response = APIClient().get("/api/outcomes/reach/", window)
    # The early users come from the raw edge; the late ones from the last hour read whole (its
    # rest lies after the last stored outcome: checked empty).
    assert response["X-Report-Source"] == "rollup:reach:hour + raw edges 15 s - raw trims 3590 s"
    assert response.json()["reach"] == 50 and not response.json()["exact"]
    inner = {"start": iso(BASE + timedelta(hours=1)), "end": iso(BASE + timedelta(hours=5))}
    assert APIClient().get("/api/outcomes/reach/", inner).json()["reach"] == 30


def test_reach_reads_the_last_hour_whole_only_when_nobody_is_after_now(outcome_factory, monkeypatch):
    for i in range(30):
        outcome_factory(1, user_id=f"inner-{i}", auction_timestamp=BASE + timedelta(hours=2, minutes=i))
    for i in range(10):
        outcome_factory(1, user_id=f"late-{i}", auction_timestamp=BASE + timedelta(hours=5, seconds=i))
    end = BASE + timedelta(hours=5, seconds=10)
    monkeypatch.setattr(routing, "clock", lambda: end)  # the window ends "now"
    window = {"start": iso(BASE + timedelta(hours=1)), "end": iso(end)}
    response = APIClient().get("/api/outcomes/reach/", window)
    assert response["X-Report-Source"] == "rollup:reach:hour - raw trims 3590 s"  # hour 05 read whole
    assert response.json()["reach"] == 40
    # An outcome stored "after now" (a clock ahead of ours) is in that hour's sketch: the edge
    # is read raw instead, so it does not count.
    outcome_factory(1, user_id="from-the-future", auction_timestamp=BASE + timedelta(hours=5, minutes=30))
    response = APIClient().get("/api/outcomes/reach/", window)
    assert response["X-Report-Source"] == "rollup:reach:hour + raw edges 10 s"
    assert response.json()["reach"] == 40
