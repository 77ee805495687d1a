"""The DynamoDB serving layer on its own (no Spark): item format, batching, retries, stale rows."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import boto3
import pytest

from jobs.transformation.serving import (
    CATEGORY_KEY,
    DAILY_KEY,
    DATE_INDEX,
    BatchWriter,
    DuplicateKeyError,
    assert_unique_keys,
    create_kpi_tables,
    serve,
    to_item,
)
from tests.support.transformation import FlakyDynamoDB

D = Decimal


@pytest.fixture
def tables(moto_endpoint) -> tuple[Any, str, str]:
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    suffix = uuid.uuid4().hex[:8]
    daily, category = f"DailyKPIs-{suffix}", f"CategoryKPIs-{suffix}"
    create_kpi_tables(client, daily, category)
    create_kpi_tables(client, daily, category)  # idempotent
    return client, daily, category


def daily_row(date_key: str, orders: int = 1) -> dict[str, Any]:
    return {
        "date_key": date_key,
        "total_orders": orders,
        "total_revenue": D("40.10"),
        "total_items_sold": 3,
        "return_rate": D("33.33"),
        "unique_customers": 1,
    }


def category_row(category: str, date_key: str) -> dict[str, Any]:
    return {
        "category_id": category,
        "date_key": date_key,
        "daily_revenue": D("10.00"),
        "avg_order_value": D("3.34"),
        "avg_return_rate": D("0.00"),
    }


def test_create_kpi_tables_has_the_date_gsi(tables):
    client, daily, category = tables
    described = client.describe_table(TableName=category)["Table"]
    gsi = {g["IndexName"]: g for g in described["GlobalSecondaryIndexes"]}
    assert gsi[DATE_INDEX]["KeySchema"] == [{"AttributeName": "date_key", "KeyType": "HASH"}]
    assert gsi[DATE_INDEX]["Projection"]["ProjectionType"] == "KEYS_ONLY"
    assert [k["AttributeName"] for k in described["KeySchema"]] == list(CATEGORY_KEY)
    daily_keys = client.describe_table(TableName=daily)["Table"]["KeySchema"]
    assert [k["AttributeName"] for k in daily_keys] == list(DAILY_KEY)


def test_items_hold_numbers_as_decimal_strings_never_floats():
    item = to_item(daily_row("2025-07-10"), list(daily_row("x")), "run-1", "2025-07-10T00:00:00Z")
    assert item["total_revenue"] == {"N": "40.10"} and item["total_orders"] == {"N": "1"}
    assert item["run_id"] == {"S": "run-1"} and item["updated_at"] == {"S": "2025-07-10T00:00:00Z"}
    with pytest.raises(TypeError):
        to_item({**daily_row("x"), "total_revenue": 40.1}, list(daily_row("x")), "r", "t")


def test_writer_rejects_duplicate_keys_in_its_input():
    recorder = FlakyDynamoDB(client=None)
    writer = BatchWriter(recorder)
    puts = [to_item(daily_row("2025-07-10"), list(daily_row("x")), "r", "t")] * 2
    with pytest.raises(DuplicateKeyError):
        writer.write("DailyKPIs", DAILY_KEY, puts, [])
    with pytest.raises(DuplicateKeyError):  # a put and a delete of one key are ambiguous too
        writer.write("DailyKPIs", DAILY_KEY, puts[:1], [{"date_key": {"S": "2025-07-10"}}])
    assert recorder.requests == []  # nothing was sent
    with pytest.raises(DuplicateKeyError):
        assert_unique_keys([{"PutRequest": {"Item": puts[0]}}] * 2, DAILY_KEY)


def test_requests_hold_at_most_25_distinct_keys_and_unprocessed_items_are_retried(tables):
    client, _, category = tables

    class Throttled(FlakyDynamoDB):
        """Leaves the last two writes of the first request unprocessed, like a throttled table."""

        def batch_write_item(self, **kwargs: Any) -> Any:
            if self.requests:
                return super().batch_write_item(**kwargs)
            self.requests.append(kwargs["RequestItems"])
            ((table, writes),) = kwargs["RequestItems"].items()
            self.client.batch_write_item(RequestItems={table: writes[:-2]})
            return {"UnprocessedItems": {table: writes[-2:]}}

    recorder = Throttled(client)
    delays: list[float] = []
    writer = BatchWriter(recorder, sleep=delays.append)
    rows = [category_row(f"cat{i:02d}", "2025-07-10") for i in range(60)]
    writer.write(category, CATEGORY_KEY, [to_item(r, list(r), "r", "t") for r in rows], [])
    sizes = [len(next(iter(r.values()))) for r in recorder.requests]
    assert sizes == [25, 2, 25, 10]  # the retry of 2 unprocessed writes comes before the next chunk
    for request in recorder.requests:
        (writes,) = request.values()
        keys = [
            (w["PutRequest"]["Item"]["category_id"]["S"], w["PutRequest"]["Item"]["date_key"]["S"])
            for w in writes
        ]
        assert len(keys) == len(set(keys))
    assert len(delays) == 1 and 0 <= delays[0] <= writer.base_delay
    assert client.scan(TableName=category, Select="COUNT")["Count"] == 60


def test_writer_gives_up_after_max_attempts():
    class AlwaysThrottled:
        def batch_write_item(self, RequestItems):  # boto3 argument name
            return {"UnprocessedItems": RequestItems}

    writer = BatchWriter(AlwaysThrottled(), max_attempts=3, sleep=lambda _s: None)
    with pytest.raises(RuntimeError, match="unprocessed after 3 attempts"):
        writer.write("T", DAILY_KEY, [{"date_key": {"S": "d"}}], [])


@pytest.fixture
def tables_without_index(moto_endpoint) -> tuple[Any, str, str]:
    """The serving tables with only the keys the contract names (no GSI), as a user may create them."""
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    suffix = uuid.uuid4().hex[:8]
    daily, category = f"DailyKPIs-{suffix}", f"CategoryKPIs-{suffix}"
    for name, keys in ((daily, DAILY_KEY), (category, CATEGORY_KEY)):
        client.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
            KeySchema=[
                {"AttributeName": k, "KeyType": kind}
                for k, kind in zip(keys, ("HASH", "RANGE"), strict=False)
            ],
        )
    return client, daily, category


@pytest.mark.parametrize("table_kind", ["with the date index", "without it"])
def test_serve_replaces_a_date_and_deletes_stale_categories_and_vanished_dates(
    table_kind, tables, tables_without_index
):
    client, daily, category = tables if table_kind == "with the date index" else tables_without_index
    serve(
        client, daily, category, ["2025-07-10", "2025-07-11"],
        [daily_row("2025-07-10"), daily_row("2025-07-11")],
        [category_row("Jeans", "2025-07-10"), category_row("Shoes", "2025-07-10"), category_row("Shoes", "2025-07-11")],
        run_id="r1", updated_at="t1",
    )  # fmt: skip
    # Second run: Shoes left 07-10, 07-11 lost all its orders; 07-12 untouched is not looked at.
    client.put_item(
        TableName=category,
        Item=to_item(category_row("Tops", "2025-07-12"), list(category_row("a", "b")), "r0", "t0"),
    )
    result = serve(
        client, daily, category, ["2025-07-10", "2025-07-11"],
        [daily_row("2025-07-10", orders=2)], [category_row("Jeans", "2025-07-10")],
        run_id="r2", updated_at="t2",
    )  # fmt: skip
    assert (result.daily_puts, result.daily_deletes) == (1, 1)
    assert sorted(result.deleted_categories) == [("Shoes", "2025-07-10"), ("Shoes", "2025-07-11")]
    got_daily = {i["date_key"]["S"]: i for i in client.scan(TableName=daily)["Items"]}
    assert list(got_daily) == ["2025-07-10"]
    assert got_daily["2025-07-10"]["total_orders"] == {"N": "2"} and got_daily["2025-07-10"]["run_id"] == {
        "S": "r2"
    }
    got_category = sorted(
        (i["category_id"]["S"], i["date_key"]["S"]) for i in client.scan(TableName=category)["Items"]
    )
    assert got_category == [("Jeans", "2025-07-10"), ("Tops", "2025-07-12")]
    resource = boto3.resource("dynamodb", endpoint_url=client.meta.endpoint_url, region_name="us-east-1")
    value = resource.Table(daily).get_item(Key={"date_key": "2025-07-10"})["Item"]["total_revenue"]
    assert isinstance(value, Decimal) and value == D("40.10")
