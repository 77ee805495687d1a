"""The live page: one self-contained HTML document (CSS and JS inline, charts drawn as SVG).

It needs no network beyond the API it is served by (no CDN, no fonts), so it works on a laptop
without internet and behind a locked-down API Gateway. It polls ``/status``, ``/days``,
``/kpis/daily``, ``/kpis/categories`` and ``/quality`` every few seconds (the quality section hides
itself where the API has no quality table); every value is inserted with
``textContent`` (never as HTML), so a category or an error text cannot inject markup. Raw values
stay in ``data-value`` attributes next to their formatted text (the browser tests compare those
with DynamoDB).
"""

from __future__ import annotations

import base64
import hashlib
import re

REFRESH_SECONDS = 2
TREND_DAYS = 30

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ecomkpi - live KPIs</title>
<style>
  :root { --ink:#1d2433; --muted:#667085; --line:#e4e7ec; --accent:#2e6ff2; --good:#12805c; --bad:#c4320a; --warn:#b54708; }
  * { box-sizing: border-box; }
  body { margin:0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--ink); background:#f7f8fa; }
  header { display:flex; flex-wrap:wrap; gap:12px; align-items:center; justify-content:space-between; padding:14px 20px; background:#fff; border-bottom:1px solid var(--line); }
  h1 { font-size:18px; margin:0; }
  h2 { font-size:15px; margin:0 0 10px; }
  .badge { border-radius:999px; padding:3px 10px; font-size:12px; background:#eef2ff; color:var(--accent); white-space:nowrap; }
  .badge.stale { background:#fff4e5; color:var(--warn); }
  main { display:grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 520px), 1fr)); gap:16px; padding:16px 20px; }
  #pipeline { grid-column: 1 / -1; }
  #pipeline .scroll { max-height:none; }
  section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:14px 16px; min-width:0; }
  .cards { display:grid; grid-template-columns: repeat(auto-fit, minmax(120px, 1fr)); gap:10px; margin-bottom:12px; }
  .card { border:1px solid var(--line); border-radius:8px; padding:8px 10px; }
  .card .label { color:var(--muted); font-size:12px; }
  .card .value { font-size:18px; font-weight:600; }
  table { width:100%; border-collapse:collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align:right; padding:4px 6px; border-bottom:1px solid var(--line); white-space:nowrap; }
  th:first-child, td:first-child { text-align:left; }
  .scroll { overflow-x:auto; max-height:320px; overflow-y:auto; }
  svg { width:100%; height:auto; display:block; }
  .state { font-weight:600; text-transform:capitalize; }
  .state.succeeded { color:var(--good); } .state.failed { color:var(--bad); } .state.running { color:var(--accent); }
  .cause { color:var(--bad); font-size:12px; white-space:pre-wrap; word-break:break-word; margin:4px 0 0; }
  tr.failure td { white-space:normal; word-break:break-word; text-align:left; }
  .muted { color:var(--muted); }
  .partial { margin-left:6px; border-radius:999px; padding:1px 8px; font-size:11px; background:#fff4e5; color:var(--warn); white-space:nowrap; }
  select { font:inherit; padding:2px 6px; }
  #error { color:var(--bad); padding:0 20px; }
  #quality { grid-column: 1 / -1; }
  .legend span { margin-right:12px; font-size:12px; }
  .legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:4px; vertical-align:-1px; }
  .legend i.kept { background:#12805c; } .legend i.dropped { background:#f79009; } .legend i.rejected { background:#c4320a; }
  .drift { color:var(--warn); }
</style>
</head>
<body>
<header>
  <h1>ecomkpi &middot; live KPIs</h1>
  <span id="freshness" class="badge">loading&hellip;</span>
</header>
<div id="error" role="alert"></div>
<main>
  <section id="trend">
    <h2>Daily revenue and orders <span id="trend-range" class="muted"></span></h2>
    <div class="cards" id="latest-cards"></div>
    <svg id="trend-chart" viewBox="0 0 640 220" role="img" aria-label="daily revenue and orders"></svg>
    <div class="scroll"><table id="daily-table"><thead><tr>
      <th>Date</th><th>Orders</th><th>Revenue</th><th>Items</th><th>Return rate</th><th>Customers</th>
    </tr></thead><tbody></tbody></table></div>
  </section>
  <section id="mix">
    <h2>Category mix on <select id="day-select" aria-label="day"></select></h2>
    <svg id="mix-chart" viewBox="0 0 640 300" role="img" aria-label="revenue per category"></svg>
    <div class="scroll"><table id="category-table"><thead><tr>
      <th>Category</th><th>Revenue</th><th>Avg order</th><th>Return rate</th>
    </tr></thead><tbody></tbody></table></div>
  </section>
  <section id="quality" hidden>
    <h2>Data quality <span id="quality-range" class="muted"></span></h2>
    <div class="legend"><span><i class="kept"></i>rows kept</span><span><i class="dropped"></i>rows dropped (quarantined)</span><span><i class="rejected"></i>rows of rejected files</span></div>
    <svg id="quality-chart" viewBox="0 0 640 180" role="img" aria-label="rows kept, dropped and rejected per day"></svg>
    <h2>Top failing rules on <select id="quality-day" aria-label="quality day"></select></h2>
    <ul id="quality-drift" class="drift"></ul>
    <div class="scroll"><table id="quality-rules"><thead><tr>
      <th>Rule</th><th>Dataset</th><th>Action</th><th>Files</th><th>Rows</th>
    </tr></thead><tbody></tbody></table></div>
    <div class="scroll"><table id="quality-files"><thead><tr>
      <th>File</th><th>Verdict</th><th>Rows</th><th>Dropped</th><th>Report</th>
    </tr></thead><tbody></tbody></table></div>
  </section>
  <section id="pipeline">
    <h2>Pipeline status</h2>
    <div class="scroll"><table id="status-table"><thead><tr>
      <th>Day</th><th>State</th><th>Generation</th><th>KPIs updated</th>
    </tr></thead><tbody></tbody></table></div>
  </section>
</main>
<script>
"use strict";
const REFRESH_MS = __REFRESH__ * 1000;
const TREND_DAYS = __TREND_DAYS__;
const money = new Intl.NumberFormat("en-US", {style: "currency", currency: "USD"});
const count = new Intl.NumberFormat("en-US");
const state = {chosenDay: null, qualityDay: null, latestUpdate: null, latestRun: null};
const QUALITY_COLOURS = {kept: "#12805c", dropped: "#f79009", rejected: "#c4320a"};

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}
function svgEl(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
const fmtMoney = v => v === null || v === undefined ? "\\u2013" : money.format(Number(v));
const fmtCount = v => v === null || v === undefined ? "\\u2013" : count.format(v);
const fmtRate = v => v === null || v === undefined ? "\\u2013" : Number(v).toFixed(2) + " %";
function fmtDate(d) {
  const t = new Date(d + "T00:00:00Z");
  return t.toLocaleDateString("en-GB", {weekday: "short", day: "numeric", month: "short", year: "numeric", timeZone: "UTC"});
}
function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 90) return Math.max(0, Math.round(seconds)) + " s ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
  if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
  return Math.round(seconds / 86400) + " days ago";
}
async function getJSON(path) {
  const response = await fetch(path, {cache: "no-store"});
  const body = await response.json();
  if (!response.ok) throw new Error(path + ": " + (body.error || response.status));
  return body;
}
function addDays(day, n) {
  const t = new Date(day + "T00:00:00Z"); t.setUTCDate(t.getUTCDate() + n);
  return t.toISOString().slice(0, 10);
}
function cell(row, text, value) {
  const td = el("td", value === undefined ? {} : {"data-value": value === null ? "" : String(value)}, text);
  row.appendChild(td);
  return td;
}

