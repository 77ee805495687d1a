"""The DuckDB baseline and the Spark oracle agree on every KPI row of a tiny generated folder."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.duckdb_baseline import compute
from ecomkpi.generator import GeneratorSettings, generate, iter_data_files
from jobs.contract import CATEGORY_KPI_COLUMNS, DAILY_KPI_COLUMNS
from jobs.oracle import kpis_from_files


def _rows(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[tuple]:
    def value(v: Any) -> Any:
        return Decimal(v) if isinstance(v, int) and not isinstance(v, bool) else v

    return sorted(
        tuple(str(r[c]) if c.endswith("_id") or c == "date_key" else value(r[c]) for c in columns)
        for r in rows
    )


def test_duckdb_baseline_equals_spark_oracle(spark: Any, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    generate(folder, GeneratorSettings(days=2, orders_per_day=60, parts=1, seed=3))
    duck = compute(folder, threads=1)
    daily_df, category_df = kpis_from_files(spark, [(rel, str(p)) for rel, p in iter_data_files(folder)])
    spark_daily = [r.asDict() for r in daily_df.collect()]
    spark_category = [r.asDict() for r in category_df.collect()]

    assert not any(duck.rule_failures.values()), duck.rule_failures
    assert len(duck.daily) >= 2 and len(duck.category) > len(duck.daily)
    assert _rows(duck.daily, DAILY_KPI_COLUMNS) == _rows(spark_daily, DAILY_KPI_COLUMNS)
    assert _rows(duck.category, CATEGORY_KPI_COLUMNS) == _rows(spark_category, CATEGORY_KPI_COLUMNS)
