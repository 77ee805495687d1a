"""The rows of the file versions a run applies: staging rows, or the CSV parsed the same way.

Validation leaves each accepted file version's parsed rows in staging (:mod:`jobs.staging`), so a
run reads Parquet with a declared schema and never parses CSV; only a validated file without
staging rows (validated by an older release, or placed by hand) is parsed here, by the same
function validation uses (the oracle, :mod:`jobs.oracle`, parses producer files with it too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from jobs.staging import RAW_ETAG, FileVersion, parse_file, read_staged
from jobs.staging_marker import KeySummary

__all__ = ["RAW_ETAG", "SourceFile", "read_new_rows"]


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
    unstaged = [s for s in sources if not s.staged_uri]
    if unstaged:
        # Validation's drop rules decide which of an accepted file's rows it stages (imported here:
        # the validation package is not loaded for a run whose files all have staging rows).
        from jobs.validation.rule_counts import without_dropped_rows

        frames += [parse_file(spark, s.uri, s.version, keep_rows=without_dropped_rows) for s in unstaged]
    return _union(frames)
