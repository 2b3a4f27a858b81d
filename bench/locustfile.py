"""A dashboard-like mix of API requests, for ``bench/queries.py``'s load phase (locust, headless).

The targets come from the environment: BENCH_DOMAIN (the busiest domain), BENCH_ID (an
outcome id), BENCH_START/BENCH_END (a one-week window).
"""

import os

from locust import FastHttpUser, between, task

DOMAIN = os.environ.get("BENCH_DOMAIN", "")
OUTCOME_ID = os.environ.get("BENCH_ID", "1")
WEEK = {"start": os.environ.get("BENCH_START", ""), "end": os.environ.get("BENCH_END", "")}


class DashboardUser(FastHttpUser):
    wait_time = between(0, 0)

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
