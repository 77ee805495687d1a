"""``report.html`` from a hand-made run report: tables, inline charts, rejected files, escaping."""

from __future__ import annotations

import base64
import re
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ecomkpi.report_html import category_mix, render_report_html, write_report_html

DAILY = [
    {
        "date_key": "2025-07-10",
        "total_orders": "300",
        "total_revenue": "31234.50",
        "total_items_sold": "480",
        "return_rate": "9.67",
        "unique_customers": "251",
    },
    {
        "date_key": "2025-07-11",
        "total_orders": "280",
        "total_revenue": "29870.05",
        "total_items_sold": "455",
        "return_rate": "10.00",
        "unique_customers": "240",
    },
]
CATEGORY = [
    {
        "category_id": c,
        "date_key": d,
        "daily_revenue": rev,
        "avg_order_value": "55.10",
        "avg_return_rate": "12.50",
    }
    for d in ("2025-07-10", "2025-07-11")
    for c, rev in (("Jeans", "5000.00"), ("Tops & Tees", "3000.25"), ("Swim", "1200.00"))
]
REPORT = {
    "started_at": "2025-07-12T08:00:00+00:00",
    "finished_at": "2025-07-12T08:03:10+00:00",
    "endpoint": "http://127.0.0.1:5000",
    "bucket": "ecomkpi-local",
    "files": [
        {
            "key": "raw/orders/2025-07-10/orders_part1.csv",
            "fate": "processed/orders/2025-07-10/orders_part1.csv",
        },
        {
            "key": "raw/order_items/2025-07-11/order_items_<bad>.csv",
            "fate": "invalid/order_items/2025-07-11/order_items_<bad>.csv",
            "report": "invalid/order_items/2025-07-11/order_items_<bad>.csv.report.json",
            "failed_rules": [
                {"rule": "expect_column_values_to_be_between", "column": "sale_price", "failing_rows": 1}
            ],
        },
        {"key": "raw/manifests/2025-07-10.json", "fate": "raw/manifests/2025-07-10.json (manifest)"},
    ],
    "executions": [
        {
            "name": "2025-07-10-g1",
            "batch_id": "2025-07-10",
            "status": "SUCCEEDED",
            "seconds": 42.3,
            "states": ["ValidateBatch", "TransformBatch", "Done"],
            "retries": [],
            "error": None,
            "cause": None,
            "files": 4,
        },
        {
            "name": "2025-07-11-g1",
            "batch_id": "2025-07-11",
            "status": "FAILED",
            "seconds": 12.0,
            "states": ["ValidateBatch", "NotifyFailure", "Failed"],
            "retries": [{"state": "ValidateBatch", "error": "States.TaskFailed", "attempt": 1}],
            "error": "ValidationFailed",
            "cause": "exit code 2: <1 file rejected>",
            "files": 2,
        },
    ],
    "alerts": [{"subject": "ecomkpi pipeline failed: 2025-07-11", "message": "batch 2025-07-11 & co"}],
}


class Tags(HTMLParser):
    """Collects start tags and reports tags closed without being open (a cheap well-formedness check)."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[tuple[str, dict[str, str | None]]] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, str]:
    path = write_report_html(tmp_path_factory.mktemp("out"), REPORT, DAILY, CATEGORY)
    return path, path.read_text(encoding="utf-8")


def test_writes_one_self_contained_file(page):
    path, text = page
    assert path.name == "report.html" and path.is_file()
    assert text.startswith("<!DOCTYPE html>")
    # Self-contained: nothing is fetched when the page opens.
    assert not re.search(r"""(src|href)=["'](?!data:)""", text)
    assert "<script" not in text


def test_html_is_well_formed(page):
    parser = Tags()
    parser.feed(page[1])
    parser.close()
    assert parser.errors == []
    assert parser.stack == []


def test_contains_kpi_tables(page):
    text = page[1]
    for column in ("total_revenue", "return_rate", "unique_customers", "avg_order_value", "category_id"):
        assert f"<th>{column}</th>" in text
    assert "31234.50" in text and "29870.05" in text
    assert "Tops &amp; Tees" in text


def test_charts_are_inline_pngs(page):
    parser = Tags()
    parser.feed(page[1])
    images = [attrs for tag, attrs in parser.seen if tag == "img"]
    assert [a["alt"] for a in images] == ["revenue by date", "category revenue mix"]
    for attrs in images:
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_shows_rejected_file_with_its_rule(page):
    text = page[1]
    assert "expect_column_values_to_be_between" in text
    assert "sale_price" in text
    assert "order_items_&lt;bad&gt;.csv" in text
    assert "<bad>" not in text  # producer-controlled text is escaped


def test_shows_executions_and_alerts(page):
    text = page[1]
    assert "2025-07-10-g1" in text and "2025-07-11-g1" in text
    assert "ValidateBatch → TransformBatch → Done" in text
    assert "States.TaskFailed" in text
    assert "exit code 2: &lt;1 file rejected&gt;" in text
    assert "ecomkpi pipeline failed: 2025-07-11" in text
    assert "batch 2025-07-11 &amp; co" in text
    assert "1/2 succeeded" in text


def test_empty_run_still_renders():
    text = render_report_html({}, [], [])
    assert "<img" not in text
    assert "no workflow execution was started" in text
    assert "revenue by date: no data" in text


def test_category_mix_folds_the_tail():
    rows = [{"category_id": f"c{i:02d}", "daily_revenue": str(100 - i)} for i in range(40)]
    rows.append({"category_id": "c00", "daily_revenue": "1.50"})  # a second date of c00 adds up
    mix = category_mix(rows)
    assert len(mix) == 30
    assert mix[0] == ("c00", Decimal("101.50"))
    assert mix[-1][0] == "other (11)"
    assert sum(v for _, v in mix) == sum(100 - i for i in range(40)) + Decimal("1.50")
