"""The warm worker's first-use costs, paid on a tiny batch of its own before any real batch waits.

A fresh JVM runs each code path slowly the first time: classes load, the JIT has nothing compiled,
GX builds its metric providers, Delta its log replay. Measured on the local stack, the first 100k
batch after a worker started took ~16 s longer than the ones after it (bench/README.md). So the
worker runs the real functions of both jobs, once, on three generated one-row files in a temporary
folder on local disk: CSV read and checks, the GX suites, staging rows, the plan, silver and gold
commits of a Delta lake, and the KPI recompute. Nothing touches the pipeline's bucket, lake or tables.

Warming is an optimisation, never a condition: a step that fails is logged and skipped.
"""

from __future__ import annotations

import csv
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.config import PipelineConfig
from jobs.contract import COLUMNS, ORDER_ITEMS, ORDERS, PRODUCTS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

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
        self.files = {ds: folder / "raw" / _rel(ds) for ds in (PRODUCTS, ORDERS, ORDER_ITEMS)}
        for dataset, path in self.files.items():
            _write_csv(path, dataset)

    def uri(self, dataset: str) -> str:
        return self.files[dataset].as_uri()

    def staged_uri(self, dataset: str) -> str:
        return (self.folder / "staging" / dataset).as_uri()

    def validation(self) -> None:
        """Read, check columns, shape, the suite (GX), and the staging rows of each file."""
        from jobs.csv_files import read_header
        from jobs.normalize import normalize_columns
        from jobs.staging import FileVersion, stage_rows, write_staged
        from jobs.validation.checks import add_check_columns, product_id_set, with_columns_present
        from jobs.validation.gx_runner import GxRunner
        from jobs.validation.reading import CORRUPT_RECORD, file_shape, read_csv
        from jobs.validation.suites import load_suites

        gx = GxRunner(load_suites(), run_name=RUN_ID)
        ids = None
        for dataset in (PRODUCTS, ORDERS, ORDER_ITEMS):
            header = read_header(self.spark, self.uri(dataset))
            frame = normalize_columns(read_csv(self.spark, self.uri(dataset), header))
            frame, _ = with_columns_present(frame, COLUMNS[dataset])
            checked = add_check_columns(dataset, frame, ids).cache()
            try:
                file_shape(checked, header)
                gx.validate(dataset, checked.drop(CORRUPT_RECORD), _rel(dataset))
                if dataset == PRODUCTS:
                    ids = product_id_set(checked).cache()
                version = FileVersion(rel=_rel(dataset), raw_etag=RUN_ID, arrived_ms=1)
                write_staged(stage_rows(checked, version), self.staged_uri(dataset))
            finally:
                checked.unpersist()
        if ids is not None:
            ids.unpersist()

    def transformation(self) -> None:
        """Plan, silver and gold commits and the KPI recompute on a lake in the folder."""
        from jobs.transformation.incremental import plan_run
        from jobs.transformation.job import tune_delta
        from jobs.transformation.lake import SILVER_PRODUCTS, Lake
        from jobs.transformation.recompute import recompute, write_gold
        from jobs.transformation.sources import SourceFile
        from jobs.transformation.versions import apply_plan

        tune_delta(self.spark, self.config)  # the session settings a real run makes first
        lake = Lake(self.spark, str(self.folder / "lake"), RUN_ID)
        sources = {
            ds: [SourceFile(_rel(ds), self.uri(ds), 1, RUN_ID, staged_uri=self.staged_uri(ds))]
            for ds in self.files
        }
        plan = plan_run(self.spark, lake, sources, RUN_ID, old_rows=False)
        if plan.products is not None:
            lake.overwrite(SILVER_PRODUCTS, plan.products)
        for table_plan in (plan.items, plan.orders):
            if table_plan is not None:
                apply_plan(lake, table_plan)
        dates = sorted(plan.dates)
        daily, category = recompute(lake, dates)
        write_gold(lake, dates, daily, category)


def warm_up(spark: SparkSession, log: Log, config: PipelineConfig | None = None) -> dict[str, Any]:
    """Run the warm-up batch; returns seconds per step (and the error of a step that failed)."""
    outcome: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ecomkpi-warm-up-") as tmp:
        batch = WarmUp(spark, Path(tmp), config)
        for name, step in (("validation", batch.validation), ("transformation", batch.transformation)):
            started = time.perf_counter()
            try:
                step()
            except Exception as exc:  # warming is an optimisation: the worker serves without it
                outcome[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
                log("warm.step.failed", level="WARN", stage=name, error=outcome[f"{name}_error"])
            outcome[f"{name}_seconds"] = round(time.perf_counter() - started, 3)
    return outcome
