"""``/api/experiments/{key}/results/``: exact sums from the rollups (any window, by auction
and by user, converted or not), the statistics over them, and what it refuses; then the proof
on the real pipeline (Kafka → consumer → PostgreSQL → API) with data drawn from known
distributions: an A/A experiment, a B arm with a known effect, an arm that lost traffic."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from outcomes import inference
from outcomes.models import ExchangeRate, Experiment
from outcomes.queries import OutcomeQuery
from outcomes.queries.experiments import experiment_sums
from tests.factories import encode, message

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 10, 5, tzinfo=UTC)


def results(key: str, **params) -> dict:
    response = APIClient().get(f"/api/experiments/{key}/results/", params)
    assert response.status_code == 200, response.content
    return response.json()


def register(key: str = "shading-v2", unit: str = "auction", shares=(0.5, 0.5), **fields) -> Experiment:
    names = ["control", "B", "C"][: len(shares)]
    return Experiment.objects.create(
        key=key,
        name=fields.pop("name", "Shading v2"),
        unit=unit,
        variants=[{"name": n, "share": s} for n, s in zip(names, shares, strict=True)],
        primary_metric=fields.pop("primary_metric", "win_rate"),
        guardrail_metrics=fields.pop("guardrail_metrics", ["ecpm"]),
        **fields,
    )


def seed(outcome_factory, key="shading-v2", *, users=40, hours=30, rng=None):
    """Tagged outcomes spread over ``hours`` hours from T0 (minutes and seconds too), several
    per user, B winning more often at lower prices, in two currencies; and untagged ones."""
    rng = rng or random.Random(5)
    made = []
    for i in range(users * 3):
        user = f"user-{i % users}"
        variant = "B" if (i % users) % 2 else "control"
        won = rng.random() < (0.6 if variant == "B" else 0.45)
        bid = Decimal(rng.randint(50, 300)) / 100
        price = (bid * Decimal(rng.randint(60, 100)) / 100).quantize(Decimal("0.01")) if won else Decimal("0")
        made.append(
            dict(
                user_id=user,
                experiment=key,
                variant=variant,
                win_status=won,
                bid_price=bid,
                win_price=price,
                currency="EUR" if i % 7 == 0 else "USD",
                auction_timestamp=T0 + timedelta(seconds=rng.randint(0, hours * 3600)),
            )
        )
    outcome_factory.many(made)
    outcome_factory(5, auction_timestamp=T0 + timedelta(hours=2))


def raw_sums(query: OutcomeQuery, unit: str):
    """The same sums from the raw table only: a filter the rollups lack (every outcome matches it)."""
    return experiment_sums(query=replace(query, max_price=Decimal("99999999")), unit=unit)


@pytest.mark.parametrize("unit", ["auction", "user"])
def test_the_sums_equal_the_raw_rows_for_any_window(outcome_factory, unit):
    seed(outcome_factory)
    # user-0 is in control; one of its outcomes also says B (a bidder that reassigned it)
    outcome_factory(
        1, user_id="user-0", experiment="shading-v2", variant="B", auction_timestamp=T0 + timedelta(hours=5)
    )
    windows = [
        (None, None),
        (T0, T0 + timedelta(days=2)),
        (T0 + timedelta(hours=3, minutes=17, seconds=5), T0 + timedelta(hours=26, minutes=41)),
        (T0 + timedelta(minutes=90), None),
    ]
    for start, end in windows:
        query = OutcomeQuery(experiment="shading-v2", start=start, end=end)
        from_rollups, from_raw = experiment_sums(query=query, unit=unit), raw_sums(query, unit)
        assert from_rollups.source.startswith("rollup:experiment"), from_rollups.source
        assert from_raw.source == "raw"
        assert from_rollups.arms == from_raw.arms, (start, end)
        assert set(from_rollups.arms) == {"control", "B"}
        assert from_rollups.currencies == 2
        assert from_rollups.users_in_several_variants == from_raw.users_in_several_variants
        inside = (start or T0) <= T0 + timedelta(hours=5) < (end or T0 + timedelta(days=9))
        assert from_rollups.users_in_several_variants == (1 if unit == "user" and inside else 0)


def test_the_variants_figures_are_the_reports_figures(outcome_factory):
    seed(outcome_factory)
    register()
    answer = results("shading-v2", convert_to="none")
    assert answer["registered"] and answer["unit"] == "auction" and answer["control"] == "control"
    api = APIClient()
    for row in answer["variants"]:
        stats = api.get(
            "/api/outcomes/stats/", {"experiment": "shading-v2", "variant": row["variant"], "convert_to": "none"}
        ).json()
        assert row["outcomes"] == row["units"] == stats["total_outcomes"]
        assert row["wins"] == stats["total_wins"]
        assert row["win_rate"] == stats["win_rate"]
        assert row["revenue"] == stats["total_revenue"]
        assert row["ecpm"] == stats["ecpm"]
        assert row["shading_ratio"] == stats["shading_ratio"]
        assert row["planned_share"] == 0.5
    assert [c["metric"] for c in answer["comparisons"]][:2] == ["win_rate", "ecpm"]  # primary, guardrails, others
    assert {c["metric"] for c in answer["comparisons"]} == set(inference.RATIOS)
    assert answer["mixed_currencies"] and answer["currency"] is None
    assert "mixed_currencies" in {w["code"] for w in answer["warnings"]}
    assert "too_few_units" in {w["code"] for w in answer["warnings"]}


def test_by_user_the_units_are_users_and_money_can_be_converted(outcome_factory):
    seed(outcome_factory)
    register(unit="user")
    for day in range(3):
        ExchangeRate.objects.create(day=(T0 + timedelta(days=day)).date(), currency="USD", per_euro=Decimal("1.25"))
    answer = results("shading-v2", convert_to="EUR")
    assert answer["unit"] == "user" and answer["currency"] == "EUR" and not answer["mixed_currencies"]
    assert {row["variant"]: row["units"] for row in answer["variants"]} == {"control": 20, "B": 20}
    stats = APIClient().get("/api/outcomes/stats/", {"experiment": "shading-v2", "variant": "B"}).json()
    converted = (
        APIClient()
        .get("/api/outcomes/stats/", {"experiment": "shading-v2", "variant": "B", "convert_to": "EUR"})
        .json()
    )
    b = next(row for row in answer["variants"] if row["variant"] == "B")
    assert b["revenue"] == converted["total_revenue"] != stats["total_revenue"]
    assert "mixed_currencies" not in {w["code"] for w in answer["warnings"]}
    missing = APIClient().get("/api/experiments/shading-v2/results/", {"convert_to": "GBP"})
    assert missing.status_code == 409 and missing.json()["convert_to"]


def test_the_plan_gives_the_default_window_and_the_shares(outcome_factory):
    seed(outcome_factory)
    register(start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=5), shares=(3, 1))
    answer = results("shading-v2", convert_to="none")
    assert answer["start"] == "2026-10-05T01:00:00Z" and answer["end"] == "2026-10-05T05:00:00Z"
    window = OutcomeQuery(experiment="shading-v2", start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=5))
    sums = raw_sums(window, "auction")
    assert {row["variant"]: row["outcomes"] for row in answer["variants"]} == {
        name: arm.units for name, arm in sums.arms.items()
    }
    assert {row["variant"]: row["planned_share"] for row in answer["variants"]} == {"control": 0.75, "B": 0.25}
    assert answer["srm"]["expected"]["control"] == pytest.approx(0.75 * sum(a.units for a in sums.arms.values()))
    wider = results("shading-v2", convert_to="none", start="2026-10-05T00:00:00Z")
    assert wider["end"] is None and sum(v["outcomes"] for v in wider["variants"]) == 120


def test_an_unregistered_experiment_is_answered_and_marked(outcome_factory):
    seed(outcome_factory, key="bidder-x")
    answer = results("bidder-x")
    assert not answer["registered"] and answer["name"] is None and answer["srm"] is None
    assert answer["control"] == "control"
    assert "unregistered" in {w["code"] for w in answer["warnings"]}
    nothing = APIClient().get("/api/experiments/never-seen/results/")
    assert nothing.status_code == 404 and "no outcome in this window carries it" in nothing.json()["detail"]
    registered = register("planned-only")
    assert results(registered.key)["variants"][0]["outcomes"] == 0  # registered, no data yet: answered


def test_a_planned_variant_without_data_and_an_unplanned_one_are_warned_about(outcome_factory):
    seed(outcome_factory)
    register(shares=(1, 1, 1))
    outcome_factory(2, experiment="shading-v2", variant="D", auction_timestamp=T0)
    answer = results("shading-v2", convert_to="none")
    codes = {w["code"] for w in answer["warnings"]}
    assert {"variant_without_data", "unplanned_variant"} <= codes
    assert [row["variant"] for row in answer["variants"]] == ["control", "B", "C", "D"]
    assert next(row for row in answer["variants"] if row["variant"] == "C")["outcomes"] == 0


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"variant": "B"}, "variant", "compare every variant"),
        ({"experiment": "x"}, "experiment", "the one in the path"),
        ({"win_status": "true"}, "win_status", "win rate is one of the metrics"),
        ({"confidence": "1.5"}, "confidence", "less than or equal to 0.999"),
        ({"inference": "bayes"}, "inference", "not a valid choice"),
        ({"convert_to": "EURO"}, "convert_to", ""),
        ({"site": "x"}, "site", "Unknown query parameter"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(params, field, says):
    response = APIClient().get("/api/experiments/shading-v2/results/", params)
    assert response.status_code == 400, response.content
    assert says in str(response.json()[field])


def test_a_key_that_is_no_slug_is_not_found():
    assert APIClient().get("/api/experiments/a%20b/results/").status_code == 404


def test_results_follow_a_plan_change(outcome_factory):
    seed(outcome_factory)
    experiment = register()
    first = results("shading-v2", convert_to="none")
    experiment.primary_metric = "ecpm"
    experiment.guardrail_metrics = []
    experiment.save()
    second = results("shading-v2", convert_to="none")
    assert first["comparisons"][0]["metric"] == "win_rate" and second["comparisons"][0]["metric"] == "ecpm"


# ---------------------------------------------------------------------------- the real pipeline
def draw(rng: random.Random, key: str, variant: str, users: int, n: int, *, win: float, price: float) -> list[bytes]:
    """``n`` outcomes of one arm: won with probability ``win``, bids uniform on [0.5, 2.0),
    the price paid ``price`` of the bid on average (uniform ±20%)."""
    out = []
    for _ in range(n):
        won = rng.random() < win
        bid = round(rng.uniform(0.5, 2.0), 2)
        paid = round(bid * price * rng.uniform(0.8, 1.2), 2) if won else 0.0
        when = T0 + timedelta(seconds=rng.randrange(7 * 86400))
        out.append(
            encode(
                message(
                    user_id=f"u{rng.randrange(users)}",
                    win_status=won,
                    bid_price=bid,
                    win_price=paid,
                    currency="USD",
                    auction_timestamp=when.isoformat().replace("+00:00", "Z"),
                    experiment=key,
                    variant=variant,
                )
            )
        )
    return out


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # the consumer commits: the rows are removed after
def test_known_effects_through_kafka_and_the_consumer(make_topic, produce, consumer_settings, run_consumer):
    """A/A: no interval excludes 0 and no mismatch. B wins 50% → 56% of auctions and pays 0.7 →
    0.6 of its bid: the intervals contain the true differences and exclude 0. An arm that
    lost 5% of its outcomes: the sample-ratio check flags it."""
    rng = random.Random(20261202)
    per_arm = 8_000
    stream = [
        *draw(rng, "aa", "control", 50_000, per_arm, win=0.5, price=0.7),
        *draw(rng, "aa", "B", 50_000, per_arm, win=0.5, price=0.7),
        *draw(rng, "lift", "control", 50_000, per_arm, win=0.5, price=0.7),
        *draw(rng, "lift", "B", 50_000, per_arm, win=0.56, price=0.6),
        *draw(rng, "leaky", "control", 50_000, 20_000, win=0.5, price=0.7),
        *draw(rng, "leaky", "B", 50_000, 19_000, win=0.5, price=0.7),
    ]
    rng.shuffle(stream)
    for key in ("aa", "lift", "leaky"):
        register(key, primary_metric="win_rate", guardrail_metrics=["avg_win_price", "ecpm"])
    topic = make_topic(4)
    produce(topic, stream)
    # No compaction beside it: the answers are exact either way, and a merge still running when
    # the consumer stops would hold the tables the test's clean-up truncates.
    config = consumer_settings(topic, batch_size=5000, rollup_compact_seconds=0)
    summary = run_consumer(config, max_messages=len(stream), timeout_ms=30000)
    assert summary.stored == len(stream), summary

    aa = results("aa")
    assert not aa["srm"]["mismatch"]
    assert all(c["ci_low"] < 0 < c["ci_high"] and not c["significant"] for c in aa["comparisons"]), aa["comparisons"]
    assert not any(w["code"] == "sample_ratio_mismatch" for w in aa["warnings"])

    for inference_method in ("sequential", "fixed"):
        lift = {c["metric"]: c for c in results("lift", inference=inference_method)["comparisons"]}
        win_rate = lift["win_rate"]  # percentage points: 56 − 50
        assert win_rate["ci_low"] < 6.0 < win_rate["ci_high"] and win_rate["ci_low"] > 0, win_rate
        price = lift["avg_win_price"]  # E[paid] = 1.25 × 0.6 − 1.25 × 0.7
        assert price["ci_low"] < -0.125 < price["ci_high"] and price["ci_high"] < 0, price
        ecpm = lift["ecpm"]  # a thousand won impressions' revenue
        assert ecpm["ci_low"] < -125 < ecpm["ci_high"] and ecpm["ci_high"] < 0, ecpm
        assert price["relative_lift_ci_low"] < -1 / 7 < price["relative_lift_ci_high"]
        assert win_rate["method"] == ("newcombe" if inference_method == "fixed" else "confidence-sequence")

    leaky = results("leaky")
    assert leaky["srm"]["mismatch"] and leaky["srm"]["p_value"] < 0.001
    assert leaky["srm"]["observed"] == {"control": 20_000, "B": 19_000}
    assert "sample_ratio_mismatch" in {w["code"] for w in leaky["warnings"]}
