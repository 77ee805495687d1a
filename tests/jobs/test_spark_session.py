"""The session factory: Delta and s3a load from the jar cache without copying it per process.

Everything the factory sets on a session it starts is computed by ``session_conf`` (no JVM), so
the tests below check that configuration for each kind of master: local, a standalone cluster
whose workers run the project's image or not, Kubernetes, ``local-cluster``; and how a client-mode
driver inside a Fargate task finds the address its executors reach it at.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.config import ConfigError, PipelineConfig
from jobs.spark_session import (
    BASE_JVM_OPTIONS,
    CODEGEN_CACHE_ENTRIES,
    SHORT_JVM_OPTIONS,
    JarsMissingError,
    driver_conf,
    ecs_container_ip,
    executor_jars_mode,
    find_driver_host,
    find_jars,
    is_remote,
    is_short_lived,
    jar_conf,
    jobs_zip,
    master_address,
    needs_jobs_zip,
    route_ip,
    session_conf,
    spark_conf,
)
from tests.support.metadata_endpoint import serve_metadata

JARS = ["/c/delta-spark.jar", "/c/hadoop-aws.jar"]
STANDALONE = "spark://10.0.1.5:7077"
K8S = "k8s://https://ABCD.gr7.eu-west-1.eks.amazonaws.com:443"


def config(master: str, **env: str) -> PipelineConfig:
    return PipelineConfig.from_env({"SPARK_MASTER": master, "S3_BUCKET": "b", **env})


def test_local_mode_puts_the_jars_on_the_class_path_and_a_cluster_ships_them() -> None:
    assert jar_conf("local[2]", JARS) == {
        "spark.driver.extraClassPath": "/c/delta-spark.jar:/c/hadoop-aws.jar"
    }
    assert jar_conf("local[*]", JARS) == jar_conf("local", JARS)
    assert jar_conf("spark://host:7077", JARS) == {"spark.jars": "/c/delta-spark.jar,/c/hadoop-aws.jar"}


def test_executors_running_the_image_read_the_jars_from_its_cache() -> None:
    image = {
        "spark.driver.extraClassPath": "/c/delta-spark.jar:/c/hadoop-aws.jar",
        "spark.executor.extraClassPath": "/c/*",  # the same cache, on the executor's disk
    }
    assert jar_conf(STANDALONE, JARS, "image") == image
    assert jar_conf(K8S, JARS) == image  # auto: Kubernetes executors run the image
    assert jar_conf("local-cluster[2,1,1024]", JARS) == image  # auto: executors on this host
    # A driver whose cache lives elsewhere (a laptop) than the executors' (the image's).
    assert jar_conf(STANDALONE, JARS, "image", "/opt/ecomkpi/jars")["spark.executor.extraClassPath"] == (
        "/opt/ecomkpi/jars/*"
    )
    # The switch wins over auto either way; local mode has no executors to switch.
    assert jar_conf(K8S, JARS, "ship") == {"spark.jars": "/c/delta-spark.jar,/c/hadoop-aws.jar"}
    assert jar_conf("local[2]", JARS, "ship") == jar_conf("local[2]", JARS)
    assert "spark.jars" not in jar_conf(STANDALONE, JARS, "image")


@pytest.mark.parametrize(
    ("master", "setting", "mode"),
    [
        ("local[4]", "auto", "local"),
        ("local", "ship", "local"),
        (STANDALONE, "auto", "ship"),
        (STANDALONE, "image", "image"),
        (K8S, "auto", "image"),
        (K8S, "ship", "ship"),
        ("local-cluster[2,1,1024]", "auto", "image"),
    ],
)
def test_executor_jars_mode(master: str, setting: str, mode: str) -> None:
    assert executor_jars_mode(master, setting) == mode


def test_local_mode_session_is_what_it_was() -> None:
    """The stack's default (SparkMaster empty): local[*], nothing for a cluster."""
    c = config(
        "", SPARK_DRIVER_PORT="7078", SPARK_DRIVER_BLOCK_MANAGER_PORT="7079", SPARK_EXECUTOR_JARS="auto"
    )
    assert c.spark_master == "local[*]"
    conf = session_conf(c, JARS, driver_host="10.0.1.9")
    assert conf["spark.master"] == "local[*]"
    assert conf["spark.driver.extraClassPath"] == "/c/delta-spark.jar:/c/hadoop-aws.jar"
    assert not {
        k for k in conf if k.startswith(("spark.driver.host", "spark.driver.port", "spark.driver.block"))
    }
    assert not {"spark.jars", "spark.executor.extraClassPath", "spark.submit.pyFiles"} & set(conf)
    assert conf.items() >= spark_conf(c).items()


