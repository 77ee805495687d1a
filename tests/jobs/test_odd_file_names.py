"""Any key S3 accepts under raw/<dataset>/<date>/ goes through both jobs: glob characters, quotes,
spaces, percent signs, ampersands, colons and non-ASCII letters name exactly one object each, and
no name ever becomes SQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3

from jobs.contract import DAILY_KPI_COLUMNS
from jobs.oracle import kpis_from_files
from jobs.transformation.job import run as transform
from jobs.transformation.serving import create_kpi_tables
from jobs.validation.job import run as validate
from tests.support.validation import (
    BATCH,
    PRODUCTS_CSV,
    PRODUCTS_KEY,
    both_jobs_config,
    item_row,
    items_csv,
    order_row,
    orders_csv,
)

ODD_NAMES = [
    "export [1].csv",
    "o'neil (copy).csv",
    "100% done.csv",
    "a&b {x,y}.csv",
    "star*q?.csv",
    "café ünï.csv",
    "hash#1 semi;colon.csv",
]


def test_odd_names_pass_both_jobs_and_their_kpis_equal_the_oracle(
    moto_endpoint: str, names: Any, spark: Any, tmp_path: Path
) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=names.bucket)
    create_kpi_tables(
        boto3.client("dynamodb", endpoint_url=moto_endpoint), names.daily_table, names.category_table
    )
    local: list[tuple[str, str]] = []

    def put(key: str, body: bytes) -> str:
        s3.put_object(Bucket=names.bucket, Key=key, Body=body)
        path = tmp_path / f"{len(local):02d}.csv"
        path.write_bytes(body)
        local.append((key.removeprefix("raw/"), str(path)))
        return key

    put(PRODUCTS_KEY, PRODUCTS_CSV)
    orders, items = [], []
    for n, name in enumerate(ODD_NAMES, start=1):
        orders.append(
            put(
                f"raw/orders/{BATCH}/{name}",
                orders_csv(order_row(n, status="Returned" if n == 2 else "Complete")),
            )
        )
        items.append(
            put(f"raw/order_items/{BATCH}/{name}", items_csv(item_row(100 + n, order_id=n, price=f"{n}.50")))
        )
    config = both_jobs_config(moto_endpoint, names, tmp_path / "lake", orders, items, "odd-1")
    result = validate(config, spark)
    assert result.exit_code == 0, [(f.key, f.verdict) for f in result.files]
    transformed = transform(config, spark)
    assert sorted(transformed.files_applied) == sorted(
        k.removeprefix("raw/") for k in [*orders, *items, PRODUCTS_KEY]
    )
    listed = s3.list_objects_v2(Bucket=names.bucket, Prefix="processed/")["Contents"]
    assert {o["Key"] for o in listed} >= {k.replace("raw/", "processed/", 1) for k in [*orders, *items]}

    expected, _ = kpis_from_files(spark, local)
    row = expected.collect()[0].asDict()
    item = boto3.client("dynamodb", endpoint_url=moto_endpoint).get_item(
        TableName=names.daily_table, Key={"date_key": {"S": BATCH}}
    )["Item"]
    assert int(item["total_orders"]["N"]) == row["total_orders"] == len(ODD_NAMES)
    assert int(item["total_items_sold"]["N"]) == row["total_items_sold"] == len(ODD_NAMES)
    for column in DAILY_KPI_COLUMNS[1:]:
        value = item[column].get("N") or item[column].get("S")
        assert float(value) == float(row[column]), column
