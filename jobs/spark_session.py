"""The one SparkSession factory: Delta on, s3a configured from the same settings as boto3.

Jars come from the local cache that ``scripts/fetch_jars.sh`` fills (Delta, hadoop-aws, the AWS SDK
v2 bundle), so starting a session never needs the network. Under ``spark-submit`` the master and
jars given on the command line win: the factory only fills in what is not already configured.

With a cluster ``SPARK_MASTER`` (``spark://...``, ``k8s://...``) this process is a client-mode
driver whose executors run elsewhere: ``session_conf`` then also says how the executors get the
jars (``SPARK_EXECUTOR_JARS``), where they reach the driver (``spark.driver.host``, from
``driver_host``) and on which fixed ports, so a security group can name them (docs/scale-out.md).
Everything the factory sets is computed by ``session_conf`` without starting a JVM.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import SparkSession

from jobs import class_archive
from jobs.config import PipelineConfig

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


class JarsMissingError(RuntimeError):
    """The jar cache is empty: Spark would start without Delta or s3a."""


def find_jars(jars_dir: Path) -> list[str]:
    jars = sorted(str(p) for p in Path(jars_dir).glob("*.jar"))
    names = " ".join(Path(j).name for j in jars)
    if "delta-spark" not in names or "hadoop-aws" not in names:
        raise JarsMissingError(
            f"no Delta/hadoop-aws jars in {jars_dir}; run `scripts/fetch_jars.sh` (or `make setup`)"
        )
    return jars


CODEGEN_CACHE_ENTRIES = 2000  # a generated class is ~3.4 KB of bytecode on average (measured)


def spark_conf(config: PipelineConfig) -> dict[str, str]:
    """Every setting the pipeline relies on, as plain ``--conf`` pairs (reused by spark-submit docs)."""
    conf = {
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(config.shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.databricks.delta.retentionDurationCheck.enabled": "false",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # A CSV read probes its path for a streaming sink's _spark_metadata folder and logs a WARN
        # with a stack trace when the path is a file with glob characters escaped; none is written.
        "spark.sql.streaming.fileStreamSink.ignoreMetadata": "true",
        # A day in many parts is read as one scan of many paths (validation's CSVs, the plan's staged
        # versions); above 32 paths Spark lists them with a Spark job of its own, which costs more
        # than the driver's own listing up to about a thousand paths.
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "1024",
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region": config.region,
        "spark.hadoop.fs.s3a.fast.upload": "true",
        "spark.hadoop.fs.s3a.bucket.probe": "0",
        # Delta on S3: the job's lock keeps one writer per table at a time (docs/pipeline.md).
        "spark.delta.logStore.s3a.impl": "io.delta.storage.S3SingleDriverLogStore",
    }
    if config.endpoint_url:
        conf.update(
            {
                "spark.hadoop.fs.s3a.endpoint": config.endpoint_url,
                "spark.hadoop.fs.s3a.path.style.access": "true",
                "spark.hadoop.fs.s3a.connection.ssl.enabled": str(
                    config.endpoint_url.startswith("https")
                ).lower(),
                "spark.hadoop.fs.s3a.change.detection.mode": "none",
            }
        )
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret and config.endpoint_url:
        # The emulator accepts any credentials; pass boto3's so both clients agree. Against AWS the
        # default provider chain (environment, ECS task role, instance profile) is left to work.
        conf["spark.hadoop.fs.s3a.access.key"] = key
        conf["spark.hadoop.fs.s3a.secret.key"] = secret
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = (
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        )
    return conf


def is_local(master: str) -> bool:
    """Tasks run inside the driver JVM (not ``local-cluster``: its executors are separate JVMs)."""
    return master == "local" or master.startswith("local[")


def is_remote(master: str) -> bool:
    """Executors on other hosts, which must reach this driver over the network."""
    return not is_local(master) and not master.startswith("local-cluster[")


def executor_jars_mode(master: str, setting: str = "auto") -> str:
    """``local`` (no executors), ``image`` (executors have the jar cache on disk) or ``ship``.

    ``auto``: Kubernetes executors run the image ``spark.kubernetes.container.image`` names (the
    project's, whose entrypoint puts the cache on their class path), and ``local-cluster``'s run on
    this host, so both are ``image``; a standalone cluster's workers may be anything, so ``ship``.
    """
    if is_local(master):
        return "local"
    if setting in ("image", "ship"):
        return setting
    return "image" if master.startswith(("k8s://", "local-cluster[")) else "ship"


def jar_conf(
    master: str, jars: list[str], executor_jars: str = "auto", executor_jars_dir: str | Path | None = None
) -> dict[str, str]:
    """How the jars reach the JVMs that run the tasks.

    In local mode the tasks run inside the driver, so the jars go on its class path when it starts.
    ``spark.jars`` would have every task JVM copy them (the AWS SDK bundle alone is hundreds of MB)
    into a temporary directory through Spark's file server at its first task: seconds per start and
    that much /tmp per process, left behind when the process is killed. Executors that have the cache on
    disk (``image``: the project's image, at ``executor_jars_dir``, by default where the driver's
    cache is) get it on their class path the same way; only executors without it (``ship``) need
    ``spark.jars``, which ships the jars to them.
    """
    mode = executor_jars_mode(master, executor_jars)
    on_driver = {"spark.driver.extraClassPath": os.pathsep.join(jars)}
    if mode == "local":
        return on_driver
    if mode == "image":
        directory = Path(executor_jars_dir) if executor_jars_dir else Path(jars[0]).parent
        return {**on_driver, "spark.executor.extraClassPath": f"{directory.as_posix()}/*"}
    return {"spark.jars": ",".join(jars)}


def driver_conf(
    master: str, host: str | None, port: int | None, block_manager_port: int | None
) -> dict[str, str]:
    """Where executors on other hosts reach this driver: its address and fixed ports (Spark picks
    random ones otherwise, which no firewall rule can name). ``spark.driver.blockManager.port``
    rather than ``spark.blockManager.port``: the latter would fix the executors' ports too."""
    if not is_remote(master):
        return {}
    conf = {}
    if host:
        conf["spark.driver.host"] = host
    if port:
        conf["spark.driver.port"] = str(port)
    if block_manager_port:
        conf["spark.driver.blockManager.port"] = str(block_manager_port)
    return conf


# A JVM that lives for one small batch spends about half its CPU in the JIT's C2 compiles and G1's
# threads, on cores the job itself needs: C1 only and the serial collector make a 100k-item day's
# per-batch path faster and a 1M-item day slower (`make bench ARGS="--only latency --task-modes ecs"`
# and `--only throughput --sizes 1000000`; bench/results/LOG.md, 2026-11-30).
SHORT_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
# Every session's driver: Spark's log level, and exceptions that keep their messages however often
# compiled code throws them (HotSpot drops them by default, and validation tells a record past
# maxColumns by its exception's message: jobs/validation/reading.py; a warm worker throws it often).
BASE_JVM_OPTIONS = "-Dlog4j2.level=WARN -XX:-OmitStackTraceInFastThrow"


def is_short_lived(config: PipelineConfig, batch_bytes: int | None) -> bool:
    """A JVM started for a batch this small gets SHORT_JVM_OPTIONS (unknown size: it does not)."""
    limit = config.short_jvm_max_bytes
    return batch_bytes is not None and limit > 0 and batch_bytes <= limit


def session_conf(
    config: PipelineConfig,
    jars: list[str],
    driver_host: str | None = None,
    py_files: str | None = None,
    ui_enabled: str = "false",
    short_lived: bool = False,
) -> dict[str, str]:
    """Every setting of a session this process starts itself (not under ``spark-submit``), in the
    order of precedence: master, jars, driver; then ``SPARK_EXTRA_CONF``, which may override those;
    then the pipeline's own settings (``spark_conf``), which nothing overrides."""
    master = config.spark_master
    conf = {"spark.master": master}
    conf.update(jar_conf(master, jars, config.executor_jars, config.executor_jars_dir))
    if config.driver_memory:
        conf["spark.driver.memory"] = config.driver_memory
    conf["spark.ui.enabled"] = ui_enabled
    java_options = [BASE_JVM_OPTIONS]
    if short_lived:
        java_options.append(SHORT_JVM_OPTIONS)
    archive = class_archive.java_options(jars, config.class_archive)
    if archive:  # the driver's classes pre-parsed: seconds off every cold start (jobs/class_archive.py)
        java_options.append(archive)
    conf["spark.driver.extraJavaOptions"] = " ".join(java_options)
    conf.update(driver_conf(master, driver_host, config.driver_port, config.driver_block_manager_port))
    # Compiled query code is cached by its source; Spark's default (100 classes) is less than one
    # transformation run compiles, so a warm session recompiled every run (the worker's latency:
    # `make bench ARGS="--only latency --task-modes worker"`, bench/results/LOG.md, 2026-11-30).
    # A static setting: only a session we start gets it.
    conf["spark.sql.codegen.cache.maxEntries"] = str(CODEGEN_CACHE_ENTRIES)
    if py_files:
        conf["spark.submit.pyFiles"] = py_files
    # PySpark 4 records the Python call site of every Column and function call in the JVM, for its
    # error messages: ~4 Py4J round trips each, a third of a new day's transformation run
    # (tests/jobs/transformation/test_job_budget.py counts them; bench/results/LOG.md, 2026-12-01). Errors still name the
    # failing expression and Python's traceback the line; SPARK_EXTRA_CONF may turn it back on.
    conf["spark.python.sql.dataFrameDebugging.enabled"] = "false"
    conf.update(dict(config.extra_spark_conf))
    conf.update(spark_conf(config))
    return conf


def needs_jobs_zip(config: PipelineConfig) -> bool:
    """Executors without the image lack the ``jobs`` package as well as the jars."""
    return (
        is_remote(config.spark_master)
        and executor_jars_mode(config.spark_master, config.executor_jars) == "ship"
    )


def jobs_zip(directory: Path) -> Path:
    """The installed ``jobs`` package as a zip for ``spark.submit.pyFiles`` (what ``spark-submit
    --py-files`` sets; scripts/package_jobs.py builds the same from a checkout)."""
    package = Path(__file__).resolve().parent
    out = Path(directory) / "ecomkpi_jobs.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.rglob("*.py")):
            zf.write(path, (Path("jobs") / path.relative_to(package)).as_posix())
    return out


def is_loopback(address: str | None) -> bool:
    return not address or address == "localhost" or address == "::1" or address.startswith("127.")


def ecs_container_ip(metadata_uri: str | None, timeout: float = 2.0) -> str | None:
    """The task's address from the ECS task metadata endpoint v4 (``ECS_CONTAINER_METADATA_URI_V4``:
    the container's ``Networks[].IPv4Addresses``; on Fargate, awsvpc, the task's ENI)."""
    if not metadata_uri:
        return None
    try:
        with urllib.request.urlopen(metadata_uri, timeout=timeout) as response:
            data = json.load(response)
    except (OSError, ValueError):
        return None
    networks = (data.get("Networks") or []) if isinstance(data, dict) else []
    for network in networks:
        for address in network.get("IPv4Addresses") or []:
            if address:
                return str(address)
    return None


def master_address(master: str) -> tuple[str, int] | None:
    """(host, port) of a ``spark://`` (its first master) or ``k8s://`` master URL."""
    if master.startswith("spark://"):
        first = master.removeprefix("spark://").split(",")[0]
        host, _, port = first.rpartition(":")
        if not host:
            host, port = port, ""
        return host.strip("[]"), int(port) if port.isdigit() else 7077
    if master.startswith("k8s://"):
        rest = master.removeprefix("k8s://")
        url = urllib.parse.urlsplit(rest if "://" in rest else "https://" + rest)
        if url.hostname:
            return url.hostname, url.port or 443
    return None


def route_ip(master: str) -> str | None:
    """This host's address on the route to the master (a UDP connect resolves and routes, sends
    nothing); what docker/entrypoint.sh does for ``SPARK_LOCAL_IP``."""
    target = master_address(master)
    if target is None:
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(target)
            return str(s.getsockname()[0])
    except (OSError, ValueError):
        return None


def find_driver_host(config: PipelineConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The address executors reach this driver at: ``SPARK_DRIVER_HOST``; else a non-loopback
    ``SPARK_LOCAL_IP`` (the image's entrypoint sets one for a cluster master); else the ECS task's
    address (metadata endpoint v4); else the address on the route to the master."""
    env = os.environ if env is None else env
    if config.driver_host:
        return config.driver_host
    local_ip = env.get("SPARK_LOCAL_IP")
    if not is_loopback(local_ip):
        return local_ip
    return ecs_container_ip(env.get("ECS_CONTAINER_METADATA_URI_V4")) or route_ip(config.spark_master)


def under_spark_submit() -> bool:
    """spark-submit starts the Python driver with a gateway already running."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(
    config: PipelineConfig | None = None, app_name: str = "ecomkpi", batch_bytes: int | None = None
) -> SparkSession:
    """Return the process's SparkSession, creating it with the pipeline's settings if needed.

    Settings are applied to an already running session too (s3a endpoint, shuffle partitions), so a
    test's shared session can point at a freshly started emulator. ``batch_bytes``: the input of the
    one batch a per-batch task starts its JVM for (``is_short_lived``); None for a JVM that serves
    many (the warm worker, notebooks).
    """
    config = config or PipelineConfig.from_env()
    # Python workers (GX's metrics, toPandas) must run the driver's interpreter, not whatever
    # `python3` is first on PATH, or they miss the project's packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    conf = spark_conf(config)
    if active is not None:
        hadoop = active.sparkContext._jsc.hadoopConfiguration()
        for k, v in conf.items():
            if k.startswith("spark.hadoop."):
                hadoop.set(k.removeprefix("spark.hadoop."), v)
            elif k.startswith("spark.sql.") and not k.startswith(("spark.sql.extensions", "spark.sql.cat")):
                active.conf.set(k, v)
        return active

    driver_host = None
    if not under_spark_submit() and is_remote(config.spark_master):
        driver_host = find_driver_host(config)
        # Executors connect back to this driver: a loopback SPARK_LOCAL_IP (the image's default)
        # gives way to the address it advertises, as docker/entrypoint.sh does.
        if driver_host and is_loopback(os.environ.get("SPARK_LOCAL_IP")):
            os.environ["SPARK_LOCAL_IP"] = driver_host
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    builder = SparkSession.builder.appName(app_name)
    if not under_spark_submit():
        py_files = None
        if needs_jobs_zip(config):
            py_files = str(jobs_zip(Path(tempfile.mkdtemp(prefix="ecomkpi-pyfiles-"))))
        conf = session_conf(
            config,
            find_jars(config.jars_dir),
            driver_host=driver_host,
            py_files=py_files,
            ui_enabled="true" if config.spark_ui else "false",
            short_lived=is_short_lived(config, batch_bytes),
        )
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.spark_log_level)
    return spark
