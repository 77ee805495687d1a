"""The warm worker's first-use costs, paid on a tiny batch of its own before any real batch waits.

A fresh JVM runs each code path slowly the first time: classes load, the JIT has nothing compiled,
GX builds its metric providers, Delta its log replay. On the local stack the first 100k batch after a
worker started takes longer than the ones after it (`make bench ARGS="--only latency --task-modes worker"`;
bench/results/LOG.md, 2026-11-30). So the
worker runs the real functions of both jobs, once, on three generated one-row files in a temporary
folder on local disk: CSV read and checks, the GX suites, staging rows, the plan, silver and gold
commits of a Delta lake, and the KPI recompute. Nothing touches the pipeline's bucket, lake or tables.

The batch runs in steps (one per file validated, then plan, silver, gold) and yields to real work:
the worker asks between two steps whether a task has arrived, and twice a second during one, and
cancels the step's Spark jobs once it has. Warming is an optimisation, never a condition: a step
that fails is logged and ends the warm-up.
"""

from __future__ import annotations

import csv
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.config import PipelineConfig
from jobs.contract import COLUMNS, ORDER_ITEMS, ORDERS, PRODUCTS
from jobs.transformation.lake import Lake

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

    from jobs.transformation.incremental import RunPlan
    from jobs.validation.gx_runner import GxRunner

RUN_ID = "warm-up"
DAY = "2000-01-01"
# One valid row per dataset (the suites pass it, so GX takes the path of a valid file).
ROWS: dict[str, dict[str, str]] = {
    PRODUCTS: {"id": "1", "cost": "1.00", "category": "Jeans", "retail_price": "2.00", "sku": "s1"},
    ORDERS: {"order_id": "1", "user_id": "1", "status": "Complete", "created_at": f"{DAY} 10:00:00"},
    ORDER_ITEMS: {"id": "1", "order_id": "1", "product_id": "1", "sale_price": "2.00"},
}

Log = Callable[..., None]


def _write_csv(path: Path, dataset: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS[dataset], lineterminator="\n")
        writer.writeheader()
        writer.writerow({c: ROWS[dataset].get(c, "") for c in COLUMNS[dataset]})


def _rel(dataset: str) -> str:
    return f"{dataset}/{DAY}/warm-up.csv" if dataset != PRODUCTS else f"{PRODUCTS}/warm-up.csv"