def test_standalone_cluster_with_the_image_on_its_workers() -> None:
    c = config(
        STANDALONE,
        SPARK_EXECUTOR_JARS="image",
        SPARK_DRIVER_PORT="7078",
        SPARK_DRIVER_BLOCK_MANAGER_PORT="7079",
        SPARK_EXTRA_CONF="spark.cores.max=8 spark.executor.memory=6g",
    )
    assert not needs_jobs_zip(c)  # the image has the jobs package installed
    conf = session_conf(c, JARS, driver_host="10.0.1.9")
    assert conf["spark.master"] == STANDALONE
    assert conf["spark.executor.extraClassPath"] == "/c/*" and "spark.jars" not in conf
    assert conf["spark.driver.host"] == "10.0.1.9"
    assert (conf["spark.driver.port"], conf["spark.driver.blockManager.port"]) == ("7078", "7079")
    assert "spark.blockManager.port" not in conf  # that one would pin every executor's port too
    assert (conf["spark.cores.max"], conf["spark.executor.memory"]) == ("8", "6g")
    assert "spark.submit.pyFiles" not in conf


def test_standalone_cluster_without_the_image_gets_jars_and_the_jobs_package_shipped(tmp_path: Path) -> None:
    c = config(STANDALONE)  # auto: a standalone cluster's workers are not assumed to have anything
    assert needs_jobs_zip(c)
    zipped = jobs_zip(tmp_path)
    conf = session_conf(c, JARS, driver_host="10.0.1.9", py_files=str(zipped))
    assert conf["spark.jars"] == "/c/delta-spark.jar,/c/hadoop-aws.jar"
    assert "spark.executor.extraClassPath" not in conf
    assert conf["spark.submit.pyFiles"] == str(zipped)
    names = zipfile.ZipFile(zipped).namelist()
    package = Path(__file__).resolve().parents[2] / "jobs"
    assert {"jobs/__init__.py", "jobs/spark_session.py", "jobs/transformation/__main__.py"} <= set(names)
    assert len(names) == len(list(package.rglob("*.py")))
    assert all(n.startswith("jobs/") and n.endswith(".py") for n in names)


def test_kubernetes_client_mode_needs_the_image_setting_and_nothing_shipped() -> None:
    c = config(
        K8S,
        SPARK_DRIVER_PORT="7078",
        SPARK_DRIVER_BLOCK_MANAGER_PORT="7079",
        SPARK_EXTRA_CONF=(
            "spark.kubernetes.container.image=1.dkr.ecr.eu-west-1.amazonaws.com/ecomkpi:abc "
            "spark.kubernetes.namespace=ecomkpi spark.executor.instances=2"
        ),
    )
    assert not needs_jobs_zip(c)
    conf = session_conf(c, JARS, driver_host="10.0.1.9")
    assert conf["spark.executor.extraClassPath"] == "/c/*"
    assert conf["spark.kubernetes.container.image"].endswith("/ecomkpi:abc")
    assert conf["spark.driver.host"] == "10.0.1.9" and conf["spark.driver.port"] == "7078"


def test_extra_conf_may_override_the_cluster_settings_but_not_the_pipelines() -> None:
    c = config(
        STANDALONE,
        SPARK_EXTRA_CONF=(
            "spark.driver.port=9000 'spark.executor.extraJavaOptions=-XX:+UseG1GC -Dx=1' "
            "spark.sql.session.timeZone=Europe/Paris spark.hadoop.fs.s3a.aws.credentials.provider="
            "software.amazon.awssdk.auth.credentials.WebIdentityTokenFileCredentialsProvider"
        ),
        SPARK_DRIVER_PORT="7078",
    )
    conf = session_conf(c, JARS)
    assert conf["spark.driver.port"] == "9000"
    assert conf["spark.executor.extraJavaOptions"] == "-XX:+UseG1GC -Dx=1"
    assert conf["spark.sql.session.timeZone"] == "UTC"  # the pipeline's: its KPIs are UTC days
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith(
        "WebIdentityTokenFileCredentialsProvider"
    )
    assert "spark.driver.host" not in conf  # none found: Spark's own default


