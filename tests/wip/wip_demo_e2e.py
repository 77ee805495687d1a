"""The whole flow through `ecomkpi demo`: S3 events → Lambda → workflow → both jobs → DynamoDB.

Slow by nature (each task is a fresh JVM), so one scenario covers the paths that matter: a clean
first wave, a late part and a rejected file in the second, the corrected re-upload in the third.
The KPIs read back from DynamoDB must equal a from-scratch computation over the files that ended
in processed/.
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

pytestmark = pytest.mark.slow


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
    generate(wave1, GeneratorSettings(days=2, orders_per_day=25, parts=1, seed=3, products=60))
    items_header = (
        (wave1 / "order_items/2025-07-11/order_items_part1.csv").read_text().splitlines()[0].split(",")
    )
    orders_header = (wave1 / "orders/2025-07-10/orders_part1.csv").read_text().splitlines()[0].split(",")
    # Wave 2: a late orders part (+ its items) for 2025-07-10, and a rejected items file for 07-11.
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
    bad_rows = [["99002", "1", "5", "2", "2", "Complete", "2025-07-11 10:00:00", "", "", "", "-5.00"]]
    write_csv(wave2 / "order_items/2025-07-11/order_items_fix.csv", items_header, bad_rows)
    # Wave 3: the corrected re-upload of the rejected file under the same key.
    wave3 = root / "wave3"
    bad_rows[0][-1] = "5.00"
    write_csv(wave3 / "order_items/2025-07-11/order_items_fix.csv", items_header, bad_rows)
    return [wave1, wave2, wave3]


@pytest.fixture(scope="module")
def demo(waves, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-out")
    result = run_demo(waves, out, StackSettings(bucket="ecomkpi-e2e"), timeout=900)
    return result


def test_exit_code_reflects_the_failed_execution(demo):
    statuses = {e["name"]: e["status"] for e in demo.report["executions"]}
    assert "FAILED" in statuses.values(), statuses
    assert demo.exit_code == 1


def test_every_file_ends_processed_or_invalid(demo, waves):
    fates = {f["key"]: f["fate"] for f in demo.report["files"]}
    # The re-uploaded key was uploaded twice; its final fate is processed.
    assert (
        fates["raw/order_items/2025-07-11/order_items_fix.csv"]
        == "processed/order_items/2025-07-11/order_items_fix.csv"
    )
    for key, fate in fates.items():
        assert fate.startswith("processed/"), (key, fate)


def test_generations_and_alert(demo):
    by_batch: dict[str, list[dict]] = {}
    for e in demo.report["executions"]:
        by_batch.setdefault(e["batch_id"], []).append(e)
    # 07-10: the first wave, then the late part -> a second generation.
    assert [e["status"] for e in by_batch["2025-07-10"]] == ["SUCCEEDED", "SUCCEEDED"]
    # 07-11: first wave ok, rejected file -> FAILED, corrected re-upload -> SUCCEEDED.
    assert [e["status"] for e in by_batch["2025-07-11"]] == ["SUCCEEDED", "FAILED", "SUCCEEDED"]
    failed = by_batch["2025-07-11"][1]
    assert "ValidateData" in failed["states"] and "TransformData" not in failed["states"]
    assert len(demo.report["alerts"]) == 1
    alert = demo.report["alerts"][0]["message"]
    assert "2025-07-11" in alert and "invalid/" in alert


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
