"""A day through the local stack in emr-serverless mode, against the same day in worker mode.

Both runs happen in the compat lane (``make compat``), so both are Spark 4.0: worker mode on the
test session (the in-process worker), emr-serverless mode as job runs of the local EMR Serverless
application, each a ``spark-submit`` of the compat venv's Spark with the request the stack would
send (entry point, ``--jars`` of Delta 4.4.0 for Spark 4.0, ``--py-files`` with the jobs zip, the
container environment as ``spark.emr-serverless.driverEnv.*``). One file of the day is rejected, so
the outcome object's exit 2 takes the DataRejected path while the other files are served.
"""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from ecomkpi.demo import run_demo
from ecomkpi.generator import GeneratorSettings, generate
from ecomkpi.local_stack import StackSettings
from ecomkpi.sfn_local import emr_serverless as emr

pytestmark = pytest.mark.slow
DAY = "2025-07-10"


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("day") / "wave"
    generate(root, GeneratorSettings(days=1, orders_per_day=40, parts=1, seed=11, products=60))
    items = root / f"order_items/{DAY}/order_items_part1.csv"
    header = items.read_text().splitlines()[0]
    # A negative sale price: rejected by the order items suite, the day's other files still served.
    bad = root / f"order_items/{DAY}/order_items_bad.csv"
    bad.write_text(f"{header}\n99001,1,1,1,1,Complete,2025-07-10 10:00:00,,,,-5.00\n")
    # A manifest naming every part: the day runs once, when all are in, in both modes alike.
    keys = [f"raw/{p.relative_to(root).as_posix()}" for p in sorted(root.glob(f"order*/{DAY}/*.csv"))]
    (root / "manifests").mkdir()
    (root / "manifests" / f"{DAY}.json").write_text(json.dumps({"batch_id": DAY, "expected_keys": keys}))
    return root


def kpis(out: Path) -> dict[str, list[dict[str, str]]]:
    """The served KPI rows, without what names the run that wrote them."""
    tables = {}
    for name in ("daily_kpis", "category_kpis"):
        with (out / "kpis" / f"{name}.csv").open() as fh:
            rows = [
                {k: v for k, v in r.items() if k not in ("run_id", "updated_at")} for r in csv.DictReader(fh)
            ]
        tables[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))
    return tables


def outcome(result: Any) -> set[tuple[str, str]]:
    """How the day's executions ended (their generation numbers are not compared: a second local
    stack in one process was seen to number its day's executions after the first stack's)."""
    return {(e["status"], e.get("error") or "") for e in result.report["executions"]}


def fates(result: Any) -> dict[str, str]:
    return {f["key"]: f["fate"] for f in result.report["files"]}


def test_a_day_as_emr_serverless_job_runs_serves_what_worker_mode_serves(
    day: Path, tmp_path: Path, spark: Any
) -> None:
    worker = run_demo(
        [day],
        tmp_path / "worker",
        StackSettings(bucket="ecomkpi-compat-worker"),
        timeout=600,
        worker_spark=spark,
    )
    settings = StackSettings(bucket="ecomkpi-compat-emr", task_mode="emr-serverless")
    emr_result = run_demo([day], tmp_path / "emr", settings, timeout=600)

    assert outcome(worker) == outcome(emr_result) == {("FAILED", "Validation.DataRejected")}
    assert fates(worker) == fates(emr_result)
    assert fates(emr_result)[f"raw/order_items/{DAY}/order_items_bad.csv"].startswith("invalid/")
    served = kpis(tmp_path / "emr")
    assert served["daily_kpis"] and served["category_kpis"]
    assert served == kpis(tmp_path / "worker")

    # The job runs: one per task, each a spark-submit of Spark 4.0 with the stack's parameters.
    logs = sorted((tmp_path / "emr" / ".stack" / "emr-job-runs").rglob("driver.log"))
    assert {p.parent.name for p in logs} == {"TransformData-1", "ValidateData-1"}  # no retry
    text = "\n".join(p.read_text() for p in logs)
    assert "emr_serverless_entry: validate exited 2" in text
    assert "emr_serverless_entry: transform exited 0" in text
    # Each run's command line (the log's first line): the stack's jars and zip, fetched from S3.
    for log in logs:
        line = log.read_text().splitlines()[0]
        assert line.startswith("[spark-submit] ")
        argv = shlex.split(line.removeprefix("[spark-submit] "))
        assert Path(argv[0]).parent.parent.name == ".venv-compat"  # Spark 4.0's spark-submit
        assert argv[argv.index("--master") + 1] == "local[2]"
        jars = argv[argv.index("--jars") + 1].split(",")
        assert sorted(Path(j).name for j in jars) == sorted(emr.EMR_JARS)
        assert all("/deps/emr/jars/" in j for j in jars)  # fetched from the bucket
        assert Path(argv[argv.index("--py-files") + 1]).name == emr.JOBS_ZIP_FILE
        assert Path(argv[-2]).name == emr.ENTRY_POINT_FILE
