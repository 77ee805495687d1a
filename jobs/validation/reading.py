"""The full-file shape checks of one file read by :func:`jobs.csv_files.read_csv`.

The header comes from the byte-level head check, so the read needs no inference and no second pass:
every column is a string (positional, ``enforceSchema``), plus a corrupt
record column that Spark fills for a row with more or fewer fields than the header (PERMISSIVE).
Bad UTF-8 after the inspected head shows up as U+FFFD, which Spark substitutes for undecodable
bytes; both are counted in the same single aggregation that also counts the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.csv_files import CORRUPT_RECORD, MAX_CHARS_PER_VALUE, read_csv
from jobs.validation.findings import MAX_SAMPLES, Finding, structural
from jobs.validation.structural import MAX_FIELDS, RULE_FIELDS, RULE_UTF8, too_many_fields

__all__ = ["CORRUPT_RECORD", "RULE_VALUE_LENGTH", "FileShape", "file_shape", "read_csv"]

REPLACEMENT_CHAR = "\ufffd"
RULE_VALUE_LENGTH = f"every value is at most {MAX_CHARS_PER_VALUE:,} characters"
# univocity's message when a value passes maxCharsPerColumn (Spark fails the read with it).
_TOO_LONG = "exceeds the maximum number of characters"
# ... and when a record has more fields than its maxColumns (structural.MAX_FIELDS). A JVM that has
# thrown that ArrayIndexOutOfBoundsException often from compiled code may throw a preallocated one
# without a message (HotSpot's OmitStackTraceInFastThrow, on unless the session turns it off):
# univocity then reports the exception's class alone.
_TOO_WIDE = f"Index {MAX_FIELDS} out of bounds for length {MAX_FIELDS}"
_TOO_WIDE_WITHOUT_MESSAGE = "TextParsingException: java.lang.ArrayIndexOutOfBoundsException - null"


@dataclass(frozen=True)
class FileShape:
    """Row count and the full-file structural findings of one read."""

    rows: int
    findings: tuple[Finding, ...]
    # Rows per scan partition of the frame, in partition order: what numbers the staging rows
    # (jobs.staging.row_numbers) without a job of its own.
    partition_rows: tuple[int, ...] = ()


def _row_text(columns: tuple[str, ...]) -> Column:
    return F.concat_ws(",", *[F.coalesce(F.col(f"`{c}`"), F.lit("")) for c in columns])


def ragged_rows() -> Column:
    """A row with more or fewer fields than the header (Spark filled the corrupt record column)."""
    return F.col(CORRUPT_RECORD).isNotNull()


def undecodable_rows(columns: tuple[str, ...]) -> Column:
    """A row holding U+FFFD: Spark's substitute for bytes that are not UTF-8."""
    return _row_text(columns).contains(REPLACEMENT_CHAR) | F.coalesce(
        F.col(CORRUPT_RECORD).contains(REPLACEMENT_CHAR), F.lit(False)
    )


def unreadable(exc: BaseException) -> FileShape | None:
    """The verdict on a file Spark gave up reading (a value past ``maxCharsPerColumn``, a record
    past ``maxColumns`` beyond the head check's 64 KiB); None when the failure is the task's."""
    text = str(exc)
    if _TOO_WIDE in text or _TOO_WIDE_WITHOUT_MESSAGE in text:
        return FileShape(rows=0, findings=(too_many_fields(MAX_FIELDS + 1, "a row"),))
    if _TOO_LONG in text:
        message = f"a value is longer than {MAX_CHARS_PER_VALUE:,} characters (the reader stops there)"
        return FileShape(rows=0, findings=(structural(RULE_VALUE_LENGTH, message),))
    return None


def file_shape(frame: DataFrame, columns: tuple[str, ...]) -> FileShape:
    """Count rows, ragged rows and rows with undecodable bytes in one pass over the (cached) frame.

    Counted per scan partition: the same single aggregation then also gives the rows of each
    partition, which the staging rows are numbered from. Samples are fetched only for a file that
    has such rows, so a good file costs one action.
    """
    try:
        per_partition = (
            frame.groupBy(F.spark_partition_id().alias("partition"))
            .agg(
                F.count(F.lit(1)).alias("rows"),
                F.count(F.when(ragged_rows(), 1)).alias("ragged"),
                F.count(F.when(undecodable_rows(columns), 1)).alias("undecodable"),
            )
            .collect()
        )
    except Exception as exc:  # Spark cannot read such a file at all: a verdict, not a broken task
        shape = unreadable(exc)
        if shape is None:
            raise
        return shape
    counts = {k: sum(int(r[k]) for r in per_partition) for k in ("rows", "ragged", "undecodable")}
    rows_of = {int(r["partition"]): int(r["rows"]) for r in per_partition}
    partition_rows = tuple(rows_of.get(p, 0) for p in range(frame.rdd.getNumPartitions()))
    findings = shape_findings(frame, columns, counts["ragged"], counts["undecodable"])
    return FileShape(rows=counts["rows"], findings=findings, partition_rows=partition_rows)


def shape_findings(
    frame: DataFrame, columns: tuple[str, ...], ragged: int, undecodable: int
) -> tuple[Finding, ...]:
    """The findings of a file with ``ragged`` / ``undecodable`` rows; samples are read from
    ``frame`` (that file's rows) only when there are such rows."""
    findings: list[Finding] = []
    if ragged:
        samples = [
            r[0] for r in frame.where(ragged_rows()).select(CORRUPT_RECORD).limit(MAX_SAMPLES).collect()
        ]
        findings.append(
            structural(
                RULE_FIELDS,
                f"{ragged} row(s) do not have the header's {len(columns)} "
                "fields (a missing or extra separator, or an unbalanced quote)",
                failing_rows=ragged,
                samples=samples,
            )
        )
    if undecodable:
        samples = [
            r[0]
            for r in frame.where(undecodable_rows(columns))
            .select(F.coalesce(F.col(CORRUPT_RECORD), _row_text(columns)))
            .limit(MAX_SAMPLES)
            .collect()
        ]
        findings.append(
            structural(
                RULE_UTF8,
                f"{undecodable} row(s) contain bytes that are not valid UTF-8 "
                "(shown as \ufffd); re-export the file as UTF-8",
                failing_rows=undecodable,
                samples=samples,
            )
        )
    return tuple(findings)
