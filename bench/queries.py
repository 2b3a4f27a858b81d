#!/usr/bin/env python
"""Query benchmark: every report and list through HTTP, against the naive raw-table answer.

1. loads realistic outcomes (outcomes.simulation, 30 days, each stage in time order as a
   replayed topic delivers it) through the real write service in consumer-sized batches,
   so the rollups are built exactly as ingestion builds them, up to each of ``--sizes``;
2. at each size, with gunicorn as shipped (gunicorn.conf.py, DEBUG off): warm-up, then
   p50/p95 of sequential requests for every report and list;
3. at the largest size, the same reports computed naively from the raw table (the router
   forced to ``raw``) in the same run — the ratio is the point — a cursor page half-way
   down the table, and a load phase: locust (headless), ``--clients`` users polling a
   dashboard-like mix (bench/locustfile.py) at ``--pace`` requests/s each, then back to
   back, while bench/produce.py produces and the real consumer ingests ``--ingest-rate``
   messages/s (see ``load_phase``);
4. prints every figure, writes them as JSON (``--json``) and a chart of report p95 against
   table size (``--chart``, SVG).

Everything runs in a scratch database (dropped at the end) on the local services.
Benchmarks print numbers; they never pass or fail.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    api_env,
    drop_database,
    free_port,
    load,
    percentile,
    setup_django,
    start_api,
)
from outcomes.buckets import iso_utc  # noqa: E402

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics.settings")
BENCH_DB = f"analytics_qbench_{uuid.uuid4().hex[:6]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,3000000,10000000", help="table sizes to measure at")
    parser.add_argument("--batch-size", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=40, help="sequential requests per measured endpoint")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--load-seconds", type=int, default=30)
    parser.add_argument("--ingest-rate", type=int, default=6000, help="messages/s produced during the load phase")
    parser.add_argument("--pace", type=float, default=7, help="requests/s per locust user in the load phase")
    parser.add_argument("--saturation-seconds", type=int, default=15, help="then back to back, for capacity")
    parser.add_argument("--keep-db", action="store_true", help="leave the loaded database for a closer look")
    parser.add_argument("--load-only", action="store_true", help="with --db: only the load phases")
    parser.add_argument(
        "--db", help="measure an existing (kept) benchmark database as it is: no loading, one stage, kept after"
    )
    parser.add_argument("--json", default=str(ROOT / "bench" / "queries-result.json"))
    parser.add_argument("--chart", default=str(ROOT / "bench" / "queries-result.svg"))
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    global BENCH_DB
    if args.db:
        BENCH_DB, args.keep_db = args.db, True
    conninfo, admin = setup_django(BENCH_DB)
    import psycopg

    if args.db:
        with psycopg.connect(dbname=BENCH_DB, **conninfo) as existing, existing.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM outcomes_auctionoutcome")
            sizes = [cursor.fetchone()[0]]
    else:
        admin.cursor().execute(f'CREATE DATABASE "{BENCH_DB}"')
    # Reads are public here, with rate limits counted in Redis as shipped (limits high enough
    # for one address to run the whole load); the load phase runs again with API keys
    # required, to measure what authentication costs.
    env = api_env(
        BENCH_DB,
        conninfo["password"],
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        API_RATE_LIMIT_KEY="10000000/minute",
        API_RATE_LIMIT_ANON="10000000/minute",
    )
    server = None
    results: dict = {"sizes": sizes, "measured_at": datetime.now(UTC).isoformat(), "stages": []}
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        port = free_port()
        loaded = 0
        results["sizes"] = sizes
        for stage, size in enumerate(sizes):
            if args.db:
                load_stats = {"rows": 0, "seconds": 0.0, "rows_per_s": 0.0}
                loaded = size
            load_stats = load_stats if args.db else load(size - loaded, args.batch_size, seed=stage)
            loaded = size
            print(
                f"\n== {size:,} outcomes (loaded {load_stats['rows']:,} more through the write service "
                f"at {load_stats['rows_per_s']:,.0f} rows/s)"
            )
            targets = analyze_and_pick_targets()
            if server is None:
                # Latencies are of answers computed afresh: the snapshot cache is off here
                # (it would answer every repeated request from memory); the load phase runs
                # the API as shipped, cache on.
                server = start_api(port, {**env, "API_CACHE_BYTES": "0"})
            last = stage == len(sizes) - 1
            if not args.load_only:
                stage_results = {"size": size, "load": load_stats, **measure(port, targets, args.requests, naive=last)}
                results["stages"].append(stage_results)
            if last and not args.load_only:
                deep = cursor_deep(Client(port), size // 2)
                stage_results["lists"].append({"name": f"cursor page {size // 2:,} deep", **deep})
                print(f"{'cursor page ' + format(size // 2, ',') + ' deep':<30}{deep['p50']:>9.1f}{deep['p95']:>9.1f}")
            if last:
                server.terminate()
                server.wait(timeout=30)
                server = start_api(port, env)
                results["load_phase"] = load_phase(port, targets, args, env)
                # The same load with API keys and rate limits on: what authentication costs.
                server.terminate()
                server.wait(timeout=30)
                keyed_env = {**env, **keys_on_env()}
                server = start_api(port, keyed_env)
                results["load_phase_with_keys"] = load_phase(port, targets, args, keyed_env, label="keys on")
                print_auth_overhead(results["load_phase"], results["load_phase_with_keys"])
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
        if results["stages"]:
            write_chart(results, args.chart)
        print(f"\nfigures written to {args.json}, chart to {args.chart}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        if args.keep_db:
            print(f"database {BENCH_DB} kept (DROP DATABASE {BENCH_DB}; when done)")
        else:
            drop_database(admin, BENCH_DB)
        admin.close()


def analyze_and_pick_targets() -> dict:
    from django.db import connection

    tagged = tag_experiments()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT site_domain FROM outcomes_auctionoutcome GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
        busiest = cursor.fetchone()[0]
        cursor.execute("SELECT user_id, id FROM outcomes_auctionoutcome ORDER BY id DESC LIMIT 1")
        user, some_id = cursor.fetchone()
        cursor.execute("SELECT max(event_time) FROM outcomes_auctionoutcome")
        newest = cursor.fetchone()[0]
    day = newest.replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "tagged": tagged,
        "busiest": busiest,
        "user": user,
        "id": some_id,
        "day": day,
        "week": {"start": iso_utc(day - timedelta(days=7)), "end": iso_utc(day)},
    }


def measure(port: int, t: dict, count: int, *, naive: bool) -> dict:
    week, day = t["week"], t["day"]
    reports = [
        ("stats", "stats/", {}),
        ("stats busiest domain", "stats/", {"site_domain": t["busiest"]}),
        ("stats one user", "stats/", {"user_id": t["user"]}),
        ("stats one week", "stats/", week),
        ("daily_stats", "daily_stats/", {}),
        ("timeseries hour x 7 days", "timeseries/", {"granularity": "hour", **week}),
        (
            "timeseries minute x 1 day",
            "timeseries/",
            {"granularity": "minute", "start": iso_utc(day - timedelta(days=1)), "end": iso_utc(day)},
        ),
        ("breakdown top 20 domains", "breakdown/", {"by": "site_domain", "limit": 20}),
        ("reach one week", "reach/", week),
    ]
    lists = [
        ("list page 1", "", {}),
        ("winners page 1", "winners/", {}),
        ("list busiest domain", "", {"site_domain": t["busiest"]}),
        ("list min/max price", "", {"min_price": "1", "max_price": "2"}),
        ("list ordering=-win_price", "", {"ordering": "-win_price"}),
        ("retrieve by id", f"{t['id']}/", {}),
    ]
    client = Client(port)
    out: dict = {"reports": [], "lists": []}
    print(f"{'request':<30}{'p50 ms':>9}{'p95 ms':>9}{'naive p50':>11}{'faster':>8}  answered from")
    for name, path, params in reports:
        stats = client.measure(path, params, count)
        slow = naive_ms(path, params) if naive else None
        ratio = slow / stats["p95"] if slow and stats["p95"] else None
        out["reports"].append({"name": name, **stats, "naive_p50": slow, "naive_over_p95": ratio})
        slow_text = f"{slow:>11.1f}" if slow is not None else f"{'':>11}"
        ratio_text = f"{ratio:>7.0f}x" if ratio else f"{'':>8}"
        print(f"{name:<30}{stats['p50']:>9.1f}{stats['p95']:>9.1f}{slow_text}{ratio_text}  {stats['source']}")
    for name, path, params in lists:
        stats = client.measure(path, params, count)
        out["lists"].append({"name": name, **stats})
        print(f"{name:<30}{stats['p50']:>9.1f}{stats['p95']:>9.1f}")
    out["windows"] = measure_windows(client, t, count, naive=naive)
    out["graphql"] = measure_graphql(client, t, count)
    return out


def graphql_reports(t: dict) -> list[tuple[str, str, dict, str, dict]]:
    """(name, REST path, REST parameters, GraphQL field, its arguments): the same report both ways."""
    week = t["week"]
    return [
        ("stats", "stats/", {}, "stats", {}),
        ("stats busiest domain", "stats/", {"site_domain": t["busiest"]}, "stats", {"siteDomain": t["busiest"]}),
        ("daily_stats", "daily_stats/", {}, "dailyStats", {}),
        (
            "timeseries hour x 7 days",
            "timeseries/",
            {"granularity": "hour", **week},
            "timeseries",
            {"granularity": "hour", **week},
        ),
        (
            "breakdown top 20 domains",
            "breakdown/",
            {"by": "site_domain", "limit": 20},
            "breakdown",
            {"by": "site_domain", "limit": 20},
        ),
        ("list page 1", "", {}, "outcomes", {}),
    ]


def measure_graphql(client: Client, t: dict, count: int) -> list[dict]:
    """Each report through REST and through /api/graphql/ asking for every field REST gives,
    requests alternated so both see the same machine: p50/p95 of each, and the ratios. At
    least 200 pairs: a p95 of 40 samples is their second worst, noise on this machine."""
    count = max(count, 200)
    from outcomes.graphql.schema import full_selection

    types = {"stats": "Stats", "dailyStats": "DailyStats", "timeseries": "Timeseries", "breakdown": "Breakdown"}
    enums = {"granularity", "by"}
    heading = f"{'REST p50/p95':>15}{'GraphQL p50/p95':>18}{'p50 ratio':>11}{'p95 ratio':>11}"
    print(f"\n{'GraphQL against REST':<30}{heading}")
    out = []
    for name, path, params, field, arguments in graphql_reports(t):
        args = ", ".join(
            f"{k}: {v if k in enums or isinstance(v, int) else json.dumps(v)}" for k, v in arguments.items()
        )
        if field == "outcomes":
            node = full_selection("Outcome")
            selection = "{ edges { cursor node " + node + " } pageInfo { hasNextPage endCursor } totalCount }"
        else:
            selection = full_selection(types[field])
        query = "{ " + field + (f"({args})" if args else "") + " " + selection + " }"
        body = json.dumps({"query": query})
        for _ in range(3):
            answer = json.loads(client.post("/api/graphql/", body)[2])
            if answer.get("errors"):
                raise SystemExit(f"GraphQL {name}: {answer['errors']}")
            client.get(path, params)
        rest, gql = [], []
        for _ in range(count):
            started = time.perf_counter()
            client.get(path, params)
            rest.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            client.post("/api/graphql/", body)
            gql.append((time.perf_counter() - started) * 1000)
        row = {
            "name": name,
            "rest_p50": statistics.median(rest),
            "rest_p95": percentile(rest, 95),
            "graphql_p50": statistics.median(gql),
            "graphql_p95": percentile(gql, 95),
        }
        row["p50_ratio"] = row["graphql_p50"] / row["rest_p50"]
        row["p95_ratio"] = row["graphql_p95"] / row["rest_p95"]
        out.append(row)
        print(
            f"{name:<30}{row['rest_p50']:>7.1f}/{row['rest_p95']:<7.1f}{row['graphql_p50']:>10.1f}/"
            f"{row['graphql_p95']:<7.1f}{row['p50_ratio']:>10.2f}x{row['p95_ratio']:>10.2f}x"
        )
    return out


WINDOW_SPANS = (
    ("24h", timedelta(days=1), "hour"),
    ("7d", timedelta(days=7), "hour"),
    ("28d", timedelta(days=28), "day"),
)


def measure_windows(client: Client, t: dict, count: int, *, naive: bool) -> list[dict]:
    """Every report over windows of 24 h, 7 d and 28 d, three ways: ending on a midnight
    (aligned), the same shifted by 7 s (edges at arbitrary seconds), and ending now to the
    second, as the dashboard asks (cache off: every answer computed afresh)."""
    print(
        f"\n{'window':<7}{'report':<20}{'aligned p50/p95':>17}{'shifted 7 s p50/p95':>21}{'now p50/p95':>15}"
        f"{'naive p50':>11}{'faster':>8}  answered from (shifted; now)"
    )
    out = []
    for span_name, span, granularity in WINDOW_SPANS:
        for name, path, extra in (
            ("stats", "stats/", {}),
            ("daily_stats", "daily_stats/", {}),
            (f"timeseries {granularity}", "timeseries/", {"granularity": granularity}),
            ("breakdown domains", "breakdown/", {"by": "site_domain", "limit": 10}),
            ("histogram", "histogram/", {"bins": 30}),
            ("reach", "reach/", {}),
            *experiment_reports(t),
        ):
            shift = timedelta(seconds=7)
            aligned = {"start": iso_utc(t["day"] - span), "end": iso_utc(t["day"]), **extra}
            shifted = {"start": iso_utc(t["day"] - span + shift), "end": iso_utc(t["day"] + shift), **extra}
            a = client.measure(path, aligned, count)
            s = client.measure(path, shifted, count)
            now = datetime.now(UTC).replace(microsecond=0)
            n = client.measure(path, {"start": iso_utc(now - span), "end": iso_utc(now), **extra}, count)
            slow = naive_ms(path, shifted) if naive else None
            worst = max(s["p95"], n["p95"])
            ratio = slow / worst if slow and worst else None
            out.append(
                {
                    "window": span_name,
                    "report": name,
                    "aligned": a,
                    "shifted": s,
                    "now": n,
                    "naive_p50": slow,
                    "naive_over_p95": ratio,
                }
            )
            slow_text = f"{slow:>11.1f}" if slow is not None else f"{'':>11}"
            ratio_text = f"{ratio:>7.0f}x" if ratio else f"{'':>8}"
            print(
                f"{span_name:<7}{name:<20}{a['p50']:>9.1f}/{a['p95']:<7.1f}{s['p50']:>13.1f}/{s['p95']:<7.1f}"
                f"{n['p50']:>7.1f}/{n['p95']:<7.1f}{slow_text}{ratio_text}  {s['source']}; {n['source']}"
            )
    return out


def write_chart(results: dict, path: str) -> None:
    """Report p95 against table size, one line per report (plain SVG, no dependencies)."""
    stages = results["stages"]
    names = [r["name"] for r in stages[0]["reports"]]
    width, height, left, bottom = 760, 420, 60, 40
    top = max(max(r["p95"] for r in s["reports"]) for s in stages) * 1.1 or 1
    sizes = [s["size"] for s in stages]

    def x(size):
        return left + (width - left - 200) * (sizes.index(size) / max(1, len(sizes) - 1))

    def y(ms):
        return height - bottom - (height - bottom - 20) * ms / top

    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="11">',
        f'<text x="{left}" y="14">report p95 (ms) against table size</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 200}" y2="{height - bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="20" x2="{left}" y2="{height - bottom}" stroke="black"/>',
    ]
    for size in sizes:
        parts.append(f'<text x="{x(size) - 20}" y="{height - bottom + 16}">{size / 1e6:g}M rows</text>')
    for tick in range(5):
        ms = top * tick / 4
        parts.append(f'<text x="5" y="{y(ms) + 4}">{ms:.1f}</text>')
    for i, name in enumerate(names):
        colour = colours[i % len(colours)]
        points = " ".join(f"{x(s['size']):.1f},{y(s['reports'][i]['p95']):.1f}" for s in stages)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{width - 190}" y="{30 + 16 * i}" fill="{colour}">{name}</text>')
    parts.append("</svg>")
    Path(path).write_text("\n".join(parts))


# The experiments measured: one randomised by auction, one by user (the simulated bidder's
# own, which a fresh load has already; ``tag_experiments`` tags an older database's outcomes,
# one user in ten for each).
BENCH_EXPERIMENTS = {"floor-test": ("auction", 1), "shading-v2": ("user", 0)}


def experiment_reports(t: dict) -> list[tuple[str, str, dict]]:
    """Results of the tagged experiments (when the database has them) and the bid landscape."""
    return [
        *(
            (f"results by {unit}", f"/api/experiments/{key}/results/", {"convert_to": "none"})
            for key, (unit, _residue) in BENCH_EXPERIMENTS.items()
            if t.get("tagged")
        ),
        ("bid landscape", "/api/insights/bid_landscape/", {"convert_to": "none"}),
        ("bid landscape USD", "/api/insights/bid_landscape/", {"convert_to": "none", "currency": "USD"}),
    ]


def tag_experiments() -> bool:
    """Outcomes of each bench experiment: an experiment no outcome carries yet gets one user
    in ten of the untagged ones (half of them, by user, in variant B), and its rollups are
    computed again; plans are registered. True when every experiment has outcomes."""
    from django.db import connection

    from outcomes import rollups
    from outcomes.models import Experiment

    tagged = False
    with connection.cursor() as cursor:
        for key, (_unit, residue) in BENCH_EXPERIMENTS.items():
            cursor.execute("SELECT EXISTS (SELECT 1 FROM outcomes_rollup_experiment_hour WHERE experiment = %s)", [key])
            if cursor.fetchone()[0]:
                continue
            cursor.execute(
                "UPDATE outcomes_auctionoutcome SET experiment = %s, "
                "variant = CASE WHEN abs(hashtext(user_id || 'v')) %% 2 = 0 THEN 'control' ELSE 'B' END "
                "WHERE experiment IS NULL AND abs(hashtext(user_id)) %% 10 = %s",
                [key, residue],
            )
            tagged = True
    for key, (unit, _residue) in BENCH_EXPERIMENTS.items():
        Experiment.objects.update_or_create(
            key=key,
            defaults={
                "name": key,
                "unit": unit,
                "variants": [{"name": "control", "share": 1}, {"name": "B", "share": 1}],
                "primary_metric": "win_rate",
            },
        )
    if tagged:
        rollups.rebuild(only={"experiment.hour", "experiment_user.day"})
    return True


def naive_results_ms(key: str, params: dict) -> float:
    """An experiment's sums from the raw table alone (a filter the rollups lack, which every outcome matches)."""
    from decimal import Decimal

    from outcomes.queries import OutcomeQuery
    from outcomes.queries.experiments import experiment_sums

    query = OutcomeQuery(
        experiment=key,
        max_price=Decimal("99999999"),
        start=datetime.fromisoformat(params["start"]),
        end=datetime.fromisoformat(params["end"]),
    )
    return median_ms(lambda: experiment_sums(query=query, unit=BENCH_EXPERIMENTS[key][0]))


