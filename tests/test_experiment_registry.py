"""The experiment registry: plans validated the same way by the API and the admin, scopes as
for outcomes, keys that never change."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rest_framework.test import APIClient

from outcomes.experiments import plan_errors, planned_proportions
from outcomes.models import APIKey, Experiment

PLAN = {
    "key": "shading-v2",
    "name": "Bid shading v2",
    "hypothesis": "Shading by the site's clearing prices lowers the price paid without losing wins.",
    "unit": "auction",
    "variants": [{"name": "control", "share": 0.5}, {"name": "B", "share": 0.5}],
    "primary_metric": "avg_win_price",
    "guardrail_metrics": ["win_rate"],
    "start": "2026-11-01T00:00:00Z",
    "end": "2026-12-01T00:00:00Z",
}


def plan(**changes):
    fields = {k: v for k, v in PLAN.items() if k in ("variants", "primary_metric", "guardrail_metrics")}
    fields |= {"start": None, "end": None} | changes
    return plan_errors(**fields)


@pytest.mark.fast
def test_a_sound_plan_has_no_errors():
    assert plan() == {}
    assert planned_proportions([{"name": "a", "share": 1}, {"name": "b", "share": 3}]) == {"a": 0.25, "b": 0.75}
    assert plan(variants=[{"name": "a", "share": 0.2}, {"name": "b", "share": 0.3}, {"name": "c", "share": 0.5}]) == {}


@pytest.mark.fast
@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"variants": [{"name": "control", "share": 1.0}]}, "variants", "2 to 20 variants"),
        ({"variants": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}]}, "variants", "must differ"),
        ({"variants": [{"name": "a b", "share": 0.5}, {"name": "b", "share": 0.5}]}, "variants", "Variant 1"),
        ({"variants": [{"name": "a", "share": True}, {"name": "b", "share": 0.5}]}, "variants", "a positive number"),
        ({"variants": [{"name": "a", "share": 0}, {"name": "b", "share": 0.5}]}, "variants", "a positive number"),
        ({"variants": [{"name": "a"}, {"name": "b", "share": 1}]}, "variants", 'exactly "name" and "share"'),
        ({"variants": "control"}, "variants", "A list of"),
        ({"primary_metric": "profit"}, "primary_metric", "One of win_rate"),
        ({"guardrail_metrics": ["avg_win_price"]}, "guardrail_metrics", "not the primary metric"),
        ({"guardrail_metrics": ["nope"]}, "guardrail_metrics", "A list of metrics"),
        (
            {"start": datetime(2026, 12, 1, tzinfo=UTC), "end": datetime(2026, 11, 1, tzinfo=UTC)},
            "end",
            "after the start",
        ),
    ],
)
def test_a_plan_says_what_is_wrong_with_it(changes, field, says):
    errors = plan(**changes)
    assert says in " ".join(errors.get(field, [])), errors


def client(*scopes: str) -> APIClient:
    secret = APIKey.objects.create_key(name="t", scopes=list(scopes))[1]
    return APIClient(HTTP_AUTHORIZATION=f"Api-Key {secret}")


@pytest.mark.django_db
def test_experiments_are_registered_read_and_changed_with_the_right_scopes(settings):
    settings.API_READ_ACCESS = "authenticated"
    writer, reader, admin = client("write"), client("read"), client("admin")
    refused = reader.post("/api/experiments/", PLAN, format="json")
    assert refused.status_code == 403 and "'write' scope" in refused.json()["detail"]
    created = writer.post("/api/experiments/", PLAN, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["variants"] == PLAN["variants"] and created.json()["start"] == "2026-11-01T00:00:00Z"
    listed = reader.get("/api/experiments/").json()
    assert listed["count"] == 1 and listed["results"][0]["key"] == "shading-v2"
    assert reader.get("/api/experiments/shading-v2/").json()["name"] == "Bid shading v2"
    assert APIClient().get("/api/experiments/").status_code == 401
    changed = writer.patch("/api/experiments/shading-v2/", {"name": "Shading v2"}, format="json")
    assert changed.status_code == 200 and changed.json()["name"] == "Shading v2"
    moved = writer.patch("/api/experiments/shading-v2/", {"key": "other"}, format="json")
    assert moved.status_code == 400 and "cannot change" in moved.json()["key"][0]
    uneven = writer.patch(
        "/api/experiments/shading-v2/",
        {"variants": [{"name": "control", "share": 0.7}, {"name": "control", "share": 0.3}]},
        format="json",
    )
    assert uneven.status_code == 400 and "must differ" in uneven.json()["variants"][0], uneven.content
    assert writer.delete("/api/experiments/shading-v2/").status_code == 403  # deleting takes admin
    assert admin.delete("/api/experiments/shading-v2/").status_code == 204
    assert not Experiment.objects.exists()


@pytest.mark.django_db
def test_a_bad_registration_is_a_400_naming_the_field():
    writer = client("write")
    for changes, field in [
        ({"key": "has space"}, "key"),
        ({"unit": "session"}, "unit"),
        ({"primary_metric": "profit"}, "primary_metric"),
        ({"variants": [{"name": "control", "share": 0.5}]}, "variants"),
        ({"start": "2026-12-02T00:00:00Z"}, "end"),
    ]:
        response = writer.post("/api/experiments/", {**PLAN, **changes}, format="json")
        assert response.status_code == 400 and field in response.json(), (changes, response.content)
    assert writer.post("/api/experiments/", PLAN, format="json").status_code == 201
    again = writer.post("/api/experiments/", PLAN, format="json")
    assert again.status_code == 400 and "key" in again.json()
    assert client("read").get("/api/experiments/", {"ordering": "key"}).status_code == 400


@pytest.mark.django_db
def test_the_admin_validates_a_plan_as_the_api_does(client):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("boss", password="a-long-password-1"))
    form = {
        "key": "floor-test",
        "name": "Floors",
        "unit": "user",
        "variants": '[{"name": "control", "share": 0.6}, {"name": "control", "share": 0.4}]',
        "primary_metric": "revenue",
        "guardrail_metrics": "[]",
    }
    page = client.post("/admin/outcomes/experiment/add/", form)
    assert page.status_code == 200 and "Variant names must differ" in page.content.decode()
    form["variants"] = '[{"name": "control", "share": 0.6}, {"name": "high", "share": 0.4}]'
    assert client.post("/admin/outcomes/experiment/add/", form).status_code == 302
    assert Experiment.objects.get(key="floor-test").unit == "user"


@pytest.mark.django_db
def test_a_falsy_guardrail_list_is_refused_and_a_blank_hypothesis_is_empty(settings):
    settings.API_READ_ACCESS = "public"
    _key, secret = APIKey.objects.create_key(name="w", scopes=["write"])
    client = APIClient(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    plan = {
        "key": "falsy",
        "name": "Falsy",
        "variants": [{"name": "control", "share": 1}, {"name": "B", "share": 1}],
        "primary_metric": "win_rate",
    }
    refused = client.post("/api/experiments/", {**plan, "guardrail_metrics": False}, format="json")
    assert refused.status_code == 400 and "guardrail_metrics" in refused.json()
    blank = client.post("/api/experiments/", {**plan, "hypothesis": "\x1c "}, format="json")
    assert blank.status_code == 201 and blank.json()["hypothesis"] == ""
