"""The dashboard and the admin in a real browser: Debian's Chromium driven by Playwright.

Each test serves the app with pytest-django's ``live_server`` (a real HTTP server over the
test database) and looks at what a person would see: charts drawn on their canvases,
headline numbers equal to the API's answers, the URL keeping the view, outcomes from Kafka
arriving without a reload, the empty and error states. Screenshots of every state go to
``.cache/screenshots/`` for a reviewer to look at.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth.models import User
from django.test import Client

from outcomes.models import DeadLetter
from tests.factories import encode, message

# Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
# ordinary synchronous code all the same.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / ".cache" / "screenshots"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Series colours in dashboard.js: a chart "has data" when pixels of its colour are drawn.
COLOURS = {
    "chart-counts": (37, 99, 235),
    "chart-revenue": (147, 51, 234),
    "chart-histogram": (234, 88, 12),
}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's Chromium, never a downloaded browser."""
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}, "timezone_id": "UTC"}


@pytest.fixture
def fast_refresh(settings):
    settings.DASHBOARD_REFRESH_SECONDS = 1
    # A topic of its own (never created): the ingestion panel does not depend on what the
    # local broker holds from other runs.
    settings.CONSUMER = dataclasses.replace(settings.CONSUMER, topic=f"dashboard-{uuid.uuid4().hex[:8]}")
    settings.API_READ_ACCESS = "authenticated"  # the page must work as a logged-in person, not as "public"


@pytest.fixture
def logged_in(page, live_server, fast_refresh):
    """The page's browser context carries a staff session."""
    user = User.objects.create_user(f"staff-{uuid.uuid4().hex[:6]}", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    session = client.cookies["sessionid"].value
    page.context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
    return page


# Each page reports what its Content-Security-Policy refused, through the console.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) =>
    console.error(`csp-violation: ${e.violatedDirective} ${e.blockedURI || "inline"} on ${location.pathname}`));
"""


@pytest.fixture(autouse=True)
def policy_violations(request):
    """The dashboard and the admin run under their Content-Security-Policy (django-csp): a
    test fails if either page had something refused (an inline script, a foreign file).
    The API docs have a looser policy of their own and are not held to this one."""
    if "page" not in request.fixturenames:
        yield []
        return
    page = request.getfixturevalue("page")
    found: list[str] = []
    page.add_init_script(REPORT_VIOLATIONS)
    page.on("console", lambda msg: found.append(msg.text) if msg.text.startswith("csp-violation") else None)
    yield found
    ours = [text for text in found if " on /dashboard" in text or " on /admin" in text]
    if not request.node.get_closest_marker("expects_violation"):
        assert not ours, ours


def shot(page, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def refreshes(page) -> int:
    return int(page.evaluate("Number(document.body.dataset.refreshes || 0)"))


def wait_refresh(page, after: int | None = None, timeout: float = 15_000) -> None:
    """Until the page has drawn one more answer than ``after`` (default: now)."""
    count = refreshes(page) if after is None else after
    # Functions, not expression strings: Playwright evaluates those with eval(), which the
    # page's policy refuses.
    page.wait_for_function(f"() => Number(document.body.dataset.refreshes || 0) > {count}", timeout=timeout)


def card(page, name: str) -> float | None:
    value = page.get_attribute(f'.card[data-metric="{name}"]', "data-value")
    return None if value in (None, "") else float(value)


WINS = (22, 163, 74)  # the wins line, drawn over the outcomes line


def drawn(page, chart_id: str, colour: tuple[int, int, int] | None = None) -> int:
    """Pixels of the chart's (first) series colour, or of ``colour``, on its canvas."""
    r, g, b = colour or COLOURS[chart_id]
    return page.evaluate(
        """([id, r, g, b]) => {
            const canvas = document.querySelector(`#${id} canvas`);
            if (!canvas) return 0;
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let n = 0;
            for (let i = 0; i < data.length; i += 4) {
                const near = Math.abs(data[i] - r) < 40 && Math.abs(data[i + 1] - g) < 40
                    && Math.abs(data[i + 2] - b) < 40;
                if (data[i + 3] > 60 && near) n++;
            }
            return n;
        }""",
        [chart_id, r, g, b],
    )


