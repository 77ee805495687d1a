"""Shared fixtures: one embedded AWS emulator and one SparkSession for the whole test run.

Each test gets its own bucket / table names (``names`` fixture) instead of resetting the
emulator, so Spark's cached s3a filesystem and boto3 clients stay valid across tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# Tests never talk to real AWS: fake credentials before boto3 looks for any.
for _k, _v in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}.items():
    os.environ[_k] = _v
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.pop("AWS_PROFILE", None)

# The JVMs the tests start in other processes (the warm worker, the per-batch tasks, notebook
# kernels, spark-submit, a standalone cluster) live for seconds to a minute on tiny data, on a
# machine whose two cores the tests keep busy: C2 compiles and G1's threads cost them more CPU than
# they save. C1 only and the serial collector halve a fresh worker's JVM CPU for its warm-up batch
# (61 -> 28 s; wall 36 -> 31 s). The shared session below runs for the whole suite and undoes both:
# with C1 only it was measured slower (the JVM tests 927 -> 992 s). Its compilers take about half its
# CPU (printed after the run); C2 thresholds ten times its defaults took a third off one file's JIT
# alone (tests/jobs/transformation/test_transformation_incremental.py: JVM 323 -> 281 CPU-s), but a clean-clone run with
# them was slower, not faster (2026-12-07): the defaults stay.
SHORT_LIVED_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
LONG_LIVED_JVM = "-XX:TieredStopAtLevel=4 -XX:-UseSerialGC"
os.environ.setdefault("JAVA_TOOL_OPTIONS", SHORT_LIVED_JVM)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on a free loopback port: S3, DynamoDB, SNS, SQS, CloudWatch Logs, ..."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass(frozen=True)
class Names:
    """Unique resource names for one test."""

    suffix: str

    @property
    def bucket(self) -> str:
        return f"ecomkpi-test-{self.suffix}"

    @property
    def daily_table(self) -> str:
        return f"DailyKPIs-{self.suffix}"

    @property
    def category_table(self) -> str:
        return f"CategoryKPIs-{self.suffix}"

    @property
    def tracker_table(self) -> str:
        return f"BatchFileTracker-{self.suffix}"


@pytest.fixture
def names() -> Names:
    return Names(uuid.uuid4().hex[:10])


@pytest.fixture(scope="session")
def spark(moto_endpoint: str):
    """The one SparkSession of the test run, with Delta and s3a pointed at the emulator."""
    from jobs import class_archive
    from jobs.config import PipelineConfig
    from jobs.spark_session import BASE_JVM_OPTIONS, find_jars, get_spark

    # The class archive `make setup` built, as every session the factory starts gets it (the
    # override below replaces the factory's java options, so it is named again).
    archive = class_archive.java_options(find_jars(PipelineConfig.from_env().jars_dir))
    options = f"{BASE_JVM_OPTIONS} {LONG_LIVED_JVM} {archive}".strip()
    config = PipelineConfig.from_env(
        {
            "AWS_ENDPOINT_URL": moto_endpoint,
            "SPARK_MASTER": "local[2]",
            "SPARK_SHUFFLE_PARTITIONS": "2",
            "SPARK_EXTRA_CONF": f"spark.driver.extraJavaOptions='{options}'",
            # The jar set of the Spark under test (make compat points it at the Spark 4.0 set).
            "ECOMKPI_JARS_DIR": os.environ.get("ECOMKPI_JARS_DIR", ""),
        }
    )
    session = get_spark(config, app_name="ecomkpi-tests")
    yield session
    _JVM_USE.update(jvm_use(session))
    session.stop()


# What the shared session's JVM spent, printed after the run: on two busy cores a JVM test's cost is
# its CPU, and the JIT's share of it says whether compiler settings are worth another look.
_JVM_USE: dict[str, float] = {}


def jvm_use(session: Any) -> dict[str, float]:
    """The JVM's CPU seconds (from /proc) and its compilers' time (the compilation MXBean)."""
    jvm = session.sparkContext._jvm
    pid = int(jvm.java.lang.ProcessHandle.current().pid())
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return {}
    jit = jvm.java.lang.management.ManagementFactory.getCompilationMXBean().getTotalCompilationTime()
    return {"cpu": cpu, "jit": jit / 1000}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _JVM_USE:
        terminalreporter.write_line(
            f"shared SparkSession's JVM: {_JVM_USE['cpu']:.0f} CPU-s, of which its JIT compilers "
            f"{_JVM_USE['jit']:.0f} s (compilation MXBean)"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs a JVM ``spark``: ``make test`` runs them one after the other and
    the others beside them (scripts/test_in_lanes.sh). A test that asks for the shared session is
    marked here; a module whose tests start JVMs another way (a subprocess, a cluster, a notebook
    kernel, a container) says so itself: ``spark``, and ``own_jvms`` when its time goes to JVMs of
    their own, which run in a lane of their own (``container`` implies it). ``slow`` is a separate
    mark: a slow test without a JVM (hundreds of emulated DynamoDB writes) runs beside the JVM tests,
    but not in the fast loop (``pytest -m "not spark and not slow"``, ``make test-fast``)."""
    for item in items:
        if item.get_closest_marker("container") is not None:
            item.add_marker(pytest.mark.own_jvms)
        if "spark" in getattr(item, "fixturenames", ()) or item.get_closest_marker("own_jvms") is not None:
            item.add_marker(pytest.mark.spark)
    # The container tests last: their fixture builds the image (or waits for the build CI starts at
    # once), which on a fresh machine takes minutes the lane's other tests can use meanwhile.
    items.sort(key=lambda item: item.get_closest_marker("container") is not None)
