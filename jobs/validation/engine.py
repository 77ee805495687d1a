"""Spark and Great Expectations for one run, started only when some file needs them.

A run whose every key already has a verdict is a few S3 requests: it never asks for the session,
so neither the JVM nor GX starts (``used`` is False). Once a file needs Spark, the session is
created (or the one given is taken), and the run's Spark jobs are tagged with a ``JobGroup`` so
they can be counted.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from jobs.config import PipelineConfig
from jobs.run_log import RunLog
from jobs.spark_jobs import JobGroup

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.validation.gx_runner import GxRunner


class Engine:
    """The run's Spark session, its job group and its GX runner, each made on first use."""

    def __init__(self, config: PipelineConfig, log: RunLog, spark: SparkSession | None) -> None:
        self._config = config
        self._log = log
        self._spark = spark  # given (tests, the warm worker) or created on first use
        self._jobs: JobGroup | None = None
        self._gx: GxRunner | None = None
        self._gx_future: Future[GxRunner] | None = None
        # Bytes of the files this run reads with Spark (set before the first file): a JVM this run
        # starts for a small batch is started for a short life (jobs.spark_session.is_short_lived).
        self.batch_bytes: int | None = None

    @property
    def used(self) -> bool:
        """Some file needed Spark in this run (the session was asked for)."""
        return self._jobs is not None

    def spark(self) -> SparkSession:
        """The session; the first call starts it (unless given) and starts counting the run's jobs."""
        if self._spark is None:
            from jobs.spark_session import get_spark, is_short_lived

            short = is_short_lived(self._config, self.batch_bytes)
            with self._log.stage("spark.session", batch_bytes=self.batch_bytes, short_lived_jvm=short):
                self._spark = get_spark(self._config, "ecomkpi-validation", self.batch_bytes)
        if self._jobs is None:
            self._jobs = JobGroup(self._spark, f"ecomkpi-validation-{self._config.run_id}")
        return self._spark

    def spark_jobs(self) -> int:
        """The Spark jobs this run started (0 without Spark)."""
        return self._jobs.count() if self._jobs is not None else 0

    def close(self) -> None:
        """Stop tagging this thread's jobs with the run's group."""
        if self._jobs is not None:
            self._jobs.close()

    def start_gx(self) -> None:
        """Build the GX context in the background while Spark reads the first file.

        Importing GX and building its context is seconds of pure Python; reading a file is mostly
        JVM work the driver only waits for, so the two overlap instead of adding up.
        """
        if self._gx is None and self._gx_future is None:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gx-setup")
            self._gx_future = pool.submit(self._new_gx)
            pool.shutdown(wait=False)

    def gx(self) -> GxRunner:
        """The GX runner: the background one once it is ready, else one built now."""
        if self._gx is None:
            future, self._gx_future = self._gx_future, None
            self._gx = future.result() if future is not None else self._new_gx()
        return self._gx

    @property
    def gx_built(self) -> GxRunner | None:
        """The GX runner if some file was validated with it (``gx()`` was called), else None."""
        return self._gx

    def _new_gx(self) -> GxRunner:
        with self._log.stage("gx.setup"):
            from jobs.validation.gx_runner import GxRunner
            from jobs.validation.suites import load_suites

            return GxRunner(load_suites(), run_name=self._config.run_id)
