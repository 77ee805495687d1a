"""Shared bench plumbing: statistics, the in-process emulator, Spark start-up, buckets and uploads."""

from __future__ import annotations

import hashlib
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import boto3

from jobs.contract import CATEGORY_KPI_COLUMNS, DAILY_KPI_COLUMNS

if TYPE_CHECKING:
    from jobs.aws import ServiceName

K = TypeVar("K", str, tuple[str, str])

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


class BenchError(AssertionError):
    """A correctness check of the benchmark failed: the numbers would be meaningless."""


@dataclass
class Stat:
    """Median, min and max of repeated measurements (seconds, rows/s, ...)."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(float(value))

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def as_dict(self) -> dict[str, Any]:
        if not self.values:
            return {"median": None, "min": None, "max": None, "n": 0}
        return {
            "median": self.median,
            "min": min(self.values),
            "max": max(self.values),
            "n": len(self.values),
            "values": self.values,
        }


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def fake_credentials() -> None:
    """The emulator accepts anything; never let real credentials be used by the bench."""
    os.environ.update(FAKE_ENV)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@contextmanager
def moto_server() -> Iterator[str]:
    """An in-process moto server (S3, DynamoDB, Step Functions) on a free loopback port."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    fake_credentials()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def client(service: ServiceName, endpoint: str) -> Any:
    return boto3.session.Session().client(service, region_name="us-east-1", endpoint_url=endpoint)


def start_spark(
    endpoint: str, master: str, partitions: int, driver_memory: str | None = None
) -> tuple[Any, float]:
    """The one SparkSession of a bench run and the seconds the JVM + session took to start."""
    from jobs.config import PipelineConfig
    from jobs.spark_session import get_spark

    env = {"AWS_ENDPOINT_URL": endpoint, "SPARK_MASTER": master, "SPARK_SHUFFLE_PARTITIONS": str(partitions)}
    if driver_memory:
        env["SPARK_DRIVER_MEMORY"] = driver_memory
    config = PipelineConfig.from_env(env)
    spark, seconds = timed(lambda: get_spark(config, app_name="ecomkpi-bench"))
    spark.range(1).count()  # first job: executor threads and codegen warmed, still start-up
    return spark, seconds


def suffix() -> str:
    return uuid.uuid4().hex[:10]


def put_validated(s3: Any, bucket: str, rel: str, body: bytes, arrived_ms: int) -> None:
    """Put a file as the validation job leaves it (what tests/support/transformation.py does)."""
    s3.put_object(
        Bucket=bucket,
        Key=f"validated/{rel}",
        Body=body,
        Metadata={"ecomkpi-raw-etag": hashlib.md5(body).hexdigest(), "ecomkpi-arrived-ms": str(arrived_ms)},
    )
    if rel.startswith("products/"):
        s3.put_object(Bucket=bucket, Key=f"raw/{rel}", Body=body)


def files_of(folder: Path) -> list[tuple[str, Path]]:
    from ecomkpi.generator import iter_data_files

    return [(rel, p) for rel, p in iter_data_files(folder) if not rel.startswith("manifests/")]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for _, p in files_of(folder))


def served_kpis(
    ddb: Any, daily_table: str, category_table: str
) -> tuple[dict[str, Any], dict[tuple[str, str], Any]]:
    """DynamoDB's KPI tables restricted to the contract's columns, keyed like the oracle."""
    from kpi_api.reader import items

    daily = {
        i["date_key"]: {c: i.get(c) for c in DAILY_KPI_COLUMNS}
        for i in items(ddb, "scan", TableName=daily_table)
    }
    category = {
        (i["category_id"], i["date_key"]): {c: i.get(c) for c in CATEGORY_KPI_COLUMNS}
        for i in items(ddb, "scan", TableName=category_table)
    }
    return daily, category


def _norm(row: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    return {
        c: Decimal(str(row[c])) if isinstance(row[c], int | float | Decimal) else str(row[c]) for c in columns
    }


def compare_kpis(
    duck_daily: list[dict[str, Any]],
    duck_category: list[dict[str, Any]],
    served: tuple[dict[str, Any], dict[tuple[str, str], Any]],
) -> list[str]:
    """Differences between DuckDB's rows and what DynamoDB serves (empty list: identical)."""
    daily, category = served
    want_d = {str(r["date_key"]): _norm(r, DAILY_KPI_COLUMNS) for r in duck_daily}
    got_d = {k: _norm(v, DAILY_KPI_COLUMNS) for k, v in daily.items()}
    want_c = {
        (str(r["category_id"]), str(r["date_key"])): _norm(r, CATEGORY_KPI_COLUMNS) for r in duck_category
    }
    got_c = {k: _norm(v, CATEGORY_KPI_COLUMNS) for k, v in category.items()}
    return _differences("daily", want_d, got_d) + _differences("category", want_c, got_c)


def _differences(name: str, want: Mapping[K, object], got: Mapping[K, object]) -> list[str]:
    return [
        f"{name} {key}: duckdb={want.get(key)} served={got.get(key)}"
        for key in sorted(set(want) | set(got), key=str)
        if want.get(key) != got.get(key)
    ]


def stage_input_bytes(spark: Any, after_stage: int) -> tuple[int, int]:
    """(input bytes, input records) of every Spark stage with id > ``after_stage`` (all jobs,
    including Delta's _delta_log reads), read from the status store: no listener needed."""
    try:
        stages = _stages(spark)
    except Exception:  # a Spark version whose status store API differs: report "unknown"
        return -1, -1
    total_bytes = total_records = 0
    for i in range(stages.size()):
        s = stages.apply(i)
        if s.stageId() > after_stage:
            total_bytes += int(s.inputBytes())
            total_records += int(s.inputRecords())
    return total_bytes, total_records


def last_stage_id(spark: Any) -> int:
    try:
        stages = _stages(spark)
    except Exception:
        return -1
    return max([-1, *(int(stages.apply(i).stageId()) for i in range(stages.size()))])


def _stages(spark: Any) -> Any:
    """AppStatusStore.stageList(statuses, details, withSummaries, quantiles, taskStatus): py4j
    passes every argument (Scala defaults are not visible to it)."""
    jvm = spark.sparkContext._jvm
    gw = spark.sparkContext._gateway
    store = spark.sparkContext._jsc.sc().statusStore()
    empty = jvm.java.util.ArrayList()
    return store.stageList(empty, False, False, gw.new_array(jvm.double, 0), jvm.java.util.ArrayList())


def fresh_stack_settings(work_dir: Path, **changes: Any) -> Any:
    """Local stack settings with names of their own.

    Every stack started in one process shares the emulator's state (moto's backends are global), so
    a second stack with the default names would find the first one's KPIs and tracker items.
    """
    from ecomkpi.local_stack import StackSettings

    suffix = uuid.uuid4().hex[:8]
    return StackSettings(
        bucket=f"ecomkpi-bench-{suffix}",
        tracker_table=f"BatchFileTracker-{suffix}",
        daily_table=f"DailyKPIs-{suffix}",
        category_table=f"CategoryKPIs-{suffix}",
        topic_name=f"alerts-{suffix}",
        queue_name=f"raw-events-{suffix}",
        dlq_name=f"raw-events-dlq-{suffix}",
        work_queue_name=f"work-{suffix}",
        work_dir=work_dir,
        **changes,
    )
