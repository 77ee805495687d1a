"""The job as the container runs it: ``main()`` from the environment, the lake in S3 (s3a on moto)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ecomkpi.cli import main as cli_main
from jobs.transformation.job import main
from tests.jobs.transformation.test_transformation_batches import load_batch_0710
from tests.support.transformation import Pipeline

# the job's entry point on the shared session, and its CLI
pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[3]


def test_main_runs_a_batch_on_an_s3_lake_and_logs_to_s3(moto_endpoint, spark, tmp_path, monkeypatch, capsys):
    p = Pipeline(moto_endpoint, spark, tmp_path)
    keys = load_batch_0710(p)
    env = {
        "S3_BUCKET": p.bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "BATCH_ID": "2025-07-10",
        "RUN_ID": "2025-07-10-g1",
        "ORDERS_KEYS": json.dumps(keys["orders"]),
        "ORDER_ITEMS_KEYS": json.dumps(keys["items"]),
        "DAILY_KPIS_TABLE": p.daily_table,
        "CATEGORY_KPIS_TABLE": p.category_table,
        "SPARK_SHUFFLE_PARTITIONS": "2",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("LAKE_PATH", raising=False)

    assert main() == 0
    assert p.served() == p.expected()
    lake = p.keys("lake/")
    assert "lake/silver_orders/_delta_log/00000000000000000000.json" in lake
    assert any(k.startswith("lake/gold_daily_kpis/date_key=2025-07-11/") for k in lake)
    log = p.s3.get_object(Bucket=p.bucket, Key="logs/transformation/2025-07-10/2025-07-10-g1.log")[
        "Body"
    ].read()
    steps = [json.loads(line)["step"] for line in log.decode().splitlines()]
    assert {"plan.end", "silver.end", "recompute.end", "gold.end", "serve.end", "archive.end"} <= set(steps)
    summary = json.loads(
        p.s3.get_object(Bucket=p.bucket, Key="logs/transformation/2025-07-10/2025-07-10-g1/summary.json")[
            "Body"
        ].read()
    )
    assert summary["status"] == "ok" and summary["touched_dates"] == ["2025-07-10", "2025-07-11"]
    assert summary["rows_written_by_table"]["silver_orders"] == 3
    assert '"step": "serve.end"' in capsys.readouterr().out  # the same log on stdout

    # `ecomkpi replay` re-serves dates from the lake: rows lost from DynamoDB come back, equal.
    p.ddb.delete_item(TableName=p.daily_table, Key={"date_key": {"S": "2025-07-11"}})
    p.ddb.delete_item(
        TableName=p.category_table, Key={"category_id": {"S": "Jeans"}, "date_key": {"S": "2025-07-10"}}
    )
    assert p.served() != p.expected()
    assert cli_main(["replay", "--from", "2025-07-10", "--to", "2025-07-11"]) == 0
    assert p.served() == p.expected()
    replay = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert replay["status"] == "ok" and replay["touched_dates"] == ["2025-07-10", "2025-07-11"]


def test_the_script_path_works_and_a_broken_run_exits_1(tmp_path):
    # As spark-submit runs it: a file path, no package. Without S3_BUCKET the run breaks at once.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "transformation" / "__main__.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "S3_BUCKET" in done.stderr
