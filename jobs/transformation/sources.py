"""Reading producer CSV files into the contract's columns, identically for the job and the oracle.

Every value is read as a string with a schema declared from the file's own header (read with one
small ranged request, no inference pass), then normalised by :func:`jobs.normalize.normalize_columns`.
Files are read one by one because producers differ in column order and header spelling; each row
gets the bookkeeping columns that decide which version of a key wins (``_source_file``,
``_ingest_seq``, ``_row_num``). ``_row_num`` is the 1-based line position inside the file, so it is
the same whichever other files are read alongside (the MERGE identity of a row depends on it).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from jobs.contract import COLUMNS, INGEST_SEQ, ROW_NUM, SOURCE_FILE
from jobs.keys import literal_path
from jobs.normalize import BOM, normalize_columns, normalize_header

RAW_ETAG = "_raw_etag"
_POSITION = "__position"
_PART = "__part"
_INDEX_BITS = 33  # monotonically_increasing_id(): partition index << 33 | row index in the partition


@dataclass(frozen=True)
class SourceFile:
    """One file version to read: where it is and where it sits in arrival order."""

    rel: str  # relative key, e.g. orders/2025-07-10/orders_part1.csv
    uri: str  # s3a://bucket/validated/<rel> or a local path
    seq: int  # arrival order; a higher value wins over a lower one for the same key
    raw_etag: str = ""


def bookkeeping_schema() -> list[StructField]:
    return [
        StructField(SOURCE_FILE, StringType(), True),
        StructField(RAW_ETAG, StringType(), True),
        StructField(INGEST_SEQ, LongType(), True),
        StructField(ROW_NUM, LongType(), True),
    ]


def source_schema(dataset: str) -> StructType:
    """The contract's columns of ``dataset`` (all strings) followed by the bookkeeping columns."""
    return StructType([StructField(c, StringType(), True) for c in COLUMNS[dataset]] + bookkeeping_schema())


def read_header(spark: SparkSession, uri: str) -> list[str]:
    """The file's first line parsed as CSV, through Hadoop's file system (s3a or local alike).

    Only the first buffer of the object is fetched; an empty file has no columns.
    """
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    stream = fs.open(path)
    try:
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        line = reader.readLine()
    finally:
        stream.close()
    if line is None:
        return []
    return next(csv.reader([line]), [])


def read_file(spark: SparkSession, dataset: str, source: SourceFile) -> DataFrame:
    """One file as the contract's string columns (missing ones null) plus bookkeeping columns.

    ``__position`` orders the rows as they appear in the file; it is turned into ``_row_num`` by
    :func:`read_files` once all files are combined.
    """
    raw_header = [h.replace(BOM, "") for h in read_header(spark, source.uri)]
    header = [normalize_header(h) for h in raw_header]
    if not header:
        return _empty_positioned(spark, dataset)
    # Declared schema: one string column per header field (the header line itself is skipped).
    # Named as in the file when unambiguous, so Spark's header check has nothing to warn about.
    unique = len(set(raw_header)) == len(raw_header) and all(raw_header)
    names = raw_header if unique else [f"_c{i}" for i in range(len(header))]
    raw = spark.read.csv(
        literal_path(source.uri),
        schema=StructType([StructField(n, StringType(), True) for n in names]),
        header=True,
        enforceSchema=True,
        escape='"',
        multiLine=False,
        mode="PERMISSIVE",
    )
    first_of = {h: n for n, h in reversed(list(zip(names, header, strict=True)))}  # keep the first
    norm = normalize_columns(raw.select(*[F.col(n).alias(h) for h, n in first_of.items()]))
    return norm.select(
        *[(F.col(c) if c in first_of else F.lit(None).cast("string")).alias(c) for c in COLUMNS[dataset]],
        F.lit(source.rel).alias(SOURCE_FILE),
        F.lit(source.raw_etag).alias(RAW_ETAG),
        F.lit(source.seq).cast("long").alias(INGEST_SEQ),
        F.monotonically_increasing_id().alias(_POSITION),
    )