function drawTrend(rows) {
  const svg = document.getElementById("trend-chart");
  svg.replaceChildren();
  if (!rows.length) { svg.appendChild(svgEl("text", {x: 20, y: 110, fill: "#667085"}, "No KPIs yet")); return; }
  const W = 640, H = 220, L = 56, R = 44, T = 12, B = 28;
  const revenue = rows.map(r => Number(r.total_revenue || 0));
  const orders = rows.map(r => r.total_orders || 0);
  const maxRev = Math.max(...revenue, 1), maxOrd = Math.max(...orders, 1);
  const step = (W - L - R) / rows.length;
  const y = (v, max) => T + (H - T - B) * (1 - v / max);
  rows.forEach((r, i) => {
    const h = (H - T - B) * (orders[i] / maxOrd);
    svg.appendChild(svgEl("rect", {x: L + i * step + step * 0.2, y: H - B - h, width: step * 0.6, height: h, fill: "#d6e2ff"}));
  });
  const points = rows.map((r, i) => (L + i * step + step / 2) + "," + y(revenue[i], maxRev)).join(" ");
  svg.appendChild(svgEl("polyline", {points, fill: "none", stroke: "#2e6ff2", "stroke-width": 2}));
  rows.forEach((r, i) => svg.appendChild(svgEl("circle", {cx: L + i * step + step / 2, cy: y(revenue[i], maxRev), r: 2.5, fill: "#2e6ff2"})));
  svg.appendChild(svgEl("text", {x: 4, y: T + 10, "font-size": 11, fill: "#2e6ff2"}, money.format(maxRev)));
  svg.appendChild(svgEl("text", {x: W - 4, y: T + 10, "font-size": 11, fill: "#7a8fc0", "text-anchor": "end"}, count.format(maxOrd) + " orders"));
  svg.appendChild(svgEl("text", {x: L, y: H - 8, "font-size": 11, fill: "#667085"}, rows[0].date_key));
  svg.appendChild(svgEl("text", {x: W - R, y: H - 8, "font-size": 11, fill: "#667085", "text-anchor": "end"}, rows[rows.length - 1].date_key));
}

