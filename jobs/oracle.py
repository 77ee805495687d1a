"""The from-scratch KPI computation: the reference the incremental job must always equal.

``kpis_from_files`` applies files in the given arrival order with nothing but the pure KPI contract
(:mod:`jobs.kpis`): a later file with the same relative key replaces the earlier one's rows, and for
every key the row of the latest file wins. No lake, no state: tests, ``ecomkpi compute`` and the
benchmark use it to prove that incremental runs end where a full recomputation would.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession

from jobs.contract import ORDER_ITEMS, ORDERS, PRODUCTS
from jobs.keys import dataset_of, relative_key
from jobs.kpis import category_kpis, daily_kpis, prepare_items, prepare_orders, prepare_products
from jobs.transformation.sources import SourceFile, read_files


def effective_files(files: Sequence[tuple[str, str]]) -> dict[str, list[SourceFile]]:
    """Per dataset, the surviving file versions with their position in arrival order as sequence.

    A re-upload (same relative key later in the list) drops the earlier version entirely and takes
    the later position, exactly as the job replaces a file's rows when a new version arrives.
    """
    latest: dict[str, SourceFile] = {}
    for seq, (key, location) in enumerate(files):
        rel = relative_key(key)
        latest.pop(rel, None)
        latest[rel] = SourceFile(rel=rel, uri=location, seq=seq)
    by_dataset: dict[str, list[SourceFile]] = {PRODUCTS: [], ORDERS: [], ORDER_ITEMS: []}
    for source in latest.values():
        by_dataset[dataset_of(source.rel)].append(source)
    return by_dataset


def kpis_from_files(spark: SparkSession, files: Sequence[tuple[str, str]]) -> tuple[DataFrame, DataFrame]:
    """(daily_df, category_df) over ``files`` = [(relative or staged key, path or URI)] in arrival order."""
    by_dataset = effective_files(files)
    orders = prepare_orders(read_files(spark, ORDERS, by_dataset[ORDERS]))
    items = prepare_items(read_files(spark, ORDER_ITEMS, by_dataset[ORDER_ITEMS]))
    products = prepare_products(read_files(spark, PRODUCTS, by_dataset[PRODUCTS]))
    return daily_kpis(orders, items), category_kpis(orders, items, products)
