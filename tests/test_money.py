"""Money in one currency: reference rates (ECB files), and reports converting money at the
rate of each auction's UTC day, exactly, from the rollups as from the raw table."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from outcomes import writes
from outcomes.models import ExchangeRate
from outcomes.money import MissingRate, RateTable, parse_ecb_csv, rate_value
from tests.factories import parse_document

# ---------------------------------------------------------------------------- pure
HISTORY = """Date,USD,JPY,BGN,CYP,GBP,
2026-10-13,1.0800,160.12,1.9558,N/A,0.8400,
2026-10-12,1.0900,161.00,1.9558,N/A,0.8500,
2026-10-09,1.1000,159.50,1.9558,N/A,0.8600,
"""
DAILY = """Date, USD, JPY, GBP, \n13 October 2026, 1.0800, 160.12, 0.8400, \n"""


@pytest.mark.fast
def test_both_ecb_layouts_read_as_the_same_rates():
    history = parse_ecb_csv(HISTORY)
    assert (date(2026, 10, 13), "USD", Decimal("1.08")) in history
    assert (date(2026, 10, 9), "GBP", Decimal("0.86")) in history
    assert not [rate for rate in history if rate[1] == "CYP"]  # N/A: no rate that day
    assert len(history) == 12
    daily = parse_ecb_csv(DAILY)
    assert sorted(daily) == sorted(r for r in history if r[0] == date(2026, 10, 13) and r[1] != "BGN")


@pytest.mark.fast
@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "line 1: the header must start with 'Date'"),
        ("Day,USD\n2026-10-13,1.08\n", "line 1: the header must start with 'Date'"),
        ("Date,US\n2026-10-13,1.08\n", "line 1, column 2"),
        ("Date,USD\n13/10/2026,1.08\n", "line 2: '13/10/2026' is not a date"),
        ("Date,USD\n2026-10-13,1.08\n2026-10-12,abc\n", "line 3, USD: 'abc' is not a number"),
        ("Date,USD\n2026-10-13,-1\n", "line 2, USD: a rate must be a positive number"),
        ("Date,USD\n2026-10-13,N/A\n", "the file holds no rate"),
    ],
)
def test_a_malformed_rate_file_says_where(text, says):
    with pytest.raises(ValueError, match=r"^" + says.replace("(", r"\(").replace(")", r"\)")):
        parse_ecb_csv(text)


@pytest.mark.fast
def test_a_rate_fits_the_stored_column():
    assert rate_value("1.123456789") == Decimal("1.12345679")
    with pytest.raises(ValueError, match="rounds to zero"):
        rate_value("0.000000001")
    with pytest.raises(ValueError, match="too large"):
        rate_value("12345678901")


@pytest.mark.fast
def test_a_day_without_a_rate_takes_the_latest_within_a_week_and_no_older():
    table = RateTable(parse_ecb_csv(HISTORY))
    saturday, sunday = date(2026, 10, 10), date(2026, 10, 11)
    assert table.per_euro("USD", saturday) == table.per_euro("USD", sunday) == Decimal("1.1000")
    assert table.per_euro("EUR", date(1999, 1, 1)) == 1
    assert table.factor("GBP", "USD", date(2026, 10, 12)) == Decimal("1.0900") / Decimal("0.8500")
    assert table.factor("JPY", "JPY", date(1999, 1, 1)) == 1  # no rate needed
    assert table.per_euro("USD", date(2026, 10, 20)) == Decimal("1.08")  # 7 days after the last
    with pytest.raises(MissingRate, match=r"no exchange rate for USD on 2026-10-21 \(nor in the 7 days before\)"):
        table.per_euro("USD", date(2026, 10, 21))
    with pytest.raises(MissingRate, match="CHF on 2026-10-12"):
        table.factor("CHF", "USD", date(2026, 10, 12))


# ---------------------------------------------------------------------------- the command
@pytest.mark.django_db
def test_load_fx_rates_stores_replaces_and_refuses_a_bad_file_whole(tmp_path, capsys):
    path = tmp_path / "eurofxref-hist.csv"
    path.write_text(HISTORY)
    call_command("load_fx_rates", str(path))
    assert (
        "loaded 12 rates (12 new, 0 replaced) of 4 currencies from 2026-10-09 to 2026-10-13" in capsys.readouterr().out
    )
    assert ExchangeRate.objects.get(currency="GBP", day=date(2026, 10, 12)).per_euro == Decimal("0.85")
    path.write_text("Date,GBP\n2026-10-12,0.8555\n2026-10-14,0.8300\n")
    call_command("load_fx_rates", str(path))
    assert "(1 new, 1 replaced)" in capsys.readouterr().out
    assert ExchangeRate.objects.get(currency="GBP", day=date(2026, 10, 12)).per_euro == Decimal("0.8555")
    assert ExchangeRate.objects.count() == 13
    path.write_text("Date,GBP\n2026-10-15,0.8300\n2026-10-16,zero\n")
    with pytest.raises(CommandError, match="line 3, GBP: 'zero' is not a number"):
        call_command("load_fx_rates", str(path))
    assert not ExchangeRate.objects.filter(day=date(2026, 10, 15)).exists()  # nothing of a bad file
    with pytest.raises(CommandError, match="cannot read"):
        call_command("load_fx_rates", str(tmp_path / "missing.csv"))


# ---------------------------------------------------------------------------- reports
BASE = datetime(2026, 10, 9, tzinfo=UTC)  # a Friday: the weekend takes Friday's rates
DAYS = 4
RATES = {  # units per euro, by day offset; none on the weekend (days 1 and 2)
    0: {"USD": "1.1000", "GBP": "0.8600", "JPY": "159.50"},
    3: {"USD": "1.0900", "GBP": "0.8500", "JPY": "161.00"},
}
DOMAINS = ["a.example", "b.example", "c.example", None]


@pytest.fixture
def rated(db):
    for offset, quotes in RATES.items():
        for currency, rate in quotes.items():
            ExchangeRate.objects.create(day=(BASE + timedelta(days=offset)).date(), currency=currency, per_euro=rate)
    return RateTable(
        [(r.day, r.currency, r.per_euro) for r in ExchangeRate.objects.all()],
    )


@pytest.fixture
def stored(db):
    rng = random.Random(19)
    batch = writes.Batch()
    rows = []
    for i in range(1500):
        won = rng.random() < 0.7
        bid = Decimal(rng.randint(1, 500)) / 100
        document = {
            "bid_id": f"m-{i}",
            "user_id": f"user-{rng.randint(1, 300)}",
            "site_domain": rng.choice(DOMAINS),
            "win_status": won,
            "bid_price": str(bid),
            "win_price": str((bid * Decimal(rng.choice(["0.6", "0.9", "1"]))).quantize(Decimal("0.01")) if won else 0),
            "currency": rng.choice(["USD", "EUR", "GBP", "JPY"]),
            "enriched": rng.random() < 0.8,
            "user_interests": rng.sample(["sports", "news"], rng.randint(0, 2)),
            "auction_timestamp": (
                BASE + timedelta(seconds=rng.randrange(DAYS * 86400), microseconds=rng.randrange(10**6))
            ).isoformat(),
        }
        batch.events.append((parse_document(document), writes.Position("m", 0, i)))
        rows.append(document)
    assert writes.write_batch(batch, consumer_group="m").stored == len(rows)
    return rows


def expected(rows, table: RateTable, target: str, **where) -> dict:
    """The stats' money figures computed here, one outcome at a time."""
    start, end = where.pop("start", None), where.pop("end", None)
    revenue = bids = won_bids = Decimal(0)
    outcomes = wins = 0
    for row in rows:
        moment = datetime.fromisoformat(row["auction_timestamp"])
        if (start and moment < start) or (end and moment >= end):
            continue
        if any(row.get(name) != value for name, value in where.items()):
            continue
        factor = table.factor(row["currency"], target, moment.date())
        outcomes += 1
        bids += Decimal(row["bid_price"]) * factor
        if row["win_status"]:
            wins += 1
            revenue += Decimal(row["win_price"]) * factor
            won_bids += Decimal(row["bid_price"]) * factor
    return {
        "total_outcomes": outcomes,
        "total_wins": wins,
        "total_revenue": float(round(revenue, 2)),
        "average_win_price": float(round(revenue / wins, 4)),
        "average_bid_price": float(round(bids / outcomes, 4)),
        "shading_ratio": float(round(revenue / won_bids, 4)),
    }