function drawMix(rows) {
  const svg = document.getElementById("mix-chart");
  svg.replaceChildren();
  const sorted = [...rows].sort((a, b) => Number(b.daily_revenue) - Number(a.daily_revenue)).slice(0, 12);
  if (!sorted.length) { svg.appendChild(svgEl("text", {x: 20, y: 40, fill: "#667085"}, "No categories for this day")); return; }
  const max = Math.max(...sorted.map(r => Number(r.daily_revenue)), 1);
  const rowH = 300 / Math.max(sorted.length, 6);
  sorted.forEach((r, i) => {
    const w = 380 * Number(r.daily_revenue) / max;
    svg.appendChild(svgEl("text", {x: 170, y: i * rowH + rowH * 0.65, "font-size": 12, "text-anchor": "end", fill: "#1d2433"}, r.category_id));
    svg.appendChild(svgEl("rect", {x: 178, y: i * rowH + rowH * 0.15, width: Math.max(w, 1), height: rowH * 0.7, fill: "#2e6ff2", rx: 3}));
    svg.appendChild(svgEl("text", {x: 184 + w, y: i * rowH + rowH * 0.65, "font-size": 11, fill: "#667085"}, fmtMoney(r.daily_revenue)));
  });
}

function renderDaily(rows) {
  const body = document.querySelector("#daily-table tbody");
  body.replaceChildren();
  for (const r of [...rows].reverse()) {
    const tr = el("tr", {"data-date": r.date_key, "data-rejected-files": String(r.rejected_files || 0)});
    const day = cell(tr, fmtDate(r.date_key), r.date_key);
    if (r.rejected_files > 0) day.appendChild(el("span", {class: "partial"}, partialText(r.rejected_files)));
    cell(tr, fmtCount(r.total_orders), r.total_orders);
    cell(tr, fmtMoney(r.total_revenue), r.total_revenue);
    cell(tr, fmtCount(r.total_items_sold), r.total_items_sold);
    cell(tr, fmtRate(r.return_rate), r.return_rate);
    cell(tr, fmtCount(r.unique_customers), r.unique_customers);
    body.appendChild(tr);
  }
  const cards = document.getElementById("latest-cards");
  cards.replaceChildren();
  const last = rows[rows.length - 1];
  if (!last) return;
  for (const [label, value] of [["Revenue " + last.date_key, fmtMoney(last.total_revenue)], ["Orders", fmtCount(last.total_orders)],
                                ["Items sold", fmtCount(last.total_items_sold)], ["Return rate", fmtRate(last.return_rate)],
                                ["Customers", fmtCount(last.unique_customers)]]) {
    const card = el("div", {class: "card"});
    card.appendChild(el("div", {class: "label"}, label));
    card.appendChild(el("div", {class: "value"}, value));
    cards.appendChild(card);
  }
  if (last.rejected_files > 0) {
    const card = el("div", {class: "card partial-day"});
    card.appendChild(el("div", {class: "label"}, "Served partly"));
    card.appendChild(el("div", {class: "value partial"}, partialText(last.rejected_files)));
    cards.appendChild(card);
  }
}
// A day served while some of its files are rejected: its KPIs leave those files out.
function partialText(n) { return n + (n === 1 ? " file rejected" : " files rejected"); }

