"""Where a Spark run spends its time: every job since a mark, grouped by the line that started it.

Read from the driver's status store (what the Spark UI shows), so it needs no event log, no UI and
no extra dependency. Jobs started by Adaptive Query Execution for a stage of a larger query carry a
JVM call site (``CompletableFuture``); they are reported under that name, and their time overlaps
the query that waits for them, which is why "busy" (the union of job intervals) is also given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = str(Path(__file__).resolve().parents[1]) + "/"


@dataclass(frozen=True)
class JobTiming:
    job_id: int
    call_site: str
    start: float  # epoch seconds
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def last_job_id(spark: Any) -> int:
    return max([-1, *(j.job_id for j in jobs_since(spark, -1))])


def jobs_since(spark: Any, after_job: int) -> list[JobTiming]:
    """Finished jobs with an id above ``after_job``, oldest first (empty if the API differs)."""
    try:
        store = spark.sparkContext._jsc.sc().statusStore()
        listed = store.jobsList(spark.sparkContext._jvm.java.util.ArrayList())
    except Exception:
        return []
    out = []
    for i in range(listed.size()):
        job = listed.apply(i)
        start, end = job.submissionTime(), job.completionTime()
        if int(job.jobId()) > after_job and start.isDefined() and end.isDefined():
            site = str(job.name()).replace(REPO, "")
            out.append(
                JobTiming(int(job.jobId()), site, start.get().getTime() / 1e3, end.get().getTime() / 1e3)
            )
    return sorted(out, key=lambda j: j.job_id)


def busy_seconds(jobs: list[JobTiming]) -> float:
    """Wall time during which at least one job ran (overlapping AQE stage jobs counted once)."""
    total, current = 0.0, None
    for job in sorted(jobs, key=lambda j: j.start):
        if current is None or job.start > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = [job.start, job.end]
        else:
            current[1] = max(current[1], job.end)
    if current is not None:
        total += current[1] - current[0]
    return total


def by_call_site(jobs: list[JobTiming], top: int = 12) -> list[dict[str, Any]]:
    """Job count and summed seconds per call site, largest first."""
    sites: dict[str, list[JobTiming]] = {}
    for job in jobs:
        sites.setdefault(job.call_site, []).append(job)
    totals = sorted(
        ((site, len(js), round(sum(j.seconds for j in js), 2)) for site, js in sites.items()),
        key=lambda t: -t[2],
    )
    return [{"call_site": site, "jobs": n, "seconds": seconds} for site, n, seconds in totals[:top]]


def summary(spark: Any, after_job: int) -> dict[str, Any]:
    jobs = jobs_since(spark, after_job)
    return {"jobs": len(jobs), "busy_s": round(busy_seconds(jobs), 2), "by_call_site": by_call_site(jobs)}


def describe(profile: dict[str, Any], top: int = 4) -> str:
    """One line for a :func:`summary`: job count, busy time and the costliest call sites."""
    sites = ", ".join(
        f"{r['call_site']} {r['seconds']:.1f}s/{r['jobs']}" for r in profile["by_call_site"][:top]
    )
    return f"{profile['jobs']} Spark jobs, busy {profile['busy_s']:.1f}s; top: {sites}"
