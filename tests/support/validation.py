"""Helpers shared by the validation job tests (no tests here): a bucket, uploads, bucket snapshots."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs import aws
from jobs.config import PipelineConfig

BATCH = "2025-07-10"
PRODUCTS_KEY = "raw/products/products.csv"
PRODUCTS_CSV = (
    b"id,cost,category,name,brand,retail_price,department,sku,distribution_center_id\n"
    b"1,10.5,Jeans,Slim,Acme,25.00,Men,SKU1,1\n"
    b"2,3.25,Socks,Warm,Acme,7.99,Women,SKU2,1\n"
    b'3,20,Outerwear & Coats,"Coat, ""long""",Brand,80.00,Women,SKU3,2\n'
)
ORDERS_HEADER = "order_id,user_id,status,gender,created_at,returned_at,shipped_at,delivered_at,num_of_item"
ITEMS_HEADER = (
    "id,order_id,user_id,product_id,inventory_item_id,status,created_at,shipped_at,delivered_at,"
    "returned_at,sale_price"
)


def orders_csv(*rows: str, header: str = ORDERS_HEADER) -> bytes:
    return ("\n".join((header, *rows)) + "\n").encode()


def order_row(order_id: int | str, user: int | str = 7, status: str = "Complete",
              created: str = "2025-07-10 10:00:00") -> str:  # fmt: skip
    return f"{order_id},{user},{status},F,{created},,,,1"


def item_row(
    item_id: int | str, order_id: int | str = 1, product: int | str = 1, price: str = "25.00"
) -> str:
    return f"{item_id},{order_id},7,{product},{item_id},Complete,2025-07-10 10:00:00,,,,{price}"


def items_csv(*rows: str, header: str = ITEMS_HEADER) -> bytes:
    return ("\n".join((header, *rows)) + "\n").encode()


def make_config(endpoint: str, bucket: str, *, products_key: str = PRODUCTS_KEY, orders: list[str] | None = None,
                items: list[str] | None = None, run_id: str = "run-1", **extra: str) -> PipelineConfig:  # fmt: skip
    """The configuration exactly as the workflow passes it: environment variables, JSON key arrays."""
    env = {
        "S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": endpoint,
        "PRODUCTS_KEY": products_key,
        "ORDERS_KEYS": json.dumps(orders or []),
        "ORDER_ITEMS_KEYS": json.dumps(items or []),
        "BATCH_ID": BATCH,
        "RUN_ID": run_id,
        "SPARK_MASTER": "local[2]",
        "SPARK_SHUFFLE_PARTITIONS": "2",
        **extra,
    }
    return PipelineConfig.from_env(env)


def both_jobs_config(
    endpoint: str, names: Any, lake: Path, orders: list[str], items: list[str], run_id: str
) -> PipelineConfig:
    """What the workflow gives both jobs of one day: the keys, the lake and the KPI tables."""
    return PipelineConfig.from_env(
        {
            "S3_BUCKET": names.bucket,
            "AWS_ENDPOINT_URL": endpoint,
            "PRODUCTS_KEY": PRODUCTS_KEY,
            "ORDERS_KEYS": json.dumps(orders),
            "ORDER_ITEMS_KEYS": json.dumps(items),
            "BATCH_ID": BATCH,
            "RUN_ID": run_id,
            "LAKE_PATH": str(lake),
            "DAILY_KPIS_TABLE": names.daily_table,
            "CATEGORY_KPIS_TABLE": names.category_table,
            "SPARK_SHUFFLE_PARTITIONS": "2",
        }
    )


def env_of(config: PipelineConfig) -> dict[str, str]:
    return {
        "S3_BUCKET": config.bucket,
        "AWS_ENDPOINT_URL": config.endpoint_url or "",
        "PRODUCTS_KEY": config.products_key,
        "ORDERS_KEYS": json.dumps(list(config.orders_keys)),
        "ORDER_ITEMS_KEYS": json.dumps(list(config.order_items_keys)),
        "BATCH_ID": config.batch_id,
        "RUN_ID": config.run_id,
        "SPARK_MASTER": "local[2]",
        "SPARK_SHUFFLE_PARTITIONS": "2",
    }


def s3(config: PipelineConfig) -> Any:
    return aws.client("s3", config)


def create_bucket(config: PipelineConfig) -> None:
    s3(config).create_bucket(Bucket=config.bucket)


def put(config: PipelineConfig, key: str, body: bytes) -> None:
    s3(config).put_object(Bucket=config.bucket, Key=key, Body=body)


def get(config: PipelineConfig, key: str) -> bytes:
    return s3(config).get_object(Bucket=config.bucket, Key=key)["Body"].read()


def get_json(config: PipelineConfig, key: str) -> Any:
    return json.loads(get(config, key))


@dataclass(frozen=True)
class Snapshot:
    """The bucket right after a run: keys, object metadata and every report's JSON."""

    keys: frozenset[str]
    metadata: dict[str, dict[str, str]]
    reports: dict[str, dict[str, Any]]
    etags: dict[str, str]

    def stages_of(self, rel: str) -> list[str]:
        return [s for s in ("raw", "validated", "invalid", "processed") if f"{s}/{rel}" in self.keys]


def snapshot(config: PipelineConfig) -> Snapshot:
    client = s3(config)
    keys: set[str] = set()
    etags: dict[str, str] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=config.bucket):
        for o in page.get("Contents", []):
            keys.add(o["Key"])
            etags[o["Key"]] = o["ETag"].strip('"')
    metadata = {
        k: client.head_object(Bucket=config.bucket, Key=k)["Metadata"]
        for k in keys
        if k.startswith(("validated/", "invalid/")) and not k.endswith(".json")
    }
    reports = {k: get_json(config, k) for k in keys if k.endswith(".report.json") or "/reports/" in k}
    return Snapshot(frozenset(keys), metadata, reports, etags)


def staged_rows(spark: Any, config: PipelineConfig) -> dict[str, list[tuple[Any, ...]]]:
    """Every dataset's staging rows in the bucket, without the arrival time (two uploads differ in it)."""
    from pyspark.errors import AnalysisException

    from jobs.contract import DATASETS, INGEST_SEQ

    out = {}
    for dataset in DATASETS:
        try:
            frame = spark.read.parquet(f"s3a://{config.bucket}/staging/v2/{dataset}/*")
        except AnalysisException:  # nothing staged for the dataset
            continue
        out[dataset] = sorted((tuple(r) for r in frame.drop(INGEST_SEQ).collect()), key=repr)
    return out
