"""Read-replica routing against a real streaming standby of the local PostgreSQL
(``scripts/services.sh replica-up``): API reads are served by the replica, writes by the
primary, and when the replica stops the API answers from the primary."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from outcomes.models import APIKey
from tests.factories import wait_until
from tests.servers import free_port, start_api, stop

SERVICES = Path(__file__).resolve().parent.parent / "scripts" / "services.sh"
REPLICA_PORT = 5433
pytestmark = pytest.mark.django_db(transaction=True)


def services(action: str) -> None:
    subprocess.run([str(SERVICES), action], check=True, timeout=300)


def replica_count() -> int | None:
    db = connection.settings_dict
    try:
        with (
            psycopg.connect(
                dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host="127.0.0.1", port=REPLICA_PORT
            ) as conn,
            conn.cursor() as cursor,
        ):
            cursor.execute("SELECT count(*) FROM outcomes_auctionoutcome")
            return cursor.fetchone()[0]
    except psycopg.Error:
        return None  # the test database may not have reached the standby yet


def wait_for_replica(count: int) -> None:
    wait_until(lambda: replica_count() == count, timeout=60, interval=0.1, what=f"the replica to show {count} outcomes")


def total(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/outcomes/stats/", timeout=30) as response:
        return json.loads(response.read())["total_outcomes"]


def test_reads_go_to_the_replica_and_fall_back_to_the_primary_when_it_stops(outcome_factory):
    services("replica-up")
    outcome_factory(3)
    wait_for_replica(3)
    port = free_port()
    server = start_api(port, DB_REPLICA_HOST="127.0.0.1", DB_REPLICA_PORT=str(REPLICA_PORT), LOG_LEVEL="WARNING")
    try:
        assert total(port) == 3
        # Freeze the replica where it is: a new outcome reaches the primary only.
        services("replica-pause")
        try:
            outcome_factory(2)
            assert primary_count() == 5
            assert total(port) == 3, "reads are served by the (paused) replica"
            # Writes go to the primary: an API create lands there at once.
            key = APIKey.objects.create_key(name="replica", scopes=["write"])[1]
            document = {"bid_id": "via-api", "user_id": "u", "win_status": False, "win_price": "0", "bid_price": "1"}
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/outcomes/",
                data=json.dumps(document).encode(),
                headers={"Content-Type": "application/json", "Authorization": f"Api-Key {key}"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 201
            assert primary_count() == 6
        finally:
            services("replica-resume")
        wait_for_replica(6)
        wait_until(lambda: total(port) == 6, timeout=30, interval=0.1, what="the API to read the caught-up replica")
        # The replica stops: the next reads are answered by the primary.
        services("replica-pause")
        outcome_factory(1)  # only the primary has it
        services("replica-down")
        assert total(port) == 7
        assert total(port) == 7
    finally:
        out, err = stop(server)
    assert "read replica unavailable; reading from the primary" in out + err


def primary_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM outcomes_auctionoutcome")
        return cursor.fetchone()[0]


def test_a_statement_timeout_on_the_replica_is_a_503_and_the_replica_keeps_serving(outcome_factory):
    from tests.factories import raw_outcomes

    services("replica-up")
    outcome_factory(3)
    raw_outcomes(300_000)  # a report with a filter the rollups lack scans these: slow
    wait_for_replica(300_003)
    port = free_port()
    server = start_api(
        port,
        DB_REPLICA_HOST="127.0.0.1",
        DB_REPLICA_PORT=str(REPLICA_PORT),
        API_STATEMENT_TIMEOUT_MS="30",
        API_CACHE_BYTES="0",
        LOG_LEVEL="WARNING",
    )
    try:
        slow = f"http://127.0.0.1:{port}/api/outcomes/stats/?min_price=0.10"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(slow, timeout=30)
        assert refused.value.code == 503 and "API_STATEMENT_TIMEOUT_MS" in refused.value.read().decode()
        # Still the replica: frozen, it does not see what the primary stores next.
        services("replica-pause")
        try:
            outcome_factory(2)
            assert total(port) == 3, "reads moved to the primary after a slow query"
        finally:
            services("replica-resume")
    finally:
        out, err = stop(server)
    assert "read replica unavailable" not in out + err
