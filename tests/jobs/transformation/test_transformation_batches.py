"""Batches, late files and products changes: the served KPIs always equal the from-scratch oracle.

Each test drives a small lake (a local directory; the Delta-on-S3 path is covered by
test_transformation_entrypoint.py) through a few runs and compares DynamoDB with the oracle over
every file version put so far, plus exact hand-computed numbers where stated.
"""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality

from jobs.contract import CATEGORY_KPI_SCHEMA, DAILY_KPI_SCHEMA
from jobs.transformation.lake import GOLD_CATEGORY, GOLD_DAILY, Lake
from tests.support.transformation import (
    PRODUCTS_V1,
    Pipeline,
    items_csv,
    orders_csv,
    products_csv,
)

D = Decimal

# Batch 2025-07-10: 1003 was created 23:30 at UTC-2, i.e. 2025-07-11 01:30 UTC: one file, two dates.
ORDERS_0710 = orders_csv(
    ("1001", "u1", "Complete", "2025-07-10 10:00:00"),
    ("1002", "u2", "Returned", "2025-07-10 11:00:00"),
    ("1003", "u1", "Complete", "2025-07-10T23:30:00-02:00"),
)
ITEMS_0710 = items_csv(
    ("5001", "1001", "p1", "10.00"),
    ("5002", "1001", "p2", "5.50"),
    ("5003", "1002", "p1", "20.00"),
    ("5004", "1003", "p3", "7.25"),
)
# Batch 2025-07-11: 1005 has returned_at set; 5007 is a late item of 1002 (a 07-10 order);
# 5008 belongs to 1099, which has not arrived yet.
ORDERS_0711 = orders_csv(
    ("1004", "u3", "Complete", "2025-07-11 09:00:00"),
    ("1005", "u2", "Shipped", "2025-07-11 12:00:00", "2025-07-13 08:00:00"),
)
ITEMS_0711 = items_csv(
    ("5005", "1004", "p2", "4.50"),
    ("5006", "1005", "p1", "3.335"),
    ("5007", "1002", "p3", "1.00"),
    ("5008", "1099", "p1", "100.00"),
)


def load_batch_0710(p: Pipeline) -> dict[str, list[str]]:
    p.put("products/products.csv", PRODUCTS_V1)
    return {
        "orders": [p.put("orders/2025-07-10/orders_part1.csv", ORDERS_0710)],
        "items": [p.put("order_items/2025-07-10/items_part1.csv", ITEMS_0710)],
    }


def load_batch_0711(p: Pipeline) -> dict[str, list[str]]:
    return {
        "orders": [p.put("orders/2025-07-11/orders_part1.csv", ORDERS_0711)],
        "items": [p.put("order_items/2025-07-11/items_part1.csv", ITEMS_0711)],
    }


def assert_matches_oracle(p: Pipeline) -> None:
    daily, category = p.served()
    expected_daily, expected_category = p.expected()
    assert daily == expected_daily
    assert category == expected_category


@pytest.fixture
def pipeline_factory(moto_endpoint, spark, tmp_path):
    def make() -> Pipeline:
        return Pipeline(moto_endpoint, spark, tmp_path)

    return make