function renderCategories(rows) {
  const body = document.querySelector("#category-table tbody");
  body.replaceChildren();
  for (const r of [...rows].sort((a, b) => Number(b.daily_revenue) - Number(a.daily_revenue))) {
    const tr = el("tr", {"data-category": r.category_id});
    cell(tr, r.category_id, r.category_id);
    cell(tr, fmtMoney(r.daily_revenue), r.daily_revenue);
    cell(tr, fmtMoney(r.avg_order_value), r.avg_order_value);
    cell(tr, fmtRate(r.avg_return_rate), r.avg_return_rate);
    body.appendChild(tr);
  }
  drawMix(rows);
}

function renderStatus(status) {
  const body = document.querySelector("#status-table tbody");
  body.replaceChildren();
  for (const d of status.days) {
    const tr = el("tr", {"data-date": d.date, "data-state": d.state});
    cell(tr, fmtDate(d.date));
    const st = cell(tr, d.state === "kpis_only" ? "KPIs only" : d.state.replaceAll("_", " "));
    if (d.state === "kpis_only") st.title = "orders dated this day arrived in other days' batches";
    st.className = "state " + d.state;
    cell(tr, d.generation === null ? "\\u2013" : "g" + d.generation);
    const kpis = cell(tr, d.kpis_updated_at ? ago(d.seconds_since_kpi_update) : "no KPIs");
    if (d.rejected_files > 0) kpis.appendChild(el("span", {class: "partial"}, partialText(d.rejected_files)));
    body.appendChild(tr);
    if (d.state === "failed") {
      const detail = el("tr", {class: "failure", "data-date": d.date});
      const td = el("td", {colspan: 4});
      td.appendChild(el("div", {}, (d.failed_state || "") + ": " + (d.failure_error || "failed")));
      if (d.failure_cause) td.appendChild(el("p", {class: "cause"}, d.failure_cause));
      if (d.failure_reference) td.appendChild(el("div", {class: "muted reference"}, "reference: " + d.failure_reference));
      for (const [name, link] of Object.entries(d.links || {})) td.appendChild(el("div", {class: "muted"}, name.replace("_", " ") + ": " + link));
      detail.appendChild(td);
      body.appendChild(detail);
    }
  }
  state.latestUpdate = status.latest_kpi_update;
  state.latestRun = status.latest_kpi_run_id;
  state.serverOffset = Date.parse(status.now) - Date.now();
  tickFreshness();
}

