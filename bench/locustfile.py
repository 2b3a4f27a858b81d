"""A dashboard-like mix of API requests, for ``bench/queries.py``'s load phase (locust, headless).

The targets come from the environment: BENCH_DOMAIN (the busiest domain), BENCH_ID (an
outcome id), BENCH_START/BENCH_END (a one-week window), BENCH_API_KEY (sent with every
request when set). Each user paces itself to BENCH_PACE
requests/s (a dashboard polls, it does not hammer; 0: back to back, to find saturation).
If BENCH_CACHE_FILE is set, the count of each ``X-Cache`` answer (HIT, MISS, BYPASS) is
written there at the end.
"""

import json
import os
from collections import Counter

from locust import FastHttpUser, between, constant_throughput, events, task

DOMAIN = os.environ.get("BENCH_DOMAIN", "")
OUTCOME_ID = os.environ.get("BENCH_ID", "1")
WEEK = {"start": os.environ.get("BENCH_START", ""), "end": os.environ.get("BENCH_END", "")}
PACE = float(os.environ.get("BENCH_PACE", "0"))
API_KEY = os.environ.get("BENCH_API_KEY", "")  # set: every request sends it
CACHE_ANSWERS: Counter = Counter()


@events.request.add_listener
def _count_cache_answers(response=None, **_kwargs):
    if response is not None and response.headers is not None:
        CACHE_ANSWERS[response.headers.get("X-Cache", "none")] += 1


@events.quitting.add_listener
def _write_cache_answers(**_kwargs):
    if os.environ.get("BENCH_CACHE_FILE"):
        with open(os.environ["BENCH_CACHE_FILE"], "w") as handle:
            json.dump(dict(CACHE_ANSWERS), handle)


class DashboardUser(FastHttpUser):
    wait_time = constant_throughput(PACE) if PACE > 0 else between(0, 0)
    default_headers = {"Authorization": f"Api-Key {API_KEY}"} if API_KEY else None

    @task(3)
    def stats(self):
        self.client.get("/api/outcomes/stats/", name="stats")

    @task(2)
    def timeseries(self):
        self.client.get("/api/outcomes/timeseries/", params={"granularity": "hour", **WEEK}, name="timeseries")

    @task(2)
    def breakdown(self):
        self.client.get("/api/outcomes/breakdown/", params={"by": "site_domain", "limit": 20}, name="breakdown")

    @task(1)
    def domain_stats(self):
        self.client.get("/api/outcomes/stats/", params={"site_domain": DOMAIN}, name="stats domain")

    @task(2)
    def list_page(self):
        self.client.get("/api/outcomes/", name="list")

    @task(1)
    def retrieve(self):
        self.client.get(f"/api/outcomes/{OUTCOME_ID}/", name="retrieve")
