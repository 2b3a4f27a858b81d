"""Who may do what: every API operation × every kind of credential, against the real database.

The operations are taken from the OpenAPI schema itself, so an endpoint added later is
walked too. Expected: reads need ``read`` (unless API_READ_ACCESS=public), the bulk export
``export`` (likewise), creates and updates ``write``, deletes ``admin``; a missing,
malformed, unknown, revoked or expired key is a 401 with ``WWW-Authenticate``, a valid key
without the scope a 403, and nothing changes.
"""

from __future__ import annotations

import base64
import itertools
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from outcomes.models import Alert, APIKey, AuctionOutcome, Experiment, SavedReport, Subscription

pytestmark = pytest.mark.django_db
_bids = itertools.count()


def new_key(*scopes: str, **fields) -> str:
    return APIKey.objects.create_key(name="test", scopes=list(scopes), **fields)[1]


def operations() -> list[tuple[str, str]]:
    """(method, path template) of every API operation the schema documents."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted(
        (method.upper(), path) for path, item in schema["paths"].items() for method in item if path.startswith("/api/")
    )


REQUIRED_PARAMS = {
    "/api/outcomes/breakdown/": {"by": "currency"},
    "/api/insights/optimal_bid/": {"value": "1.50", "currency": "USD"},
}


# Addresses and webhooks: never public (outcomes.views.subscriptions).
PRIVATE = ("/api/subscriptions/", "/api/alerts/")
OWNED = {"/api/subscriptions/": Subscription, "/api/alerts/": Alert}


def own(model, name: str):
    if model is Subscription:
        return Subscription.objects.create(
            report=SavedReport.objects.first(), rrule="FREQ=DAILY", recipients=["a@x.io"], created_by=name
        )
    return Alert.objects.create(name=name, measure="win_rate", condition="below", threshold=1, recipients=["a@x.io"])


def body(method: str, bid_id: str, path: str = "") -> dict:
    if path.startswith("/api/subscriptions/") and not path.endswith(("/deliveries/", "/send/")):
        plan = {"report": SavedReport.objects.first().pk, "rrule": "FREQ=DAILY", "recipients": ["a@example.com"]}
        return {"POST": plan, "PUT": plan, "PATCH": {"rrule": "FREQ=HOURLY"}}.get(method, {})
    if path.startswith("/api/alerts/") and not path.endswith("/events/"):
        rule = {"name": bid_id, "measure": "win_rate", "condition": "below", "threshold": 5, "recipients": ["a@x.io"]}
        return {"POST": rule, "PUT": rule, "PATCH": {"threshold": 7}}.get(method, {})
    if path.startswith("/api/reports/") and not path.endswith("/run/"):
        report = {"name": bid_id, "report": "stats", "params": {"currency": "EUR"}}
        return {"POST": report, "PUT": report, "PATCH": {"name": "Renamed"}}.get(method, {})
    if path.startswith("/api/experiments/"):
        plan = {
            "key": bid_id,
            "name": "A test",
            "variants": [{"name": "control", "share": 0.5}, {"name": "B", "share": 0.5}],
            "primary_metric": "win_rate",
        }
        return {"POST": plan, "PUT": plan, "PATCH": {"name": "Renamed"}}.get(method, {})
    document = {"bid_id": bid_id, "user_id": "u", "win_status": True, "win_price": "0.50", "bid_price": "0.70"}
    return {"POST": document, "PUT": document, "PATCH": {"site_domain": "x.example"}}.get(
        method, REQUIRED_PARAMS.get(path, {})
    )


def a_bid_model() -> None:
    from outcomes.models import BidModel

    now = timezone.now()
    BidModel.objects.create(
        currency="USD", version=1, window_start=now, window_end=now, outcomes=10, prices=[0, 2], probabilities=[0, 1]
    )


def an_experiment(key: str) -> Experiment:
    return Experiment.objects.create(**body("PUT", key, "/api/experiments/"))


def call(client: APIClient, method: str, path: str, credential: str | None, outcome_factory):
    """One request; an operation on one outcome gets an outcome of its own to work on."""
    bid_id = f"access-{next(_bids)}"
    if "{key}" in path:  # an experiment of its own to change, or the one there to read
        key = an_experiment(bid_id).key if method != "GET" else Experiment.objects.values_list("key", flat=True)[0]
        path = path.replace("{key}", key)
    owned = next((model for prefix, model in OWNED.items() if path.startswith(prefix + "{id}/")), None)
    if owned is not None:  # a subscription or alert of its own to change, or the one there to read
        target = own(owned, bid_id) if method != "GET" else owned.objects.first()
        path = path.replace("{id}", str(target.id))
    elif path.startswith("/api/reports/{id}/"):  # a saved report of its own to change, or the one there to read
        report = (
            SavedReport.objects.create(name=bid_id, report="stats") if method != "GET" else SavedReport.objects.first()
        )
        path = path.replace("{id}", str(report.id))
    elif "{id}" in path and method != "GET":
        (row,) = outcome_factory(1, bid_id=bid_id)
        path = path.replace("{id}", str(row.id))
    else:
        path = path.replace("{id}", str(AuctionOutcome.objects.values_list("id", flat=True).first()))
    headers = {"HTTP_AUTHORIZATION": credential} if credential is not None else {}
    data = body(method, bid_id, path)
    if method == "GET":
        response = client.get(path, data, **headers)
        if response.streaming:  # the export: read to the end (the test client then closes it)
            response.content_read = b"".join(response.streaming_content)
        return response, bid_id
    return getattr(client, method.lower())(path, data, format="json", **headers), bid_id


@pytest.fixture
def credentials():
    return {
        "no key": None,
        "unknown key": "Api-Key abcdefgh.abcdefghabcdefghabcdefghabcdefgh",
        "malformed key": "Api-Key not-a-key\x00",
        "basic": "Basic " + base64.b64encode(b"staff:pw").decode(),
        "basic with NUL": "Basic " + base64.b64encode(b"a\x00b:c").decode(),
        "expired": "Api-Key " + new_key("read", "write", "admin", expiry_date=timezone.now() - timedelta(seconds=1)),
        "revoked": "Api-Key " + _revoked(),
        "read": "Api-Key " + new_key("read"),
        "export": "Api-Key " + new_key("export"),
        "write": "Api-Key " + new_key("write"),
        "admin": "Api-Key " + new_key("admin"),
    }


def _revoked() -> str:
    api_key, key = APIKey.objects.create_key(name="revoked", scopes=["read", "write", "admin"])
    api_key.revoked = True
    api_key.save()
    return key


def expected_status(method: str, path: str, credential: str, read_access: str) -> int:
    needed = {"GET": "read", "DELETE": "admin"}.get(method, "write")
    if path.endswith("/export/"):
        needed = "export"
    if credential in ("unknown key", "malformed key", "basic", "basic with NUL", "expired", "revoked"):
        return 401
    if credential == "no key":
        public = read_access == "public" and not path.startswith(PRIVATE)
        return 200 if needed in ("read", "export") and public else 401
    return 200 if credential == needed or credential == "admin" else 403


def test_the_walk_covers_every_operation():
    found = operations()
    assert ("GET", "/api/outcomes/stats/") in found
    assert {m for m, _ in found} == {"GET", "POST", "PUT", "PATCH", "DELETE"}
    assert ("GET", "/api/ingestion/") in found and ("GET", "/api/outcomes/export/") in found
    # 8 reads of lists and reports, the export, ingestion, retrieve, create, two updates, delete;
    # the experiment registry's list, retrieve, create, two updates and delete; an experiment's results;
    # the bid landscape and the optimal bid; saved reports' list, retrieve, create, two updates,
    # delete and run; subscriptions' and alerts' list, retrieve, create, two updates, delete and records,
    # and a subscription's send now
    assert len(found) == 46
    assert ("GET", "/api/reports/{id}/run/") in found
    assert ("GET", "/api/insights/optimal_bid/") in found
    assert ("GET", "/api/experiments/{key}/results/") in found


@pytest.mark.parametrize("read_access", ["authenticated", "public"])
def test_every_operation_with_every_credential(settings, outcome_factory, credentials, read_access):
    settings.API_READ_ACCESS = read_access
    outcome_factory(1, bid_id="existing")
    an_experiment("existing")
    a_bid_model()
    SavedReport.objects.create(name="existing", report="stats")
    own(Subscription, "existing")
    own(Alert, "existing")
    client = APIClient()
    failures = []
    for (method, path), (name, credential) in itertools.product(operations(), credentials.items()):
        own_outcome = "{id}" in path and method != "GET" and not path.startswith(("/api/reports/", *PRIVATE))
        before = AuctionOutcome.objects.count() + (1 if own_outcome else 0)
        experiments_before = Experiment.objects.count() + (1 if "{key}" in path and method != "GET" else 0)
        owned_before = (
            Subscription.objects.count()
            + Alert.objects.count()
            + (1 if path.startswith(tuple(p + "{id}" for p in PRIVATE)) and method != "GET" else 0)
        )
        reports_before = SavedReport.objects.count() + (
            1 if path.startswith("/api/reports/{id}") and method != "GET" else 0
        )
        response, bid_id = call(client, method, path, credential, outcome_factory)
        want = expected_status(method, path, name, read_access)
        got = response.status_code
        ok = (200 <= got < 300) if want == 200 else got == want
        if ok and want == 401:
            ok = response.headers.get("WWW-Authenticate", "").startswith("Api-Key")
        if ok and want in (401, 403):
            ok = AuctionOutcome.objects.count() == before and "detail" in response.json()
            ok = ok and Experiment.objects.count() == experiments_before
            ok = ok and SavedReport.objects.count() == reports_before
            ok = ok and Subscription.objects.count() + Alert.objects.count() == owned_before
            if method in ("PUT", "PATCH") and path.startswith("/api/reports/"):  # the report is as it was made
                ok = ok and SavedReport.objects.filter(name=bid_id).exists()
            elif method in ("PUT", "PATCH") and path.startswith(PRIVATE):  # as it was made
                ok = ok and (
                    Subscription.objects.filter(created_by=bid_id, rrule="FREQ=DAILY").exists()
                    or Alert.objects.filter(name=bid_id, threshold=1).exists()
                )
            elif method in ("PUT", "PATCH") and "{key}" in path:  # the experiment is as it was made
                ok = ok and Experiment.objects.filter(key=bid_id, name="A test").exists()
            elif method in ("PUT", "PATCH"):  # the outcome is as the factory stored it
                ok = (
                    ok
                    and AuctionOutcome.objects.filter(
                        bid_id=bid_id, site_domain="news.example", user_id="user-1"
                    ).exists()
                )
        if not ok:
            failures.append(f"{method} {path} with {name}: {got} (want {want}) {response.content[:120]!r}")
    assert failures == [], "\n".join(failures)


def test_refusals_say_why(settings, outcome_factory):
    settings.API_READ_ACCESS = "authenticated"
    client = APIClient()
    assert client.get("/api/outcomes/").json()["detail"] == "Authentication credentials were not provided."
    expired = new_key("read", expiry_date=timezone.now() - timedelta(days=1))
    assert client.get("/api/outcomes/", HTTP_AUTHORIZATION=f"Api-Key {expired}").json() == {
        "detail": "This API key has expired."
    }
    reader = new_key("read")
    response = client.post("/api/outcomes/", body("POST", "r-1"), format="json", HTTP_AUTHORIZATION=f"Api-Key {reader}")
    assert response.json() == {"detail": "This API key lacks the 'write' scope."}
    basic = client.get("/api/outcomes/", HTTP_AUTHORIZATION="Basic eDp5")
    assert basic.status_code == 401 and "Api-Key <key>" in basic.json()["detail"]


def test_the_schema_is_read_like_the_api(settings):
    settings.API_READ_ACCESS = "authenticated"
    client = APIClient()
    assert client.get("/api/schema/").status_code == 401
    assert client.get("/api/schema/", HTTP_AUTHORIZATION=f"Api-Key {new_key('read')}").status_code == 200
    settings.API_READ_ACCESS = "public"
    assert client.get("/api/schema/").status_code == 200


def test_people_use_the_session(settings, outcome_factory, person):
    settings.API_READ_ACCESS = "authenticated"
    (row,) = outcome_factory(1)
    nobody = person.client(person())
    reader = person.client(person("view_auctionoutcome"))
    staff_user = person(staff=True)
    staff = person.client(staff_user)
    # A login alone is not enough to read: staff, or the permission to view outcomes in the admin.
    refused = nobody.get("/api/outcomes/")
    assert refused.status_code == 403 and "view auction outcome" in refused.json()["detail"]
    assert reader.get("/api/outcomes/").status_code == 200
    assert staff.get("/api/outcomes/").status_code == 200
    # Writing needs the model permission for it, staff or not.
    assert reader.patch(f"/api/outcomes/{row.id}/", {"user_id": "x"}, format="json").status_code == 403
    refused = staff.patch(f"/api/outcomes/{row.id}/", {"user_id": "x"}, format="json")
    assert refused.status_code == 403 and "change auctionoutcome" in refused.json()["detail"]
    staff_user.user_permissions.add(Permission.objects.get(codename="change_auctionoutcome"))
    staff = person.client(User.objects.get(pk=staff_user.pk))  # a fresh look at its permissions
    assert staff.patch(f"/api/outcomes/{row.id}/", {"user_id": "x"}, format="json").status_code == 200


def test_keys_are_stored_hashed_and_found_by_prefix():
    key = new_key("read")
    prefix, _, secret = key.partition(".")
    stored = APIKey.objects.get(prefix=prefix)
    assert secret not in stored.hashed_key and stored.hashed_key.startswith("sha512$$")
    assert stored.allows("read") and not stored.allows("write")
    assert APIKey.objects.get(prefix=new_key("admin").partition(".")[0]).allows("write")


def test_create_api_key_prints_the_key_alone_on_its_last_line(capsys, settings):
    call_command("create_api_key", "--name", "ci", "--scopes", "read,write", "--expires", "30")
    lines = capsys.readouterr().out.strip().splitlines()
    key = lines[-1]
    api_key = APIKey.objects.get(prefix=key.partition(".")[0])
    assert api_key.name == "ci" and api_key.scopes == ["read", "write"] and not api_key.revoked
    assert timedelta(days=29) < api_key.expiry_date - timezone.now() <= timedelta(days=30)
    assert "shown only once" in lines[0]
    settings.API_READ_ACCESS = "authenticated"
    assert APIClient().get("/api/outcomes/", HTTP_AUTHORIZATION=f"Api-Key {key}").status_code == 200


@pytest.mark.parametrize(
    "args",
    [
        ["--name", "x", "--scopes", "read,superuser"],
        ["--name", "x", "--scopes", ""],
        ["--name", "", "--scopes", "read"],
        ["--name", "x" * 51, "--scopes", "read"],
        ["--name", "x", "--scopes", "read", "--expires", "0"],
    ],
)
def test_create_api_key_refuses_bad_options(args):
    with pytest.raises(CommandError):
        call_command("create_api_key", *args)
    assert not APIKey.objects.exists()


def test_revoke_api_key_revokes_by_prefix_at_once(capsys, settings):
    settings.API_READ_ACCESS = "authenticated"
    key, other = new_key("read"), new_key("read")
    assert APIClient().get("/api/outcomes/", HTTP_AUTHORIZATION=f"Api-Key {key}").status_code == 200  # now trusted
    call_command("revoke_api_key", key.partition(".")[0])
    assert "revoked" in capsys.readouterr().out
    response = APIClient().get("/api/outcomes/", HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert response.status_code == 401 and response.json()["detail"] == "Invalid or revoked API key."
    assert APIClient().get("/api/outcomes/", HTTP_AUTHORIZATION=f"Api-Key {other}").status_code == 200
    call_command("revoke_api_key", key)  # the whole key names its prefix too; revoking twice says so
    assert "already revoked" in capsys.readouterr().out


def test_revoke_api_key_revokes_nothing_when_a_prefix_is_unknown():
    key = new_key("read")
    with pytest.raises(CommandError, match="'nosuchkey'"):
        call_command("revoke_api_key", key.partition(".")[0], "nosuchkey")
    assert not APIKey.objects.get(prefix=key.partition(".")[0]).revoked


def test_admin_creates_and_revokes_keys():
    staff = APIClient()
    staff.force_login(User.objects.create_superuser("root", password="pw"))
    response = staff.post(
        "/admin/outcomes/apikey/add/", {"name": "from admin", "scopes": "read,write", "expiry_date": ""}, follow=True
    )
    assert response.status_code == 200
    api_key = APIKey.objects.get(name="from admin")
    assert api_key.scopes == ["read", "write"]
    shown = [str(m) for m in response.context["messages"]]
    assert any(api_key.prefix in m and "you will not be able to see it again" in m for m in shown)
    key = next(word.rstrip(".") for m in shown for word in m.split() if word.startswith(api_key.prefix + "."))
    assert APIClient().get("/api/outcomes/", HTTP_AUTHORIZATION=f"Api-Key {key}").status_code == 200
    staff.post(
        f"/admin/outcomes/apikey/{api_key.pk}/change/",
        {"name": "from admin", "scopes": "read,write", "revoked": "on", "expiry_date": ""},
    )
    assert APIKey.objects.get(pk=api_key.pk).revoked
    assert APIClient().get("/api/outcomes/", HTTP_AUTHORIZATION=f"Api-Key {key}").status_code == 401


@pytest.mark.parametrize("read_access", ["authenticated", "public"])
def test_the_schema_declares_who_may_call_each_operation(settings, read_access):
    settings.API_READ_ACCESS = read_access
    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": 'An API key, sent as "Api-Key <key>". Create one with `manage.py create_api_key`.',
    }
    assert "basicAuth" not in schema["components"]["securitySchemes"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            anonymous = {} in operation["security"]
            assert {"ApiKeyAuth": []} in operation["security"], (method, path)
            assert anonymous == (method == "get" and read_access == "public"), (method, path)


def test_repeated_invalid_keys_from_one_address_are_refused_for_a_while(settings):
    import redis

    settings.API_READ_ACCESS = "authenticated"
    settings.AUTH_FAILURE_LIMIT = 5  # the shipped default
    settings.REDIS_URL = "redis://127.0.0.1:6379/15"  # a database the tests own
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    client = APIClient()
    wrong = "Api-Key abcdefgh.abcdefghabcdefghabcdefghabcdefgh"
    codes = [
        client.get("/api/outcomes/", HTTP_AUTHORIZATION=wrong, REMOTE_ADDR="10.4.4.4").status_code for _ in range(8)
    ]
    limit = settings.AUTH_FAILURE_LIMIT
    assert codes == [401] * limit + [429] * (8 - limit)
    refused = client.get("/api/outcomes/", HTTP_AUTHORIZATION="Api-Key " + new_key("read"), REMOTE_ADDR="10.4.4.4")
    assert refused.status_code == 429 and "invalid API keys from this address" in refused.json()["detail"]
    assert 1 <= int(refused["Retry-After"]) <= settings.AUTH_LOCKOUT_MINUTES * 60
    # Another address is not concerned.
    assert client.get("/api/outcomes/", HTTP_AUTHORIZATION=wrong, REMOTE_ADDR="10.5.5.5").status_code == 401