// Each day's bar is its rows' shares (a few dropped rows in a large day would not show at scale);
// the counts are in data-* attributes and the tooltip.
function drawQuality(days) {
  const svg = document.getElementById("quality-chart");
  svg.replaceChildren();
  if (!days.length) { svg.appendChild(svgEl("text", {x: 20, y: 90, fill: "#667085"}, "No files decided in this range")); return; }
  const W = 640, H = 180, L = 8, R = 8, T = 8, B = 24;
  const step = (W - L - R) / days.length;
  days.forEach((d, i) => {
    const total = d.rows.kept + d.rows.dropped + d.rows.rejected;
    const g = svgEl("g", {"data-date": d.date, "data-kept": d.rows.kept, "data-dropped": d.rows.dropped,
                          "data-rejected": d.rows.rejected, "data-rejected-files": d.files.rejected});
    g.appendChild(svgEl("title", {}, d.date + ": " + count.format(d.rows.kept) + " kept, " + count.format(d.rows.dropped) +
      " dropped, " + count.format(d.rows.rejected) + " in rejected files (" + d.files.rejected + " of " + (d.files.accepted + d.files.rejected) + " files)"));
    let y = H - B;
    for (const part of ["kept", "dropped", "rejected"]) {
      const n = d.rows[part];
      if (!n) continue;
      const h = Math.max((H - T - B) * n / Math.max(total, 1), 2);
      y -= h;
      g.appendChild(svgEl("rect", {x: L + i * step + step * 0.15, y, width: step * 0.7, height: h, fill: QUALITY_COLOURS[part], "data-part": part}));
    }
    if (!total && d.files.rejected) {  // files that could not be read: no rows, still a rejection
      g.appendChild(svgEl("rect", {x: L + i * step + step * 0.15, y: H - B - 4, width: step * 0.7, height: 4, fill: QUALITY_COLOURS.rejected, "data-part": "rejected"}));
    }
    svg.appendChild(g);
  });
  svg.appendChild(svgEl("text", {x: L, y: H - 6, "font-size": 11, fill: "#667085"}, days[0].date));
  svg.appendChild(svgEl("text", {x: W - R, y: H - 6, "font-size": 11, "text-anchor": "end", fill: "#667085"}, days[days.length - 1].date));
}

function renderQualityDay(detail) {
  const rules = document.querySelector("#quality-rules tbody");
  rules.replaceChildren();
  for (const r of detail.top_rules) {
    const tr = el("tr", {"data-rule": r.rule, "data-action": r.action});
    cell(tr, r.rule);
    cell(tr, r.dataset);
    cell(tr, r.action + (r.rejected_files ? " (rejected " + r.rejected_files + ")" : ""));
    cell(tr, fmtCount(r.files), r.files);
    cell(tr, fmtCount(r.rows), r.rows);
    rules.appendChild(tr);
  }
  if (!detail.top_rules.length) { const tr = el("tr"); const td = el("td", {colspan: 5, class: "muted"}, "No rule failed on this day"); tr.appendChild(td); rules.appendChild(tr); }
  const drift = document.getElementById("quality-drift");
  drift.replaceChildren(...detail.schema_drift.map(d => el("li", {"data-signature": d.signature, "data-dataset": d.dataset},
    "Schema drift: " + d.description + " (" + d.files + (d.files === 1 ? " file)" : " files)"))));
  const files = document.querySelector("#quality-files tbody");
  files.replaceChildren();
  for (const f of detail.file_list) {
    const tr = el("tr", {"data-file": f.file, "data-verdict": f.verdict});
    cell(tr, f.file);
    const v = cell(tr, f.verdict);
    v.className = "state " + (f.verdict === "passed" ? "succeeded" : "failed");
    cell(tr, f.rows === null ? "unreadable" : fmtCount(f.rows), f.rows);
    cell(tr, fmtCount(f.dropped_rows), f.dropped_rows);
    const links = cell(tr, "");
    for (const [name, link] of Object.entries(f.links)) if (link) links.appendChild(el("div", {class: "muted", "data-link": name}, name.replace("_", " ") + ": " + link));
    files.appendChild(tr);
  }
}

