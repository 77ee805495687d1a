"""One configuration object for every job, read from the environment.

The variable names are the ones the Step Functions definition sets on the containers
(``S3_BUCKET``, ``PRODUCTS_KEY``, ``INPUTS_KEY``, ``BATCH_ID``, ...; ``ORDERS_KEYS`` /
``ORDER_ITEMS_KEYS`` for runs by hand), so a task
started by the workflow, a ``spark-submit`` on a laptop and a test all configure the same way.
``AWS_ENDPOINT_URL`` is the only switch between the embedded emulator and real AWS: unset, every
client (boto3 and s3a) talks to AWS itself.
"""

from __future__ import annotations

import json
import os
import shlex
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypedDict

DEFAULT_PRODUCTS_KEY = "raw/products/products.csv"


class ConfigError(ValueError):
    """A required setting is missing or malformed; the message names the variable."""


def parse_key_list(raw: str | None, variable: str) -> tuple[str, ...]:
    """Accept a JSON array (what ``States.JsonToString`` produces) or a comma-separated list."""
    if raw is None or not raw.strip():
        return ()
    text = raw.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{variable} is not a valid JSON array: {exc}") from exc
        if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{variable} must be a JSON array of strings, got {text[:80]!r}")
        keys = value
    else:
        keys = text.split(",")
    return tuple(dict.fromkeys(k.strip() for k in keys if k.strip()))


def parse_dates(raw: str | None) -> tuple[str, ...]:
    """``RECOMPUTE_DATES``: a JSON array or comma list of ``YYYY-MM-DD``; anything else is an error."""
    dates = parse_key_list(raw, "RECOMPUTE_DATES")
    for d in dates:
        try:
            date.fromisoformat(d)
        except ValueError as exc:
            raise ConfigError(f"RECOMPUTE_DATES holds {d!r}, not a YYYY-MM-DD date") from exc
    return tuple(sorted(dates))


# How executors of a cluster master get the jar cache (jobs/spark_session.py): "image" - they run
# the project's image (or have the cache at SPARK_EXECUTOR_JARS_DIR), "ship" - the driver sends
# them every jar and the jobs package; "auto" - image for k8s:// and local-cluster, else ship.
EXECUTOR_JARS_MODES = ("auto", "image", "ship")


def parse_port(raw: str | None, variable: str) -> int | None:
    """A TCP port (1-65535) or nothing; empty means "let Spark pick one"."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(f"{variable} must be a TCP port (1-65535), got {text!r}")
    return int(text)


def parse_spark_conf(raw: str | None) -> tuple[tuple[str, str], ...]:
    """``SPARK_EXTRA_CONF``: whitespace-separated ``spark.key=value`` pairs (shell quoting allowed),
    e.g. ``spark.cores.max=8 spark.executor.memory=6g``. ``spark.master`` is ``SPARK_MASTER``'s."""
    if raw is None or not raw.strip():
        return ()
    try:
        words = shlex.split(raw)
    except ValueError as exc:
        raise ConfigError(f"SPARK_EXTRA_CONF is not valid shell quoting: {exc}") from exc
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key.startswith("spark.") or key != key.strip():
            raise ConfigError(f"SPARK_EXTRA_CONF holds {word!r}, not a spark.<key>=<value> pair")
        if key == "spark.master":
            raise ConfigError("SPARK_EXTRA_CONF may not set spark.master: set SPARK_MASTER")
        pairs.append((key, value))
    return tuple(pairs)


