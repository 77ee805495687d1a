"""The worker's warm-up batch runs both jobs' real code paths on local files and never breaks it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from hosts import warmup
from hosts.warmup import WarmUp, warm_up


def test_the_kpis_of_the_warm_up_lake_are_those_of_its_one_row(spark: Any, tmp_path: Path) -> None:
    """The warm-up exercises the real jobs: its tiny batch comes out as the KPIs of one order."""
    from jobs.config import PipelineConfig
    from jobs.transformation.lake import GOLD_CATEGORY, GOLD_DAILY

    batch = WarmUp(spark, tmp_path, PipelineConfig(shuffle_partitions=2))
    names = []
    for name, step in batch.steps():
        step()
        names.append(name)
    assert names[-1] == "gold" and len(names) == 6
    (daily,) = batch.lake.read(GOLD_DAILY).collect()
    assert (daily["date_key"], daily["total_orders"], str(daily["total_revenue"])) == (warmup.DAY, 1, "2.00")
    (category,) = batch.lake.read(GOLD_CATEGORY).collect()
    assert category["category_id"] == "Jeans"


class FakeBatch:
    """Stands in for WarmUp: records its steps, one may break; the folder is the real temp folder."""

    def __init__(self, folder: Path, broken: str | None = None) -> None:
        self.folder, self.broken, self.ran = folder, broken, []

    def steps(self) -> list[tuple[str, Any]]:
        return [(name, lambda name=name: self.run(name)) for name in ("validation.products", "plan", "gold")]

    def run(self, name: str) -> None:
        if name == self.broken:
            raise RuntimeError("no disk")
        self.ran.append(name)


def _with_fake(monkeypatch: pytest.MonkeyPatch, broken: str | None = None) -> list[FakeBatch]:
    made: list[FakeBatch] = []

    def make(spark: Any, folder: Path, config: Any) -> FakeBatch:
        made.append(FakeBatch(folder, broken))
        return made[-1]

    monkeypatch.setattr(warmup, "WarmUp", make)
    return made


def test_a_failing_step_is_logged_and_ends_the_warm_up_in_a_folder_that_goes_away(
    spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _with_fake(monkeypatch, broken="plan")
    logged: list[tuple[str, dict[str, Any]]] = []
    outcome = warm_up(spark, lambda step, **fields: logged.append((step, fields)))
    assert outcome["error"] == "plan: RuntimeError: no disk" and outcome["steps"] == 1
    assert made[0].ran == ["validation.products"]  # gold needs the plan: not attempted
    assert logged == [("warm.step.failed", {"level": "WARN", "stage": "plan", "error": outcome["error"]})]
    assert not made[0].folder.exists()


def test_work_arriving_stops_the_warm_up_between_two_steps(
    spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _with_fake(monkeypatch)
    # Asked before each step; the watch thread asks too, but only once a step has run.
    outcome = warm_up(
        spark, lambda *a, **k: None, work_waiting=lambda: made[0].ran == ["validation.products"]
    )
    assert made[0].ran == ["validation.products"]
    assert outcome["interrupted_before"] == "plan" and outcome["steps"] == 1


def test_work_arriving_cancels_the_spark_job_of_the_step_in_progress(
    spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step is not waited for: its job is cancelled (uncancelled, its cross join of 2.25 x 10^10
    rows runs ~50 s here and the step completes)."""
    arrived = threading.Event()
    logged: list[Any] = []

    class LongStep(FakeBatch):
        def steps(self) -> list[tuple[str, Any]]:
            return [("plan", self.plan), ("gold", lambda: self.run("gold"))]

        def plan(self) -> None:
            threading.Timer(1.0, arrived.set).start()  # a task lands while the job runs
            spark.sql("SELECT count(*) FROM range(150000) a CROSS JOIN range(150000) b").collect()

    monkeypatch.setattr(warmup, "WarmUp", lambda spark, folder, config: LongStep(folder))
    outcome = warm_up(spark, lambda *a, **k: logged.append(a), work_waiting=arrived.is_set, every=0.1)
    assert outcome == {"steps": 0, "interrupted_during": "plan"}
    assert logged == []  # a cancelled step is no failure
    assert spark.range(3).count() == 3  # the engine serves the task next
