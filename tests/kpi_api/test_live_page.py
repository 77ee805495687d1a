"""The live page in a real browser (Debian's headless Chromium through Selenium) over the emulated tables.

It must show exactly DynamoDB's numbers, refresh by itself when a new day's KPIs land, and show a
failed day with its cause as text. ``scripts/install_browser.sh`` (run by ``make test``) installs
Chromium and its driver; without them these tests are skipped and say so.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest

from ecomkpi.api_server import ApiServer, serve
from jobs.transformation.serving import to_item
from jobs.validation.findings import CRITICAL, WARNING, Finding
from jobs.validation.quality_ledger import QualityLedger, create_quality_table, quality_item
from jobs.validation.verdicts import PASSED, REJECTED, VerdictRecord
from kpi_api.reader import KpiReader, plain
from lambda_trigger.tracker import BatchFileTracker
from tests.support.browser import cells, needs_browser, open_page, read, wait_for
from tests.support.kpi_tables import seed

pytest.importorskip("selenium.webdriver")
pytestmark = needs_browser


@pytest.fixture
def page(moto_endpoint: str, names: Any) -> Iterator[tuple[Any, Any, ApiServer]]:
    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    seed(ddb, names)
    quality = f"DataQuality-{names.suffix}"
    create_quality_table(ddb, quality)
    _seed_quality(QualityLedger(ddb, quality))
    server = serve(
        KpiReader(ddb, names.daily_table, names.category_table, names.tracker_table, quality),
        bucket=names.bucket,
    )
    try:
        with open_page(server.url) as browser:
            yield browser, ddb, server
    finally:
        server.stop()


def _seed_quality(ledger: QualityLedger) -> None:
    """A day as validation leaves it: a part with two dropped rows and a new column, a rejected part."""

    def record(rel: str, verdict: Any, rows: int, findings: list[Finding], **kw: Any) -> VerdictRecord:
        return VerdictRecord(rel=rel, etag="e", verdict=verdict, dataset="orders", report_key=f"logs/r/{rel}.json",
                             batch_id="2025-07-10", run_id="run-1", decided_at="2025-07-10T10:00:00+00:00",
                             arrived_ms=1, rows=rows, findings=[f.to_dict() for f in findings], **kw)  # fmt: skip

    status = Finding(rule="status is a known order status", column="status", failing_rows=2, severity=WARNING,
                     details={"action": "drop", "dropped_rows": 2})  # fmt: skip
    drift = {"signature": "abc123", "new": ["coupon"], "missing": [], "reordered": False,
             "description": "orders header differs from the contract: new column(s) coupon"}  # fmt: skip
    ok = record("orders/2025-07-10/a.csv", PASSED, 100, [status], schema_drift=drift)
    key = Finding(rule="order_id is unique", column="order_id", failing_rows=3, severity=CRITICAL)
    bad = record("orders/2025-07-10/b.csv", REJECTED, 40, [key])
    for r in (ok, bad):
        ledger.put(quality_item(r, data_docs="logs/docs/index.html", quarantine_key=f"invalid/rows/{r.rel}"))


def test_the_page_shows_the_days_quality(page: tuple[Any, Any, ApiServer]) -> None:
    browser, _, _ = page
    shown = read(
        browser,
        """
        const bar = document.querySelector('#quality-chart g[data-date="2025-07-10"]');
        const rules = Array.from(document.querySelectorAll('#quality-rules tr[data-rule]'), r => r.getAttribute('data-rule'));
        const drift = document.querySelector('#quality-drift li[data-signature="abc123"]');
        const files = Array.from(document.querySelectorAll('#quality-files tr[data-file]'), r => [r.getAttribute('data-file'), r.getAttribute('data-verdict')]);
        if (!bar || !drift || files.length < 2) return null;
        return {bar: ['kept', 'dropped', 'rejected'].map(k => bar.getAttribute('data-' + k)),
                parts: Array.from(bar.querySelectorAll('rect'), r => r.getAttribute('data-part')),
                rules, drift: drift.innerText, files, hidden: document.getElementById('quality').hidden};
        """,
    )
    assert shown["hidden"] is False
    assert shown["bar"] == ["98", "2", "40"]  # 100 rows - 2 dropped; the rejected part's 40
    assert shown["parts"] == ["kept", "dropped", "rejected"]
    assert shown["rules"] == ["order_id is unique", "status is a known order status"]  # most rows first
    assert "new column(s) coupon" in shown["drift"] and "(1 file)" in shown["drift"]
    assert shown["files"] == [["orders/2025-07-10/b.csv", "rejected"], ["orders/2025-07-10/a.csv", "passed"]]


def test_the_page_shows_dynamodbs_numbers(page: tuple[Any, Any, ApiServer], names: Any) -> None:
    browser, ddb, _ = page
    shown_cells = cells(browser, '#daily-table tr[data-date="2025-07-10"]')
    item = plain(ddb.get_item(TableName=names.daily_table, Key={"date_key": {"S": "2025-07-10"}})["Item"])
    shown = [value for value, _ in shown_cells]
    assert shown == [
        item["date_key"],
        str(item["total_orders"]),
        f"{item['total_revenue']:.2f}",
        str(item["total_items_sold"]),
        f"{item['return_rate']:.2f}",
        str(item["unique_customers"]),
    ]
    texts = [text for _, text in shown_cells]
    assert texts[1:] == ["1,200", "$98,765.40", "2,100", "0.00 %", "1,100"]  # formatted for people
    categories = cells(browser, '#category-table tr[data-category="Tops & Tees"]')
    assert [v for v, _ in categories] == ["Tops & Tees", "6319.72", "150.47", "9.52"]


def test_a_failed_day_shows_its_cause_as_text(page: tuple[Any, Any, ApiServer]) -> None:
    browser, _, _ = page
    failure = read(
        browser,
        """
        const row = document.querySelector('#status-table tr.failure[data-date="2025-07-10"]');
        const other = document.querySelector('#status-table tr[data-date="2025-07-09"]');
        if (!row || !other) return null;
        return {text: row.innerText, cause: row.querySelector('.cause').innerText,
                bold: row.querySelectorAll('b').length, other: other.getAttribute('data-state')};
        """,
    )
    assert "ValidateData: Validation.DataRejected" in failure["text"]
    assert failure["cause"].endswith("<b>x</b>")  # inserted as text: no markup from data
    assert failure["bold"] == 0
    assert failure["other"] == "running"


def test_new_kpis_appear_without_a_reload(page: tuple[Any, Any, ApiServer], names: Any) -> None:
    browser, ddb, _ = page
    wait_for(browser, '#daily-table tr[data-date="2025-07-10"]')
    landed = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    row = {"date_key": "2025-07-11", "total_orders": 7, "total_revenue": Decimal("700.07"), "total_items_sold": 9,
           "return_rate": Decimal("14.29"), "unique_customers": 6}  # fmt: skip
    ddb.put_item(TableName=names.daily_table, Item=to_item(row, list(row), "2025-07-11-g1", landed))
    BatchFileTracker(ddb, names.tracker_table).note_day("2025-07-11")  # what the trigger does on a claim

    new_row = cells(browser, '#daily-table tr[data-date="2025-07-11"]')
    assert [v for v, _ in new_row][:3] == ["2025-07-11", "7", "700.07"]
    badge = browser.find_element("id", "freshness").text
    assert badge.startswith("updated ") and badge.endswith("s ago by 2025-07-11-g1"), badge