def parse_count(raw: str | None, variable: str, minimum: int, what: str) -> int | None:
    """A whole number of at least ``minimum`` (unset or blank: None); else an error naming ``what``."""
    text = (raw or "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < minimum:
        raise ConfigError(f"{variable} must be {what}, got {text!r}")
    return int(text)


def parse_seconds(raw: str | None, variable: str) -> float | None:
    """A positive number of seconds (unset or blank: None)."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"{variable} must be a positive number of seconds, got {text!r}")
    return seconds


def parse_flag(raw: str | None, variable: str) -> bool:
    """``true``/``1`` or ``false``/``0`` (unset: false); anything else names the variable."""
    text = (raw or "").strip().lower()
    if text in ("", "0", "false"):
        return False
    if text in ("1", "true"):
        return True
    raise ConfigError(f"{variable} must be true or false, got {raw!r}")


def _default_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


class _Overrides(TypedDict, total=False):
    """The settings ``from_env`` passes only when their variable is set (else the field's default)."""

    max_file_bytes: int
    short_jvm_max_bytes: int
    validation_threads: int
    validation_one_pass: bool
    lock_ttl_seconds: float
    lock_wait_seconds: float
    run_id: str
    jars_dir: Path
    executor_jars_dir: Path


@dataclass(frozen=True)
class PipelineConfig:
    """Settings shared by the validation and transformation jobs (and the local stack)."""

    bucket: str = ""
    products_key: str = DEFAULT_PRODUCTS_KEY
    orders_keys: tuple[str, ...] = ()
    order_items_keys: tuple[str, ...] = ()
    # A key list object in the bucket (what the workflow passes; jobs/batch_inputs.py reads it).
    inputs_key: str | None = None
    batch_id: str = "adhoc"
    run_id: str = field(default_factory=_default_run_id)
    region: str = "us-east-1"
    endpoint_url: str | None = None
    lake_path: str = ""
    daily_kpis_table: str = "DailyKPIs"
    category_kpis_table: str = "CategoryKPIs"
    tracker_table: str = "BatchFileTracker"
    alerts_topic_arn: str | None = None
    # DATA_QUALITY_TABLE: each decided file's line of its day's quality (jobs/validation/quality_ledger.py,
    # read by the API's /quality routes); None: not written.
    quality_table: str | None = None
    spark_master: str = "local[*]"
    shuffle_partitions: int = 8
    driver_memory: str | None = None
    jars_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "ecomkpi" / "jars")
    # Only with a cluster SPARK_MASTER (spark://, k8s://), whose executors run elsewhere and connect
    # back to this process (the client-mode driver); see jobs/spark_session.py and docs/scale-out.md.
    executor_jars: str = "auto"  # SPARK_EXECUTOR_JARS, one of EXECUTOR_JARS_MODES
    executor_jars_dir: Path | None = None  # SPARK_EXECUTOR_JARS_DIR: the cache on executors (image)
    driver_host: str | None = None  # SPARK_DRIVER_HOST: the address executors reach the driver at
    driver_port: int | None = None  # SPARK_DRIVER_PORT: spark.driver.port (fixed for a firewall rule)
    driver_block_manager_port: int | None = None  # SPARK_DRIVER_BLOCK_MANAGER_PORT
    # SPARK_EXTRA_CONF: further Spark properties (spark.cores.max, spark.executor.memory, ...).
    extra_spark_conf: tuple[tuple[str, str], ...] = ()
    # Dates the transformation recomputes and re-serves even without new files (`ecomkpi replay`).
    recompute_dates: tuple[str, ...] = ()
    # Validation rejects larger objects unread (jobs/validation/structural.py).
    max_file_bytes: int = 5 * 1024**3
    # A job that starts its own JVM for a batch of at most this many input bytes starts it for a
    # short life (jobs/spark_session.SHORT_JVM_OPTIONS); 0: never. SHORT_JVM_MAX_BYTES.
    short_jvm_max_bytes: int = 64 * 1024**2
    # SPARK_CLASS_ARCHIVE: where the driver's class-data archive lives ("" = beside the jar cache,
    # "off" = never use one); jobs/class_archive.py.
    class_archive: str = ""
    # VALIDATION_THREADS: files checked at once when they are checked one by one (jobs/validation/job.py).
    validation_threads: int = 2
    # VALIDATION_ONE_PASS: "0" checks every file on its own with GX (the reference the one pass is
    # tested against, and the A/B of `python -m bench --only many-parts`); jobs/validation/dataset_check.py.
    validation_one_pass: bool = True
    # LOCK_TTL_SECONDS / LOCK_WAIT_SECONDS: the lake lock's lease and how long a run waits for a busy
    # one (None: jobs/transformation/lock.py's defaults, 120 s and 900 s).
    lock_ttl_seconds: float | None = None
    lock_wait_seconds: float | None = None
    # SPARK_UI_ENABLED (the Spark UI on port 4040; off in the image) and SPARK_LOG_LEVEL.
    spark_ui: bool = False
    spark_log_level: str = "WARN"
    # ECOMKPI_EXPECTATIONS_DIR: where the suites are read (None: expectations/ beside the code).
    expectations_dir: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PipelineConfig:
        env = os.environ if env is None else env
        bucket = env.get("S3_BUCKET", "").strip()
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        lake = env.get("LAKE_PATH", "").strip() or (f"s3a://{bucket}/lake" if bucket else "")
        partitions = env.get("SPARK_SHUFFLE_PARTITIONS", "8")
        extra_conf = parse_spark_conf(env.get("SPARK_EXTRA_CONF"))
        # The entrypoint derives SPARK_SHUFFLE_PARTITIONS from the task's vCPUs, which say nothing
        # about a cluster's cores: an explicit spark.sql.shuffle.partitions in SPARK_EXTRA_CONF wins.
        explicit = [v for k, v in extra_conf if k == "spark.sql.shuffle.partitions"]
        if explicit:
            partitions = explicit[-1]
            extra_conf = tuple((k, v) for k, v in extra_conf if k != "spark.sql.shuffle.partitions")
        if not partitions.isdigit() or int(partitions) < 1:
            source = (
                "spark.sql.shuffle.partitions in SPARK_EXTRA_CONF" if explicit else "SPARK_SHUFFLE_PARTITIONS"
            )
            raise ConfigError(f"{source} must be a positive integer, got {partitions!r}")
        kwargs: _Overrides = {}
        for name, variable, minimum, what in (
            ("max_file_bytes", "MAX_FILE_BYTES", 1, "a positive number of bytes"),
            ("short_jvm_max_bytes", "SHORT_JVM_MAX_BYTES", 0, "a number of bytes (0: never)"),
            ("validation_threads", "VALIDATION_THREADS", 1, "a positive integer"),
        ):
            number = parse_count(env.get(variable), variable, minimum, what)
            if number is not None:
                kwargs[name] = number  # type: ignore[literal-required]
        one_pass = env.get("VALIDATION_ONE_PASS", "").strip().lower()
        if one_pass:
            if one_pass not in ("0", "1", "true", "false"):
                raise ConfigError(f"VALIDATION_ONE_PASS must be 1 or 0, got {one_pass!r}")
            kwargs["validation_one_pass"] = one_pass in ("1", "true")
        for name, variable in (
            ("lock_ttl_seconds", "LOCK_TTL_SECONDS"),
            ("lock_wait_seconds", "LOCK_WAIT_SECONDS"),
        ):
            seconds = parse_seconds(env.get(variable), variable)
            if seconds is not None:
                kwargs[name] = seconds  # type: ignore[literal-required]
        if env.get("RUN_ID"):
            kwargs["run_id"] = env["RUN_ID"].strip()
        if env.get("ECOMKPI_JARS_DIR"):
            kwargs["jars_dir"] = Path(env["ECOMKPI_JARS_DIR"]).expanduser()
        if env.get("SPARK_EXECUTOR_JARS_DIR", "").strip():
            kwargs["executor_jars_dir"] = Path(env["SPARK_EXECUTOR_JARS_DIR"].strip())
        executor_jars = env.get("SPARK_EXECUTOR_JARS", "").strip().lower() or "auto"
        if executor_jars not in EXECUTOR_JARS_MODES:
            raise ConfigError(
                f"SPARK_EXECUTOR_JARS must be one of {', '.join(EXECUTOR_JARS_MODES)}, got {executor_jars!r}"
            )
        return cls(
            bucket=bucket,
            products_key=env.get("PRODUCTS_KEY", "").strip() or DEFAULT_PRODUCTS_KEY,
            orders_keys=parse_key_list(env.get("ORDERS_KEYS"), "ORDERS_KEYS"),
            order_items_keys=parse_key_list(env.get("ORDER_ITEMS_KEYS"), "ORDER_ITEMS_KEYS"),
            inputs_key=env.get("INPUTS_KEY", "").strip() or None,
            batch_id=env.get("BATCH_ID", "").strip() or "adhoc",
            region=region,
            endpoint_url=env.get("AWS_ENDPOINT_URL", "").strip() or None,
            lake_path=lake,
            daily_kpis_table=env.get("DAILY_KPIS_TABLE", "").strip() or "DailyKPIs",
            category_kpis_table=env.get("CATEGORY_KPIS_TABLE", "").strip() or "CategoryKPIs",
            tracker_table=env.get("PIPELINE_BATCH_TRACKER_TABLE", "").strip() or "BatchFileTracker",
            alerts_topic_arn=env.get("SNS_TOPIC_ARN", "").strip() or None,
            quality_table=env.get("DATA_QUALITY_TABLE", "").strip() or None,
            spark_master=env.get("SPARK_MASTER", "").strip() or "local[*]",
            shuffle_partitions=int(partitions),
            driver_memory=env.get("SPARK_DRIVER_MEMORY", "").strip() or None,
            executor_jars=executor_jars,
            driver_host=env.get("SPARK_DRIVER_HOST", "").strip() or None,
            driver_port=parse_port(env.get("SPARK_DRIVER_PORT"), "SPARK_DRIVER_PORT"),
            driver_block_manager_port=parse_port(
                env.get("SPARK_DRIVER_BLOCK_MANAGER_PORT"), "SPARK_DRIVER_BLOCK_MANAGER_PORT"
            ),
            extra_spark_conf=extra_conf,
            recompute_dates=parse_dates(env.get("RECOMPUTE_DATES")),
            class_archive=env.get("SPARK_CLASS_ARCHIVE", "").strip(),
            spark_ui=parse_flag(env.get("SPARK_UI_ENABLED"), "SPARK_UI_ENABLED"),
            spark_log_level=env.get("SPARK_LOG_LEVEL", "").strip().upper() or "WARN",
            expectations_dir=(
                Path(env["ECOMKPI_EXPECTATIONS_DIR"].strip()).expanduser()
                if env.get("ECOMKPI_EXPECTATIONS_DIR", "").strip()
                else None
            ),
            **kwargs,
        )

    def require_bucket(self) -> str:
        if not self.bucket:
            raise ConfigError("S3_BUCKET is not set: the jobs need the pipeline's bucket")
        return self.bucket

    def with_(self, **changes: Any) -> PipelineConfig:  # dataclasses.replace's own signature
        return replace(self, **changes)