async function refreshQuality() {
  const section = document.getElementById("quality");
  const response = await fetch("quality", {cache: "no-store"});
  if (response.status === 404) { section.hidden = true; return; }
  const body = await response.json();
  if (!response.ok) throw new Error("quality: " + (body.error || response.status));
  section.hidden = false;
  document.getElementById("quality-range").textContent = "(" + body.from + " to " + body.to + ")";
  drawQuality(body.days);
  const select = document.getElementById("quality-day");
  const days = body.days.map(d => d.date).reverse();
  if ([...select.options].map(o => o.value).join() !== days.join()) {
    select.replaceChildren(...days.map(d => el("option", {value: d}, d)));
    if (state.qualityDay && days.includes(state.qualityDay)) select.value = state.qualityDay;
  }
  state.qualityDay = select.value || null;
  if (state.qualityDay) renderQualityDay(await getJSON("quality/" + state.qualityDay));
}

function tickFreshness() {
  const badge = document.getElementById("freshness");
  if (!state.latestUpdate) { badge.textContent = "no KPIs yet"; return; }
  const seconds = (Date.now() + (state.serverOffset || 0) - Date.parse(state.latestUpdate)) / 1000;
  badge.textContent = "updated " + ago(seconds) + " by " + state.latestRun;
  badge.classList.toggle("stale", seconds > 3600);
}

async function refresh() {
  try {
    const [daysBody, status] = await Promise.all([getJSON("days"), getJSON("status")]);
    renderStatus(status);
    await refreshQuality();
    const days = daysBody.days;
    if (!days.length) { renderDaily([]); drawTrend([]); return; }
    const last = days[days.length - 1];
    const first = addDays(last, -(TREND_DAYS - 1));
    document.getElementById("trend-range").textContent = "(" + first + " to " + last + ")";
    const daily = await getJSON("kpis/daily?from=" + first + "&to=" + last);
    renderDaily(daily.rows);
    drawTrend(daily.rows);
    const select = document.getElementById("day-select");
    const known = [...select.options].map(o => o.value).join();
    if (known !== [...days].reverse().join()) {
      select.replaceChildren(...[...days].reverse().map(d => el("option", {value: d}, d)));
      if (state.chosenDay && days.includes(state.chosenDay)) select.value = state.chosenDay;
    }
    state.chosenDay = select.value || last;
    const categories = await getJSON("kpis/categories?date=" + state.chosenDay);
    renderCategories(categories.rows);
    document.getElementById("error").textContent = "";
    document.body.dataset.refreshed = String(Date.now());
  } catch (err) {
    document.getElementById("error").textContent = "Could not refresh: " + err.message;
  }
}
document.getElementById("day-select").addEventListener("change", e => { state.chosenDay = e.target.value; refresh(); });
document.getElementById("quality-day").addEventListener("change", e => { state.qualityDay = e.target.value; refresh(); });
refresh();
setInterval(refresh, REFRESH_MS);
setInterval(tickFreshness, 1000);
</script>
</body>
</html>
"""


def page_html(refresh_seconds: float = REFRESH_SECONDS) -> str:
    return _PAGE.replace("__REFRESH__", f"{refresh_seconds:g}").replace("__TREND_DAYS__", str(TREND_DAYS))


_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def content_security_policy(html: str) -> str:
    """The page's policy: its own inline script and style (by hash) and requests to its own API,
    nothing else; so an injected tag or handler would not run even if one slipped past ``textContent``."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii")
        hashes[kind].append(f"'sha256-{digest}'")
    script, style = (" ".join(hashes[kind]) or "'none'" for kind in ("script", "style"))
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {script}",
            f"style-src {style}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