def test_two_batches_in_sequence_equal_both_at_once_and_the_oracle(pipeline_factory, spark):
    seq = pipeline_factory()
    b1 = load_batch_0710(seq)
    first = seq.run("2025-07-10", b1["orders"], b1["items"])
    assert first.touched_dates == ["2025-07-10", "2025-07-11"]
    b2 = load_batch_0711(seq)
    second = seq.run("2025-07-11", b2["orders"], b2["items"])
    # 5007 belongs to a 07-10 order, so 07-10 is touched although the batch is 07-11's.
    assert second.touched_dates == ["2025-07-10", "2025-07-11"]

    assert first.files_parsed == [] and second.files_parsed == []  # staging rows, no CSV parse
    # Files validated before staging existed (no staging rows) are parsed, to the same result.
    # Both batches in one run, as the warm worker coalesces waiting transformations (``also``).
    once = Pipeline(seq.endpoint, spark, seq.tmp, staged=False)
    b1, b2 = load_batch_0710(once), load_batch_0711(once)
    both = once.run(
        "2025-07-10", b1["orders"], b1["items"], also=[once.config("2025-07-11", b2["orders"], b2["items"])]
    )
    keys = [*b1["orders"], *b1["items"], *b2["orders"], *b2["items"], "raw/products/products.csv"]
    assert sorted(both.files_parsed) == sorted(k.removeprefix("raw/") for k in keys)
    assert [b.split("/")[0] for b in both.batches] == ["2025-07-10", "2025-07-11"]
    for batch in both.batches:  # each batch's alert and audit trail find the shared run's log
        assert f"logs/transformation/{batch}.log" in once.keys("logs/transformation/")
        summary = json.loads(
            once.s3.get_object(Bucket=once.bucket, Key=f"logs/transformation/{batch}/summary.json")[
                "Body"
            ].read()
        )
        assert summary["batches"] == both.batches and summary["status"] == "ok"

    assert seq.served() == once.served()
    assert_matches_oracle(seq)
    assert seq.keys("staging/") == []  # applied versions' staging rows are gone with the archive

    # Hand-computed (5008 waits for order 1099 and counts nowhere):
    # 07-10: 1001 (u1) + 1002 (u2, returned); items 10.00 + 5.50 + 20.00 + 1.00 = 36.50, 4 items,
    #        return rate 1/2 = 50.00 %, 2 customers.
    # 07-11: 1003 (u1), 1004 (u3), 1005 (u2, returned_at set); 7.25 + 4.50 + 3.335 = 15.085 -> 15.09
    #        (half-up), 3 items, 1/3 = 33.33 %, 3 customers.
    lake = Lake(spark, seq.lake)
    expected_daily = spark.createDataFrame(
        [
            ("2025-07-10", 2, D("36.50"), 4, D("50.00"), 2),
            ("2025-07-11", 3, D("15.09"), 3, D("33.33"), 3),
        ],
        DAILY_KPI_SCHEMA,
    )
    assert_df_equality(
        lake.read(GOLD_DAILY),
        expected_daily,
        ignore_row_order=True,
        ignore_nullable=True,
        ignore_column_order=True,
    )
    # Jeans 07-10: 10.00 + 20.00 over {1001, 1002}: AOV 15.00, returned {1002}: 50.00
    # Tops 07-10: 5.50 over {1001}; Shoes 07-10: 1.00 over {1002} (returned): 100.00
    # 07-11: Shoes 7.25 {1003}; Tops 4.50 {1004}; Jeans 3.335 -> 3.34 {1005, returned}: 100.00
    expected_category = spark.createDataFrame(
        [
            ("Jeans", "2025-07-10", D("30.00"), D("15.00"), D("50.00")),
            ("Tops", "2025-07-10", D("5.50"), D("5.50"), D("0.00")),
            ("Shoes", "2025-07-10", D("1.00"), D("1.00"), D("100.00")),
            ("Shoes", "2025-07-11", D("7.25"), D("7.25"), D("0.00")),
            ("Tops", "2025-07-11", D("4.50"), D("4.50"), D("0.00")),
            ("Jeans", "2025-07-11", D("3.34"), D("3.34"), D("100.00")),
        ],
        CATEGORY_KPI_SCHEMA,
    )
    assert_df_equality(
        lake.read(GOLD_CATEGORY),
        expected_category,
        ignore_row_order=True,
        ignore_nullable=True,
        ignore_column_order=True,
    )
    # Served as DynamoDB numbers (Decimal), with the run that wrote them.
    item = seq.daily()["2025-07-11"]
    assert item["total_revenue"] == D("15.09") and item["return_rate"] == D("33.33")
    assert item["run_id"] == second.run_id and item["updated_at"].endswith("Z")
    raw = seq.ddb.get_item(TableName=seq.daily_table, Key={"date_key": {"S": "2025-07-11"}})["Item"]
    assert set(raw["total_revenue"]) == {"N"} and set(raw["total_orders"]) == {"N"}
    # Every file reached processed/ once; the products master stays in raw/ and validated/ too.
    assert seq.keys("validated/") == ["validated/products/products.csv"]
    assert seq.keys("processed/") == [
        "processed/order_items/2025-07-10/items_part1.csv",
        "processed/order_items/2025-07-11/items_part1.csv",
        "processed/orders/2025-07-10/orders_part1.csv",
        "processed/orders/2025-07-11/orders_part1.csv",
        "processed/products/products.csv",
    ]
    assert seq.keys("raw/") == ["raw/products/products.csv"]


