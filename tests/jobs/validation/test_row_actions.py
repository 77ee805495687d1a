"""Rules that drop rows instead of rejecting files (jobs/validation/actions.py), through both jobs.

A part with a few bad rows is accepted: its bad rows are left out of the staging rows and the KPIs
and kept in ``invalid/rows/<key>`` with their row numbers and rules; the KPIs equal the oracle over
the same files with those rows removed by hand. A part that is mostly bad is still rejected whole. A
corrected re-upload brings the rows back and removes the quarantine CSV.

The same run is read back the ways people read it: the day's quality through the API's
``/quality`` routes (from the DynamoDB items validation writes) and the dropped rows in the lake's
Delta ``quarantine`` table, both replaced by the corrected re-upload.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from ecomkpi.demo import scan_all
from jobs.config import PipelineConfig
from jobs.contract import CATEGORY_KPI_COLUMNS, DAILY_KPI_COLUMNS
from jobs.oracle import kpis_from_files
from jobs.transformation.job import run as transform
from jobs.transformation.serving import create_kpi_tables
from jobs.validation.actions import DROP, SuiteActions
from jobs.validation.findings import CRITICAL, WARNING, Finding
from jobs.validation.job import run as validate
from jobs.validation.quality_ledger import create_quality_table
from jobs.validation.suites import load_suite_json
from kpi_api.reader import KpiReader
from kpi_api.routes import handle
from tests.ecomkpi.test_worker_e2e import rows
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

ORD, ITM = f"orders/{BATCH}", f"order_items/{BATCH}"


def test_a_drop_finding_drops_under_the_threshold_and_rejects_above_it() -> None:
    actions = SuiteActions.of(load_suite_json("orders"))
    assert actions.threshold == 0.05
    status = Finding(rule="status is a known order status", column="status", failing_rows=2, severity=WARNING)
    key = Finding(rule="order_id is not null", column="order_id", failing_rows=1)
    (kept,) = actions.apply([status], rows=100, dropped=2)
    assert kept.severity == WARNING and kept.details == {"action": DROP, "dropped_rows": 2}
    (broken,) = actions.apply([status], rows=100, dropped=6)
    assert broken.severity == CRITICAL and "6 of 100 rows" in broken.details["rejected_because"]
    (alone,) = actions.apply([status], rows=100, dropped=None)
    assert alone.rejects and "could not be dropped" in alone.details["rejected_because"]
    assert actions.apply([key], rows=100, dropped=0) == [key]  # a reject rule is left as GX made it
    # A file another rule rejects keeps its rows: its report must not say they were dropped.
    _, kept_whole = actions.apply([key, status], rows=100, dropped=2)
    assert (
        "dropped_rows" not in kept_whole.details
        and "rejected by another rule" in kept_whole.details["not_dropped"]
    )


def _orders(bad: dict[int, dict[str, str]], n: int, start: int) -> tuple[bytes, bytes]:
    """(the part with ``bad`` rows, the same part without them): order ids start.., row i is the i-th."""
    dirty, clean = [], []
    for i in range(1, n + 1):
        row = order_row(start + i, status="Returned" if i % 7 == 0 else "Complete")
        dirty.append(order_row(start + i, **bad[i]) if i in bad else row)
        if i not in bad:
            clean.append(row)
    return orders_csv(*dirty), orders_csv(*clean)


@pytest.fixture
def stack(moto_endpoint: str, names: Any, tmp_path: Path) -> dict[str, Any]:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=names.bucket)
    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint)
    create_kpi_tables(ddb, names.daily_table, names.category_table)
    quality = f"DataQuality-{names.suffix}"
    create_quality_table(ddb, quality)
    reader = KpiReader(ddb, names.daily_table, names.category_table, names.tracker_table, quality)
    return {"s3": s3, "ddb": ddb, "quality": quality, "reader": reader}


def _config(stack: dict[str, Any], *args: Any) -> PipelineConfig:
    return both_jobs_config(*args).with_(quality_table=stack["quality"])


def _get(reader: KpiReader, path: str, query: dict[str, list[str]] | None = None) -> Any:
    response = handle("GET", path, query or {}, reader, bucket="b")
    assert response.status == 200, response.body
    return json.loads(response.body)


def _quarantine_table(spark: Any, lake: Path) -> list[tuple[Any, ...]]:
    rows = spark.read.format("delta").load(str(lake / "quarantine")).collect()
    return sorted(
        (str(r.date), r.source_file, r.row_number, tuple(r.failed_rules), r.raw_values.get("order_id"))
        for r in rows
    )


def test_few_bad_rows_are_dropped_and_kept_a_mostly_bad_part_is_rejected_and_kpis_equal_the_clean_oracle(
    moto_endpoint: str, names: Any, spark: Any, tmp_path: Path, stack: dict[str, Any]
) -> None:
    s3, ddb = stack["s3"], stack["ddb"]
    few, few_clean = _orders({10: {"created": "yesterday"}, 30: {"status": "Lost"}}, 60, 0)
    many, _ = _orders({i: {"user": ""} for i in (2, 5, 9)}, 20, 100)  # 15 %: a broken export
    items_rows = [item_row(500 + i, order_id=i, product=1 + i % 3, price=f"{i}.25") for i in range(1, 41)]
    items_dirty = [*items_rows[:19], item_row(520, order_id=20, price="-3.00"), *items_rows[20:]]
    bodies = {
        PRODUCTS_KEY: PRODUCTS_CSV,
        f"raw/{ORD}/few.csv": few,
        f"raw/{ORD}/many.csv": many,
        f"raw/{ITM}/items.csv": items_csv(*items_dirty),
    }
    for key, body in bodies.items():
        s3.put_object(Bucket=names.bucket, Key=key, Body=body)
    orders, items = [f"raw/{ORD}/few.csv", f"raw/{ORD}/many.csv"], [f"raw/{ITM}/items.csv"]
    config = _config(stack, moto_endpoint, names, tmp_path / "lake", orders, items, "drop-1")

    result = validate(config, spark)
    verdicts = {f.rel: f.verdict.value for f in result.files}
    assert verdicts == {
        "products/products.csv": "passed",
        f"{ORD}/few.csv": "passed",
        f"{ORD}/many.csv": "rejected",
        f"{ITM}/items.csv": "passed",
    }
    by_rel = {f.rel: f for f in result.files}
    dropped = {f.rule: f.details for f in by_rel[f"{ORD}/few.csv"].findings}
    assert dropped["created_at is a valid timestamp in a contract form"]["dropped_rows"] == 2
    assert dropped["status is a known order status"]["quarantine"] == f"invalid/rows/{ORD}/few.csv"
    assert all(f.severity == WARNING for f in by_rel[f"{ORD}/few.csv"].findings)
    (reason,) = {f.details["rejected_because"] for f in by_rel[f"{ORD}/many.csv"].findings}
    assert reason.startswith("3 of 20 rows break drop rules")

    quarantined = _csv(s3, names.bucket, f"invalid/rows/{ORD}/few.csv")
    assert [(r["row_number"], r["order_id"], r["failed_rules"]) for r in quarantined] == [
        ("10", "10", "created_at is a valid timestamp in a contract form"),
        ("30", "30", "status is a known order status"),
    ]
    assert {r["raw_etag"] for r in quarantined} == {by_rel[f"{ORD}/few.csv"].etag}
    (item,) = _csv(s3, names.bucket, f"invalid/rows/{ITM}/items.csv")
    assert (item["row_number"], item["sale_price"], item["failed_rules"]) == (
        "20",
        "-3.00",
        "sale_price >= 0",
    )
    report = json.loads(
        s3.get_object(Bucket=names.bucket, Key=by_rel[f"{ORD}/few.csv"].report_key)["Body"].read()
    )
    assert any("2 of 60 rows broke drop rules" in n for n in report["notes"])

    # The day's quality, as the API serves it.
    reader, products = stack["reader"], len(PRODUCTS_CSV.splitlines()) - 1
    day = _get(reader, f"/quality/{BATCH}")
    assert day["files"] == {"accepted": 3, "rejected": 1}
    assert day["rows"] == {"kept": products + 58 + 39, "dropped": 3, "rejected": 20}
    by_rule = {r["rule"]: (r["action"], r["files"], r["rows"], r["rejected_files"]) for r in day["rules"]}
    assert by_rule["created_at is a valid timestamp in a contract form"] == (DROP, 1, 1, 0)
    assert by_rule["status is a known order status"] == (DROP, 1, 1, 0)
    assert by_rule["sale_price >= 0"] == (DROP, 1, 1, 0)
    assert [(a, f, n, r) for a, f, n, r in by_rule.values() if r] == [(DROP, 1, 3, 1)]  # many.csv's
    files = {f["file"]: f for f in day["file_list"]}
    assert day["file_list"][0]["file"] == f"{ORD}/many.csv"  # rejected first
    assert (files[f"{ORD}/few.csv"]["dropped_rows"], files[f"{ORD}/few.csv"]["rows"]) == (2, 60)
    assert files[f"{ORD}/few.csv"]["links"]["quarantined_rows"] == f"s3://b/invalid/rows/{ORD}/few.csv"
    assert files[f"{ORD}/many.csv"]["links"]["report"].endswith(f"{ORD}/many.csv.json")
    (summary,) = _get(reader, "/quality", {"from": [BATCH], "to": [BATCH]})["days"]
    assert summary == {k: v for k, v in day.items() if k != "file_list"}

    transform(config, spark)
    assert _quarantine_table(spark, tmp_path / "lake") == [
        (BATCH, f"{ITM}/items.csv", 20, ("sale_price >= 0",), "20"),
        (BATCH, f"{ORD}/few.csv", 10, ("created_at is a valid timestamp in a contract form",), "10"),
        (BATCH, f"{ORD}/few.csv", 30, ("status is a known order status",), "30"),
    ]
    clean = {
        "products/products.csv": PRODUCTS_CSV,
        f"{ORD}/few.csv": few_clean,
        f"{ITM}/items.csv": items_csv(*(items_rows[:19] + items_rows[20:])),
    }
    _assert_kpis(spark, ddb, names, tmp_path, clean)

    # The producer corrects the part: every row counts again, and the quarantine CSV goes.
    fixed, _ = _orders({}, 60, 0)
    s3.put_object(Bucket=names.bucket, Key=f"raw/{ORD}/few.csv", Body=fixed)
    again = _config(stack, moto_endpoint, names, tmp_path / "lake", [f"raw/{ORD}/few.csv"], [], "drop-2")
    assert validate(again, spark).exit_code == 0
    transform(again, spark)
    listed = s3.list_objects_v2(Bucket=names.bucket, Prefix=f"invalid/rows/{ORD}/").get("Contents", [])
    assert listed == []
    day = _get(reader, f"/quality/{BATCH}")
    assert day["rows"] == {"kept": products + 60 + 39, "dropped": 1, "rejected": 20}
    assert {f["file"]: f["dropped_rows"] for f in day["file_list"]}[f"{ORD}/few.csv"] == 0
    assert _quarantine_table(spark, tmp_path / "lake") == [
        (BATCH, f"{ITM}/items.csv", 20, ("sale_price >= 0",), "20")
    ]
    _assert_kpis(spark, ddb, names, tmp_path, {**clean, f"{ORD}/few.csv": fixed})


def _csv(s3: Any, bucket: str, key: str) -> list[dict[str, str]]:
    text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return list(csv.DictReader(io.StringIO(text)))


def _assert_kpis(spark: Any, ddb: Any, names: Any, tmp_path: Path, files: dict[str, bytes]) -> None:
    local = []
    for n, (rel, body) in enumerate(files.items()):
        path = tmp_path / f"clean-{n}.csv"
        path.write_bytes(body)
        local.append((rel, str(path)))
    daily, category = kpis_from_files(spark, local)
    assert rows(scan_all(ddb, names.daily_table), DAILY_KPI_COLUMNS, ("date_key",)) == rows(
        [r.asDict() for r in daily.collect()], DAILY_KPI_COLUMNS, ("date_key",)
    )
    key = ("category_id", "date_key")
    assert rows(scan_all(ddb, names.category_table), CATEGORY_KPI_COLUMNS, key) == rows(
        [r.asDict() for r in category.collect()], CATEGORY_KPI_COLUMNS, key
    )