def test_extra_conf_sets_the_shuffle_partitions_for_the_clusters_cores() -> None:
    """The entrypoint sizes SPARK_SHUFFLE_PARTITIONS for the task's vCPUs (here 2 -> 8); with a
    cluster that is the driver's size, so an explicit value in SPARK_EXTRA_CONF wins."""
    c = config(STANDALONE, SPARK_SHUFFLE_PARTITIONS="8", SPARK_EXTRA_CONF="spark.sql.shuffle.partitions=64")
    assert c.shuffle_partitions == 64 and c.extra_spark_conf == ()
    assert session_conf(c, JARS)["spark.sql.shuffle.partitions"] == "64"
    assert config(STANDALONE, SPARK_SHUFFLE_PARTITIONS="8").shuffle_partitions == 8
    with pytest.raises(ConfigError, match=r"shuffle\.partitions in SPARK_EXTRA_CONF"):
        config(STANDALONE, SPARK_EXTRA_CONF="spark.sql.shuffle.partitions=lots")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SPARK_EXECUTOR_JARS", "copy", "SPARK_EXECUTOR_JARS"),
        ("SPARK_DRIVER_PORT", "70000", "SPARK_DRIVER_PORT"),
        ("SPARK_DRIVER_BLOCK_MANAGER_PORT", "x", "SPARK_DRIVER_BLOCK_MANAGER_PORT"),
        ("SPARK_EXTRA_CONF", "spark.cores.max", "spark.<key>=<value>"),
        ("SPARK_EXTRA_CONF", "cores.max=2", "spark.<key>=<value>"),
        ("SPARK_EXTRA_CONF", "spark.master=local[2]", "SPARK_MASTER"),
        ("SPARK_EXTRA_CONF", "'spark.a=b", "quoting"),
    ],
)
def test_bad_cluster_settings_name_their_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(STANDALONE, **{variable: value})


def test_empty_settings_are_the_defaults() -> None:
    """The stack always sets these variables; its defaults are empty strings."""
    c = config(
        "",
        SPARK_EXECUTOR_JARS="",
        SPARK_EXTRA_CONF="",
        SPARK_DRIVER_PORT="",
        SPARK_DRIVER_BLOCK_MANAGER_PORT=" ",
        SPARK_DRIVER_HOST="",
        SPARK_EXECUTOR_JARS_DIR="",
    )
    assert c == config("").with_(run_id=c.run_id)
    assert (c.executor_jars, c.extra_spark_conf, c.driver_port, c.driver_host) == ("auto", (), None, None)


def test_driver_settings_only_for_executors_on_other_hosts() -> None:
    assert driver_conf("local[2]", "10.0.0.1", 7078, 7079) == {}
    assert driver_conf("local-cluster[2,1,1024]", "10.0.0.1", 7078, 7079) == {}
    assert driver_conf(STANDALONE, None, None, None) == {}
    assert driver_conf(K8S, "10.0.0.1", None, 7079) == {
        "spark.driver.host": "10.0.0.1",
        "spark.driver.blockManager.port": "7079",
    }
    assert [is_remote(m) for m in ("local", "local[*]", "local-cluster[1,1,512]", STANDALONE, K8S)] == [
        False,
        False,
        False,
        True,
        True,
    ]


@pytest.mark.parametrize(
    ("master", "address"),
    [
        ("spark://10.0.1.5:7077", ("10.0.1.5", 7077)),
        ("spark://10.0.1.5", ("10.0.1.5", 7077)),
        ("spark://m1:7077,m2:7077", ("m1", 7077)),  # standby masters: the first
        ("k8s://https://api.example.com:6443", ("api.example.com", 6443)),
        ("k8s://api.example.com", ("api.example.com", 443)),
        ("local[2]", None),
    ],
)
def test_master_address(master: str, address: tuple[str, int] | None) -> None:
    assert master_address(master) == address


# ---------------------------------------------------------------- the driver's address
CONTAINER_METADATA = {  # ECS task metadata v4, container response (AWS's documented example's shape)
    "DockerId": "cd189a933e5849daa93386466019ab50-2495160603",
    "Name": "transformation",
    "Limits": {"CPU": 2, "Memory": 8192},
    "Networks": [
        {"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.2.106"], "IPv4SubnetCIDRBlock": "10.0.2.0/24"}
    ],
}


@pytest.fixture
def metadata_endpoint() -> Iterator[str]:
    with serve_metadata({"/v4/abc": CONTAINER_METADATA}) as url:
        yield url


