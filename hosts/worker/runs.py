"""The jobs as the worker runs them: in this process, on its warm SparkSession.

The exit code is the one a per-batch container would have had (0 done, 1 broken, 2 data rejected),
so the worker's answer is the same as an ECS task's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hosts.worker.answers import EXIT_OK
from hosts.worker.messages import PRECHECK
from jobs.config import PipelineConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# runner(command, configs) -> exit code; several configs only for a coalesced transformation.
Runner = Callable[[str, Sequence[PipelineConfig]], int]
# prepare(config, interrupted) -> what it did: idle-time work for the next run on a lake.
Prepare = Callable[[PipelineConfig, Callable[[], bool]], Mapping[str, Any]]


def run_job(
    command: str,
    configs: Sequence[PipelineConfig],
    spark: SparkSession,
    after_answer: list[Callable[[], None]] | None = None,
) -> int:
    """Run one job on the warm session; the exit code a container would have.

    ``after_answer``: where a validation task or a precheck leaves the work that may follow its
    answer (its Data Docs), which the worker runs once it is idle. A precheck has nobody waiting
    for its answer, but the day's task queued behind it does wait for it to end.
    """
    config, *others = configs
    if command == PRECHECK:
        from jobs.validation.job import run as validate

        return validate(config, spark, precheck=True, after_answer=after_answer).exit_code
    if command == "validate":
        from jobs.validation.job import run as validate

        if others:
            raise ValueError("validation tasks are not coalesced")
        return validate(config, spark, after_answer=after_answer).exit_code
    from jobs.transformation.job import run as transform

    transform(config, spark, also=others)
    return EXIT_OK


def prepare_lake(
    config: PipelineConfig, spark: SparkSession, interrupted: Callable[[], bool]
) -> Mapping[str, Any]:
    """Build the lake's new table states while idle (jobs.transformation.job.warm_lake)."""
    from jobs.transformation.job import warm_lake

    return warm_lake(config, spark, interrupted)


def heap_used_fraction(spark: SparkSession) -> float | None:
    """The driver JVM's used heap over its maximum, or None when it cannot be read.

    Read through py4j's JVM view, the only way PySpark exposes the driver's Runtime, after a full
    collection (the worker is between batches), so garbage does not count as a leak.
    """
    try:
        jvm = spark.sparkContext._jvm
        if jvm is None:  # a stopped context
            return None
        jvm.java.lang.System.gc()
        runtime = jvm.java.lang.Runtime.getRuntime()
        used: int = runtime.totalMemory() - runtime.freeMemory()  # py4j returns Java longs as int
        maximum: int = runtime.maxMemory()
        return used / maximum
    except Exception:
        return None
