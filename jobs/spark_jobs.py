"""Counting the Spark jobs of one run: the figure budgets are set in, because it is stable where times are not.

Every job a thread starts carries that thread's job group (a local property, which PySpark pins to
the Python thread); Spark's public status tracker lists the job ids of a group. A run tags its
thread with a group of its own (run id plus a nonce, so a retried run in a warm worker counts only
itself) and reads the count at its end.
"""

from __future__ import annotations

import uuid

from pyspark.sql import SparkSession

JOB_GROUP = "spark.jobGroup.id"


class JobGroup:
    """Tag this thread's Spark jobs with a fresh group until ``close``; ``count`` reads them."""

    def __init__(self, spark: SparkSession, name: str) -> None:
        self.spark = spark
        self.group = f"{name}-{uuid.uuid4().hex[:8]}"
        self._previous = spark.sparkContext.getLocalProperty(JOB_GROUP)
        spark.sparkContext.setLocalProperty(JOB_GROUP, self.group)

    def count(self) -> int:
        return len(self.spark.sparkContext.statusTracker().getJobIdsForGroup(self.group))

    def close(self) -> None:
        # None (no group before) removes the property: SparkContext.setLocalProperty passes it to
        # the JVM, whose null means "unset"; pyspark annotates the value as str only.
        self.spark.sparkContext.setLocalProperty(JOB_GROUP, self._previous)  # type: ignore[arg-type]
