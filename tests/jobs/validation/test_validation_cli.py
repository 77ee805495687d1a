"""The container entry point: exit codes 0 / 2 / 1, the run log on failure, spark-submit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from jobs.validation import EXIT_BROKEN, EXIT_OK, EXIT_REJECTED, main
from tests.support.validation import (
    PRODUCTS_CSV,
    PRODUCTS_KEY,
    create_bucket,
    env_of,
    get,
    get_json,
    make_config,
    order_row,
    orders_csv,
    put,
)

# spark-submit and the job as a process: JVMs of their own (the lane of their own)
pytestmark = [pytest.mark.spark, pytest.mark.own_jvms]

ROOT = Path(__file__).resolve().parents[3]
ORDERS_KEY = "raw/orders/2025-07-10/part1.csv"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    def apply(config, **extra: str) -> None:
        for k, v in {**env_of(config), **extra}.items():
            monkeypatch.setenv(k, v)

    return apply


def _config(moto_endpoint: str, **kwargs):
    return make_config(moto_endpoint, f"ecomkpi-valcli-{uuid.uuid4().hex[:8]}", **kwargs)


def test_missing_bucket_setting_is_exit_1(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("S3_BUCKET", raising=False)
    assert main() == EXIT_BROKEN
    assert "S3_BUCKET" in capsys.readouterr().out


def test_a_bucket_that_does_not_exist_is_exit_1_not_missing_files(moto_endpoint: str, env) -> None:
    env(_config(moto_endpoint, orders=[ORDERS_KEY]))
    assert main() == EXIT_BROKEN


def test_decided_files_need_no_spark(moto_endpoint: str, env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files moved by earlier runs: 0 when all passed, 2 when one was rejected; Spark never starts."""
    import jobs.spark_session

    def no_spark(*_a, **_k):
        raise AssertionError("the job started Spark for files that were already decided")

    monkeypatch.setattr(jobs.spark_session, "get_spark", no_spark)
    config = _config(moto_endpoint, orders=[ORDERS_KEY])
    create_bucket(config)
    put(config, "validated/products/products.csv", PRODUCTS_CSV)
    put(config, "validated/orders/2025-07-10/part1.csv", orders_csv(order_row(1)))
    env(config)
    assert main() == EXIT_OK
    summary = get_json(config, "logs/validation/2025-07-10/run-1/summary.json")
    assert summary["exit_code"] == EXIT_OK and summary["spark_used"] is False
    put(config, "invalid/orders/2025-07-10/part2.csv", b"{}")
    env(config, ORDERS_KEYS=json.dumps([ORDERS_KEY, "raw/orders/2025-07-10/part2.csv"]), RUN_ID="run-2")
    assert main() == EXIT_REJECTED


def test_a_broken_task_still_writes_its_log(moto_endpoint: str, env, tmp_path: Path) -> None:
    config = _config(moto_endpoint, orders=[ORDERS_KEY])
    create_bucket(config)
    env(config, ECOMKPI_EXPECTATIONS_DIR=str(tmp_path))  # no suites there
    assert main() == EXIT_BROKEN
    lines = [json.loads(x) for x in get(config, "logs/validation/2025-07-10/run-1.log").decode().splitlines()]
    assert lines[-1]["level"] == "ERROR" and "SuiteError" in lines[-1]["error"]
    assert "SuiteError" in get_json(config, "logs/validation/2025-07-10/run-1/summary.json")["error"]


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("ECOMKPI_SPARK_SUBMIT_TEST") != "1",
    reason="a second JVM: 40-110 s on a busy 2-core machine; run with ECOMKPI_SPARK_SUBMIT_TEST=1",
)
def test_spark_submit_runs_the_script_path(moto_endpoint: str, tmp_path: Path) -> None:
    """``spark-submit jobs/validation/__main__.py`` from another directory, as a task could run it."""
    config = _config(moto_endpoint, orders=[ORDERS_KEY], run_id="submit-1")
    create_bucket(config)
    put(config, PRODUCTS_KEY, PRODUCTS_CSV)
    put(config, ORDERS_KEY, orders_csv(order_row(1), order_row(2)))
    jars = ",".join(str(p) for p in sorted(config.jars_dir.glob("*.jar")))
    env = {**os.environ, **env_of(config), "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)
    started = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("spark-submit")), "--master", "local[1]", "--jars", jars,
         "--conf", "spark.ui.enabled=false", str(ROOT / "jobs/validation/__main__.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == EXIT_OK, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = get_json(config, "logs/validation/2025-07-10/submit-1/summary.json")
    assert summary["spark_used"] is True and summary["counts"] == {"passed": 2, "rejected": 0}
    assert any(
        json.loads(line).get("step") == "validation.end"
        for line in proc.stdout.splitlines()
        if line[:1] == "{"
    )
    assert time.perf_counter() - started < 240