def median_ms(call, times: int = 3) -> float:
    timings = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def naive_landscape_ms(params: dict) -> float:
    """The landscape's counts from the raw table alone (a filter the rollups lack, which every outcome matches)."""
    from decimal import Decimal

    from outcomes.queries import OutcomeQuery
    from outcomes.queries.landscape import landscape_counts

    query = OutcomeQuery(
        currency=params.get("currency"),
        max_price=Decimal("99999999"),
        start=datetime.fromisoformat(params["start"]),
        end=datetime.fromisoformat(params["end"]),
    )
    return median_ms(lambda: landscape_counts(query=query))


def naive_ms(path: str, params: dict) -> float | None:
    """The same report from the raw table (what the service did before rollups)."""
    from django.db import connection

    from outcomes.queries import OutcomeQuery, sql

    name = path.rstrip("/")
    if name.endswith("/results"):
        return naive_results_ms(name.split("/")[-2], params)
    if name.endswith("/bid_landscape"):
        return naive_landscape_ms(params)
    query = OutcomeQuery.from_filters(
        {k: (datetime.fromisoformat(v) if k in ("start", "end") else v) for k, v in params.items()}
    )

    def raw(group: str, **kwargs):
        return lambda: sql.run(sql.measures_sql(query, None, group=group, **kwargs))

    calls = {
        "stats": raw("one"),
        "daily_stats": raw("day"),
        "breakdown": raw("dimension", dimension="site_domain"),
    }
    if name == "timeseries":
        from zoneinfo import ZoneInfo

        from outcomes.queries import timeseries_buckets

        bounds = timeseries_buckets(
            granularity=params["granularity"], start=query.start, end=query.end, tz=ZoneInfo("UTC")
        )
        calls[name] = raw("buckets", boundaries=bounds)
    if name == "histogram":

        def exact_histogram():  # every matching row's prices, grouped (no sample)
            where, args = sql.raw_where(query)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT win_status, win_price, bid_price, count(*) FROM {sql.RAW} o WHERE {where} "
                    "GROUP BY GROUPING SETS ((win_status, win_price), (win_status, bid_price))",
                    args,
                )

        calls[name] = exact_histogram
    if name == "reach":

        def exact():
            where, args = sql.raw_where(query)
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT count(DISTINCT o.user_id) FROM {sql.RAW} o WHERE {where}", args)

        calls[name] = exact
    if name not in calls:
        return None
    timings = []
    with connection.cursor() as cursor:  # the naive path at its best: PostgreSQL's default parallelism
        cursor.execute("SET max_parallel_workers_per_gather = 2")
    try:
        for _ in range(3):
            started = time.perf_counter()
            calls[name]()
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET max_parallel_workers_per_gather")
    return statistics.median(timings)


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str, params: dict) -> tuple[int, dict, bytes]:
        base = path if path.startswith("/") else f"/api/outcomes/{path}"
        url = base + (f"?{urlencode(params)}" if params else "")
        return self.request("GET", url)

    def post(self, path: str, body: str) -> tuple[int, dict, bytes]:
        return self.request("POST", path, body, {"Content-Type": "application/json"})

    def request(self, method: str, url: str, body: str | None = None, headers: dict | None = None):
        for attempt in (1, 2):
            try:
                self.conn.request(method, url, body=body, headers=headers or {})
                response = self.conn.getresponse()
                return response.status, dict(response.getheaders()), response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # the server closed an idle keep-alive connection (e.g. during a slow naive query)
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def measure(self, path: str, params: dict, count: int) -> dict:
        for _ in range(3):
            status, headers, body = self.get(path, params)
            if status != 200:
                raise SystemExit(f"{path} {params}: HTTP {status}: {body[:300]!r}")
        timings = []
        for _ in range(count):
            started = time.perf_counter()
            self.get(path, params)
            timings.append((time.perf_counter() - started) * 1000)
        return {
            "p50": statistics.median(timings),
            "p95": percentile(timings, 95),
            "source": headers.get("X-Report-Source", ""),
        }


