"""The rows of the file versions a run applies: staging rows, or the CSV parsed the same way.

Validation leaves each accepted file version's parsed rows in staging (:mod:`jobs.staging`), so a
run reads Parquet with a declared schema and never parses CSV; only a validated file without
staging rows (validated by an older release, or placed by hand) is parsed here, by the same
function validation uses. The oracle reads producer files through :func:`read_files`, also the
same parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StringType, StructField, StructType

from jobs.contract import COLUMNS
from jobs.local_frames import local_frame
from jobs.staging import RAW_ETAG, FileVersion, KeySummary, bookkeeping_schema, parse_file, read_staged

__all__ = ["RAW_ETAG", "SourceFile", "read_files", "read_new_rows", "source_schema"]


@dataclass(frozen=True)
class SourceFile:
    """One file version to read: where it is and where it sits in arrival order."""

    rel: str  # relative key, e.g. orders/2025-07-10/orders_part1.csv
    uri: str  # s3a://bucket/validated/<rel> or a local path
    seq: int  # arrival order; a higher value wins over a lower one for the same key
    raw_etag: str = ""
    staged_uri: str | None = None  # its staging rows, when validation left them
    key_summary: KeySummary | None = None  # what validation recorded of its keys (with its rows)

    @property
    def version(self) -> FileVersion:
        return FileVersion(rel=self.rel, raw_etag=self.raw_etag, arrived_ms=self.seq)


def source_schema(dataset: str) -> StructType:
    """The contract's columns of ``dataset`` (all strings) followed by the bookkeeping columns."""
    return StructType([StructField(c, StringType(), True) for c in COLUMNS[dataset]] + bookkeeping_schema())


def _union(frames: list[DataFrame]) -> DataFrame:
    combined = frames[0]
    for f in frames[1:]:
        combined = combined.unionByName(f)
    return combined


def read_new_rows(spark: SparkSession, dataset: str, sources: Sequence[SourceFile]) -> DataFrame:
    """Staging rows of ``sources`` (lazy): one Parquet scan, plus a CSV parse per file without them."""
    staged = [s.staged_uri for s in sources if s.staged_uri]
    frames = [read_staged(spark, dataset, staged)] if staged or not sources else []
    # A validated file without staging rows is parsed, less the rows validation dropped from it.
    frames += [parse_file(spark, s.uri, s.version, drop_rows=True) for s in sources if not s.staged_uri]
    return _union(frames)


def read_files(spark: SparkSession, dataset: str, sources: Sequence[SourceFile]) -> DataFrame:
    """Producer files parsed as the pipeline parses them: contract columns + bookkeeping (lazy)."""
    if not sources:
        return local_frame(spark, [], source_schema(dataset))
    frames = [parse_file(spark, s.uri, s.version) for s in sources]
    return _union(frames).select(*source_schema(dataset).fieldNames())
