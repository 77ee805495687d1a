"""The demo's terminal tables (readable whatever the length of a category name) and its timings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ecomkpi.demo import text_table, timings
from jobs.contract import CATEGORY_KPI_COLUMNS


def test_columns_fit_the_longest_value_keys_left_numbers_right():
    rows = [
        {"category_id": "Fashion Hoodies & Sweatshirts", "date_key": "2025-07-09", "daily_revenue": "299.28",
         "avg_order_value": "149.64", "avg_return_rate": "50.00"},
        {"category_id": "Jeans", "date_key": "2025-07-09", "daily_revenue": "1471.13",
         "avg_order_value": "157.04", "avg_return_rate": "0.00"},
    ]  # fmt: skip
    header, long, short = text_table(rows, CATEGORY_KPI_COLUMNS).splitlines()
    assert header.split() == ["category_id", *CATEGORY_KPI_COLUMNS[1:]]
    assert long.startswith("  Fashion Hoodies & Sweatshirts  2025-07-09")
    assert short.startswith(
        "  Jeans" + " " * (len("Fashion Hoodies & Sweatshirts") - len("Jeans")) + "  2025-07-09"
    )
    # Right-aligned numbers end in the same column as their header.
    assert len(long) == len(short) == len(header)
    assert short.endswith(" 0.00") and long.endswith("50.00")


def test_pipeline_time_runs_from_the_first_upload_to_the_last_execution_end():
    first = datetime(2025, 7, 10, 12, 0, 0, tzinfo=UTC)
    executions = [
        {"name": "a", "stopped_at": first + timedelta(seconds=41.26)},
        {"name": "b", "stopped_at": first + timedelta(seconds=12)},
        {"name": "c", "stopped_at": None},  # still running when the demo gave up: not an end
    ]
    assert timings(61.04, first, executions) == {"setup_seconds": 61.0, "pipeline_seconds": 41.3}


def test_no_pipeline_time_without_an_ended_execution():
    first = datetime(2025, 7, 10, tzinfo=UTC)
    assert timings(3.0, first, [{"stopped_at": None}])["pipeline_seconds"] is None
    assert timings(3.0, None, [])["pipeline_seconds"] is None
