"""The KPI API against the emulator: request latency over a year of KPIs, and KPI-to-page freshness.

365 days of DailyKPIs and 30 categories a day (10,950 CategoryKPIs items) are written with the
pipeline's own item format; ``requests`` GETs then cycle through the four data routes (a 30-day daily
range, one day's categories, one category over 90 days, the status of the last 14 days) through the
local server, one at a time. Up to 2,000 bare DynamoDB ``Query`` calls (the category range, the
API's heaviest single read) give the floor the API is compared with (route by route: the category
range route against the same Query): what the API adds is
routing, JSON and the extra reads a route needs. Freshness: a new day's item is written and a
headless Chromium on the live page is timed until the row appears (the page polls every few
seconds, so the figure is about half the poll interval plus one refresh).
"""

from __future__ import annotations

import shutil
import statistics
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3

START = date(2024, 7, 1)
DAYS = 365
CATEGORIES = [f"Category {n:02d}" for n in range(30)]


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(pick(0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "n": len(ordered),
    }


def _seed(ddb: Any, daily: str, category: str, tracker: str) -> None:
    from jobs.transformation.serving import BatchWriter, create_kpi_tables, to_item
    from lambda_trigger.tracker import BatchFileTracker, create_tracker_table

    create_kpi_tables(ddb, daily, category)
    create_tracker_table(ddb, tracker)
    writer, stamp = BatchWriter(ddb), "2025-07-01T00:00:00.000Z"
    days = [(START + timedelta(days=n)).isoformat() for n in range(DAYS)]
    daily_items = [
        to_item({"date_key": d, "total_orders": 100 + n, "total_revenue": Decimal(f"{1000 + n}.25"),
                 "total_items_sold": 170 + n, "return_rate": Decimal("9.10"), "unique_customers": 90 + n},
                ["date_key", "total_orders", "total_revenue", "total_items_sold", "return_rate", "unique_customers"],
                f"{d}-g1", stamp)
        for n, d in enumerate(days)
    ]  # fmt: skip
    category_items = [
        to_item({"category_id": c, "date_key": d, "daily_revenue": Decimal("123.45"),
                 "avg_order_value": Decimal("61.72"), "avg_return_rate": Decimal("8.00")},
                ["category_id", "date_key", "daily_revenue", "avg_order_value", "avg_return_rate"], f"{d}-g1", stamp)
        for d in days for c in CATEGORIES
    ]  # fmt: skip
    writer.write(daily, ("date_key",), daily_items, [])
    writer.write(category, ("category_id", "date_key"), category_items, [])
    tracker_api = BatchFileTracker(ddb, tracker)
    for d in days:
        tracker_api.note_day(d)


def run(endpoint: str, requests: int = 10_000) -> dict[str, Any]:
    from ecomkpi.api_server import serve
    from kpi_api.reader import KpiReader

    suffix = datetime.now(UTC).strftime("%H%M%S%f")
    daily, category, tracker = (
        f"DailyKPIs-api-{suffix}",
        f"CategoryKPIs-api-{suffix}",
        f"Tracker-api-{suffix}",
    )
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    started = time.perf_counter()
    _seed(ddb, daily, category, tracker)
    print(f"[api] seeded {DAYS} days x {len(CATEGORIES)} categories in {time.perf_counter() - started:.1f}s")
    server = serve(KpiReader(ddb, daily, category, tracker))
    last = (START + timedelta(days=DAYS - 1)).isoformat()
    paths = [
        f"kpis/daily?from={(START + timedelta(days=DAYS - 30)).isoformat()}&to={last}",
        f"kpis/categories?date={last}",
        f"kpis/categories/Category%2007?from={(START + timedelta(days=DAYS - 90)).isoformat()}&to={last}",
        "status",
    ]
    per_route: dict[str, list[float]] = {p.split("?")[0]: [] for p in paths}
    everything: list[float] = []
    try:
        for n in range(requests):
            path = paths[n % len(paths)]
            t0 = time.perf_counter()
            with urllib.request.urlopen(server.url + path, timeout=30) as response:
                response.read()
            elapsed = time.perf_counter() - t0
            everything.append(elapsed)
            per_route[path.split("?")[0]].append(elapsed)
        bare: list[float] = []
        first90 = (START + timedelta(days=DAYS - 90)).isoformat()
        for _ in range(min(requests, 2_000)):  # enough for p99; moto's Query is the slow part
            t0 = time.perf_counter()
            ddb.query(
                TableName=category,
                KeyConditionExpression="category_id = :c AND date_key BETWEEN :a AND :b",
                ExpressionAttributeValues={
                    ":c": {"S": "Category 07"},
                    ":a": {"S": first90},
                    ":b": {"S": last},
                },
            )
            bare.append(time.perf_counter() - t0)
        freshness = _page_freshness(ddb, daily, tracker, server.url)
    finally:
        server.stop()
    api, floor = _percentiles(everything), _percentiles(bare)
    result = {
        "requests": requests,
        "api": api,
        "per_route": {route: _percentiles(v) for route, v in per_route.items()},
        "bare_query": floor,
        "ratio_p50": round(api["p50_ms"] / floor["p50_ms"], 2),
        "ratio_p99": round(api["p99_ms"] / floor["p99_ms"], 2),
        "category_range_over_bare_query_p50": round(
            _percentiles(per_route[paths[2].split("?")[0]])["p50_ms"] / floor["p50_ms"], 2
        ),
        "page_freshness_s": freshness,
    }
    print(
        f"[api] {requests} requests: p50 {api['p50_ms']} ms, p99 {api['p99_ms']} ms; bare Query p50 "
        f"{floor['p50_ms']} ms, p99 {floor['p99_ms']} ms; KPI write to page {freshness} s"
    )
    return result


def _page_freshness(ddb: Any, daily: str, tracker: str, url: str, repeat: int = 3) -> list[float] | None:
    """Seconds from a new day's KPI write to the live page showing it (None without Chromium)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        print("[api] chromium/chromedriver missing: page freshness not measured")
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from jobs.transformation.serving import to_item
    from lambda_trigger.tracker import BatchFileTracker

    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    seconds = []
    try:
        browser.get(url)
        for n in range(repeat):
            day = (START + timedelta(days=DAYS + n)).isoformat()
            row = {"date_key": day, "total_orders": 1, "total_revenue": Decimal("1.00"), "total_items_sold": 1,
                   "return_rate": Decimal("0.00"), "unique_customers": 1}  # fmt: skip
            t0 = time.perf_counter()
            ddb.put_item(
                TableName=daily, Item=to_item(row, list(row), f"{day}-g1", datetime.now(UTC).isoformat())
            )
            BatchFileTracker(ddb, tracker).note_day(day)
            WebDriverWait(browser, 30, poll_frequency=0.05).until(
                ec.presence_of_element_located((By.CSS_SELECTOR, f'#daily-table tr[data-date="{day}"]'))
            )
            seconds.append(round(time.perf_counter() - t0, 2))
    finally:
        browser.quit()
    return seconds