def seed(outcome_factory, n_batches: int = 40) -> None:
    """Outcomes spread over the last 20 hours: several domains, currencies, wins and losses."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    domains = ["news.example", "sports.example", "recipes.example", "cars.example", "travel.example"]
    for i in range(n_batches):
        won = rng.random() < 0.6
        bid = Decimal(rng.randint(20, 300)) / 100
        outcome_factory(
            rng.randint(1, 8),
            site_domain=domains[i % len(domains)],
            currency=rng.choice(["USD", "USD", "EUR", "GBP"]),
            win_status=won,
            bid_price=bid,
            win_price=(bid * Decimal(rng.randint(40, 95)) / 100).quantize(Decimal("0.01")) if won else Decimal("0"),
            enriched=rng.random() < 0.7,
            user_id=f"user-{rng.randint(1, 60)}",
            auction_timestamp=now - timedelta(minutes=rng.randint(10, 20 * 60)),
        )


def api(page, live_server, path: str, **params) -> dict:
    now = datetime.now(UTC)
    params = {"start": (now - timedelta(hours=24)).isoformat(), "end": now.isoformat(), **params}
    response = page.request.get(f"{live_server.url}{path}", params=params)
    assert response.ok, response.text()
    return response.json()


# ---------------------------------------------------------------------------- the dashboard
def test_every_chart_is_drawn_and_the_numbers_are_the_apis(logged_in, live_server, outcome_factory):
    page = logged_in
    seed(outcome_factory)
    page.goto(f"{live_server.url}/dashboard/")
    wait_refresh(page, after=0)
    assert page.get_attribute("body", "data-state") == "data"
    for chart_id in COLOURS:
        assert drawn(page, chart_id) > 50, f"{chart_id} has no data drawn"
    stats = api(page, live_server, "/api/outcomes/stats/")
    reach = api(page, live_server, "/api/outcomes/reach/")
    assert card(page, "outcomes") == stats["total_outcomes"] > 0
    assert card(page, "win_rate") == pytest.approx(stats["win_rate"])
    assert card(page, "revenue") == pytest.approx(stats["total_revenue"])
    assert card(page, "ecpm") == pytest.approx(stats["ecpm"])
    assert card(page, "p50") == pytest.approx(stats["win_price_percentiles"]["p50"])
    assert card(page, "p99") == pytest.approx(stats["win_price_percentiles"]["p99"])
    assert card(page, "reach") == reach["reach"]
    assert "no data in the previous 24 h" in page.inner_text('.card[data-metric="outcomes"] .change')
    domains = api(page, live_server, "/api/outcomes/breakdown/", by="site_domain", limit=8)
    assert page.inner_text("#domains tbody tr:first-child td.name") == domains["rows"][0]["site_domain"]
    assert page.locator("#currencies tbody tr").count() == 3
    assert stats["currency"] is None  # no REPORTING_CURRENCY: each outcome's own, and the page says so
    assert page.get_attribute("body", "data-money-currency") == "mixed"
    assert page.inner_text('.card[data-metric="revenue"] h3').lower() == "revenue (mixed currencies)"
    assert page.text_content("#ingestion-status") in {"flowing", "idle", "stalled", "unknown"}
    assert page.locator("#latest tbody tr").count() == 10
    shot(page, "dashboard")

    # A filter: the charts, the numbers and the URL follow.
    before = refreshes(page)
    page.select_option("select[name=win_status]", "true")
    wait_refresh(page, after=before)
    assert parse_qs(urlparse(page.url).query)["win_status"] == ["true"]
    assert card(page, "outcomes") == stats["total_wins"]
    assert card(page, "win_rate") == 100
    assert drawn(page, "chart-counts", WINS) > 50  # wins = outcomes now: the lines coincide

    # The window: 7 days, drawn per hour.
    before = refreshes(page)
    page.click("label:has(input[value='7d'])")
    wait_refresh(page, after=before)
    query = parse_qs(urlparse(page.url).query)
    assert query["window"] == ["7d"] and query["win_status"] == ["true"]
    assert page.inner_text("#granularity") == "per hour, UTC"
    shot(page, "dashboard-filtered")

    # A reload keeps the view.
    page.reload()
    wait_refresh(page, after=0)
    assert page.input_value("select[name=win_status]") == "true"
    assert page.is_checked("input[name=window][value='7d']")
    assert card(page, "outcomes") == stats["total_wins"]

    # A phone's width: everything still there, nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.is_visible('.card[data-metric="revenue"]') and page.is_visible("#chart-histogram canvas")
    shot(page, "dashboard-phone")


def test_money_in_the_reporting_currency_equals_the_converted_reports(
    logged_in, live_server, outcome_factory, settings
):
    from outcomes.models import ExchangeRate

    settings.REPORTING_CURRENCY = "GBP"
    today = datetime.now(UTC).date()
    for age in range(10):
        day = today - timedelta(days=age)
        ExchangeRate.objects.create(day=day, currency="USD", per_euro=Decimal("1.08") + Decimal(age) / 1000)
        ExchangeRate.objects.create(day=day, currency="GBP", per_euro=Decimal("0.85") - Decimal(age) / 1000)
    page = logged_in
    seed(outcome_factory)
    page.goto(f"{live_server.url}/dashboard/")
    wait_refresh(page, after=0)
    stats = api(page, live_server, "/api/outcomes/stats/")
    plain = api(page, live_server, "/api/outcomes/stats/", convert_to="none")
    assert stats["currency"] == "GBP" and stats["total_revenue"] != plain["total_revenue"]
    assert card(page, "revenue") == pytest.approx(stats["total_revenue"])
    assert card(page, "ecpm") == pytest.approx(stats["ecpm"])
    assert page.get_attribute("body", "data-money-currency") == "GBP"
    for where in ('.card[data-metric="revenue"] h3', '.card[data-metric="ecpm"] h3', "#domains thead"):
        assert "(GBP)" in page.inner_text(where), where
    domains = api(page, live_server, "/api/outcomes/breakdown/", by="site_domain", limit=8)
    first = page.inner_text("#domains tbody tr:first-child td:nth-child(2)")
    assert first.replace(",", "") == f"{domains['rows'][0]['revenue']:.2f}"
    shot(page, "dashboard-converted")


def seed_busy_hour(count: int = 110_000) -> None:
    """``count`` outcomes in one hour of the last day, through the write service in one batch."""
    from outcomes import writes
    from tests.factories import parse_document

    hour = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    batch = writes.Batch()
    for i in range(count):
        document = {
            "bid_id": f"busy-{i}",
            "user_id": f"u{i % 5000}",
            "site_domain": f"site-{i % 40}.example",
            "win_status": i % 3 != 0,
            "bid_price": "1.00",
            "win_price": "0.70" if i % 3 else "0",
            "auction_timestamp": (hour + timedelta(seconds=i * 3600 / count)).isoformat(),
        }
        batch.events.append((parse_document(document), writes.Position("busy", 0, i)))
    assert writes.write_batch(batch, consumer_group="busy").stored == count


def test_axis_labels_stay_readable_with_100000_outcomes_per_bucket(logged_in, live_server):
    page = logged_in
    seed_busy_hour()
    page.goto(f"{live_server.url}/dashboard/")
    wait_refresh(page, after=0)
    assert card(page, "outcomes") == 110_000
    labels = page.get_attribute("#chart-counts", "data-y-labels").split("|")
    assert "100K" in labels, labels  # compact, not "100,000" cut to "0,000"
    widest = page.evaluate(
        """(labels) => {
            const ctx = document.createElement("canvas").getContext("2d");
            ctx.font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
            return Math.max(...labels.map((l) => ctx.measureText(l).width));
        }""",
        labels,
    )
    assert float(page.get_attribute("#chart-counts", "data-y-axis-width")) >= widest + 10
    shot(page, "dashboard-100k-per-bucket", full_page=False)


def test_custom_window_guides_without_an_error_and_an_empty_match_says_so(logged_in, live_server, outcome_factory):
    page = logged_in
    seed(outcome_factory, n_batches=10)
    page.goto(f"{live_server.url}/dashboard/")
    wait_refresh(page, after=0)
    assert "on whole minutes" in page.inner_text("#window-note")
    # Custom, before any date is typed: guidance, not a red error; the figures stay bright.
    page.click("label:has(input[value='custom'])")
    page.wait_for_selector("#hint", state="visible")
    assert "Pick a start" in page.inner_text("#hint")
    assert not page.is_visible("#error") and "stale" not in (page.get_attribute("#main", "class") or "")
    shot(page, "dashboard-custom-untyped", full_page=False)
    page.click("label:has(input[value='24h'])")
    page.wait_for_selector("#hint", state="hidden")
    # A filter nothing matches: a line says so (and offers to clear the filters).
    page.fill("input[name=site_domain]", "no-such-domain.example")
    page.wait_for_selector("#nomatch", state="visible", timeout=15_000)
    assert page.inner_text("#nomatch-text") == "No outcomes match these filters in this window."
    shot(page, "dashboard-no-match", full_page=False)
    page.click("#nomatch-clear")
    page.wait_for_selector("#nomatch", state="hidden", timeout=15_000)
    assert card(page, "outcomes") > 0 and page.input_value("input[name=site_domain]") == ""


def test_layout_names_whole_and_ingestion_across_the_row(logged_in, live_server, outcome_factory):
    page = logged_in
    seed(outcome_factory, n_batches=10)
    outcome_factory(  # the top domain by revenue, with a long name
        20,
        site_domain="a-very-long-subdomain-name.of-a-publisher-with-a-long-name.example",
        bid_price=Decimal("9.00"),
        win_price=Decimal("9.00"),
        auction_timestamp=datetime.now(UTC) - timedelta(hours=1),
    )
    page.goto(f"{live_server.url}/dashboard/")
    wait_refresh(page, after=0)
    main = page.locator("main").bounding_box()
    ingestion = page.locator("#ingestion").bounding_box()
    assert ingestion["width"] > 0.9 * (main["width"] - 32)  # the whole row, not a third of it
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    name = page.locator("#domains td.name", has_text="a-very-long").first
    style = name.evaluate("(td) => [getComputedStyle(td).whiteSpace, getComputedStyle(td).textOverflow]")
    assert style == ["nowrap", "ellipsis"]  # cut with an ellipsis, never broken mid-word
    assert name.get_attribute("title").startswith("a-very-long-subdomain-name")
    box = name.bounding_box()
    assert box["height"] < 40  # one line
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "dashboard-phone-long-domain")


def test_every_page_has_an_icon(page, live_server):
    response = page.request.get(f"{live_server.url}/favicon.ico")
    assert response.ok and response.headers["content-type"].startswith("image/svg+xml")


@pytest.mark.kafka
def test_an_outcome_from_kafka_appears_without_a_reload(
    logged_in, live_server, outcome_factory, make_topic, produce, consumer_process
):
    page = logged_in
    seed(outcome_factory, n_batches=5)
    topic = make_topic(1)
    consumer = consumer_process("--topic", topic, "--group", f"dash-{uuid.uuid4().hex[:6]}")
    page.goto(f"{live_server.url}/dashboard/")
    wait_refresh(page, after=0)
    page.evaluate("window.__sameDocument = true")
    start = card(page, "outcomes")
    produce(topic, [encode(message(auction_timestamp=datetime.now(UTC).isoformat().replace("+00:00", "Z")))])
    page.wait_for_function(
        f"""() => Number(document.querySelector('.card[data-metric="outcomes"]').dataset.value) === {start + 1}""",
        timeout=30_000,
    )
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    consumer.kill()


def test_the_empty_state_says_how_to_send_data(logged_in, live_server):
    page = logged_in
    page.goto(f"{live_server.url}/dashboard/")
    page.wait_for_function("() => document.body.dataset.state === 'empty'", timeout=15_000)
    assert page.is_visible("#empty") and not page.is_visible("#main")
    assert "simulate_auctions" in page.inner_text("#empty")
    shot(page, "dashboard-empty")


def test_an_api_failure_is_shown_and_recovers_by_itself(logged_in, live_server, outcome_factory):
    page = logged_in
    seed(outcome_factory, n_batches=10)
    page.goto(f"{live_server.url}/dashboard/")
    wait_refresh(page, after=0)
    failing = "**/api/outcomes/stats/**"
    page.route(
        failing,
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"detail": "The database is unavailable; retry shortly."}',
        ),
    )
    page.wait_for_selector("#error", state="visible", timeout=15_000)
    text = page.inner_text("#error")
    assert "HTTP 503" in text and "database is unavailable" in text and "Retrying" in text
    assert "stale" in page.get_attribute("#main", "class")
    shot(page, "dashboard-error")
    page.unroute(failing)
    page.wait_for_selector("#error", state="hidden", timeout=15_000)
    assert "stale" not in (page.get_attribute("#main", "class") or "")
    assert page.get_attribute("body", "data-state") == "data"


def test_a_hidden_tab_stops_refreshing(logged_in, live_server, outcome_factory):
    page = logged_in
    seed(outcome_factory, n_batches=3)
    page.goto(f"{live_server.url}/dashboard/")
    wait_refresh(page, after=0)
    page.evaluate(
        """() => {
            Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    assert page.text_content("#live") == "paused"
    count = refreshes(page)
    page.wait_for_timeout(2500)
    assert refreshes(page) == count
    page.evaluate(
        """() => {
            Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    wait_refresh(page, after=count, timeout=5_000)


# ---------------------------------------------------------------------------- the admin
def test_the_admin_login_outcomes_search_and_a_dead_letter(page, live_server, outcome_factory):
    User.objects.create_superuser("root", "root@example.com", "a-long-password-1")
    (target, *_rest) = outcome_factory(3)
    letter = DeadLetter.objects.create(
        topic="auction_outcomes",
        partition=2,
        offset=41,
        reason="invalid_json",
        detail="line 1: not JSON",
        value=b"{nope",
    )
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "a-long-password-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    shot(page, "admin-index")
    assert page.get_attribute("a:has-text('View site')", "href") == "/dashboard/"

    page.goto(f"{live_server.url}/admin/outcomes/auctionoutcome/")
    assert page.locator("#result_list tbody tr").count() == 3
    # Every column on screen at 1440 px (and at 1280), nothing to scroll sideways.
    for width in (1440, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        right = page.evaluate("document.querySelector('#result_list').getBoundingClientRect().right")
        assert right <= width and page.evaluate("document.documentElement.scrollWidth") <= width
    shot(page, "admin-outcomes-1280", full_page=False)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.fill("#searchbar", target.bid_id)
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1 and target.bid_id in rows.first.inner_text()
    shot(page, "admin-outcome-search")

    page.goto(f"{live_server.url}/admin/outcomes/deadletter/{letter.id}/change/")
    body = page.inner_text("#content")
    assert "line 1: not JSON" in body and "{nope" in body and "41" in body
    shot(page, "admin-dead-letter")


def test_the_dashboard_asks_anonymous_visitors_to_log_in(page, live_server):
    page.goto(f"{live_server.url}/dashboard/")
    assert urlparse(page.url).path == "/admin/login/"
    assert page.is_visible("#id_username")


@pytest.mark.parametrize(("path", "rendered"), [("/api/docs/", ".swagger-ui .opblock"), ("/api/redoc/", "h1")])
def test_the_api_docs_render_from_this_server_alone(page, live_server, settings, path, rendered):
    settings.API_READ_ACCESS = "public"
    hosts, refused = set(), []
    page.on("response", lambda response: hosts.add(urlparse(response.url).netloc))
    page.on("requestfailed", lambda request: refused.append((request.url, request.failure)))
    page.goto(f"{live_server.url}{path}")
    page.wait_for_selector(rendered, timeout=20_000)
    assert "Auction outcomes analytics API" in page.inner_text("body")
    shot(page, "api-" + path.strip("/").split("/")[-1], full_page=False)
    # Nothing fetched from elsewhere (no CDN, no web fonts); data: and blob: URLs are local.
    assert hosts - {""} == {urlparse(live_server.url).netloc}
    # The page's own files all load under its Content-Security-Policy; what the bundle would
    # fetch from a third party (Redoc's logo) is refused by the browser under that policy
    # (never tried: on a connected machine it would have reached the third party).
    assert all(failure == "csp" for _, failure in refused), refused


@pytest.mark.expects_violation
def test_the_dashboard_refuses_an_injected_inline_script(logged_in, live_server, policy_violations):
    """The policy is enforced, not only sent: a script injected into the page (as a stored
    cross-site-scripting flaw would) does not run, and the refusal is seen."""
    logged_in.goto(f"{live_server.url}/dashboard/")
    logged_in.wait_for_selector("#chart-counts")
    with logged_in.expect_console_message(lambda msg: msg.text.startswith("csp-violation: script-src")):
        logged_in.evaluate(
            """() => { const s = document.createElement("script"); s.textContent = "window.injected = 1";
                       document.body.appendChild(s); }"""
        )
    assert logged_in.evaluate("window.injected === undefined")
    assert any(text.startswith("csp-violation: script-src") and " on /dashboard" in text for text in policy_violations)


def test_the_experiments_view_shows_the_results_the_api_gives(logged_in, live_server, outcome_factory):
    """Variants side by side, each comparison's interval against 0, the SRM state and the
    warnings, for a registered experiment (an arm short of traffic) and an unregistered key."""
    from outcomes.models import Experiment

    page = logged_in
    rng = random.Random(3)
    now = datetime.now(UTC)
    for i in range(260):
        variant = "B" if i % 3 == 0 else "control"  # planned 50/50: B is short of traffic
        won = rng.random() < (0.75 if variant == "B" else 0.4)
        bid = Decimal(rng.randint(50, 250)) / 100
        outcome_factory(
            1,
            user_id=f"user-{i}",
            experiment="shading-v2",
            variant=variant,
            win_status=won,
            bid_price=bid,
            win_price=(bid * Decimal("0.7")).quantize(Decimal("0.01")) if won else Decimal("0"),
            auction_timestamp=now - timedelta(minutes=rng.randint(5, 600)),
        )
    outcome_factory(3, experiment="bidder-x", variant="control", auction_timestamp=now - timedelta(minutes=30))
    Experiment.objects.create(
        key="shading-v2",
        name="Shading v2",
        unit="user",
        variants=[{"name": "control", "share": 0.5}, {"name": "B", "share": 0.5}],
        primary_metric="win_rate",
        guardrail_metrics=["ecpm"],
        start=now - timedelta(days=1),
    )
    page.goto(f"{live_server.url}/dashboard/")
    wait_refresh(page, after=0)
    page.wait_for_selector("#comparisons tbody tr[data-metric]")
    assert page.is_visible("#experiments")
    assert page.eval_on_selector_all("#experiment option", "options => options.map(o => o.value)") == [
        "shading-v2",
        "bidder-x",
    ]
    response = page.request.get(f"{live_server.url}/api/experiments/shading-v2/results/")
    results = response.json()
    for variant in results["variants"]:
        row = page.locator(f'#variants tbody tr[data-variant="{variant["variant"]}"]')
        cells = row.locator("td").all_inner_texts()
        assert int(cells[2].replace(",", "")) == variant["units"]
        assert cells[4] == f"{variant['win_rate']:.2f} %"
    shown = page.locator("#comparisons tbody tr[data-metric]")
    assert shown.count() == len(results["comparisons"]) == 6
    first = results["comparisons"][0]
    assert shown.first.get_attribute("data-metric") == first["metric"] == "win_rate"
    assert shown.first.get_attribute("data-significant") == str(first["significant"]).lower() == "true"
    assert page.locator('#comparisons tr[data-metric="win_rate"] .range.up').count() == 1  # B wins more
    assert results["srm"]["mismatch"] and page.inner_text("#srm").lower() == "sample-ratio mismatch"
    codes = page.eval_on_selector_all("#experiment-warnings li", "items => items.map(i => i.dataset.code)")
    assert codes == [w["code"] for w in results["warnings"]] and "sample_ratio_mismatch" in codes
    assert "randomised by user" in page.inner_text("#experiment-about")
    page.locator("#experiments").scroll_into_view_if_needed()
    shot(page, "dashboard-experiments")

    before = refreshes(page)
    page.select_option("#experiment", "bidder-x")
    wait_refresh(page, after=before)
    page.wait_for_function("() => document.querySelector('#experiment-about').textContent.startsWith('Not registered')")
    assert page.inner_text("#srm").lower() == "no srm check"
    assert "unregistered" in page.eval_on_selector_all(
        "#experiment-warnings li", "items => items.map(i => i.dataset.code)"
    )


def test_the_bid_landscape_view_draws_the_curve_and_the_optimal_bid(logged_in, live_server, outcome_factory, settings):
    """Empirical points with intervals, the fitted curve, the market price (second price), and a
    value box whose optimal bid is the API's."""
    from django.core.management import call_command

    settings.AUCTION_TYPE = "second_price"
    page = logged_in
    rng = random.Random(8)
    now = datetime.now(UTC)
    for i in range(400):
        bid = Decimal(rng.choice([40, 60, 80, 100, 120, 140, 160])) / 100
        market = Decimal(str(round(rng.lognormvariate(0, 0.4), 2)))
        won = bid > market
        outcome_factory(
            1,
            user_id=f"user-{i}",
            bid_price=bid,
            win_status=won,
            win_price=max(market, Decimal("0.01")) if won else Decimal("0"),
            auction_timestamp=now - timedelta(minutes=rng.randint(5, 600)),
        )
    call_command("fit_bid_models", "--min-outcomes", "50")
    page.goto(f"{live_server.url}/dashboard/")
    wait_refresh(page, after=0)
    page.wait_for_selector("#optimal[data-bid]")
    assert page.is_visible("#landscape")
    assert drawn(page, "chart-landscape", (219, 39, 119)) > 50  # the fitted W(b)
    assert int(page.get_attribute("#chart-landscape", "data-points")) == 7
    assert "isotonic v1" in page.inner_text("#landscape-about")
    assert "Kaplan–Meier" in page.inner_text("#market")
    wanted = page.request.get(f"{live_server.url}/api/insights/optimal_bid/", params={"value": "1.5"}).json()
    assert float(page.get_attribute("#optimal", "data-bid")) == wanted["optimal"]["bid"]
    assert page.locator("#bid-choices tbody tr").count() == len(wanted["alternatives"])
    page.locator("#landscape").scroll_into_view_if_needed()
    shot(page, "dashboard-bid-landscape")

    page.fill("#value-box input[name=value]", "0.8")
    page.press("#value-box input[name=value]", "Enter")
    cheaper = page.request.get(f"{live_server.url}/api/insights/optimal_bid/", params={"value": "0.8"}).json()
    page.wait_for_function(f"() => document.querySelector('#optimal').dataset.bid === '{cheaper['optimal']['bid']}'")


def test_the_current_view_is_saved_as_a_report_subscribed_to_and_downloaded_as_excel(
    page, live_server, outcome_factory, fast_refresh
):
    """A person who may save reports keeps the view (its filters and its window, resolved at
    each run) as a saved report, subscribes to it by e-mail, and takes the view's time series
    as an Excel workbook."""
    from django.contrib.auth.models import Permission

    from outcomes.models import SavedReport, Subscription

    user = User.objects.create_user(f"analyst-{uuid.uuid4().hex[:6]}", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["add_savedreport", "add_subscription"]))
    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    seed(outcome_factory, n_batches=10)
    page.goto(f"{live_server.url}/dashboard/?window=7d&currency=EUR")
    wait_refresh(page, after=0)

    href = page.get_attribute("#excel", "href")
    query = parse_qs(urlparse(href).query)
    assert urlparse(href).path == "/api/outcomes/timeseries/" and query["format"] == ["xlsx"]
    assert query["currency"] == ["EUR"] and query["granularity"] == ["hour"]
    download = page.request.get(f"{live_server.url}{href}")
    assert download.ok and download.headers["content-type"].startswith("application/vnd.openxmlformats")

    page.click("#save-report")
    assert "last 7d" in page.inner_text("#save-window")
    page.fill("input[name=report_name]", "EUR this week")
    page.click("#save-form button[type=submit]")
    page.wait_for_function("() => document.body.dataset.savedReport !== undefined", timeout=10_000)
    shot(page, "dashboard-saved-report", full_page=False)
    saved = SavedReport.objects.get()
    assert saved.name == "EUR this week" and saved.report == "timeseries" and saved.window == "last_7d"
    assert saved.params == {"granularity": "hour", "currency": "EUR"} and saved.created_by == user.username
    assert f"/api/reports/{saved.id}/run/?format=xlsx" in page.get_attribute("#save-status a", "href")
    # ... and subscribes to it: every Monday at 08:00 in the browser's time zone, as Excel
    assert page.is_visible("#subscribe-form")
    page.fill("#subscribe-form input[name=recipients]", "ana@example.com, bo@example.com")
    page.select_option("#subscribe-form select[name=rrule]", "FREQ=WEEKLY;BYDAY=MO;BYHOUR=8;BYMINUTE=0")
    page.click("#subscribe-form button[type=submit]")
    page.wait_for_function("() => document.body.dataset.subscription !== undefined", timeout=10_000)
    shot(page, "dashboard-subscribed", full_page=False)
    subscription = Subscription.objects.get()
    zone = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    assert subscription.report_id == saved.id and subscription.recipients == ["ana@example.com", "bo@example.com"]
    assert (subscription.rrule, subscription.timezone, subscription.format) == (
        "FREQ=WEEKLY;BYDAY=MO;BYHOUR=8;BYMINUTE=0",
        zone,
        "xlsx",
    )
    assert subscription.next_run_at is not None and "first e-mail" in page.inner_text("#subscribe-status")
    # Someone who may not save reports does not see the button.
    page.context.clear_cookies()
    viewer = User.objects.create_user(f"viewer-{uuid.uuid4().hex[:6]}", password="pw", is_staff=True)
    client.force_login(viewer)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    page.goto(f"{live_server.url}/dashboard/")
    wait_refresh(page, after=0)
    assert not page.is_visible("#save-report")


def test_the_dashboard_is_pushed_each_batch_and_falls_back_to_polling(logged_in, live_server, settings, tmp_path):
    """With the live role running, a committed batch's event makes the page refresh (nothing
    polls: the refresh interval is an hour), its figures equal the reports'; with the live
    server gone, the page says so and polls."""
    from outcomes import writes
    from outcomes.ingest.publishing import LivePublisher
    from tests.factories import parse_document
    from tests.servers import free_port, start_live

    page = logged_in
    port, stream = free_port(), f"test:live:{uuid.uuid4().hex[:8]}"
    origin = live_server.url  # http://localhost:PORT: the live server on the same host gets the session cookie
    server = start_live(port, tmp_path / "live.log", LIVE_STREAM=stream, LIVE_ALLOWED_ORIGINS=origin)
    settings.DASHBOARD_REFRESH_SECONDS = 3600
    settings.LIVE_URL = f"http://localhost:{port}/api/live/"
    policy = settings.CONTENT_SECURITY_POLICY
    settings.CONTENT_SECURITY_POLICY = {
        **policy,
        "DIRECTIVES": {**policy["DIRECTIVES"], "connect-src": ["'self'", f"http://localhost:{port}"]},
    }
    publisher = LivePublisher("redis://127.0.0.1:6379/0", stream, 1000)

    def commit(n: int) -> None:
        batch = writes.Batch()
        now = datetime.now(UTC) - timedelta(minutes=1)
        for i in range(n):
            document = message(auction_timestamp=now.isoformat())  # a fresh bid id each
            batch.events.append((parse_document(document), writes.Position("pushed", 0, i)))
        publisher.publish(writes.write_batch(batch, consumer_group="pushed", live=True).live)

    try:
        page.goto(f"{live_server.url}/dashboard/?window=1h")
        page.wait_for_function("() => document.body.dataset.stream === 'open'", timeout=15_000)
        assert page.text_content("#live") == "live"
        total = 0
        for n in (7, 5):
            before = refreshes(page)
            commit(n)
            total += n
            wait_refresh(page, after=before, timeout=10_000)
            since = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
            stats = page.request.get(f"{live_server.url}/api/outcomes/stats/", params={"start": since}).json()
            assert card(page, "outcomes") == stats["total_outcomes"] == total
        shot(page, "dashboard-pushed", full_page=False)
    finally:
        server.terminate()
        server.wait(timeout=30)
    page.wait_for_function("() => document.body.dataset.stream === 'down'", timeout=15_000)
    assert page.text_content("#live") == "polling" and "unavailable" in page.get_attribute("#live", "title")


def test_graphiql_runs_a_query_from_this_server_alone(logged_in, live_server, settings, outcome_factory):
    """GraphiQL (DEBUG only) loads every file from this server, under the page policy, and runs
    a query as the logged-in person (session and CSRF token): its answer is the REST answer."""
    settings.DEBUG = True
    outcome_factory(4, site_domain="graphiql.example")
    hosts, refused = set(), []
    logged_in.on("response", lambda response: hosts.add(urlparse(response.url).netloc))
    logged_in.on("requestfailed", lambda request: refused.append((request.url, request.failure)))
    violations = []
    logged_in.on("console", lambda msg: violations.append(msg.text) if msg.text.startswith("csp-violation") else None)
    logged_in.goto(f"{live_server.url}/api/graphql/")
    logged_in.wait_for_selector(".graphiql-container .graphiql-editor", timeout=20_000)
    editor = logged_in.locator(".graphiql-query-editor .CodeMirror").first
    editor.evaluate(
        "(el, q) => el.CodeMirror.setValue(q)",
        '{ stats(siteDomain: "graphiql.example") { totalOutcomes totalRevenue } }',
    )

    def ours(response) -> bool:  # not GraphiQL's own introspection query
        return response.url.endswith("/api/graphql/") and "graphiql.example" in (response.request.post_data or "")

    with logged_in.expect_response(ours) as done:
        logged_in.click(".graphiql-execute-button")
    answer = done.value.json()
    staff = Client()
    staff.force_login(User.objects.filter(is_staff=True).first())
    rest = staff.get("/api/outcomes/stats/", {"site_domain": "graphiql.example"}).json()
    assert answer["data"]["stats"] == {"totalOutcomes": 4, "totalRevenue": rest["total_revenue"]}
    logged_in.wait_for_function("document.querySelector('.result-window').innerText.includes('totalOutcomes')")
    shot(logged_in, "graphiql", full_page=False)
    assert hosts - {""} == {urlparse(live_server.url).netloc}, hosts
    assert not refused, refused
    assert not [text for text in violations if " on /api/graphql" in text], violations
