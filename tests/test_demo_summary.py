"""The demo's terminal tables: readable whatever the length of a category name."""

from __future__ import annotations

from ecomkpi.demo import text_table
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
