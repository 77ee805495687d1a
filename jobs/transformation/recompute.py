"""Recomputing the KPIs of the touched dates from silver, and replacing them in gold.

A date's KPIs depend only on the current orders and items in that date's partitions (plus the small
products master), so the recompute reads exactly those partitions and applies the KPI contract's
pure functions (:mod:`jobs.kpis`) to them: the same code as the from-scratch oracle. When the
run's plan only appends (a new day, as a rule), those partitions are the stored rows plus the
plan's, and the KPIs are computed before the silver commits from the rows already in memory. Gold is
replaced per touched date (``replaceWhere``): a date whose orders all vanished ends with no row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F

from jobs.contract import CATEGORY_KPI_SCHEMA, DAILY_KPI_SCHEMA
from jobs.kpis import kpi_rows, prepare_items, prepare_orders, prepare_products
from jobs.local_frames import local_frame
from jobs.transformation.lake import (
    GOLD_CATEGORY,
    GOLD_DAILY,
    IS_CURRENT,
    SILVER_ITEMS,
    SILVER_ORDERS,
    SILVER_PRODUCTS,
    Commit,
    Lake,
    sql_date_keys,
    sql_dates,
)


def recompute(
    lake: Lake,
    dates: Sequence[str],
    arriving: Mapping[str, DataFrame] | None = None,
    products: DataFrame | None = None,
) -> tuple[list[Row], list[Row]]:
    """(daily rows, category rows) for ``dates``, from the current silver rows of those dates.

    ``arriving`` (silver table -> rows): what the run is about to append to that table, when its
    plan only appends (no stored row deleted, moved or re-flagged). Then the state the commits
    will leave is exactly the stored rows plus these, so the KPIs are computed from them BEFORE the
    commits: the run's own rows come from memory (the plan materialized them) instead of being
    read back from the files just written, and nothing waits for the post-commit snapshots. For a
    new day the stored partitions are empty and Delta lists no file for them. ``products``: the
    master the run is about to write, when it changes.

    Both KPI sets come back from one query (:func:`jobs.kpis.kpi_rows`: one join, one collect); the
    prepared orders are cached because the query reads them twice (the join and the per-date
    counts), so every silver partition of the touched dates is scanned once.
    """
    if not dates:
        return [], []
    where = F.expr(f"order_date IN ({sql_dates(sorted(dates))})") & F.col(IS_CURRENT)

    def current(table: str) -> DataFrame:
        stored = lake.read(table).where(where)
        if arriving is not None and table in arriving:
            stored = stored.unionByName(arriving[table].select(*stored.columns).where(where))
        return stored

    orders = prepare_orders(current(SILVER_ORDERS), deduplicate=False, dated=True).cache()
    items = prepare_items(current(SILVER_ITEMS), deduplicate=False)
    both = kpi_rows(
        orders, items, prepare_products(products if products is not None else lake.read(SILVER_PRODUCTS))
    )
    try:
        rows = both.collect()
    finally:
        orders.unpersist()
    return [r["daily"] for r in rows if r["daily"] is not None], [
        r["category"] for r in rows if r["category"] is not None
    ]


def write_gold(lake: Lake, dates: Sequence[str], daily: list[Row], category: list[Row]) -> list[Commit]:
    """Replace the gold partitions of ``dates`` with the recomputed rows (idempotent)."""
    where = f"date_key IN ({sql_date_keys(sorted(dates))})"
    spark = lake.spark
    return [
        lake.overwrite(GOLD_DAILY, local_frame(spark, daily, DAILY_KPI_SCHEMA), replace_where=where),
        lake.overwrite(GOLD_CATEGORY, local_frame(spark, category, CATEGORY_KPI_SCHEMA), replace_where=where),
    ]