def test_late_parts_early_items_and_a_category_change(pipeline_factory):
    p = pipeline_factory()
    b1 = load_batch_0710(p)
    p.run("2025-07-10", b1["orders"], b1["items"])
    assert_matches_oracle(p)

    # A late orders part for the processed 07-10 (with its items), a late items file for orders
    # that came earlier (5007 -> 1002), and an item whose order (1099) has not arrived.
    late = p.put(
        "orders/2025-07-10/orders_part2.csv",
        orders_csv(("1006", "u5", "Complete", "2025-07-10 18:00:00")),
    )
    late_items = p.put(
        "order_items/2025-07-10/items_part2.csv",
        items_csv(
            ("5009", "1006", "p2", "2.25"), ("5007", "1002", "p3", "1.00"), ("5008", "1099", "p1", "100.00")
        ),
    )
    second = p.run("2025-07-10", [*b1["orders"], late], [*b1["items"], late_items])
    assert second.touched_dates == ["2025-07-10"]
    assert second.files_applied == [
        "orders/2025-07-10/orders_part2.csv",
        "order_items/2025-07-10/items_part2.csv",
    ]
    assert set(second.files_skipped) >= {"orders/2025-07-10/orders_part1.csv"}
    assert_matches_oracle(p)
    assert p.daily()["2025-07-10"]["total_orders"] == 3

    # The order of the early item arrives (dated 07-09): the item leaves the pending partition.
    o1099 = p.put(
        "orders/2025-07-11/orders_part1.csv", orders_csv(("1099", "u9", "Complete", "2025-07-09 08:00:00"))
    )
    third = p.run("2025-07-11", [o1099])
    assert third.touched_dates == ["2025-07-09"]
    assert_matches_oracle(p)
    assert p.daily()["2025-07-09"]["total_revenue"] == D("100")

    # Products: p3 moves from Shoes to Boots. Only the dates with p3 items are recomputed, and the
    # stale (Shoes, date) items are deleted from DynamoDB.
    p.put("products/products.csv", products_csv(("p1", "Jeans"), ("p2", "Tops"), ("p3", "Boots")))
    fourth = p.run("2025-07-12")
    assert fourth.touched_dates == ["2025-07-10", "2025-07-11"]
    assert fourth.dynamodb["category_deletes"] == 2
    assert_matches_oracle(p)
    assert not [k for k in p.category() if k[0] == "Shoes"]


@pytest.mark.parametrize("loss", ["deleted", "fewer rows"])
def test_a_version_whose_staging_rows_lost_a_part_is_parsed_again(pipeline_factory, loss):
    """Staging expires (a lifecycle rule) and parts can be deleted or rewritten by hand, while the
    ``_SUCCESS`` marker stays: the marker names its Parquet files and their sizes, so a version
    missing one, or holding one with fewer rows (a valid Parquet file, smaller), is parsed from its
    validated file, never applied in part."""
    p = pipeline_factory()
    b1 = load_batch_0710(p)
    victim = b1["orders"][0].removeprefix("raw/")
    prefixes = {
        k.rsplit("/", 1)[0]
        for k in p.keys("staging/")
        if k.endswith(".parquet") and k.startswith(f"staging/v2/{victim.split('/')[0]}/")
    }
    marker_of = {
        prefix: p.s3.get_object(Bucket=p.bucket, Key=f"{prefix}/_SUCCESS")["Body"].read()
        for prefix in prefixes
    }
    (prefix,) = [x for x, body in marker_of.items() if json.loads(body)["parts"]][:1]
    part = json.loads(marker_of[prefix])["parts"][0]
    if loss == "deleted":
        p.s3.delete_object(Bucket=p.bucket, Key=f"{prefix}/{part}")
    else:
        body = p.s3.get_object(Bucket=p.bucket, Key=f"{prefix}/{part}")["Body"].read()
        table = pq.read_table(io.BytesIO(body))
        assert table.num_rows > 1
        shorter = io.BytesIO()
        pq.write_table(table.slice(0, 1), shorter)
        p.s3.put_object(Bucket=p.bucket, Key=f"{prefix}/{part}", Body=shorter.getvalue())
    result = p.run("2025-07-10", b1["orders"], b1["items"])
    assert result.status == "ok"
    assert len(result.files_parsed) == 1 and result.files_parsed[0].startswith("orders/")
    assert p.served() == p.expected()
