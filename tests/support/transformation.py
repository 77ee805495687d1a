"""Shared helpers for the transformation tests: a pipeline bucket on moto, CSV builders, the oracle.

``Pipeline`` plays the validation job's part (files put straight under ``validated/`` with the
``ecomkpi-raw-etag`` / ``ecomkpi-arrived-ms`` metadata and their staging rows), runs the transformation in process on the
shared SparkSession, and reads DynamoDB back. It keeps a local copy of every version it put, in
arrival order, so the from-scratch oracle can be asked what the tables must hold.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from decimal import Decimal
from functools import reduce
from pathlib import Path
from typing import Any

import boto3
from pyspark.sql import DataFrame

from jobs.config import PipelineConfig
from jobs.contract import CATEGORY_KPI_COLUMNS, COLUMNS, DAILY_KPI_COLUMNS, ORDER_ITEMS, ORDERS, PRODUCTS
from jobs.local_frames import local_frame
from jobs.normalize import normalize_header
from jobs.oracle import DATASETS, ProducerFile, effective_files, kpis_from_rows, read_files
from jobs.s3_store import S3Store
from jobs.staging import FileVersion, parse_file, write_staged
from jobs.transformation.job import TransformResult, run
from jobs.transformation.lock import LockSettings
from jobs.transformation.serving import create_kpi_tables
from jobs.validation.suites import KEY_SOURCE_COLUMNS

FAST_LOCK = LockSettings(ttl_seconds=30, wait_seconds=120, poll_seconds=0.2)
BASE_MS = 1_752_000_000_000  # arrival clock of the simulated producer


def csv_text(dataset: str, rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS[dataset], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: r.get(c, "") for c in COLUMNS[dataset]})
    return out.getvalue()


def orders_csv(*rows: tuple[str, str, str, str] | tuple[str, str, str, str, str]) -> str:
    """(order_id, user_id, status, created_at[, returned_at])"""
    keys = ("order_id", "user_id", "status", "created_at", "returned_at")
    return csv_text(ORDERS, [dict(zip(keys, r, strict=False)) for r in rows])


def items_csv(*rows: tuple[str, str, str, str]) -> str:
    """(id, order_id, product_id, sale_price)"""
    keys = ("id", "order_id", "product_id", "sale_price")
    return csv_text(ORDER_ITEMS, [dict(zip(keys, r, strict=True)) for r in rows])


def products_csv(*rows: tuple[str, str]) -> str:
    """(id, category) with the other required columns filled in."""
    return csv_text(
        PRODUCTS,
        [
            {"id": i, "category": c, "sku": f"sku-{i}", "cost": "1.00", "retail_price": "2.00"}
            for i, c in rows
        ],
    )


PRODUCTS_V1 = products_csv(("p1", "Jeans"), ("p2", "Tops"), ("p3", "Shoes"))


def keys_unique(dataset: str, text: str) -> bool:
    """What validation's uniqueness rule would conclude of the file's key column (its staging
    summary records it): every value present and once (orders), or every present id once (items).

    Python's strip() trims more than Spark's trim(), so distinct here means distinct there too."""
    column = KEY_SOURCE_COLUMNS.get(dataset)
    if column is None:
        return False
    try:
        records = list(csv.reader(io.StringIO(text)))
    except csv.Error:
        return False
    header = [normalize_header(h) for h in records[0]] if records else []
    if column not in header:
        return dataset == ORDER_ITEMS  # no id column: every item gets a key of its own
    at = header.index(column)
    values = [r[at].strip() if at < len(r) else "" for r in records[1:] if r]
    present = [v for v in values if v]
    if dataset == ORDERS and len(present) < len(values):
        return False
    return len(set(present)) == len(present)


def decimals(item: dict[str, dict[str, str]]) -> dict[str, Any]:
    """A low-level DynamoDB item as plain values; numbers must be stored as N."""
    return {k: Decimal(v["N"]) if "N" in v else v["S"] for k, v in item.items()}


class Pipeline:
    """One bucket, one lake and one pair of KPI tables on the emulator."""

    def __init__(
        self, endpoint: str, spark: Any, tmp: Path, lake: str | None = None, staged: bool = True
    ) -> None:
        self.staged = staged  # put files with their staging rows (as validation does) unless False
        self.suffix = uuid.uuid4().hex[:10]
        self.endpoint, self.spark, self.tmp = endpoint, spark, tmp
        self.bucket = f"ecomkpi-tx-{self.suffix}"
        self.daily_table, self.category_table = f"DailyKPIs-{self.suffix}", f"CategoryKPIs-{self.suffix}"
        self.lake = lake or str(tmp / f"lake-{self.suffix}")
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        self.ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        self.s3.create_bucket(Bucket=self.bucket)
        create_kpi_tables(self.ddb, self.daily_table, self.category_table)
        self.clock = BASE_MS
        self.versions: list[tuple[int, str, Path]] = []  # every validated version, arrival order
        self.parsed_rows: dict[tuple[str, int], DataFrame] = {}  # (path, arrival position): rows
        self.runs = 0
        self.store = S3Store(self.config("setup"), client=self.s3)

    # --- the validation job's output -------------------------------------------------------------

    def validated(
        self, rel: str, text: str, arrived_ms: int | None = None, staged: bool | None = None
    ) -> str:
        """Put ``validated/<rel>`` as the validation job would, with its staging rows unless ``staged``
        is False (a file validated by a release before staging: the transformation parses it).

        A byte-identical re-upload is the same version (same raw ETag): the job skips it, so the
        oracle must not see it as a newer file either.
        """
        body = text.encode("utf-8")
        self.clock += 1000
        arrived = self.clock if arrived_ms is None else arrived_ms
        etag = hashlib.md5(body).hexdigest()
        if (
            self.staged if staged is None else staged
        ):  # written first, as validation does: a validated file always has its rows
            scratch = self.tmp / f"staging-{self.suffix}" / uuid.uuid4().hex / "file.csv"
            scratch.parent.mkdir(parents=True)
            scratch.write_bytes(body)
            version = FileVersion(rel=rel, raw_etag=etag, arrived_ms=arrived)
            write_staged(
                parse_file(self.spark, str(scratch), version),
                f"s3a://{self.bucket}/{version.prefix}",
                self.store,
                dataset=version.dataset,
                unique_key=keys_unique(version.dataset, text),
            )
        self.s3.put_object(
            Bucket=self.bucket,
            Key=f"validated/{rel}",
            Body=body,
            Metadata={"ecomkpi-raw-etag": etag, "ecomkpi-arrived-ms": str(arrived)},
        )
        if rel.startswith("products/"):  # validation copies the master onward and keeps raw/
            self.s3.put_object(Bucket=self.bucket, Key=f"raw/{rel}", Body=body)
        latest = [path for _, r, path in self.versions if r == rel]
        if latest and latest[-1].read_bytes() == body:
            return rel
        local = self.tmp / f"versions-{self.suffix}" / f"{len(self.versions):03d}" / rel
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(body)
        self.versions.append((arrived, rel, local))
        self.versions.sort(key=lambda v: (v[0], v[1]))
        return rel

    def put(self, rel: str, text: str, arrived_ms: int | None = None, staged: bool | None = None) -> str:
        """Put a validated file; returns its raw key (what the workflow passes to the job)."""
        self.validated(rel, text, arrived_ms, staged)
        return f"raw/{rel}"

    # --- running the job -------------------------------------------------------------------------

    def config(
        self, batch_id: str, orders: list[str] = (), items: list[str] = (), **extra: str
    ) -> PipelineConfig:
        env = {
            "S3_BUCKET": self.bucket,
            "AWS_ENDPOINT_URL": self.endpoint,
            "LAKE_PATH": self.lake,
            "BATCH_ID": batch_id,
            "ORDERS_KEYS": json.dumps(list(orders)),
            "ORDER_ITEMS_KEYS": json.dumps(list(items)),
            "DAILY_KPIS_TABLE": self.daily_table,
            "CATEGORY_KPIS_TABLE": self.category_table,
            "SPARK_SHUFFLE_PARTITIONS": "2",
            "RUN_ID": f"{batch_id}-r{self.runs + 1}",
            **extra,
        }
        return PipelineConfig.from_env(env)

    def run(
        self, batch_id: str, orders: list[str] = (), items: list[str] = (), **kwargs: Any
    ) -> TransformResult:
        self.runs += 1
        config = self.config(batch_id, orders, items)
        return run(config, self.spark, lock_settings=kwargs.pop("lock_settings", FAST_LOCK), **kwargs)

    # --- reading results -------------------------------------------------------------------------

    def daily(self) -> dict[str, dict[str, Any]]:
        items = self.ddb.scan(TableName=self.daily_table)["Items"]
        return {i["date_key"]["S"]: decimals(i) for i in items}

    def category(self) -> dict[tuple[str, str], dict[str, Any]]:
        items = self.ddb.scan(TableName=self.category_table)["Items"]
        return {(i["category_id"]["S"], i["date_key"]["S"]): decimals(i) for i in items}

    def served(self) -> tuple[dict, dict]:
        """DynamoDB content restricted to the KPI attributes (no run_id / updated_at)."""
        daily = {k: {c: v[c] for c in DAILY_KPI_COLUMNS if c in v} for k, v in self.daily().items()}
        category = {k: {c: v[c] for c in CATEGORY_KPI_COLUMNS if c in v} for k, v in self.category().items()}
        return daily, category

    def expected(self) -> tuple[dict, dict]:
        """The oracle over every version put so far, in arrival order, in the same shape. Each
        version is parsed once (``jobs.oracle.read_files``, two Spark jobs a file) and kept as rows:
        a test that compares after each of its runs would otherwise parse every earlier file again."""
        by_dataset = effective_files([(rel, str(p)) for _, rel, p in self.versions])
        daily_df, category_df = kpis_from_rows(
            *(self.parsed(dataset, by_dataset[dataset]) for dataset in DATASETS)
        )
        daily = {r["date_key"]: r.asDict() for r in daily_df.collect()}
        category = {(r["category_id"], r["date_key"]): r.asDict() for r in category_df.collect()}
        return daily, category

    def parsed(self, dataset: str, files: list[ProducerFile]) -> DataFrame:
        """``jobs.oracle.read_files`` over ``files``, each file's rows computed once per position."""
        frames = []
        for file in files:
            if (file.uri, file.seq) not in self.parsed_rows:
                rows = read_files(self.spark, dataset, [file])
                self.parsed_rows[(file.uri, file.seq)] = local_frame(self.spark, rows.collect(), rows.schema)
            frames.append(self.parsed_rows[(file.uri, file.seq)])
        if not frames:
            return read_files(self.spark, dataset, [])
        return reduce(DataFrame.unionByName, frames)

    def silver(self, table: str, *columns: str) -> list[tuple]:
        """Stored rows (duplicates kept), sorted."""
        from jobs.transformation.lake import Lake

        rows = Lake(self.spark, self.lake).read(table).select(*columns).collect()
        return sorted((tuple(r) for r in rows), key=repr)

    def keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


class FlakyDynamoDB:
    """A DynamoDB client that records BatchWriteItem requests and can fail the n-th one."""

    def __init__(self, client: Any, fail_on_call: int | None = None) -> None:
        self.client, self.fail_on_call = client, fail_on_call
        self.requests: list[dict[str, Any]] = []

    def batch_write_item(self, **kwargs: Any) -> Any:
        self.requests.append(kwargs["RequestItems"])
        if self.fail_on_call is not None and len(self.requests) == self.fail_on_call:
            raise ConnectionError("injected: DynamoDB unreachable mid-write")
        return self.client.batch_write_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class Crash(Exception):
    """Injected failure at a stage boundary."""


def crash_at(stage: str):
    def checkpoint(reached: str) -> None:
        if reached == stage:
            raise Crash(f"injected crash after {stage}")

    return checkpoint
