// The dashboard: reads the report endpoints with the visitor's session and draws them.
// No build step: plain ES2020 and uPlot (from npm, copied into static files by `make assets`).
(() => {
  "use strict";

  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const WINDOWS = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
  const FILTERS = ["site_domain", "currency", "win_status", "enriched"];
  const $ = (selector) => document.querySelector(selector);
  const form = $("#controls");
  const number = new Intl.NumberFormat("en-US");
  const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });
  const charts = {};
  let timer = null;
  let generation = 0;
  let lastSuccess = null;

  // ------------------------------------------------------------------ state ⇄ URL and form
  function readState() {
    const query = new URLSearchParams(location.search);
    const state = { window: query.get("window") || "24h", start: query.get("start") || "", end: query.get("end") || "" };
    if (!(state.window in WINDOWS) && state.window !== "custom") state.window = "24h";
    for (const name of FILTERS) state[name] = query.get(name) || "";
    return state;
  }

  function showState(state) {
    form.elements.window.value = state.window;
    form.elements.start.value = state.start;
    form.elements.end.value = state.end;
    for (const name of FILTERS) form.elements[name].value = state[name];
    form.classList.toggle("is-custom", state.window === "custom");
  }

  function formState() {
    const state = { window: form.elements.window.value, start: form.elements.start.value, end: form.elements.end.value };
    for (const name of FILTERS) state[name] = form.elements[name].value.trim();
    state.currency = state.currency.toUpperCase();
    return state;
  }

  function writeUrl(state) {
    const query = new URLSearchParams();
    if (state.window !== "24h") query.set("window", state.window);
    if (state.window === "custom") {
      if (state.start) query.set("start", state.start);
      if (state.end) query.set("end", state.end);
    }
    for (const name of FILTERS) if (state[name]) query.set(name, state[name]);
    const search = query.toString();
    history.replaceState(null, "", search ? `?${search}` : location.pathname);
  }

  // ------------------------------------------------------------------ time
  function utc(value) {
    // datetime-local values are read as UTC, like every time the API speaks.
    const time = Date.parse(`${value}Z`);
    return Number.isNaN(time) ? null : time;
  }

  function range(state) {
    if (state.window === "custom") {
      const start = utc(state.start);
      const end = state.end ? utc(state.end) : Math.ceil(Date.now() / 60e3) * 60e3;
      if (start === null || end === null) throw new InputError("Pick a start (UTC), and an end or none: the window then ends now.");
      if (start >= end) throw new InputError("The start must be before the end.");
      return { start, end };
    }
    // Whole minutes, ending at the next one: the rollups answer every minute of the window,
    // and the minute under way (everything stored so far) is in it.
    const end = Math.ceil(Date.now() / 60e3) * 60e3;
    return { start: end - WINDOWS[state.window], end };
  }

  const minuteText = (time) => new Date(time).toISOString().slice(0, 16).replace("T", " ");

  function granularity(length) {
    if (length <= 3 * 3600e3) return "minute";
    if (length <= 8 * 86400e3) return "hour";
    if (length <= 1000 * 86400e3) return "day";
    return "week";
  }

  const iso = (time) => new Date(time).toISOString().replace(".000Z", "Z");

  function duration(length) {
    const hours = length / 3600e3;
    if (hours < 48) return `${Math.round(hours * 10) / 10} h`;
    return `${Math.round((hours / 24) * 10) / 10} d`;
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "never";
    if (seconds < 90) return `${Math.round(seconds)} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  }

  // ------------------------------------------------------------------ API
  class ApiError extends Error {
    constructor(status, detail) {
      super(status ? `HTTP ${status}${detail ? `: ${detail}` : ""}` : detail);
      this.status = status;
    }
  }
  class InputError extends Error {}

  async function api(path, params) {
    const query = new URLSearchParams(Object.entries(params).filter(([, value]) => value !== "" && value !== undefined));
    let response;
    try {
      response = await fetch(`${path}?${query}`, { credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch (error) {
      throw new ApiError(0, "the API cannot be reached");
    }
    if (!response.ok) {
      let detail = "";
      try {
        const body = await response.json();
        detail = body.detail || Object.entries(body).map(([key, value]) => `${key}: ${[].concat(value).join(" ")}`).join("; ");
      } catch (error) {
        detail = response.statusText;
      }
      throw new ApiError(response.status, detail);
    }
    return response.json();
  }

  // ------------------------------------------------------------------ refresh
  async function refresh() {
    const mine = ++generation;
    const state = formState();
    let span;
    try {
      span = range(state);
    } catch (error) {
      if (error instanceof InputError) return showHint(error.message);
      throw error;
    }
    showHint("");
    $("#window-note").textContent = `${minuteText(span.start)} → ${minuteText(span.end)} UTC, on whole minutes`;
    const length = span.end - span.start;
    const filters = {};
    for (const name of FILTERS) filters[name] = state[name];
    const current = { ...filters, start: iso(span.start), end: iso(span.end) };
    const previous = { ...filters, start: iso(span.start - length), end: iso(span.start) };
    const base = config.api;
    const grain = granularity(length);
    let answers;
    try {
      answers = await Promise.all([
        api(`${base}stats/`, current),
        api(`${base}stats/`, previous),
        api(`${base}reach/`, current),
        api(`${base}reach/`, previous),
        api(`${base}timeseries/`, { ...current, granularity: grain }),
        api(`${base}breakdown/`, { ...current, by: "site_domain", order: "revenue", limit: 8 }),
        api(`${base}breakdown/`, { ...current, by: "currency", order: "revenue", limit: 10 }),
        api(`${base}histogram/`, { ...current, price: "win_price", bins: 30 }),
        api(config.ingestion, {}),
        api(base, { ...filters, ordering: "-timestamp", page_size: 10, cursor: "" }),
      ]);
    } catch (error) {
      if (mine !== generation) return;
      const client = error.status >= 400 && error.status < 500 && ![401, 403, 408, 429].includes(error.status);
      if (error.status === 401 || error.status === 403) {
        return showError(`Not allowed (${error.message}). Log in again through the admin.`, false);
      }
      return showError(client ? `A filter was refused: ${error.message}` : `Cannot load the data: ${error.message}`, !client);
    }
    if (mine !== generation) return; // a newer refresh (another filter) started meanwhile
    const [stats, previousStats, reach, previousReach, series, domains, currencies, histogram, ingestion, latest] = answers;
    hideError();
    const nothingStored = ingestion.last_stored_at === null && stats.total_outcomes === 0;
    $("#empty").hidden = !nothingStored;
    $("#main").hidden = nothingStored;
    const filtered = FILTERS.some((name) => state[name]);
    $("#nomatch").hidden = nothingStored || stats.total_outcomes > 0;
    $("#nomatch-text").textContent = filtered
      ? "No outcomes match these filters in this window."
      : "No outcomes in this window: widen it, or pick another.";
    $("#nomatch-clear").hidden = !filtered;
    document.body.dataset.state = nothingStored ? "empty" : "data";
    $("#empty-topic").textContent = config.topic;
    const label = `vs previous ${duration(length)}`;
    drawMoneyUnit(stats);
    drawCards(stats, previousStats, reach, previousReach, label);
    drawSeries(series, grain);
    drawBreakdown("#domains", domains, "site_domain", (row) => [money.format(row.revenue), number.format(row.wins), `${row.win_rate.toFixed(1)} %`]);
    drawBreakdown("#currencies", currencies, "currency", (row) => [money.format(row.revenue), number.format(row.outcomes), `${row.win_rate.toFixed(1)} %`]);
    drawHistogram(histogram, stats);
    drawIngestion(ingestion);
    drawLatest(latest.results);
    refreshLandscape(mine, state, current, currencies).catch((error) => {
      if (mine === generation) $("#landscape-about").textContent = `Cannot load the bid landscape: ${error.message}`;
    });
    refreshExperiments(mine, current).catch((error) => {
      if (mine === generation) $("#experiment-about").textContent = `Cannot load the experiment's results: ${error.message}`;
    });
    const workbook = new URLSearchParams(Object.entries({ ...current, granularity: grain, format: "xlsx" }).filter(([, value]) => value));
    $("#excel").href = `${base}timeseries/?${workbook}`;
    lastSuccess = new Date();
    $("#updated").textContent = `Updated ${lastSuccess.toISOString().slice(11, 19)} UTC · ${stats.total_outcomes.toLocaleString("en-US")} outcomes in the window · refreshes every ${config.refreshSeconds} s`;
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
  }

  // ------------------------------------------------------------------ save as report
  // The dashboard's windows as a saved report's, resolved again at each run (a custom one is kept as it is).
  const SAVED_WINDOWS = { "1h": "last_1h", "24h": "last_24h", "7d": "last_7d", "30d": "last_30d" };

  function savedReport(name) {
    const state = formState();
    const span = range(state);
    const params = { granularity: granularity(span.end - span.start) };
    for (const field of FILTERS) if (state[field]) params[field] = state[field];
    const body = { name, report: "timeseries", params, timezone: "UTC" };
    if (state.window in SAVED_WINDOWS) body.window = SAVED_WINDOWS[state.window];
    else Object.assign(params, { start: iso(span.start), end: iso(span.end) });
    return body;
  }

  function cookie(name) {
    const found = document.cookie.split("; ").find((part) => part.startsWith(`${name}=`));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  async function saveReport(event) {
    event.preventDefault();
    const status = $("#save-status");
    let body;
    try {
      body = savedReport($("#save-form").elements.report_name.value.trim());
    } catch (error) {
      status.textContent = error.message;
      return;
    }
    status.textContent = "Saving…";
    const response = await fetch(config.reports, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": cookie("csrftoken") },
      body: JSON.stringify(body),
    }).catch(() => null);
    if (response === null) {
      status.textContent = "The API cannot be reached: not saved.";
      return;
    }
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = answer.detail || Object.entries(answer).map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join("; ");
      status.textContent = `Not saved (HTTP ${response.status}): ${detail}`;
      return;
    }
    status.textContent = "";
    const link = document.createElement("a");
    link.href = `${config.reports}${answer.id}/run/?format=xlsx`;
    link.textContent = "run it as Excel";
    status.append(`Saved as report #${answer.id} (${answer.window || "fixed window"}) — `, link);
    document.body.dataset.savedReport = String(answer.id);
    if (config.canSubscribe) openSubscribeForm(answer.id);
  }

  // ------------------------------------------------------------------ subscribe to a saved report
  // The schedule runs on the wall clock of the browser's time zone: "08:00" is the reader's 08:00.
  const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

  function openSubscribeForm(reportId) {
    const form = $("#subscribe-form");
    form.dataset.report = String(reportId);
    $("#subscribe-zone").textContent = `(${ZONE} time)`;
    $("#subscribe-status").textContent = "";
    form.hidden = false;
  }

  async function subscribe(event) {
    event.preventDefault();
    const form = $("#subscribe-form");
    const status = $("#subscribe-status");
    const recipients = form.elements.recipients.value.split(/[\s,;]+/).filter(Boolean);
    const body = {
      report: Number(form.dataset.report),
      rrule: form.elements.rrule.value,
      format: form.elements.format.value,
      timezone: ZONE,
      recipients,
    };
    status.textContent = "Subscribing…";
    const response = await fetch(config.subscriptions, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": cookie("csrftoken") },
      body: JSON.stringify(body),
    }).catch(() => null);
    if (response === null) {
      status.textContent = "The API cannot be reached: not subscribed.";
      return;
    }
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = answer.detail || Object.entries(answer).map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join("; ");
      status.textContent = `Not subscribed (HTTP ${response.status}): ${detail}`;
      return;
    }
    const next = answer.next_run_at ? new Date(answer.next_run_at) : null;
    status.textContent = `Subscribed (#${answer.id}): ${recipients.join(", ")}` +
      (next ? `, first e-mail ${next.toLocaleString("en-GB", { timeZone: ZONE, dateStyle: "medium", timeStyle: "short" })}` : "");
    document.body.dataset.subscription = String(answer.id);
  }

  function openSaveForm() {
    const state = formState();
    $("#save-window").textContent = state.window in SAVED_WINDOWS
      ? `window: ${SAVED_WINDOWS[state.window].replace("_", " ")}, resolved at each run`
      : "window: this custom one, as it is";
    $("#save-status").textContent = "";
    $("#save-form").hidden = false;
    $("#save-form").elements.report_name.focus();
  }

  function showError(message, retrying) {
    const banner = $("#error");
    message = /[.!?]$/.test(message) ? message : `${message}.`;
    const since = lastSuccess ? ` The figures below are from ${lastSuccess.toISOString().slice(11, 19)} UTC.` : "";
    banner.textContent = `${message}${retrying ? ` Retrying every ${config.refreshSeconds} s.` : ""}${since}`;
    banner.hidden = false;
    document.body.dataset.state = "error";
    $("#main").classList.add("stale");
  }

  function showHint(message) {
    // Guidance while a custom window is being typed: not an error, and the figures stay.
    const hint = $("#hint");
    hint.textContent = message;
    hint.hidden = !message;
  }

  function hideError() {
    $("#error").hidden = true;
    $("#main").classList.remove("stale");
  }

  // ------------------------------------------------------------------ headline numbers
  function change(card, now, before, label, points) {
    const element = card.querySelector(".change");
    element.className = "change";
    if (now === null || before === null || before === undefined || (!points && before === 0)) {
      element.textContent = `no data ${label.replace("vs ", "in the ")}`;
      return;
    }
    const delta = points ? now - before : ((now - before) / before) * 100;
    element.textContent = `${delta >= 0 ? "▲" : "▼"} ${Math.abs(delta).toFixed(1)}${points ? " pt" : " %"} ${label}`;
    element.classList.add(delta >= 0 ? "up" : "down");
  }

  // Which currency the money figures are in, as the reports say: the one converted to (the
  // REPORTING_CURRENCY setting), or the one the outcomes have; several added as they are
  // are said to be.
  function drawMoneyUnit(stats) {
    const mixed = stats.mixed_currencies;
    const unit = stats.currency ? `(${stats.currency})` : mixed ? "(mixed currencies)" : "";
    const title = mixed
      ? "Each outcome's amount in its own currency, added as it is: set REPORTING_CURRENCY, or filter by currency"
      : stats.currency
        ? `Money in ${stats.currency}`
        : "";
    for (const element of document.querySelectorAll("[data-money-unit]")) {
      element.textContent = unit;
      element.title = title;
    }
    document.body.dataset.moneyCurrency = stats.currency || (mixed ? "mixed" : "");
  }

  function drawCards(stats, previousStats, reach, previousReach, label) {
    const noWins = (s) => s.total_wins === 0;
    const values = {
      outcomes: [stats.total_outcomes, previousStats.total_outcomes, number.format(stats.total_outcomes)],
      win_rate: [stats.win_rate, previousStats.total_outcomes ? previousStats.win_rate : null, `${stats.win_rate.toFixed(2)} %`, true],
      revenue: [stats.total_revenue, previousStats.total_revenue, money.format(stats.total_revenue)],
      ecpm: [stats.ecpm, noWins(previousStats) ? null : previousStats.ecpm, money.format(stats.ecpm)],
      reach: [reach.reach, previousReach.reach, `${reach.exact ? "" : "≈ "}${number.format(reach.reach)}`],
      p50: [stats.win_price_percentiles.p50, previousStats.win_price_percentiles.p50, fmtPrice(stats.win_price_percentiles.p50)],
      p99: [stats.win_price_percentiles.p99, previousStats.win_price_percentiles.p99, fmtPrice(stats.win_price_percentiles.p99)],
    };
    for (const [name, [now, before, text, points]] of Object.entries(values)) {
      const card = document.querySelector(`.card[data-metric="${name}"]`);
      card.querySelector(".value").textContent = text;
      card.dataset.value = now === null ? "" : String(now);
      change(card, now, before, label, points);
    }
  }

  const fmtPrice = (value) => (value === null ? "–" : money.format(value));

  // ------------------------------------------------------------------ charts (uPlot)
  function chart(id, options, data) {
    const element = document.getElementById(id);
    const width = Math.max(240, element.clientWidth);
    if (!charts[id]) {
      // After each draw, the y axis' labels and width are on the element (tests and people
      // inspecting the page can see that no label is cut off).
      const described = (u) => {
        element.dataset.yLabels = (u.axes[1]._values || []).join("|");
        element.dataset.yAxisWidth = String(u.axes[1]._size || 0);
      };
      charts[id] = new uPlot({ width, height: 220, ...options, hooks: { draw: [described] } }, data, element);
      new ResizeObserver(() => charts[id].setSize({ width: Math.max(240, element.clientWidth), height: 220 })).observe(element);
    } else {
      charts[id].setData(data);
    }
    element.dataset.points = String(data[0].length);
  }

  const utcDate = (seconds) => uPlot.tzDate(new Date(seconds * 1e3), "Etc/UTC");
  // Counts and money on the y axis: compact ("120K", "1.5M") and the axis as wide as its
  // widest label, so large buckets are never cut off at the left edge.
  const ruler = document.createElement("canvas").getContext("2d");
  ruler.font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"; // uPlot's axis font
  const yAxis = {
    values: (u, ticks) => ticks.map((t) => compact.format(t)),
    size: (u, values) => (values ? Math.ceil(Math.max(...values.map((v) => ruler.measureText(v).width))) + 24 : 50),
  };
  // 24-hour UTC labels: the time, or the date (MM-DD) at midnight and when ticks are days apart.
  const timeAxis = {
    values: (u, ticks) => {
      const step = ticks.length > 1 ? ticks[1] - ticks[0] : 3600;
      return ticks.map((t) => {
        const text = new Date(t * 1000).toISOString();
        const time = text.slice(11, 16);
        return step >= 86400 || time === "00:00" ? text.slice(5, 10) : time;
      });
    },
  };

  function drawSeries(series, grain) {
    $("#granularity").textContent = `per ${grain}, UTC`;
    const x = series.buckets.map((bucket) => Date.parse(bucket.bucket) / 1000);
    chart(
      "chart-counts",
      {
        tzDate: utcDate,
        axes: [timeAxis, yAxis],
        series: [{}, { label: "Outcomes", stroke: "#2563eb", width: 2 }, { label: "Wins", stroke: "#16a34a", width: 2 }],
        scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      },
      [x, series.buckets.map((b) => b.outcomes), series.buckets.map((b) => b.wins)],
    );
    chart(
      "chart-revenue",
      {
        tzDate: utcDate,
        axes: [timeAxis, yAxis],
        series: [{}, { label: "Revenue", stroke: "#9333ea", fill: "rgba(147, 51, 234, 0.12)", width: 2, value: (u, v) => (v === null ? "–" : money.format(v)) }],
        scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      },
      [x, series.buckets.map((b) => b.revenue)],
    );
  }

  function drawHistogram(histogram, stats) {
    const shading = stats.total_wins ? `shading ratio ${stats.shading_ratio.toFixed(3)} (win ÷ bid price over wins)` : "";
    $("#shading").textContent = shading + (histogram.sample ? " · from a sample" : "");
    const x = histogram.bins.map((bin) => bin.lower);
    chart(
      "chart-histogram",
      {
        scales: { x: { time: false }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
        axes: [{ values: (u, ticks) => ticks.map((t) => money.format(t)) }, yAxis],
        series: [
          { label: "Win price", value: (u, v) => (v === null ? "–" : `≥ ${money.format(v)}`) },
          { label: "Wins", fill: "rgba(234, 88, 12, 0.55)", stroke: "#ea580c", paths: uPlot.paths.bars({ size: [0.9, 80] }) },
        ],
      },
      [x, histogram.bins.map((bin) => bin.count)],
    );
  }

  // ------------------------------------------------------------------ bid landscape
  // Win rate by bid in one currency (the filter's, else the one with most revenue), unconverted:
  // bid models are per currency. The value box asks for the optimal bid under the served model.
  let landscapeSegment = null;

  async function refreshLandscape(mine, state, current, currencies) {
    const currency = state.currency || (currencies.rows[0] && currencies.rows[0].currency) || "";
    if (!currency) return;
    const answer = await api(config.landscape, {
      site_domain: state.site_domain,
      currency,
      enriched: state.enriched,
      start: current.start,
      end: current.end,
      convert_to: "none",
    });
    if (mine !== generation) return;
    $("#landscape").hidden = answer.points.length === 0;
    if (!answer.points.length) return;
    landscapeSegment = { currency, site_domain: state.site_domain };
    for (const element of document.querySelectorAll("[data-landscape-currency]")) element.textContent = currency;
    const model = answer.model;
    $("#landscape-about").textContent = model
      ? `${currency} · W(b) ${model.method} v${model.version}, fitted on ${number.format(model.outcomes)} outcomes${model.pooled ? " (pooled)" : ""} · ${answer.auction_type.replace("_", "-")} auctions`
      : `${currency} · no fitted model yet · ${answer.auction_type.replace("_", "-")} auctions`;
    $("#landscape-warnings").replaceChildren(...answer.warnings.map((w) => {
      const item = document.createElement("li");
      item.textContent = w.message;
      item.dataset.code = w.code;
      return item;
    }));
    drawLandscape(answer);
    const market = answer.market_price;
    $("#market").textContent = market
      ? `Market price (Kaplan–Meier, ${number.format(market.observed)} seen, ${number.format(market.censored)} censored by losses): median ${fmtPrice(market.median)}, quartiles ${fmtPrice(market.p25)}–${fmtPrice(market.p75)}`
      : "";
    await refreshOptimal(mine);
  }

  function drawLandscape(answer) {
    // Bids up to the 99th percentile of the outcomes: the tail's few points would squash the curve.
    const total = answer.points.reduce((sum, p) => sum + p.outcomes, 0);
    let seen = 0;
    const shown = [];
    answer.points.forEach((p, i) => {
      if (seen <= 0.99 * total) shown.push(i);
      seen += p.outcomes;
    });
    const x = shown.map((i) => (answer.points[i].bid_price + answer.points[i].bid_price_high) / 2);
    const fitted = shown.map((i) => (answer.model ? answer.model.win_probability[i] * 100 : null));
    const market = answer.market_price ? answer.market_price.distribution : [];
    let step = 0;
    const marketCdf = x.map((price) => {
      while (step < market.length && market[step].price <= price) step += 1;
      return market.length ? (step ? market[step - 1].cdf * 100 : 0) : null;
    });
    const percentAxis = { values: (u, ticks) => ticks.map((t) => `${t}%`) };
    chart(
      "chart-landscape",
      {
        scales: { x: { time: false }, y: { range: [0, 100] } },
        axes: [{ values: (u, ticks) => ticks.map((t) => money.format(t)) }, percentAxis],
        series: [
          { label: "Bid", value: (u, v) => (v === null ? "–" : money.format(v)) },
          { label: "Won", stroke: "#0f766e", width: 0, points: { show: true, size: 4, fill: "#0f766e" }, paths: () => null, value: (u, v) => (v === null ? "–" : `${v.toFixed(1)}%`) },
          { label: "95% low", stroke: "rgba(15, 118, 110, 0.35)", width: 1, dash: [4, 4], value: (u, v) => (v === null ? "–" : `${v.toFixed(1)}%`) },
          { label: "95% high", stroke: "rgba(15, 118, 110, 0.35)", width: 1, dash: [4, 4], value: (u, v) => (v === null ? "–" : `${v.toFixed(1)}%`) },
          { label: "W(b) fitted", stroke: "#db2777", width: 2, value: (u, v) => (v === null ? "–" : `${v.toFixed(1)}%`) },
          { label: "Market price ≤ b", stroke: "#64748b", width: 1, value: (u, v) => (v === null ? "–" : `${v.toFixed(1)}%`) },
        ],
      },
      [
        x,
        shown.map((i) => answer.points[i].win_rate),
        shown.map((i) => answer.points[i].ci_low),
        shown.map((i) => answer.points[i].ci_high),
        fitted,
        marketCdf,
      ],
    );
  }

  async function refreshOptimal(mine) {
    const value = Number($("#value-box").elements.value.value);
    const body = $("#bid-choices tbody");
    if (!landscapeSegment || !(value >= 0.01 && value <= 100000)) {
      $("#optimal").textContent = "Give a value from 0.01 to 100,000.";
      body.replaceChildren();
      return;
    }
    let answer;
    try {
      answer = await api(config.optimalBid, { ...landscapeSegment, value });
    } catch (error) {
      if (mine !== undefined && mine !== generation) return;
      $("#optimal").textContent = error.status === 409 ? "No fitted bid model for this segment yet." : `Cannot compute the optimal bid: ${error.message}`;
      body.replaceChildren();
      return;
    }
    if (mine !== undefined && mine !== generation) return;
    const best = answer.optimal;
    const optimal = $("#optimal");
    optimal.dataset.bid = String(best.bid);
    optimal.textContent = `Bid ${money.format(best.bid)} ${answer.currency}: wins ${(best.win_probability * 100).toFixed(1)}% of auctions, pays ${fmtPrice(best.expected_cost)} and gains ${fmtPrice(best.expected_surplus)} per auction on average.`;
    body.replaceChildren();
    for (const choice of answer.alternatives) {
      const tr = body.insertRow();
      if (choice.bid === best.bid) tr.className = "best";
      cell(tr, money.format(choice.bid), "num");
      cell(tr, `${(choice.win_probability * 100).toFixed(1)} %`, "num");
      cell(tr, money.format(choice.expected_cost), "num");
      cell(tr, money.format(choice.expected_surplus), "num");
    }
  }

  // ------------------------------------------------------------------ experiments
  // The registered experiments and the keys outcomes of this window carry; the chosen one's
  // results over its own planned window (the plan's start and end), every site.
  const METRIC_NAMES = {
    win_rate: "Win rate",
    revenue: "Revenue per unit",
    ecpm: "eCPM",
    avg_win_price: "Avg win price",
    shading_ratio: "Shading ratio",
    revenue_per_outcome: "Revenue per outcome",
  };
  const percent = new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 1, signDisplay: "exceptZero" });

  async function refreshExperiments(mine, current) {
    const [registry, tagged] = await Promise.all([
      api(config.experiments, { page_size: 100 }),
      api(`${config.api}breakdown/`, { start: current.start, end: current.end, by: "experiment", order: "outcomes", limit: 20 }),
    ]);
    if (mine !== generation) return;
    const keys = [...registry.results.map((e) => e.key)];
    for (const row of tagged.rows) if (row.experiment && !keys.includes(row.experiment)) keys.push(row.experiment);
    const select = $("#experiment");
    $("#experiments").hidden = keys.length === 0;
    if (!keys.length) return;
    const chosen = keys.includes(select.value) ? select.value : keys[0];
    if ([...select.options].map((o) => o.value).join() !== keys.join()) {
      select.replaceChildren(...keys.map((key) => new Option(key, key)));
    }
    select.value = chosen;
    const results = await api(`${config.experiments}${encodeURIComponent(chosen)}/results/`, {});
    if (mine !== generation) return;
    drawExperiment(results);
  }

  function drawExperiment(results) {
    const window = results.start || results.end
      ? `${results.start ? results.start.slice(0, 16).replace("T", " ") : "the first outcome"} → ${results.end ? results.end.slice(0, 16).replace("T", " ") : "now"} UTC`
      : "all its outcomes";
    const method = results.inference === "sequential" ? "always-valid (sequential) intervals" : "fixed-horizon intervals";
    $("#experiment-about").textContent = `${results.registered ? results.name : "Not registered"} · randomised by ${results.unit} · ${window} · ${Math.round(results.confidence * 100)}% ${method} · control: ${results.control || "–"}`;
    for (const element of document.querySelectorAll("[data-experiment-unit]")) element.textContent = results.currency || "";
    const srm = $("#srm");
    srm.textContent = results.srm === null ? "no SRM check" : results.srm.mismatch ? "sample-ratio mismatch" : "traffic as planned";
    srm.className = `status status-${results.srm === null ? "unknown" : results.srm.mismatch ? "failing" : "ok"}`;
    if (results.srm) srm.title = `Chi-square p = ${results.srm.p_value.toPrecision(2)} (mismatch below 0.001)`;
    const warnings = $("#experiment-warnings");
    warnings.replaceChildren(...results.warnings.map((w) => {
      const item = document.createElement("li");
      item.textContent = w.message;
      item.dataset.code = w.code;
      return item;
    }));
    const variants = $("#variants tbody");
    variants.replaceChildren();
    const fixed = (value, digits) => (value === null ? "–" : value.toFixed(digits));
    for (const v of results.variants) {
      const tr = variants.insertRow();
      tr.dataset.variant = v.variant;
      cell(tr, v.variant === results.control ? `${v.variant} (control)` : v.variant, "name");
      cell(tr, v.planned_share === null ? "–" : `${Math.round(v.planned_share * 100)} %`, "num");
      for (const value of [v.units, v.outcomes]) cell(tr, number.format(value), "num");
      cell(tr, v.win_rate === null ? "–" : `${v.win_rate.toFixed(2)} %`, "num");
      cell(tr, fixed(v.ecpm, 2), "num");
      cell(tr, fixed(v.avg_win_price, 4), "num");
      cell(tr, fixed(v.shading_ratio, 4), "num");
    }
    const comparisons = $("#comparisons tbody");
    comparisons.replaceChildren();
    const bounds = results.comparisons.flatMap((c) => [c.relative_lift_ci_low, c.relative_lift_ci_high]).filter((b) => b !== null);
    const scale = Math.max(0.01, ...bounds.map(Math.abs));
    for (const c of results.comparisons) {
      const tr = comparisons.insertRow();
      tr.dataset.metric = c.metric;
      tr.dataset.variant = c.variant;
      tr.dataset.significant = String(c.significant);
      cell(tr, METRIC_NAMES[c.metric] || c.metric, "name");
      cell(tr, c.variant);
      cell(tr, c.relative_lift === null ? "–" : percent.format(c.relative_lift), "num");
      const bar = cell(tr, "", "interval");
      if (c.relative_lift_ci_low !== null && c.relative_lift_ci_high !== null) {
        const span = document.createElement("span");
        span.className = `range ${c.significant ? (c.difference > 0 ? "up" : "down") : "flat"}`;
        span.style.setProperty("--from", `${50 + (c.relative_lift_ci_low / scale) * 50}%`);
        span.style.setProperty("--to", `${50 + (c.relative_lift_ci_high / scale) * 50}%`);
        bar.title = `${percent.format(c.relative_lift_ci_low)} to ${percent.format(c.relative_lift_ci_high)} (difference ${fixed(c.ci_low, 4)} to ${fixed(c.ci_high, 4)})`;
        bar.append(span);
      }
      cell(tr, c.p_value === null ? "–" : c.p_value < 0.001 ? "< 0.001" : c.p_value.toFixed(3), "num");
    }
    if (!results.comparisons.length) cell(comparisons.insertRow(), "Nothing to compare yet.", "none").colSpan = 5;
  }

  // ------------------------------------------------------------------ tables
  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function drawBreakdown(selector, answer, by, columns) {
    const body = document.querySelector(`${selector} tbody`);
    body.replaceChildren();
    const top = Math.max(1, ...answer.rows.map((row) => row.revenue), answer.others.revenue);
    const rows = [...answer.rows.map((row) => [row[by] === null || row[by] === "" ? "(none)" : String(row[by]), row])];
    if (answer.others.values > 0) rows.push([`others (${number.format(answer.others.values)})`, answer.others]);
    for (const [name, values] of rows) {
      const tr = body.insertRow();
      const first = cell(tr, name, "name");
      first.title = name; // long names are cut with an ellipsis, whole on hover
      first.style.setProperty("--share", `${(values.revenue / top) * 100}%`);
      for (const text of columns(values)) cell(tr, text, "num");
    }
    if (!rows.length) cell(body.insertRow(), "No outcomes in this window.", "none").colSpan = 4;
  }

  function drawIngestion(answer) {
    const status = $("#ingestion-status");
    status.textContent = answer.status;
    status.className = `status status-${answer.status}`;
    $("#ingestion-detail").textContent = answer.status_detail;
    $("#ingestion-lag").textContent = answer.lag === null ? "unknown" : `${number.format(answer.lag)} messages`;
    $("#ingestion-age").textContent = ago(answer.last_stored_age_seconds);
    $("#ingestion-rate").textContent = `${answer.stored_per_second.toLocaleString("en-US")} outcomes/s (last minute)`;
    const partitions = $("#partitions tbody");
    partitions.replaceChildren();
    for (const p of answer.partitions) {
      const tr = partitions.insertRow();
      cell(tr, String(p.partition));
      for (const value of [p.stored_offset, p.end_offset, p.lag]) cell(tr, value === null ? "–" : number.format(value), "num");
    }
    const dead = $("#dead-letters tbody");
    dead.replaceChildren();
    for (const reason of answer.dead_letters.by_reason) {
      const tr = dead.insertRow();
      const link = document.createElement("a");
      link.href = `${config.deadLetters}?reason=${encodeURIComponent(reason.reason)}&replayed=no`;
      link.textContent = reason.reason;
      link.title = reason.label;
      tr.insertCell().append(link);
      cell(tr, number.format(reason.count), "num");
      cell(tr, number.format(reason.last_hour), "num");
    }
    if (!answer.dead_letters.by_reason.length) cell(dead.insertRow(), "None.", "none").colSpan = 3;
  }

  function drawLatest(rows) {
    const body = $("#latest tbody");
    body.replaceChildren();
    for (const row of rows) {
      const tr = body.insertRow();
      cell(tr, (row.auction_timestamp || row.timestamp).replace("T", " ").slice(0, 19), "time");
      cell(tr, row.bid_id, "id");
      cell(tr, row.site_domain || "(none)", "name").title = row.site_domain || "";
      cell(tr, row.win_status ? "won" : "lost");
      cell(tr, row.win_status ? row.win_price : "–", "num");
      cell(tr, row.currency);
    }
    if (!rows.length) cell(body.insertRow(), "No outcomes match the filters.", "none").colSpan = 6;
  }

  // ------------------------------------------------------------------ live
  // With a live stream (config.live: /api/live/, Server-Sent Events), each committed batch
  // triggers a refresh and nothing polls; while the stream is down, the page polls every
  // refreshSeconds and says so. The figures always come from the reports, so they equal them.
  let stream = null;
  let streaming = false;
  let pushed = null;

  function connectStream() {
    if (!config.live || !window.EventSource) return;
    if (stream) stream.close();
    const state = formState();
    const params = new URLSearchParams();
    for (const name of ["site_domain", "currency"]) if (state[name]) params.set(name, state[name]);
    const query = params.toString();
    stream = new EventSource(`${config.live}${query ? `?${query}` : ""}`, { withCredentials: true });
    stream.addEventListener("open", () => {
      streaming = true;
      document.body.dataset.stream = "open";
      schedule();
    });
    const update = () => {
      if (document.hidden) return;
      clearTimeout(pushed);
      pushed = setTimeout(tick, 200);  // a burst of batches: one refresh
    };
    stream.addEventListener("batch", update);
    stream.addEventListener("resync", () => {
      update();
      connectStream();  // resume from now: the refresh has everything before
    });
    stream.addEventListener("error", () => {
      if (!streaming) return;
      streaming = false;  // the browser reconnects on its own; the page polls meanwhile
      document.body.dataset.stream = "down";
      schedule();
    });
  }

  function schedule() {
    clearTimeout(timer);
    const live = $("#live");
    if (document.hidden) {
      live.textContent = "paused";
      live.classList.add("paused");
      return;
    }
    live.classList.remove("paused");
    if (streaming) {
      live.textContent = "live";
      live.title = "Updated as each batch of outcomes is stored";
      return;
    }
    live.textContent = config.live ? "polling" : "live";
    live.title = config.live
      ? `Live updates are unavailable: refreshing every ${config.refreshSeconds} s`
      : "Refreshes on its own while this tab is visible";
    timer = setTimeout(tick, config.refreshSeconds * 1000);
  }

  async function tick() {
    clearTimeout(timer);
    try {
      await refresh();
    } finally {
      schedule();
    }
  }

  function changed() {
    const state = formState();
    form.classList.toggle("is-custom", state.window === "custom");
    writeUrl(state);
    connectStream();
    tick();
  }

  let typing = null;
  form.addEventListener("change", changed);
  form.addEventListener("input", (event) => {
    if (event.target.type !== "text") return;
    clearTimeout(typing);
    typing = setTimeout(changed, 600);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    changed();
  });
  const clearFilters = () => {
    for (const name of FILTERS) form.elements[name].value = "";
    changed();
  };
  $("#clear").addEventListener("click", clearFilters);
  $("#experiment").addEventListener("change", () => refresh());
  $("#value-box").addEventListener("change", () => refreshOptimal());
  $("#value-box").addEventListener("submit", (event) => {
    event.preventDefault();
    refreshOptimal();
  });
  $("#nomatch-clear").addEventListener("click", clearFilters);
  $("#save-report").hidden = !config.canSave;
  $("#save-report").addEventListener("click", openSaveForm);
  $("#save-form").addEventListener("submit", saveReport);
  $("#save-cancel").addEventListener("click", () => ($("#save-form").hidden = true));
  $("#subscribe-form").addEventListener("submit", subscribe);
  document.addEventListener("visibilitychange", () => (document.hidden ? schedule() : tick()));
  window.addEventListener("popstate", () => {
    showState(readState());
    tick();
  });

  showState(readState());
  connectStream();
  tick();
})();
