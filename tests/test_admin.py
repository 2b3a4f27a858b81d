"""Django admin pages for outcomes and dead letters."""

import pytest
from django.contrib.auth.models import User

from outcomes.models import DeadLetter

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_outcome_changelist_filters_and_exact_search(admin_client, outcome_factory, django_assert_max_num_queries):
    outcome_factory(3, user_id="alice", currency="EUR")
    outcome_factory(2, user_id="bob", win_status=False)
    page = admin_client.get("/admin/outcomes/auctionoutcome/")
    assert page.status_code == 200
    content = page.content.decode()
    for column in ("Bid id", "Auction time", "User id", "Site domain", "Result", "Bid price", "Currency", "Stored"):
        assert column in content
    assert "won at 0.80" in content and "lost" in content
    assert admin_client.get("/admin/outcomes/auctionoutcome/?q=alice").context["cl"].result_count == 3
    assert admin_client.get("/admin/outcomes/auctionoutcome/?q=ali").context["cl"].result_count == 0  # exact only
    assert admin_client.get("/admin/outcomes/auctionoutcome/?win_status__exact=0").context["cl"].result_count == 2
    assert admin_client.get("/admin/outcomes/auctionoutcome/?currency=EUR").context["cl"].result_count == 3
    assert admin_client.get("/admin/outcomes/auctionoutcome/?enriched__exact=1").status_code == 200
    # Dates filter by auction (event) time; the factory's outcomes ran on 2025-10-25.
    day = "event_time__gte=2025-10-25T00:00:00%2B00:00&event_time__lt=2025-10-26T00:00:00%2B00:00"
    by_event = f"/admin/outcomes/auctionoutcome/?{day}"
    assert admin_client.get(by_event).context["cl"].result_count == 5
    later = "/admin/outcomes/auctionoutcome/?event_time__gte=2025-10-26T00:00:00%2B00:00"
    assert admin_client.get(later).context["cl"].result_count == 0
    with django_assert_max_num_queries(8):
        admin_client.get("/admin/outcomes/auctionoutcome/")


def test_outcome_change_page_shows_raw_data_read_only(admin_client, outcome_factory):
    (row,) = outcome_factory(1, raw_data={"bid_request_id": "x", "note": "kept as received"})
    page = admin_client.get(f"/admin/outcomes/auctionoutcome/{row.id}/change/")
    assert page.status_code == 200
    assert "kept as received" in page.content.decode()
    assert 'name="raw_data"' not in page.content.decode()


def test_dead_letters_are_browsable_and_read_only(admin_client):
    letter = DeadLetter.objects.create(
        topic="t", partition=0, offset=7, value=b"\xffbad", reason="invalid_json", detail="message is not valid JSON"
    )
    page = admin_client.get("/admin/outcomes/deadletter/?reason=invalid_json&replayed=no")
    content = page.content.decode()
    assert page.status_code == 200 and "message is not valid JSON" in content
    # The code, as replay_dead_letters --reason takes it, with the label as help.
    assert '<code title="Not JSON">invalid_json</code>' in content
    assert "invalid_json — Not JSON" in content  # the filter
    assert "Not replayed" in content and "Not empty" not in content
    assert admin_client.get("/admin/outcomes/deadletter/?replayed=yes").context["cl"].result_count == 0
    detail = admin_client.get(f"/admin/outcomes/deadletter/{letter.id}/change/").content.decode()
    assert "\\xffbad" in detail and "invalid_json" in detail
    assert admin_client.get("/admin/outcomes/deadletter/add/").status_code == 403