def test_the_task_address_comes_from_the_ecs_metadata_endpoint(metadata_endpoint: str) -> None:
    assert ecs_container_ip(metadata_endpoint) == "10.0.2.106"
    assert ecs_container_ip(metadata_endpoint.replace("/v4/abc", "/v4/gone")) is None
    assert ecs_container_ip(None) is None
    assert ecs_container_ip("http://127.0.0.1:9/nothing-listens", timeout=0.5) is None


def test_driver_host_precedence(metadata_endpoint: str) -> None:
    env = {"ECS_CONTAINER_METADATA_URI_V4": metadata_endpoint, "SPARK_LOCAL_IP": "127.0.0.1"}
    c = config(STANDALONE)
    assert find_driver_host(c, env) == "10.0.2.106"  # image default loopback: ask ECS
    assert find_driver_host(c, {**env, "SPARK_LOCAL_IP": "10.0.2.7"}) == "10.0.2.7"  # the entrypoint's
    assert find_driver_host(config(STANDALONE, SPARK_DRIVER_HOST="driver.internal"), env) == "driver.internal"
    # Outside ECS: the address on the route to the master (loopback here, for a loopback master).
    assert find_driver_host(config("spark://127.0.0.1:7077"), {"SPARK_LOCAL_IP": "127.0.0.1"}) == "127.0.0.1"


def test_route_ip_towards_a_loopback_master_and_none_for_local() -> None:
    assert route_ip("spark://127.0.0.1:7077") == "127.0.0.1"
    assert route_ip("local[2]") is None


# ---------------------------------------------------------------- the jar cache
def test_an_empty_cache_names_the_script_that_fills_it(tmp_path: Path) -> None:
    (tmp_path / "delta-spark_2.13-4.0.0.jar").write_bytes(b"")
    with pytest.raises(JarsMissingError, match=r"hadoop-aws.*scripts/fetch_jars\.sh"):
        find_jars(tmp_path)


def test_the_shared_session_loads_delta_and_s3a_with_nothing_shipped(spark: Any) -> None:
    jvm = spark.sparkContext._jvm
    for cls in ("io.delta.tables.DeltaTable", "org.apache.hadoop.fs.s3a.S3AFileSystem"):
        assert jvm.java.lang.Class.forName(cls, False, jvm.Thread.currentThread().getContextClassLoader())
    assert spark.sparkContext._jsc.sc().listJars().size() == 0  # nothing for the file server to copy
    assert spark.sql("SELECT 1 AS one").collect()[0].one == 1


def test_a_session_we_start_keeps_the_compiled_code_of_many_runs(spark: Any) -> None:
    """Spark's default cache (100 classes) is less than one transformation run compiles: a
    warm worker would recompile every query of every run (bench/results/LOG.md, 2026-11-30)."""
    assert spark.sparkContext.getConf().get("spark.sql.codegen.cache.maxEntries") == str(
        CODEGEN_CACHE_ENTRIES
    )
    assert CODEGEN_CACHE_ENTRIES >= 1000
    override = session_conf(config("", SPARK_EXTRA_CONF="spark.sql.codegen.cache.maxEntries=50"), JARS)
    assert override["spark.sql.codegen.cache.maxEntries"] == "50"  # a deployment may choose


@pytest.mark.parametrize(
    ("limit", "batch_bytes", "short"),
    [
        (None, 22_000_000, True),  # a 100k-item day (about 22 MB) under the default 64 MiB
        (None, 64 * 1024**2, True),
        (None, 140_000_000, False),  # a 1M-item day: C2's code pays for itself
        (None, None, False),  # unknown: a JVM that serves many batches (worker, notebooks)
        ("0", 1, False),  # switched off
        ("1000", 999, True),
    ],
)
def test_a_jvm_started_for_one_small_batch_is_started_for_a_short_life(
    limit: str | None, batch_bytes: int | None, short: bool
) -> None:
    c = config("local[2]", **({"SHORT_JVM_MAX_BYTES": limit} if limit is not None else {}))
    assert is_short_lived(c, batch_bytes) is short
    options = session_conf(c, JARS, short_lived=is_short_lived(c, batch_bytes))[
        "spark.driver.extraJavaOptions"
    ]
    assert options == BASE_JVM_OPTIONS + (f" {SHORT_JVM_OPTIONS}" if short else "")


def test_explicit_driver_java_options_replace_the_short_life_ones() -> None:
    c = config("local[2]", SPARK_EXTRA_CONF="'spark.driver.extraJavaOptions=-XX:+UseG1GC'")
    assert session_conf(c, JARS, short_lived=True)["spark.driver.extraJavaOptions"] == "-XX:+UseG1GC"
