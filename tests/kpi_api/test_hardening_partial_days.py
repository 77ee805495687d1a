"""A day served partly: its KPI rows say how many of its files are rejected, in DynamoDB, in the API
and on the page, instead of looking like a quiet day.

The count comes from the bucket (``invalid/<dataset>/<date>/``), so whichever run writes a date marks
it the same way, and a corrected upload that passed (its rejection moved to ``invalid/superseded/``)
clears the mark at the date's next write. Real S3 and DynamoDB on the emulator.
"""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal
from typing import Any

import boto3
import pytest

from ecomkpi.api_server import serve as serve_api
from jobs.contract import REJECTED_FILES
from jobs.s3_store import S3Store
from jobs.transformation.serving import create_kpi_tables, rejected_files_by_day, serve
from kpi_api import routes
from kpi_api.page import page_html
from kpi_api.reader import KpiReader
from lambda_trigger.tracker import create_tracker_table
from tests.support.validation import create_bucket, make_config

DAY, OTHER = "2025-07-10", "2025-07-09"
DAILY = [
    {"date_key": d, "total_orders": 2, "total_revenue": Decimal("20.00"), "total_items_sold": 3,
     "return_rate": Decimal("0.00"), "unique_customers": 2}
    for d in (OTHER, DAY)
]  # fmt: skip
CATEGORIES = [
    {"category_id": "Jeans", "date_key": d, "daily_revenue": Decimal("20.00"), "avg_order_value": Decimal("10.00"),
     "avg_return_rate": Decimal("0.00")}
    for d in (OTHER, DAY)
]  # fmt: skip


@pytest.fixture
def bucket(moto_endpoint: str, names: Any) -> S3Store:
    config = make_config(moto_endpoint, names.bucket)
    create_bucket(config)
    store = S3Store(config)
    for key in (
        f"invalid/orders/{DAY}/part-2.csv",
        f"invalid/orders/{DAY}/part-2.csv.report.json",  # a report, not a file
        f"invalid/order_items/{DAY}/items-2.csv",
        f"invalid/superseded/orders/{OTHER}/part-1.csv.abc",  # corrected since: not rejected now
        f"invalid/withdrawn/orders/{OTHER}/part-3.csv",  # withdrawn by an operator: not part of the day
        f"validated/orders/{OTHER}/part-1.csv",
    ):
        store.put_text(key, "x")
    return store


def _serve(moto_endpoint: str, names: Any, rejected: dict[str, int]) -> Any:
    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    if names.daily_table not in ddb.list_tables()["TableNames"]:
        create_kpi_tables(ddb, names.daily_table, names.category_table)
    serve(ddb, names.daily_table, names.category_table, [DAY, OTHER], DAILY, CATEGORIES, "r1", "t",
          rejected_files=rejected)  # fmt: skip
    return ddb


def test_the_days_rejected_files_are_counted_from_the_bucket(bucket: S3Store) -> None:
    assert rejected_files_by_day(bucket, [DAY, OTHER, DAY]) == {DAY: 2, OTHER: 0}


def test_rows_of_a_day_served_partly_carry_the_count_and_lose_it_when_whole(
    bucket: S3Store, moto_endpoint: str, names: Any
) -> None:
    ddb = _serve(moto_endpoint, names, rejected_files_by_day(bucket, [DAY, OTHER]))

    def mark(table: str, key: dict[str, Any]) -> str | None:
        item = ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
        return item.get(REJECTED_FILES, {}).get("N")

    assert mark(names.daily_table, {"date_key": {"S": DAY}}) == "2"
    assert mark(names.daily_table, {"date_key": {"S": OTHER}}) is None
    jeans = {"category_id": {"S": "Jeans"}, "date_key": {"S": DAY}}
    assert mark(names.category_table, jeans) == "2"

    bucket.move(f"invalid/orders/{DAY}/part-2.csv", f"invalid/superseded/orders/{DAY}/part-2.csv.e1")
    bucket.move(f"invalid/order_items/{DAY}/items-2.csv", f"validated/order_items/{DAY}/items-2.csv")
    _serve(moto_endpoint, names, rejected_files_by_day(bucket, [DAY, OTHER]))
    assert mark(names.daily_table, {"date_key": {"S": DAY}}) is None
    assert mark(names.category_table, jeans) is None


def test_the_api_and_the_page_say_a_day_was_served_partly(
    bucket: S3Store, moto_endpoint: str, names: Any
) -> None:
    ddb = _serve(moto_endpoint, names, rejected_files_by_day(bucket, [DAY, OTHER]))
    create_tracker_table(ddb, names.tracker_table)
    server = serve_api(KpiReader(ddb, names.daily_table, names.category_table, names.tracker_table))
    try:

        def get(path: str) -> Any:
            with urllib.request.urlopen(server.url + path.lstrip("/"), timeout=10) as response:
                return json.loads(response.read().decode())

        daily = {
            r["date_key"]: r["rejected_files"] for r in get(f"/kpis/daily?from={OTHER}&to={DAY}")["rows"]
        }
        assert daily == {DAY: 2, OTHER: 0}
        assert [r["rejected_files"] for r in get(f"/kpis/categories?date={DAY}")["rows"]] == [2]
        status = {d["date"]: d["rejected_files"] for d in get(f"/status?from={OTHER}&to={DAY}")["days"]}
        assert status == {DAY: 2, OTHER: 0}
    finally:
        server.stop()
    html = page_html()
    assert "data-rejected-files" in html and "partialText(r.rejected_files)" in html  # daily table
    assert "partialText(last.rejected_files)" in html and "partialText(d.rejected_files)" in html


def test_the_api_names_the_marker_as_the_contract_does() -> None:
    assert routes.REJECTED_FILES == REJECTED_FILES
