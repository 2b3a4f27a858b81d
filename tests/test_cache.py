"""The snapshot cache (outcomes/cache.py): repeated reads are answered from memory, and
never after a commit that could change them."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from outcomes import cache


def get(path: str, params: dict | None = None):
    return APIClient().get(f"/api/outcomes/{path}", params or {})


def hit_after_miss(path: str, params: dict | None = None):
    """Ask twice; the second answer comes from the cache unless something committed in
    between (autovacuum's ANALYZE can): then try again."""
    for _ in range(5):
        first, second = get(path, params), get(path, params)
        assert first.status_code == second.status_code == 200
        assert first["X-Cache"] in ("MISS", "HIT")
        if second["X-Cache"] == "HIT":
            return first, second
    pytest.fail(f"{path} was never answered from the cache")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("stats/", {}),
        ("stats/", {"site_domain": "news.example"}),
        ("daily_stats/", {}),
        ("breakdown/", {"by": "currency"}),
        ("timeseries/", {"granularity": "hour", "start": "2025-10-25T00:00:00Z", "end": "2025-10-26T00:00:00Z"}),
        ("histogram/", {"price": "bid_price"}),
        ("reach/", {}),
        ("", {}),
        ("winners/", {"ordering": "-win_price"}),
    ],
)
def test_a_repeated_read_is_answered_from_the_cache_and_a_commit_invalidates_it(outcome_factory, path, params):
    outcome_factory(n=3)
    first, second = hit_after_miss(path, params)
    assert second.content == first.content
    assert second.get("X-Report-Source") == first.get("X-Report-Source")

    outcome_factory(n=2, user_id="user-2", win_price=Decimal("1.50"), bid_price=Decimal("2.00"))  # committed
    after = get(path, params)
    assert after["X-Cache"] == "MISS"
    assert after.content != first.content


@pytest.mark.django_db(transaction=True)
def test_the_new_answer_counts_what_was_committed(outcome_factory):
    outcome_factory(n=3)
    hit_after_miss("stats/")
    outcome_factory(n=4, win_status=False, win_price=None)
    assert get("stats/").json()["total_outcomes"] == 7


@pytest.mark.django_db(transaction=True)
def test_retrieve_is_cached_and_sees_a_delete(outcome_factory):
    from outcomes import writes

    (row,) = outcome_factory()
    hit_after_miss(f"{row.id}/")
    writes.outcomes_delete(ids=[row.id])
    assert get(f"{row.id}/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_time_series_ending_now_is_never_cached(outcome_factory):
    outcome_factory()
    for _ in range(2):
        assert get("timeseries/", {"granularity": "hour"})["X-Cache"] == "BYPASS"


@pytest.mark.django_db(transaction=True)
def test_errors_are_not_cached(outcome_factory):
    outcome_factory()
    for _ in range(2):
        response = get("stats/", {"win_status": "maybe"})
        assert response.status_code == 400
        assert "X-Cache" not in response


def test_inside_a_transaction_the_cache_is_bypassed(outcome_factory):
    # pytest-django's `db` runs the test in a transaction: its own writes do not move the
    # snapshot, so a cached answer could hide them.
    outcome_factory(n=2)
    assert get("stats/")["X-Cache"] == "BYPASS"
    outcome_factory(n=1)
    response = get("stats/")
    assert response["X-Cache"] == "BYPASS" and response.json()["total_outcomes"] == 3


@pytest.mark.django_db(transaction=True)
def test_the_cache_holds_at_most_its_bytes(outcome_factory, monkeypatch):
    outcome_factory()
    one = len(get("stats/", {"site_domain": "x.example"}).content)
    monkeypatch.setattr(cache.answers, "max_bytes", 8 * one + 4)  # room for 8 answers of that size
    cache.answers.clear()
    for i in range(10):  # same-length domains: same-length answers
        assert get("stats/", {"site_domain": f"{i}.example"}).status_code == 200
    assert len(cache.answers._answers) == 8 and cache.answers.size <= cache.answers.max_bytes
    assert get("stats/", {"site_domain": "0.example"})["X-Cache"] == "MISS"  # the oldest went first
    assert get("stats/", {"site_domain": "9.example"})["X-Cache"] == "HIT"
    monkeypatch.setattr(cache.answers, "max_bytes", 2 * one + 1)  # an answer over an eighth: not kept
    cache.answers.clear()
    assert get("stats/", {"site_domain": "d.example"})["X-Cache"] == "MISS"
    assert cache.answers.size == 0
    # What is kept is the bytes sent: a hit is the same body.
    monkeypatch.setattr(cache.answers, "max_bytes", 10**6)
    first, second = (get("stats/", {"site_domain": "e.example"}) for _ in range(2))
    assert second["X-Cache"] == "HIT" and first.content == second.content
    assert second["Content-Type"] == "application/json" and second["X-Report-Source"] == first["X-Report-Source"]


@pytest.mark.django_db(transaction=True)
def test_size_zero_turns_it_off(outcome_factory, monkeypatch):
    outcome_factory()
    monkeypatch.setattr(cache.answers, "max_bytes", 0)
    assert [get("stats/")["X-Cache"] for _ in range(2)] == ["BYPASS", "BYPASS"]


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_died_between_requests_is_replaced_not_a_500(outcome_factory):
    outcome_factory()
    assert get("stats/").status_code == 200
    pid = connection.connection.info.backend_pid
    db = settings.DATABASES["default"]
    credentials = {"host": db["HOST"], "port": db["PORT"], "user": db["USER"], "password": db["PASSWORD"]}
    killer = psycopg.connect(dbname=connection.settings_dict["NAME"], **credentials)
    killer.autocommit = True
    with killer.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    killer.close()

    response = get("stats/")
    assert response.status_code == 200 and response.json()["total_outcomes"] == 1
    assert connection.connection.info.backend_pid != pid