def test_unfiltered_count_uses_the_estimate_on_big_tables(admin_client, outcome_factory, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from outcomes.admin import EstimatedCountPaginator

    outcome_factory(30)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outcomes_auctionoutcome")
    monkeypatch.setattr(EstimatedCountPaginator, "estimate_threshold", 10)  # as if 30 rows were millions
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get("/admin/outcomes/auctionoutcome/")
    assert page.context["cl"].result_count == 30  # the planner's estimate, exact right after ANALYZE
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "reltuples" in sql
    assert "COUNT(*)" not in sql.upper()
    # Said to be an estimate, once (the search bar does not repeat it as "30 results").
    content = page.content.decode()
    assert "about 30 auction outcomes (estimate)" in content
    assert "30 results" not in content
    # A filtered list counts for real.
    assert admin_client.get("/admin/outcomes/auctionoutcome/?q=user-1").context["cl"].result_count == 30


def test_an_exact_count_is_shown_with_thousands_separators(admin_client, outcome_factory, monkeypatch):
    from outcomes.admin import EstimatedCountPaginator

    monkeypatch.setattr(EstimatedCountPaginator, "estimate_threshold", 10**9)
    outcome_factory(1)
    content = admin_client.get("/admin/outcomes/auctionoutcome/").content.decode()
    assert "1 auction outcome<" in content and "(estimate)" not in content
    from django.template.defaultfilters import floatformat

    assert floatformat(1234567, "0g") == "1,234,567"


def test_times_read_the_same_on_lists_and_detail_pages(admin_client, outcome_factory):
    from datetime import UTC, datetime

    (row,) = outcome_factory(1, auction_timestamp=datetime(2026, 12, 2, 14, 25, 7, tzinfo=UTC))
    listed = admin_client.get("/admin/outcomes/auctionoutcome/").content.decode()
    assert "2026-12-02 14:25:07 UTC" in listed
    stored = row.timestamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert stored in listed
    detail = admin_client.get(f"/admin/outcomes/auctionoutcome/{row.id}/change/").content.decode()
    assert stored in detail  # the stored time, as the list shows it (not "Dec. 2, 2026, 2:25 p.m.")
    assert "p.m." not in detail and "a.m." not in detail


def test_outcomes_are_read_only_and_deleting_keeps_the_rollups_exact(admin_client, outcome_factory):
    from outcomes import rollups
    from outcomes.models import AuctionOutcome, OutcomeRollupDay

    rows = outcome_factory(3)
    page = admin_client.get(f"/admin/outcomes/auctionoutcome/{rows[0].id}/change/")
    assert page.status_code == 200
    assert 'name="win_price"' not in page.content.decode()  # no form fields: nothing to edit
    before = AuctionOutcome.objects.get(pk=rows[0].pk)
    response = admin_client.post(
        f"/admin/outcomes/auctionoutcome/{rows[0].id}/change/",
        {"win_status": "on", "win_price": "5.00", "bid_price": "0.50", "currency": "usd"},
    )
    assert response.status_code == 403  # a change (even a no-change save) is refused, nothing written
    after = AuctionOutcome.objects.get(pk=rows[0].pk)
    assert (after.win_price, after.currency, after.updated_at, after.auction_timestamp) == (
        before.win_price,
        before.currency,
        before.updated_at,
        before.auction_timestamp,
    )
    assert admin_client.get("/admin/outcomes/auctionoutcome/add/").status_code == 403
    response = admin_client.post(
        "/admin/outcomes/auctionoutcome/",
        {"action": "delete_selected", "_selected_action": [rows[0].id, rows[1].id], "post": "yes"},
    )
    assert response.status_code == 302
    assert list(AuctionOutcome.objects.values_list("id", flat=True)) == [rows[2].id]
    assert sum(OutcomeRollupDay.objects.values_list("outcomes", flat=True)) == 1
    admin_client.post(f"/admin/outcomes/auctionoutcome/{rows[2].id}/delete/", {"post": "yes"})
    assert not AuctionOutcome.objects.exists()
    assert rollups.verify() == []


def test_times_show_seconds(admin_client, outcome_factory):
    from datetime import UTC, datetime

    outcome_factory(1, auction_timestamp=datetime(2026, 3, 1, 12, 34, 56, tzinfo=UTC))
    assert "2026-03-01 12:34:56" in admin_client.get("/admin/outcomes/auctionoutcome/").content.decode()


def test_replay_selected_runs_the_replay_service(admin_client):
    from outcomes.models import AuctionOutcome
    from tests.factories import encode, message

    fixed = DeadLetter.objects.create(
        topic="t", partition=0, offset=1, value=encode(message(bid_request_id="replayed-1")), reason="invalid_json"
    )
    broken = DeadLetter.objects.create(topic="t", partition=0, offset=2, value=b"{nope", reason="invalid_json")
    untouched = DeadLetter.objects.create(
        topic="t", partition=0, offset=3, value=encode(message(bid_request_id="not-selected")), reason="invalid_json"
    )
    response = admin_client.post(
        "/admin/outcomes/deadletter/",
        {"action": "replay_selected", "_selected_action": [fixed.id, broken.id]},
        follow=True,
    )
    text = response.content.decode()
    assert "Replayed 2: 1 stored" in text and "still invalid (kept)" in text and "invalid_json: 1" in text
    assert AuctionOutcome.objects.filter(bid_id="replayed-1").exists()
    assert not AuctionOutcome.objects.filter(bid_id="not-selected").exists()
    fixed.refresh_from_db(), broken.refresh_from_db(), untouched.refresh_from_db()
    assert fixed.replayed_at is not None and broken.replayed_at is None and untouched.replayed_at is None


def test_repeated_wrong_passwords_lock_the_login_out(client, settings):
    from django.core.management import call_command

    settings.AUTH_FAILURE_LIMIT = settings.AXES_FAILURE_LIMIT = 5  # the shipped default
    User.objects.create_superuser("root", "root@example.com", "the-right-password-1")
    codes = []
    started = __import__("time").monotonic()
    for _ in range(30):
        response = client.post("/admin/login/", {"username": "root", "password": "wrong"}, REMOTE_ADDR="10.1.2.3")
        codes.append(response.status_code)
    assert codes[: settings.AUTH_FAILURE_LIMIT - 1] == [200] * (settings.AUTH_FAILURE_LIMIT - 1)  # form again
    assert set(codes[settings.AUTH_FAILURE_LIMIT :]) == {429}  # then locked out
    assert __import__("time").monotonic() - started < 30
    # The right password during the lockout is refused too (from this address, and for this account).
    locked = client.post(
        "/admin/login/", {"username": "root", "password": "the-right-password-1"}, REMOTE_ADDR="10.1.2.3"
    )
    assert locked.status_code == 429 and b"locked" in locked.content.lower()
    elsewhere = client.post(
        "/admin/login/", {"username": "root", "password": "the-right-password-1"}, REMOTE_ADDR="10.9.9.9"
    )
    assert elsewhere.status_code == 429  # the account is locked wherever its password is tried
    # An operator lifts it; then the right password logs in.
    call_command("axes_reset")
    ok = client.post("/admin/login/", {"username": "root", "password": "the-right-password-1"}, REMOTE_ADDR="10.1.2.3")
    assert ok.status_code == 302


def test_replaying_dead_letters_needs_its_own_permission(client, person):
    DeadLetter.objects.create(topic="t", partition=0, offset=1, value=b"x", reason="invalid_json", detail="d")
    viewer = person("view_deadletter", staff=True)
    client.force_login(viewer)
    page = client.get("/admin/outcomes/deadletter/")
    assert page.status_code == 200 and "replay_selected" not in page.content.decode()
    replayer = person("view_deadletter", "replay_deadletter", staff=True)
    client.force_login(replayer)
    assert "replay_selected" in client.get("/admin/outcomes/deadletter/").content.decode()