class WarmUp:
    """The warm-up batch in ``folder``: files, then validation's paths, then the transformation's."""

    def __init__(self, spark: SparkSession, folder: Path, config: PipelineConfig | None = None) -> None:
        self.spark, self.folder = spark, folder
        self.config = config or PipelineConfig()
        self.lake = Lake(spark, str(folder / "lake"), RUN_ID)
        self._gx: GxRunner | None = None
        self._ids: DataFrame | None = None
        self._plan: RunPlan | None = None
        self._kpis: tuple[list[Row], list[Row]] | None = None
        self.files = {ds: folder / "raw" / _rel(ds) for ds in (PRODUCTS, ORDERS, ORDER_ITEMS)}
        for dataset, path in self.files.items():
            _write_csv(path, dataset)

    def uri(self, dataset: str) -> str:
        return self.files[dataset].as_uri()

    def staged_uri(self, dataset: str) -> str:
        return (self.folder / "staging" / dataset).as_uri()

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        """The batch in steps of a few seconds each, in order (each needs the ones before)."""
        validate = [
            (f"validation.{ds}", partial(self.validate, ds)) for ds in (PRODUCTS, ORDERS, ORDER_ITEMS)
        ]
        return [*validate, ("plan", self.plan), ("silver", self.silver), ("gold", self.gold)]

    def validate(self, dataset: str) -> None:
        """Read, check columns, shape, the suite (GX), and the staging rows of one file."""
        from jobs.csv_files import read_header
        from jobs.normalize import normalize_columns
        from jobs.staging import FileVersion, stage_rows, write_staged
        from jobs.validation.checks import add_check_columns, product_id_set, with_columns_present
        from jobs.validation.gx_runner import GxRunner
        from jobs.validation.reading import CORRUPT_RECORD, file_shape, read_csv
        from jobs.validation.suites import load_suites

        if self._gx is None:
            self._gx = GxRunner(load_suites(), run_name=RUN_ID)
        header = read_header(self.spark, self.uri(dataset))
        frame = normalize_columns(read_csv(self.spark, self.uri(dataset), header))
        frame, _ = with_columns_present(frame, COLUMNS[dataset])
        checked = add_check_columns(dataset, frame, self._ids if dataset == ORDER_ITEMS else None).cache()
        try:
            shape = file_shape(checked, header)
            self._gx.validate(dataset, checked.drop(CORRUPT_RECORD), _rel(dataset))
            if dataset == PRODUCTS:
                self._ids = product_id_set(checked).localCheckpoint()
            version = FileVersion(rel=_rel(dataset), raw_etag=RUN_ID, arrived_ms=1)
            write_staged(stage_rows(checked, version, shape.partition_rows), self.staged_uri(dataset))
        finally:
            checked.unpersist()

    def plan(self) -> None:
        """The transformation's plan on an empty lake in the folder (lookups, checkpoints)."""
        from jobs.transformation.incremental import plan_run
        from jobs.transformation.job import tune_delta
        from jobs.transformation.recompute import recompute
        from jobs.transformation.sources import SourceFile

        tune_delta(self.spark, self.config)  # the session settings a real run makes first
        sources = {
            ds: [SourceFile(_rel(ds), self.uri(ds), 1, RUN_ID, staged_uri=self.staged_uri(ds))]
            for ds in self.files
        }
        self._plan = plan_run(self.spark, self.lake, sources, RUN_ID, old_rows=False)
        # As a run of a new day does: the KPIs from the plan, before the silver commits.
        self._kpis = recompute(
            self.lake, sorted(self._plan.dates), self._plan.arriving(), self._plan.products
        )

    def silver(self) -> None:
        """The silver commits of the plan (an overwrite, appends)."""
        from jobs.transformation.lake import SILVER_PRODUCTS
        from jobs.transformation.versions import apply_plan

        assert self._plan is not None, "plan first"
        if self._plan.products is not None:
            self.lake.overwrite(SILVER_PRODUCTS, self._plan.products)
        for table_plan in (self._plan.items, self._plan.orders):
            if table_plan is not None:
                apply_plan(self.lake, table_plan)

    def gold(self) -> None:
        """The KPI recompute from silver (what a run that replaces rows does) and the gold commits."""
        from jobs.transformation.recompute import recompute, write_gold

        assert self._plan is not None and self._kpis is not None, "plan first"
        dates = sorted(self._plan.dates)
        recompute(self.lake, dates)
        write_gold(self.lake, dates, *self._kpis)


def warm_up(
    spark: SparkSession,
    log: Log,
    config: PipelineConfig | None = None,
    work_waiting: Callable[[], bool] = lambda: False,
    every: float = 0.5,
) -> dict[str, Any]:
    """Run the warm-up batch; returns seconds per step (and the error of a step that failed).

    ``work_waiting`` is asked before each step and, from a second thread, every ``every`` seconds
    during one: once it holds, the step's Spark jobs are cancelled (the batch is throwaway work in a
    temporary folder), so a task that arrives waits for the job in progress to stop, not for the
    step (a cold JVM's plan step took 10-12 s). A step that fails otherwise ends the warm-up too (the
    later ones need it), logged as a warning.
    """
    from jobs.spark_jobs import cancelled_when

    outcome: dict[str, Any] = {"steps": 0}
    with (
        tempfile.TemporaryDirectory(prefix="ecomkpi-warm-up-") as tmp,
        cancelled_when(spark, "warm-up", work_waiting, every) as watch,
    ):
        batch = WarmUp(spark, Path(tmp), config)
        for name, step in batch.steps():
            if watch.fired.is_set() or work_waiting():
                outcome["interrupted_before"] = name
                break
            started = time.perf_counter()
            try:
                step()
            except Exception as exc:  # warming is an optimisation: the worker serves without it
                if watch.fired.is_set():  # cancelled for a task: not a failure
                    outcome["interrupted_during"] = name
                    break
                outcome["error"] = f"{name}: {type(exc).__name__}: {exc}"
                log("warm.step.failed", level="WARN", stage=name, error=outcome["error"])
                break
            outcome[f"{name}_seconds"] = round(time.perf_counter() - started, 3)
            outcome["steps"] += 1
    return outcome
