"""The whole flow through `ecomkpi demo`: S3 events → Lambda → workflow → both jobs → DynamoDB.

The tasks run on the warm worker's code in this process, on the test run's SparkSession
(``worker_spark``): a worker process would add its own JVM start and both jobs' first-use costs
(tests/ecomkpi/test_worker_e2e.py runs the worker process, killed mid-batch). One batch date and three
waves cover the paths that matter: a clean first wave; a late orders part with its items plus a rejected items file (that
generation transforms the late files, then fails with the rejection and alerts); the corrected
re-upload (the next generation applies it). The KPIs read back from DynamoDB must equal a from-scratch computation over
the files that ended in processed/.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from ecomkpi.demo import run_demo
from ecomkpi.generator import GeneratorSettings, generate
from ecomkpi.local_stack import StackSettings

# The shared session serves the demo's tasks: this module stays in the first lane. In the lane of
# the tests with JVMs of their own (niced) its set-up took 529 s instead of 175 s, making that
# lane the longest (CI 26.1 min against 25.0 min with it here, 2026-12-01).
pytestmark = [pytest.mark.slow, pytest.mark.spark]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def waves(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("waves")
    wave1 = root / "wave1"
    generate(wave1, GeneratorSettings(days=1, orders_per_day=30, parts=1, seed=3, products=60))
    items_header = (
        (wave1 / "order_items/2025-07-10/order_items_part1.csv").read_text().splitlines()[0].split(",")
    )
    orders_header = (wave1 / "orders/2025-07-10/orders_part1.csv").read_text().splitlines()[0].split(",")
    # Wave 2: a late orders part (+ its items) for 2025-07-10, and a rejected items file for it too.
    wave2 = root / "wave2"
    write_csv(
        wave2 / "orders/2025-07-10/orders_late.csv",
        orders_header,
        [["9001", "77", "Returned", "F", "2025-07-10T01:30:00+02:00", "2025-07-12 10:00:00", "", "", "1"]],
    )
    write_csv(
        wave2 / "order_items/2025-07-10/order_items_late.csv",
        items_header,
        [["99001", "9001", "77", "1", "1", "Returned", "2025-07-09 23:30:00", "", "", "", "12.34"]],
    )
    bad_rows = [["99002", "9001", "77", "2", "2", "Returned", "2025-07-09 23:40:00", "", "", "", "-5.00"]]
    write_csv(wave2 / "order_items/2025-07-10/order_items_fix.csv", items_header, bad_rows)
    # Wave 3: the corrected re-upload of the rejected file under the same key.
    wave3 = root / "wave3"
    bad_rows[0][-1] = "5.00"
    write_csv(wave3 / "order_items/2025-07-10/order_items_fix.csv", items_header, bad_rows)
    return [wave1, wave2, wave3]


@pytest.fixture(scope="module")
def demo(waves, tmp_path_factory, spark):
    out = tmp_path_factory.mktemp("demo-out")
    result = run_demo(waves, out, StackSettings(bucket="ecomkpi-e2e"), timeout=900, worker_spark=spark)
    return result


def test_exit_code_reflects_the_failed_execution(demo):
    statuses = {e["name"]: e["status"] for e in demo.report["executions"]}
    assert "FAILED" in statuses.values(), statuses
    assert demo.exit_code == 1


def test_every_file_ends_processed_or_invalid(demo, waves):
    fates = {f["key"]: f["fate"] for f in demo.report["files"]}
    # The re-uploaded key was uploaded twice; its final fate is processed.
    assert (
        fates["raw/order_items/2025-07-10/order_items_fix.csv"]
        == "processed/order_items/2025-07-10/order_items_fix.csv"
    )
    assert len(fates) == 6  # products, one orders and one items part, the late pair, the fixed file
    for key, fate in fates.items():
        assert fate.startswith("processed/"), (key, fate)


def test_generations_and_alert(demo):
    executions = demo.report["executions"]
    assert {e["batch_id"] for e in executions} == {"2025-07-10"}
    statuses = [e["status"] for e in executions]
    # g1 succeeds; the wave with the rejected file fails (one generation, or two when its late files
    # arrive in separate generations); the corrected re-upload's generation succeeds and is the last.
    assert statuses[0] == "SUCCEEDED" and statuses[-1] == "SUCCEEDED" and "FAILED" in statuses, statuses
    assert [e["generation"] for e in executions] == list(range(1, len(executions) + 1))
    failed = [e for e in executions if e["status"] == "FAILED"]
    for e in failed:  # the files that passed were transformed before the rejection failed the run
        assert e["states"].index("TransformData") < e["states"].index("DataRejected")
    assert len(demo.report["alerts"]) == len(failed)
    alert = demo.report["alerts"][0]["message"]
    assert "2025-07-10" in alert and "invalid/" in alert and "order_items_fix.csv" in alert


def test_lake_is_left_beside_the_report_for_the_notebooks(demo):
    lake = demo.out / "lake"
    assert demo.report["lake"] == str(lake.resolve())
    for table in ("silver_orders", "silver_order_items", "gold_daily_kpis", "gold_category_kpis"):
        assert (lake / table / "_delta_log").is_dir(), table


def test_kpis_equal_from_scratch_over_processed_files(demo, waves, spark, tmp_path):
    from jobs.oracle import kpis_from_files

    # Arrival order: wave by wave; within the re-upload the corrected version replaces the first.
    files: list[tuple[str, str]] = []
    for wave in waves:
        for path in sorted(p for p in wave.rglob("*.csv")):
            rel = path.relative_to(wave).as_posix()
            if "order_items_fix" in rel and wave == waves[1]:
                continue  # the rejected version never fed the KPIs
            local = tmp_path / wave.name / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, local)
            files.append((rel, str(local)))
    daily, category = kpis_from_files(spark, files)
    expected_daily = {r["date_key"]: r for r in (row.asDict() for row in daily.collect())}
    got_daily = {r["date_key"]: r for r in read_csv(demo.out / "kpis/daily_kpis.csv")}
    assert set(got_daily) == set(expected_daily)
    for d, exp in expected_daily.items():
        assert {k: str(v) for k, v in exp.items()} == got_daily[d], d
    got_cat = {(r["category_id"], r["date_key"]): r for r in read_csv(demo.out / "kpis/category_kpis.csv")}
    exp_cat = {
        (r["category_id"], r["date_key"]): {k: str(v) for k, v in r.asDict().items()}
        for r in category.collect()
    }
    assert got_cat == exp_cat
    # The late order was created 2025-07-09 23:30 UTC: its own date appears.
    assert "2025-07-09" in got_daily


def test_run_report_is_written(demo):
    report = json.loads((demo.out / "run_report.json").read_text())
    assert report["executions"] and report["files"]
    assert all(e["states"] for e in report["executions"])
    # The pipeline's part runs from the first upload to the last execution's end: it holds each one.
    timings = report["timings"]
    assert timings["setup_seconds"] > 0
    assert timings["pipeline_seconds"] >= max(e["seconds"] for e in report["executions"]) - 0.1
