"""The worker's warm-up batch runs both jobs' real code paths on local files and never breaks it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobs import warmup
from jobs.warmup import WarmUp, warm_up


def test_the_kpis_of_the_warm_up_lake_are_those_of_its_one_row(spark: Any, tmp_path: Path) -> None:
    """The warm-up exercises the real jobs: its tiny batch comes out as the KPIs of one order."""
    from jobs.transformation.lake import GOLD_CATEGORY, GOLD_DAILY, Lake

    batch = WarmUp(spark, tmp_path)
    batch.validation()
    batch.transformation()
    lake = Lake(spark, str(tmp_path / "lake"))
    (daily,) = lake.read(GOLD_DAILY).collect()
    assert (daily["date_key"], daily["total_orders"], str(daily["total_revenue"])) == (warmup.DAY, 1, "2.00")
    (category,) = lake.read(GOLD_CATEGORY).collect()
    assert category["category_id"] == "Jeans"


def test_steps_are_timed_in_a_folder_that_goes_away_and_a_failing_one_is_logged_and_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: WarmUp) -> None:
        raise RuntimeError("no disk")

    folders: list[Path] = []
    monkeypatch.setattr(WarmUp, "__init__", lambda self, spark, folder, config: folders.append(folder))
    monkeypatch.setattr(WarmUp, "validation", broken)
    monkeypatch.setattr(WarmUp, "transformation", lambda self: None)
    logged: list[tuple[str, dict[str, Any]]] = []
    outcome = warm_up(None, lambda step, **fields: logged.append((step, fields)))  # type: ignore[arg-type]
    assert outcome["validation_error"] == "RuntimeError: no disk"
    assert "transformation_seconds" in outcome and "transformation_error" not in outcome
    assert logged[0][0] == "warm.step.failed" and logged[0][1]["stage"] == "validation"
    assert folders and not folders[0].exists()