def cursor_deep(client: Client, depth: int) -> dict:
    """Time cursor pages ``depth`` rows down the default order. The cursor is made the way
    the API makes one, from the row at that depth (found once with OFFSET, not timed)."""
    from django.db import connection

    from outcomes import cursors

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT timestamp, id FROM outcomes_auctionoutcome ORDER BY timestamp DESC, id DESC OFFSET %s LIMIT 1",
            [depth],
        )
        timestamp, row_id = cursor.fetchone()
    token = cursors.encode(["-timestamp", "-id"], [timestamp, row_id])
    timings = []
    for i in range(23):
        started = time.perf_counter()
        status, _headers, body = client.get("", {"cursor": token})
        if status != 200:
            raise SystemExit(f"cursor page: HTTP {status}: {body[:300]!r}")
        if i >= 3:
            timings.append((time.perf_counter() - started) * 1000)
    return {"p50": statistics.median(timings), "p95": percentile(timings, 95), "depth": depth}


def keys_on_env() -> dict:
    """Reads need a key (one is made here, scope read), counted against its own limit."""
    from outcomes.models import APIKey

    key = APIKey.objects.create_key(name="bench", scopes=["read"])[1]
    return {"API_READ_ACCESS": "authenticated", "BENCH_API_KEY": key}


