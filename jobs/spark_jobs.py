"""Counting the Spark jobs of one run: the figure budgets are set in, because it is stable where times are not.

Every job a thread starts carries that thread's job group (a local property, which PySpark pins to
the Python thread); Spark's public status tracker lists the job ids of a group. A run tags its
thread with a group of its own (run id plus a nonce, so a retried run in a warm worker counts only
itself) and reads the count at its end.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


class CancelWhen(threading.Thread):
    """Cancel ``group``'s jobs once ``condition()`` holds (asked every ``every`` seconds, first at
    once), and from then on every job the group starts, until ``stop``.

    For work that must yield the moment something else needs the engine (the warm worker's
    idle-time preparation when a task arrives): the thread running it gets an exception from the
    job in progress instead of finishing it. A ``condition`` that raises counts as not yet.
    """

    def __init__(
        self, spark: SparkSession, group: str, condition: Callable[[], bool], every: float = 0.2
    ) -> None:
        super().__init__(name=f"cancel-when-{group}", daemon=True)
        self.spark, self.group, self.condition, self.every = spark, group, condition, every
        self.fired = threading.Event()
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.is_set():
            if not self.fired.is_set():
                try:
                    if self.condition():
                        self.fired.set()
                except Exception:  # asking failed (a network blip): ask again next time
                    pass
            if self.fired.is_set():
                self.spark.sparkContext.cancelJobGroup(self.group)
            self._stopped.wait(self.every / 20 if self.fired.is_set() else self.every)

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)


@contextmanager
def cancelled_when(
    spark: SparkSession, name: str, condition: Callable[[], bool], every: float = 0.2
) -> Iterator[CancelWhen]:
    """Run the block's Spark jobs in a group of their own that ``condition`` cancels (CancelWhen).

    The block reads ``fired`` on what it yields to tell a cancellation from a failure; the watch
    is stopped and this thread's previous group restored however the block ends.
    """
    group = JobGroup(spark, name)
    watch = CancelWhen(spark, group.group, condition, every)
    watch.start()
    try:
        yield watch
    finally:
        watch.stop()
        group.close()
