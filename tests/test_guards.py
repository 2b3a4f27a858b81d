"""The limits every HTTP request runs under (analytics/guards.py), against the real database."""

from __future__ import annotations

import json

import psycopg
import pytest
from django.db import connection
from rest_framework.test import APIClient

URL = "/api/outcomes/"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["", "winners/", "stats/", "timeseries/", "1/"])
@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("user_id=a%00b", "user_id"),
        ("site_domain=%1b", "site_domain"),
        ("us%00er=1", "us?er"),
        ("currency=US%7f", "currency"),
    ],
)
def test_control_characters_in_parameters_are_a_400_naming_them(path, query, name):
    response = APIClient().get(f"{URL}{path}?{query}")
    assert response.status_code == 400
    assert response.json() == {name: ["Control characters (such as NUL) are not allowed."]}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, name",
    [("site_domain=%ff%fe", "site_domain"), ("user_id=ok&start=%c3%28", "start"), ("us%e9r=1", "us\ufffdr")],
)
def test_parameters_that_are_not_utf8_are_a_400_naming_them(query, name):
    response = APIClient().get(f"{URL}?{query}")
    assert response.status_code == 400
    assert response.json() == {name: ["Not valid UTF-8 (percent-encode UTF-8 bytes)."]}


@pytest.mark.django_db
def test_a_replacement_character_sent_as_utf8_is_an_ordinary_value():
    assert APIClient().get(f"{URL}?site_domain=%ef%bf%bd").status_code == 200


@pytest.mark.django_db
def test_a_body_above_the_limit_is_a_413_before_it_is_read(settings, person):
    settings.API_MAX_BODY_BYTES = 2048
    staff = person.client(person("add_auctionoutcome"))
    document = {"bid_id": "b", "user_id": "u" * 3000, "win_status": False, "win_price": "0", "bid_price": "1"}
    response = staff.post(URL, json.dumps(document), content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large: at most 2,048 bytes."}
    document["user_id"] = "u"
    assert staff.post(URL, json.dumps(document), content_type="application/json").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_a_query_over_the_statement_timeout_is_a_503_and_the_next_request_works(settings, outcome_factory):
    outcome_factory(1)
    settings.API_STATEMENT_TIMEOUT_MS = 300
    client = APIClient()
    assert client.get(URL).status_code == 200  # the connection now carries the 300 ms timeout
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "300ms"
    db = connection.settings_dict
    blocker = psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"]
    )
    try:
        blocker.cursor().execute("LOCK TABLE outcomes_auctionoutcome IN ACCESS EXCLUSIVE MODE")
        response = client.get(URL, {"user_id": "user-1"})  # the list must read the locked table
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert "API_STATEMENT_TIMEOUT_MS (300 ms)" in response.json()["detail"]
    finally:
        blocker.rollback()
        blocker.close()
    assert client.get(URL, {"user_id": "user-1"}).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        b'{"bid_id": "\xff\xfe", "user_id": "u", "win_status": false, "bid_price": 1}',  # invalid UTF-8
        b'{"bid_id": "a\\u0000b", "user_id": "u", "win_status": false, "bid_price": 1}',  # NUL
        b'{"bid_id": "b", "user_id": "u", "win_status": false, "bid_price": 1e400}',  # huge number
        b'{"bid_id": "b", "user_id": "u", "win_status": false, "bid_price": 12345678901234567890}',
        b'{"bid_id": "b", "user_id": "\x01", "win_status": false, "bid_price": 1}',  # raw control byte
        b"\x00\x00",
        b"[" * 100_000,  # deep nesting
    ],
)
def test_hostile_bodies_are_a_4xx(body, person):
    staff = person.client(person("add_auctionoutcome"))
    response = staff.post(URL, body, content_type="application/json")
    assert 400 <= response.status_code < 500, response.content[:300]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [
        "page=99999999999999999999999",
        "page_size=-1",
        "min_price=1e999",
        "start=9999-12-31T23:59:59-23:59",
        "start=%ff%fe",  # invalid UTF-8, percent-encoded
        "user_id=" + "x" * 5000,
        "ordering=" + ",".join(["id"] * 500),
    ],
)
def test_hostile_parameters_are_answered_not_a_500(query):
    response = APIClient().get(f"{URL}?{query}")
    assert response.status_code in (200, 400, 404), (query, response.status_code, response.content[:300])


@pytest.mark.django_db
def test_hostile_headers_are_answered_not_a_500():
    client = APIClient()
    assert client.get(URL, HTTP_X_REQUEST_ID="\x00\x01").status_code == 200
    assert client.get(URL, HTTP_AUTHORIZATION="Api-Key \x00\x00").status_code == 401
    assert client.get(URL, HTTP_AUTHORIZATION="\x7f").status_code == 401
