"""KPI and tracker items as the pipeline writes them (serving.to_item, the tracker's calendar),
for the API and live-page tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from jobs.transformation.serving import create_kpi_tables, to_item
from lambda_trigger.tracker import BatchFileTracker, create_tracker_table

DAILY = [
    {"date_key": "2025-07-08", "total_orders": 3, "total_revenue": Decimal("120.50"), "total_items_sold": 5,
     "return_rate": Decimal("33.33"), "unique_customers": 3},
    {"date_key": "2025-07-10", "total_orders": 1200, "total_revenue": Decimal("98765.40"),
     "total_items_sold": 2100, "return_rate": Decimal("0.00"), "unique_customers": 1100},
]  # fmt: skip
CATEGORIES = [
    {"category_id": "Tops & Tees", "date_key": "2025-07-10", "daily_revenue": Decimal("6319.72"),
     "avg_order_value": Decimal("150.47"), "avg_return_rate": Decimal("9.52")},
    {"category_id": "Jeans", "date_key": "2025-07-10", "daily_revenue": Decimal("2077.70"),
     "avg_order_value": Decimal("122.22"), "avg_return_rate": Decimal("5.88")},
    {"category_id": "Tops & Tees", "date_key": "2025-07-08", "daily_revenue": Decimal("40.00"),
     "avg_order_value": Decimal("40.00"), "avg_return_rate": Decimal("100.00")},
]  # fmt: skip
UPDATED = "2025-07-10T12:00:00.000Z"
NOW = datetime(2025, 7, 10, 12, 0, 30, tzinfo=UTC)


def seed(ddb: Any, names: Any) -> None:
    create_kpi_tables(ddb, names.daily_table, names.category_table)
    create_tracker_table(ddb, names.tracker_table)
    for row in DAILY:
        ddb.put_item(
            TableName=names.daily_table, Item=to_item(row, list(row), f"{row['date_key']}-g1", UPDATED)
        )
    for row in CATEGORIES:
        ddb.put_item(TableName=names.category_table, Item=to_item(row, list(row), "2025-07-10-g2", UPDATED))
    tracker = BatchFileTracker(ddb, names.tracker_table)
    for day in ("2025-07-08", "2025-07-10", "2025-07-09"):
        tracker.note_day(day)
    items = {
        "2025-07-10": {"status": {"S": "FAILED"}, "triggered_generation": {"N": "2"}, "running": {"BOOL": False},
                       "last_run": {"S": "2025-07-10-g2"}, "failed_state": {"S": "ValidateData"},
                       "failure_error": {"S": "Validation.DataRejected"},
                       "failure_cause": {"S": "the validation job rejected files of batch 2025-07-10 <b>x</b>"}},
        "2025-07-09": {"status": {"S": "TRIGGERED"}, "triggered_generation": {"N": "1"}, "running": {"BOOL": True}},
        "2025-07-08": {"status": {"S": "SUCCEEDED"}, "triggered_generation": {"N": "1"}, "running": {"BOOL": False},
                       "last_run": {"S": "2025-07-08-g1"}},
    }  # fmt: skip
    for day, attributes in items.items():
        ddb.put_item(TableName=names.tracker_table, Item={"BatchId": {"S": day}, **attributes})