def get(path: str, **params):
    return APIClient().get(f"/api/outcomes/{path}", params)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("target", ["USD", "EUR", "jpy"])
@pytest.mark.parametrize(
    "window",
    [
        {},  # every day: rollups
        {"start": BASE + timedelta(hours=5, seconds=7), "end": BASE + timedelta(days=3, hours=2, seconds=31)},  # edges
    ],
    ids=["all", "edges"],
)
@pytest.mark.parametrize("where", [{}, {"site_domain": "a.example"}, {"win_status": True}], ids=str)
def test_stats_convert_each_outcome_at_its_days_rate(stored, rated, target, window, where):
    params = {k: iso(v) for k, v in window.items()} | {k: str(v).lower() for k, v in where.items()}
    body = get("stats/", convert_to=target, **params).json()
    want = expected(stored, rated, target.upper(), **window, **where)
    assert body["currency"] == target.upper() and body["mixed_currencies"] is False
    for name, value in want.items():
        assert body[name] == value, (name, body[name], value)


def test_reports_name_their_currency_and_stay_unconverted_by_default(stored, rated):
    plain = get("stats/").json()
    assert plain["currency"] is None and plain["mixed_currencies"] is True  # USD, EUR, GBP and JPY added
    assert get("stats/", convert_to="none").json() == plain
    window = {"start": iso(BASE), "end": iso(BASE + timedelta(days=DAYS))}
    for path, extra in [("daily_stats/", {}), ("timeseries/", window), ("breakdown/", {"by": "site_domain"})]:
        body = get(path, **extra).json()
        for answer in body if isinstance(body, list) else [body]:
            assert answer["currency"] is None and answer["mixed_currencies"] is True, path
    one = get("stats/", currency="gbp").json()
    assert one["currency"] == "GBP" and one["mixed_currencies"] is False
    jpy_only = get("breakdown/", by="site_domain", currency="JPY").json()
    assert jpy_only["currency"] == "JPY" and not jpy_only["mixed_currencies"]
    converted = get("stats/", convert_to="EUR").json()
    assert converted["total_outcomes"] == plain["total_outcomes"]
    assert converted["total_revenue"] != plain["total_revenue"]


