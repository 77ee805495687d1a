"""The transformation job, unchanged, on a real Spark standalone cluster started from pyspark's own
scripts on loopback: `spark-submit --master spark://...` with the jobs zipped as --py-files.

Its KPIs in DynamoDB must equal the from-scratch computation the local tests use.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark
import pytest

from tests.support.transformation import PRODUCTS_V1, Pipeline, items_csv, orders_csv

# a standalone cluster: JVMs of its own
pytestmark = [pytest.mark.slow, pytest.mark.own_jvms]
SPARK_HOME = Path(pyspark.__file__).parent
REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("spark-cluster")
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }
    port, ui = free_port(), free_port()
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    master_log, worker_log = open(work / "master.log", "w"), open(work / "worker.log", "w")  # noqa: SIM115
    master = subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)],
        env=env, stdout=master_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    worker = subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}", "--cores", "2",
         "--memory", "2g", "--host", "127.0.0.1", "--webui-port", str(free_port()), "--work-dir", str(work / "worker")],
        env=env, stdout=worker_log, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def alive_workers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as r:
                return json.load(r).get("aliveworkers", 0) >= 1
        except OSError:
            return False

    try:
        wait_for(alive_workers, 120, "a worker to register with the master")
        yield f"spark://127.0.0.1:{port}", work
    finally:
        for p in (worker, master):
            p.terminate()
        for p in (worker, master):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        master_log.close()
        worker_log.close()


def test_transformation_job_on_a_standalone_cluster(cluster, moto_endpoint, spark, tmp_path):
    master_url, work = cluster
    pipe = Pipeline(moto_endpoint, spark, tmp_path)
    pipe.lake = f"s3a://{pipe.bucket}/lake"
    pipe.put("products/products.csv", PRODUCTS_V1)
    orders = [
        pipe.put(
            "orders/2025-07-10/orders_part1.csv",
            orders_csv(
                ("o1", "u1", "Complete", "2025-07-10 10:00:00"),
                ("o2", "u2", "Returned", "2025-07-10T01:30:00+02:00"),
            ),
        )
    ]
    items = [
        pipe.put(
            "order_items/2025-07-10/order_items_part1.csv",
            items_csv(("i1", "o1", "p1", "10.00"), ("i2", "o1", "p2", "5.50"), ("i3", "o2", "p9", "3.25")),
        )
    ]
    config = pipe.config("2025-07-10", orders, items)
    env = {
        **os.environ,
        "S3_BUCKET": config.bucket,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "LAKE_PATH": pipe.lake,
        "BATCH_ID": config.batch_id,
        "RUN_ID": "cluster-run-1",
        "ORDERS_KEYS": json.dumps(orders),
        "ORDER_ITEMS_KEYS": json.dumps(items),
        "DAILY_KPIS_TABLE": pipe.daily_table,
        "CATEGORY_KPIS_TABLE": pipe.category_table,
        "SPARK_SHUFFLE_PARTITIONS": "2",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }
    zipped = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "package_jobs.py"), str(work / "ecomkpi_jobs.zip")],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    jars = ",".join(sorted(str(p) for p in (Path.home() / ".cache/ecomkpi/jars").glob("*.jar")))
    # Run from a folder outside the repo so `jobs` can only come from the --py-files zip.
    proc = subprocess.run(
        [str(SPARK_HOME / "bin" / "spark-submit"), "--master", master_url, "--jars", jars, "--py-files", zipped,
         "--conf", "spark.executor.memory=1g", "--conf", "spark.ui.enabled=false",
         str(REPO / "jobs" / "transformation" / "__main__.py")],
        env={k: v for k, v in env.items() if k != "PYTHONPATH"}, cwd=work, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "cluster-run-1" in proc.stdout
    # Work ran on the cluster's executor, not only in the driver.
    executor_dirs = list((work / "worker").glob("app-*/*"))
    assert executor_dirs, "no executor was launched on the worker"
    assert pipe.served() == pipe.expected()
    assert pipe.keys("processed/") == [
        "processed/order_items/2025-07-10/order_items_part1.csv",
        "processed/orders/2025-07-10/orders_part1.csv",
        "processed/products/products.csv",
    ]
