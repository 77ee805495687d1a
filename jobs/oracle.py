"""The from-scratch KPI computation: the reference the incremental job must always equal.

``kpis_from_files`` applies files in the given arrival order with nothing but the pure KPI contract
(:mod:`jobs.kpis`): a later file with the same relative key replaces the earlier one's rows, and for
every key the row of the latest file wins. No lake, no state: tests, ``ecomkpi compute`` and the
benchmark use it to prove that incremental runs end where a full recomputation would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StringType, StructField, StructType

from jobs.contract import COLUMNS, ORDER_ITEMS, ORDERS, PRODUCTS
from jobs.keys import dataset_of, relative_key
from jobs.kpis import category_kpis, daily_kpis, prepare_items, prepare_orders, prepare_products
from jobs.local_frames import local_frame
from jobs.staging import FileVersion, bookkeeping_schema, parse_file


class ReadableFile(Protocol):
    """A file version the oracle can parse: where it is, and which version of which key it is."""

    @property
    def uri(self) -> str: ...

    @property
    def version(self) -> FileVersion: ...


@dataclass(frozen=True)
class ProducerFile:
    """One producer file version in arrival order (``seq``: a higher value wins for the same key)."""

    rel: str
    uri: str
    seq: int

    @property
    def version(self) -> FileVersion:
        return FileVersion(rel=self.rel, raw_etag="", arrived_ms=self.seq)


def read_files(spark: SparkSession, dataset: str, files: Sequence[ReadableFile]) -> DataFrame:
    """Producer files parsed as the pipeline parses them (:func:`jobs.staging.parse_file`, the parse
    validation stages): the contract's columns, then the bookkeeping columns (lazy). The oracle reads
    them itself, not through the transformation's reader, so that it stays a second computation."""
    schema = StructType([StructField(c, StringType(), True) for c in COLUMNS[dataset]] + bookkeeping_schema())
    if not files:
        return local_frame(spark, [], schema)
    frames = [parse_file(spark, f.uri, f.version) for f in files]
    combined = frames[0]
    for frame in frames[1:]:
        combined = combined.unionByName(frame)
    return combined.select(*schema.fieldNames())


def effective_files(files: Sequence[tuple[str, str]]) -> dict[str, list[ProducerFile]]:
    """Per dataset, the surviving file versions with their position in arrival order as sequence.

    A re-upload (same relative key later in the list) drops the earlier version entirely and takes
    the later position, exactly as the job replaces a file's rows when a new version arrives.
    """
    latest: dict[str, ProducerFile] = {}
    for seq, (key, location) in enumerate(files):
        rel = relative_key(key)
        latest.pop(rel, None)
        latest[rel] = ProducerFile(rel=rel, uri=location, seq=seq)
    by_dataset: dict[str, list[ProducerFile]] = {PRODUCTS: [], ORDERS: [], ORDER_ITEMS: []}
    for source in latest.values():
        by_dataset[dataset_of(source.rel)].append(source)
    return by_dataset


DATASETS = (ORDERS, ORDER_ITEMS, PRODUCTS)  # the order kpis_from_rows takes their rows in


def kpis_from_files(spark: SparkSession, files: Sequence[tuple[str, str]]) -> tuple[DataFrame, DataFrame]:
    """(daily_df, category_df) over ``files`` = [(relative or staged key, path or URI)] in arrival order."""
    by_dataset = effective_files(files)
    return kpis_from_rows(*(read_files(spark, dataset, by_dataset[dataset]) for dataset in DATASETS))


def kpis_from_rows(orders: DataFrame, items: DataFrame, products: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(daily_df, category_df) over the surviving files' rows as :func:`read_files` gives them: for
    a caller that parsed the files already (a test that compares after every run parses each
    version once, not once per comparison)."""
    o, i = prepare_orders(orders), prepare_items(items)
    return daily_kpis(o, i), category_kpis(o, i, prepare_products(products))
