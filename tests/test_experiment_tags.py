"""Outcomes tagged with an experiment and a variant: parsed, stored, written, answered,
filtered and exported like every other field; anything else a dead letter of its own."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import orjson
import pytest
from rest_framework.test import APIClient

from outcomes.messages import InvalidOutcome, parse_outcome
from outcomes.models import AuctionOutcome
from tests.factories import message


def parsed(**overrides):
    return parse_outcome(orjson.dumps(message(**overrides)))


@pytest.mark.fast
def test_a_tagged_message_carries_its_experiment_and_variant():
    event = parsed(experiment="shading-v2", variant="B")
    assert (event.experiment, event.variant) == ("shading-v2", "B")
    untagged = parsed()
    assert (untagged.experiment, untagged.variant) == (None, None)
    assert parsed(experiment=None, variant=None).experiment is None  # null is absent


@pytest.mark.fast
@pytest.mark.parametrize(
    ("tags", "field", "says"),
    [
        ({"experiment": "shading-v2"}, "variant", "experiment is given without variant: both or neither"),
        ({"variant": "B"}, "experiment", "variant is given without experiment: both or neither"),
        ({"experiment": "x", "variant": 2}, "variant", "variant must be a string, got number"),
        ({"experiment": "", "variant": "B"}, "experiment", "experiment must not be empty"),
        ({"experiment": "a b", "variant": "B"}, "experiment", "contains ' '"),
        ({"experiment": "-x", "variant": "B"}, "experiment", "must start with a letter or a digit"),
        ({"experiment": "x" * 65, "variant": "B"}, "experiment", "is 65 characters long, above 64"),
    ],
)
def test_a_bad_tag_is_a_dead_letter_of_its_own(tags, field, says):
    rejected = parsed(**tags)
    assert isinstance(rejected, InvalidOutcome)
    assert rejected.reason == "invalid_experiment" and rejected.field == field
    assert says in rejected.detail


@pytest.mark.django_db
def test_tags_are_stored_written_answered_and_filtered(outcome_factory):
    when = datetime(2026, 10, 1, 12, tzinfo=UTC)
    outcome_factory(3, experiment="shading-v2", variant="control", auction_timestamp=when)
    outcome_factory(2, experiment="shading-v2", variant="B", auction_timestamp=when)
    outcome_factory(4, auction_timestamp=when)
    assert AuctionOutcome.objects.filter(experiment="shading-v2").count() == 5
    api = APIClient()
    assert api.get("/api/outcomes/", {"experiment": "shading-v2"}).json()["count"] == 5
    tagged = api.get("/api/outcomes/", {"experiment": "shading-v2", "variant": "B"}).json()
    assert tagged["count"] == 2 and {row["variant"] for row in tagged["results"]} == {"B"}
    stats = api.get("/api/outcomes/stats/", {"experiment": "shading-v2", "variant": "control"})
    assert stats.json()["total_outcomes"] == 3 and stats["X-Report-Source"].startswith("rollup:experiment:hour")
    variants = api.get("/api/outcomes/breakdown/", {"by": "variant", "experiment": "shading-v2"}).json()
    assert {row["variant"]: row["outcomes"] for row in variants["rows"]} == {"control": 3, "B": 2}
    untagged = api.get("/api/outcomes/", {"page_size": 10}).json()["results"]
    assert sum(row["experiment"] is None and row["variant"] is None for row in untagged) == 4
    bad = api.get("/api/outcomes/", {"experiment": "a b"})
    assert bad.status_code == 400 and "experiment" in bad.json()


@pytest.mark.django_db
def test_the_write_path_takes_tags_both_or_neither():
    from outcomes.models import APIKey

    _key, secret = APIKey.objects.create_key(name="writer", scopes=["write"])
    api = APIClient(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    body = {**message(experiment="bid-floor", variant="treatment"), "bid_request_id": "tagged-1"}
    created = api.post("/api/outcomes/", body, format="json")
    assert created.status_code == 201, created.content
    assert (created.json()["experiment"], created.json()["variant"]) == ("bid-floor", "treatment")
    row_id = created.json()["id"]
    half = api.patch(f"/api/outcomes/{row_id}/", {"experiment": None}, format="json")
    assert half.status_code == 400 and "experiment" in half.json(), half.content
    moved = api.patch(f"/api/outcomes/{row_id}/", {"variant": "control"}, format="json")
    assert moved.status_code == 200 and moved.json()["variant"] == "control"
    cleared = api.patch(f"/api/outcomes/{row_id}/", {"experiment": None, "variant": None}, format="json")
    assert cleared.json()["experiment"] is None and cleared.json()["variant"] is None


@pytest.mark.django_db(transaction=True)  # an export reads on a connection of its own
def test_exports_carry_the_tags(outcome_factory, settings):
    settings.API_READ_ACCESS = "public"
    outcome_factory(1, experiment="shading-v2", variant="B")
    outcome_factory(1)
    api = APIClient()
    rows = list(csv.DictReader(io.StringIO(b"".join(api.get("/api/outcomes/export/").streaming_content).decode())))
    assert sorted((row["experiment"], row["variant"]) for row in rows) == [("", ""), ("shading-v2", "B")]
    lines = b"".join(api.get("/api/outcomes/export/", {"format": "ndjson"}).streaming_content).decode().splitlines()
    documents = [json.loads(line) for line in lines]
    assert sorted((d["experiment"] or "", d["variant"] or "") for d in documents) == [("", ""), ("shading-v2", "B")]