def test_reporting_currency_is_the_default_target(stored, rated, settings):
    settings.REPORTING_CURRENCY = "GBP"
    body = get("stats/").json()
    assert body["currency"] == "GBP"
    assert body["total_revenue"] == expected(stored, rated, "GBP")["total_revenue"]
    assert get("stats/", convert_to="none").json()["mixed_currencies"] is True


def test_daily_series_and_breakdown_add_up_to_the_converted_total(stored, rated):
    total = get("stats/", convert_to="USD").json()["total_revenue"]
    days = get("daily_stats/", convert_to="USD").json()
    assert {day["currency"] for day in days} == {"USD"}
    assert sum(day["total_revenue"] for day in days) == pytest.approx(total, abs=0.01 * len(days))
    for day in days:
        start = datetime.fromisoformat(day["date"]).replace(tzinfo=UTC)
        want = expected(stored, rated, "USD", start=start, end=start + timedelta(days=1))
        assert day["total_revenue"] == want["total_revenue"]
    series = get(
        "timeseries/", convert_to="USD", granularity="hour", start=iso(BASE), end=iso(BASE + timedelta(days=DAYS))
    ).json()
    assert series["currency"] == "USD"
    assert sum(bucket["revenue"] for bucket in series["buckets"]) == pytest.approx(total, abs=0.01 * 96)
    for by in ("site_domain", "currency", "interest"):
        breakdown = get("breakdown/", by=by, convert_to="USD", limit=2).json()
        assert breakdown["currency"] == "USD"
        if by != "interest":  # interests count an outcome once per interest
            assert breakdown["total"]["revenue"] == total
        revenues = [row["revenue"] for row in breakdown["rows"]]
        assert revenues == sorted(revenues, reverse=True)  # ranked by converted revenue


def test_a_domain_ranking_follows_the_converted_revenue(db, rated, outcome_factory):
    day = BASE + timedelta(hours=12)
    outcome_factory(
        1,
        site_domain="yen.example",
        currency="JPY",
        win_price=Decimal("100.00"),
        bid_price=Decimal("100.00"),
        auction_timestamp=day,
    )
    outcome_factory(
        1,
        site_domain="euro.example",
        currency="EUR",
        win_price=Decimal("2.00"),
        bid_price=Decimal("2.00"),
        auction_timestamp=day,
    )
    unconverted = get("breakdown/", by="site_domain", convert_to="none").json()
    assert [row["site_domain"] for row in unconverted["rows"]] == ["yen.example", "euro.example"]
    converted = get("breakdown/", by="site_domain", convert_to="EUR").json()
    assert [row["site_domain"] for row in converted["rows"]] == ["euro.example", "yen.example"]
    assert converted["rows"][1]["revenue"] == float(round(Decimal("100") / Decimal("159.50"), 2))


def test_a_missing_rate_is_a_409_naming_the_day_and_currency(db, rated, outcome_factory):
    late = BASE + timedelta(days=11, hours=1)  # 8 days after the last rate
    outcome_factory(1, currency="GBP", auction_timestamp=late)
    for path, extra in [("stats/", {}), ("daily_stats/", {}), ("breakdown/", {"by": "site_domain"})]:
        response = get(path, convert_to="USD", **extra)
        assert response.status_code == 409, response.content
        body = response.json()
        assert body["missing_rate"] == {"day": "2026-10-20", "currency": "GBP"}, body
        assert "no exchange rate for GBP on 2026-10-20" in body["convert_to"][0]
    assert get("stats/", convert_to="GBP").status_code == 200  # no rate needed to stay in GBP
    assert get("stats/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["US", "dollars", "U$D", "12"])
def test_a_bad_target_currency_is_a_400_naming_convert_to(value):
    response = get("stats/", convert_to=value)
    assert response.status_code == 400
    assert "convert_to" in response.json()
    assert "or none for no conversion" in response.json()["convert_to"][0]


@pytest.mark.django_db
def test_reports_without_money_do_not_take_convert_to():
    response = get("reach/", convert_to="USD")
    assert response.status_code == 400
    assert "Unknown query parameter" in response.json()["convert_to"][0]
