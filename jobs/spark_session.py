"""The one SparkSession factory: Delta on, s3a configured from the same settings as boto3.

Jars come from the local cache that ``scripts/fetch_jars.sh`` fills (Delta, hadoop-aws, the AWS SDK
v2 bundle), so starting a session never needs the network. Under ``spark-submit`` the master and
jars given on the command line win: the factory only fills in what is not already configured.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

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
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region": config.region,
        "spark.hadoop.fs.s3a.fast.upload": "true",
        "spark.hadoop.fs.s3a.bucket.probe": "0",
        # Delta on S3: one writer per table at a time is guaranteed by the job's lock (see README).
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


def jar_conf(master: str, jars: list[str]) -> dict[str, str]:
    """How the jars reach the JVM that runs the tasks.

    In local mode the tasks run inside the driver, so the jars go on its class path when it starts.
    ``spark.jars`` would have every task JVM copy them (the AWS SDK bundle alone is ~640 MB) into a
    temporary directory through Spark's file server at its first task: seconds per start and 630 MB
    of /tmp per process, left behind when the process is killed. A cluster's executors live elsewhere
    and need ``spark.jars``, which ships the jars to them.
    """
    if master == "local" or master.startswith("local["):  # not local-cluster: its executors are JVMs
        return {"spark.driver.extraClassPath": os.pathsep.join(jars)}
    return {"spark.jars": ",".join(jars)}


def under_spark_submit() -> bool:
    """spark-submit starts the Python driver with a gateway already running."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(config: PipelineConfig | None = None, app_name: str = "ecomkpi") -> SparkSession:
    """Return the process's SparkSession, creating it with the pipeline's settings if needed.

    Settings are applied to an already running session too (s3a endpoint, shuffle partitions), so a
    test's shared session can point at a freshly started emulator.
    """
    config = config or PipelineConfig.from_env()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
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

    builder = SparkSession.builder.appName(app_name)
    if not under_spark_submit():
        builder = builder.master(config.spark_master)
        for k, v in jar_conf(config.spark_master, find_jars(config.jars_dir)).items():
            builder = builder.config(k, v)
        if config.driver_memory:
            builder = builder.config("spark.driver.memory", config.driver_memory)
        builder = builder.config("spark.ui.enabled", os.environ.get("SPARK_UI_ENABLED", "false"))
        builder = builder.config("spark.driver.extraJavaOptions", "-Dlog4j2.level=WARN")
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    return spark