def print_auth_overhead(off: dict, on: dict) -> None:
    for run in ("paced", "saturation"):
        if run in off and run in on:
            a, b = off[run], on[run]
            print(
                f"auth overhead ({run}): {b['rps']:,.0f} vs {a['rps']:,.0f} req/s ({b['rps'] / a['rps']:.2f}), "
                f"p99 {b['p99']:.0f} vs {a['p99']:.0f} ms"
            )


def load_phase(port: int, t: dict, args, env: dict, label: str = "keys off") -> dict:
    """locust users against the API while a steady producer and the real consumer ingest.

    The producer (bench/produce.py, librdkafka) stands in for the auction servers; the
    consumer runs at ``nice`` 10, as ingestion would on a host it shares with the API (its
    own pod otherwise): Kafka absorbs its delays, the API's users would feel them. Two runs:
    ``--pace`` requests/s per user (a dashboard polling: the targets), then back to back for
    ``--saturation-seconds`` (the capacity).
    """
    topic = f"qbench-{uuid.uuid4().hex[:8]}"
    from django.conf import settings
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    brokers = ",".join(settings.CONSUMER.brokers)
    kafka = KafkaAdminClient(bootstrap_servers=brokers)
    kafka.create_topics([NewTopic(topic, 1, 1)])
    seconds = args.load_seconds + args.saturation_seconds
    producer = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "produce.py"), "--brokers", brokers, "--topic", topic]
        + ["--rate", str(args.ingest_rate), "--count", str(args.ingest_rate * (seconds + 30))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    producer.stdout.readline()  # "sending …": the messages are built
    kafka_env = {**env, "KAFKA_BROKERS": brokers, "CONSUMER_METRICS_PORT": "0"}
    consumer = subprocess.Popen(
        ["nice", "-n", "10", sys.executable, "manage.py", "process_outcomes", "--topic", topic, "--group", topic],
        cwd=ROOT,
        env=kafka_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    from django.db import connection

    def stored() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(sum(next_offset), 0) FROM outcomes_consumeroffset WHERE topic = %s", [topic]
            )
            return int(cursor.fetchone()[0])

    time.sleep(10)  # consumer up and steady
    results = {}
    try:
        runs = (("paced", args.pace, args.load_seconds), ("saturation", 0, args.saturation_seconds))
        for name, pace, duration in runs:
            if duration <= 0:
                continue
            before, started = stored(), time.monotonic()
            run = run_locust(port, t, env, clients=args.clients, pace=pace, seconds=duration)
            run["ingested_per_s"] = (stored() - before) / (time.monotonic() - started)
            results[name] = run
            print(
                f"\nload ({name}, {label}): {args.clients} locust users"
                + (f" at {pace:g} req/s each" if pace else " back to back")
                + f" for {duration}s while the consumer ingested {run['ingested_per_s']:,.0f} msg/s: "
                f"{run['rps']:,.0f} req/s, p50 {run['p50']:.0f} ms, p95 {run['p95']:.0f} ms, "
                f"p99 {run['p99']:.0f} ms, {run['errors']} errors; cache {run['cache']}"
            )
            print(
                "  p99 by request: "
                + ", ".join(f"{name} {e['p99']:.0f} ms" for name, e in sorted(run["endpoints"].items()))
            )
    finally:
        for proc in (producer, consumer):
            proc.terminate()
            proc.wait(timeout=60)
        kafka.delete_topics([topic])
        kafka.close()
    return {"clients": args.clients, **results}


def run_locust(port: int, t: dict, env: dict, *, clients: int, pace: float, seconds: int) -> dict:
    prefix = str(ROOT / "bench" / "locust")
    cache_file = Path(prefix + "_cache.json")
    subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless"]
        + ["-u", str(clients), "-r", str(clients), "-t", f"{seconds}s"]
        + ["--host", f"http://127.0.0.1:{port}", "--csv", prefix, "--only-summary", "--loglevel", "WARNING"],
        cwd=ROOT,
        env={
            **env,
            "BENCH_DOMAIN": t["busiest"],
            "BENCH_ID": str(t["id"]),
            "BENCH_START": t["week"]["start"],
            "BENCH_END": t["week"]["end"],
            "BENCH_PACE": str(pace),
            "BENCH_CACHE_FILE": str(cache_file),
        },
        check=False,
        stdout=subprocess.DEVNULL,
    )
    with open(f"{prefix}_stats.csv") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    for suffix in ("_stats.csv", "_stats_history.csv", "_failures.csv", "_exceptions.csv", "_cache.json"):
        Path(prefix + suffix).unlink(missing_ok=True)
    agg = rows["Aggregated"]
    return {
        "seconds": seconds,
        "pace_per_client": pace,
        "requests": int(agg["Request Count"]),
        "errors": int(agg["Failure Count"]),
        "rps": float(agg["Requests/s"]),
        "p50": float(agg["50%"]),
        "p95": float(agg["95%"]),
        "p99": float(agg["99%"]),
        "cache": cache,
        "endpoints": {
            name: {"requests": int(row["Request Count"]), "p50": float(row["50%"]), "p99": float(row["99%"])}
            for name, row in rows.items()
            if name != "Aggregated"
        },
    }


if __name__ == "__main__":
    main()
