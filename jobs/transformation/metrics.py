"""How many rows each lake table gave this run, measured by Spark rather than by extra count() jobs.

Every Spark job the run starts (its own queries and the ones Delta runs inside MERGE/overwrite) is
tagged with a job group (``jobs.spark_jobs``); at the end, the SQL executions of that group are read back from Spark's
status store and the "number of output rows" of each file scan is attributed to the table whose
directory the scan read. Delta's own reads of ``_delta_log`` are not counted (they are the
snapshot, not history). This is what shows that a run reads only the touched dates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pyspark.sql import SparkSession

from jobs.spark_jobs import JobGroup

_LOCATION = re.compile(r"Location: \w+\(\d+ paths?\)\[([^\]]*)\]")


class ScanMetrics:
    """Tag this thread's Spark jobs with ``group`` and, later, sum their scans per lake table."""

    def __init__(self, spark: SparkSession, group: str) -> None:
        self.spark = spark
        self._jsc = spark.sparkContext._jsc.sc()
        self._sql = spark._jsparkSession.sharedState().statusStore()
        self._after = self._last_execution_id()
        self.jobs = JobGroup(spark, group)
        self.group = self.jobs.group
        # Scan descriptions carry the table path; keep it whole (default cut: 100 characters).
        spark.conf.set("spark.sql.maxMetadataStringLength", "2000")

    def _last_execution_id(self) -> int:
        executions = self._sql.executionsList()  # sorted by execution id
        size = executions.size()
        return int(executions.apply(size - 1).executionId()) if size else -1

    def stop(self) -> None:
        self.jobs.close()

    def job_count(self) -> int:
        """Spark jobs this run started (Delta's own included)."""
        return self.jobs.count()

    def _ours(self, execution: object) -> bool:
        jobs = execution.jobs().keys().iterator()  # type: ignore[attr-defined]
        status = self._jsc.statusStore()
        while jobs.hasNext():
            try:
                group = status.job(jobs.next()).jobGroup()
            except Exception:  # job data already evicted from the store
                continue
            if group.isDefined() and group.get() == self.group:
                return True
        return False

    def rows_by_table(self, tables: Iterable[str]) -> dict[str, int]:
        """Rows returned by file scans of each table (matched by its directory name) in this run."""
        tables = list(tables)
        totals = dict.fromkeys(tables, 0)
        self._jsc.listenerBus().waitUntilEmpty()
        executions = self._sql.executionsList()
        for i in reversed(range(executions.size())):
            execution = executions.apply(i)
            if execution.executionId() <= self._after:
                break
            if not self._ours(execution):
                continue
            execution_id = execution.executionId()
            values = self._sql.executionMetrics(execution_id)
            nodes = self._sql.planGraph(execution_id).allNodes()
            counted: set[int] = set()  # a cached scan shows once per use, with one accumulator
            for j in range(nodes.size()):
                node = nodes.apply(j)
                if not node.name().startswith("Scan"):
                    continue
                location = _LOCATION.search(node.desc())
                table = location and next(
                    (t for t in tables if location.group(1).rstrip("/").endswith(f"/{t}")), None
                )
                if not table:
                    continue
                metrics = node.metrics()
                for k in range(metrics.size()):
                    metric = metrics.apply(k)
                    if metric.name() == "number of output rows" and metric.accumulatorId() not in counted:
                        counted.add(metric.accumulatorId())
                        value = values.get(metric.accumulatorId())
                        if value.isDefined():
                            totals[table] += int(str(value.get()).replace(",", ""))
        return totals