def empty_source(spark: SparkSession, dataset: str) -> DataFrame:
    return spark.createDataFrame([], source_schema(dataset))


def _empty_positioned(spark: SparkSession, dataset: str) -> DataFrame:
    """No rows, in the shape of :func:`read_file` (position instead of row number)."""
    return empty_source(spark, dataset).drop(ROW_NUM).withColumn(_POSITION, F.lit(0).cast("long"))


def read_positioned(spark: SparkSession, dataset: str, sources: Sequence[SourceFile]) -> DataFrame:
    """All ``sources`` of one dataset as one frame, rows positioned but not yet numbered.

    Finish with :func:`number_rows` once the frame is materialized (large inputs), or use
    :func:`read_files` (lazy).
    """
    if not sources:
        return _empty_positioned(spark, dataset)
    frames = [read_file(spark, dataset, s) for s in sources]
    combined = frames[0]
    for f in frames[1:]:
        combined = combined.unionByName(f)
    return combined


def read_files(spark: SparkSession, dataset: str, sources: Sequence[SourceFile]) -> DataFrame:
    """All ``sources`` of one dataset as one frame with a per-file 1-based ``_row_num`` (lazy).

    Numbers rows with a window sorted by position: exact on any frame, but one task sorts each
    whole file. The transformation numbers its materialized inputs with :func:`number_rows`.
    """
    if not sources:
        return empty_source(spark, dataset)
    position = Window.partitionBy(SOURCE_FILE).orderBy(_POSITION)
    combined = read_positioned(spark, dataset, sources)
    return combined.withColumn(ROW_NUM, F.row_number().over(position).cast("long")).drop(_POSITION)


def number_rows(positioned: DataFrame) -> DataFrame:
    """``_row_num`` for a materialized :func:`read_positioned` frame, without sorting it.

    A position is the scan partition's index in its upper bits and the row's index within the
    partition in the lower 33 (``monotonically_increasing_id``), and a file's partitions follow
    its byte order. So a row's number is its index plus the sizes of the file's earlier
    partitions: one small aggregation over the materialized rows gives one offset per (file,
    partition), applied as a literal map (a projection: no join, no broadcast per action) instead
    of a shuffle and a sort of every row. The result equals :func:`read_files`'s. On a lazy frame
    the sizes would come from a second read of the files.
    """
    part = F.shiftright(F.col(_POSITION), _INDEX_BITS)
    index = F.col(_POSITION).bitwiseAND(F.lit((1 << _INDEX_BITS) - 1))
    sizes = positioned.groupBy(F.col(SOURCE_FILE), part.alias(_PART)).agg((F.max(index) + 1).alias("n"))
    offsets: list[Column] = []
    seen: dict[str, int] = {}
    for row in sorted(sizes.collect(), key=lambda r: (r[SOURCE_FILE], r[_PART])):
        before = seen.get(row[SOURCE_FILE], 0)
        offsets += [F.lit(f"{row[_PART]}:{row[SOURCE_FILE]}"), F.lit(before).cast("long")]
        seen[row[SOURCE_FILE]] = before + int(row["n"])
    if not offsets:
        return (
            positioned.drop(_POSITION)
            .withColumn(ROW_NUM, F.lit(None).cast("long"))
            .select(*_numbered_order(positioned.columns))
        )
    at = F.element_at(F.create_map(*offsets), F.concat(part.cast("string"), F.lit(":"), F.col(SOURCE_FILE)))
    return positioned.withColumn(ROW_NUM, index + at + 1).select(*_numbered_order(positioned.columns))


def _numbered_order(positioned_columns: list[str]) -> list[str]:
    """The columns of a numbered frame: ``_row_num`` where :func:`source_schema` puts it."""
    columns = [c for c in positioned_columns if c != _POSITION]
    at = columns.index(INGEST_SEQ) + 1
    return [*columns[:at], ROW_NUM, *columns[at:]]
