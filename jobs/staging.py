"""Staging rows: a validated file's rows, parsed once, typed and numbered, as Parquet.

Validation parses every file it accepts (it must, to check it) and writes what it read here before
the file is placed in ``validated/``; the transformation reads these rows instead of parsing the
CSV a second time. A file version's rows live under ``staging/v2/<dataset>/version=<digest>/`` where
the digest names the relative key and the raw ETag, so a re-upload never reads an older version's rows,
and a ``_SUCCESS`` marker says the write finished; it holds the file key's :class:`jobs.staging_marker.KeySummary` (unique
within the file), which helps the planner skip lookups of keys nothing stores. The transformation deletes a version's rows once
the version is applied and archived; a validated file without them (validated by an older release)
is parsed with :func:`parse_file`, the same code, so both routes give identical rows.

Row shape = the silver row without its trailer: the contract's columns (strings, trimmed, empty as
null; a column the file lacks is null), ``order_date`` (orders) or ``item_key`` (items), and the
bookkeeping that decides which version of a key wins: ``_source_file``, ``_raw_etag``,
``_ingest_seq`` (arrival ms of the raw version) and ``_row_num``, the 1-based record position in
the file.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, LongType, StringType, StructField, StructType

from jobs.contract import COLUMNS, INGEST_SEQ, ORDER_ITEMS, ORDERS, ROW_NUM, SOURCE_FILE
from jobs.csv_files import CORRUPT_RECORD, read_csv, read_header
from jobs.keys import dataset_of, literal_path
from jobs.kpis import item_identity
from jobs.local_frames import local_frame
from jobs.normalize import normalize_columns, normalize_header, with_order_date
from jobs.s3_store import S3Store
from jobs.staging_marker import SUCCESS_MARKER, KeySummary, marker_body, parquet_files

if TYPE_CHECKING:
    from types_boto3_s3.type_defs import ObjectIdentifierTypeDef

STAGING = "staging"
FORMAT_VERSION = "v2"  # bump when the row shape, the parse or the layout changes: old rows are then re-parsed
# A version's folder is a partition of its dataset's staging folder (``version=<digest>``), so a run
# reads all of its versions from that one root: one recursive listing (Spark lists a single s3a
# root with FileSystem.listFiles, spark.sql.sources.useListFilesFileSystemList) and partition
# pruning, instead of one listing per version folder: 48 versions listed in 0.15-0.3 s instead of
# 1.5-1.8 s on the emulator (2026-12-07, the 96-part day of `python -m bench --only latency`).
VERSION_COLUMN = "version"
RAW_ETAG = "_raw_etag"
ORDER_DATE = "order_date"
ITEM_KEY = "item_key"
ROW_KEY_PREFIX = "row:"  # item keys of items without a producer id (jobs.kpis.item_identity)
PRODUCER_KEY = f"NOT startswith({ITEM_KEY}, '{ROW_KEY_PREFIX}')"  # an item key the producer gave
# The key a silver table ranks its rows' versions by, and (SQL) which of its values another file
# can share: an item key made of the file's own name and line ("row:...") never is.
TABLE_KEYS: dict[str, tuple[str, str | None]] = {
    ORDERS: ("order_id", None),
    ORDER_ITEMS: (ITEM_KEY, PRODUCER_KEY),
}


def bookkeeping_schema() -> list[StructField]:
    return [
        StructField(SOURCE_FILE, StringType(), True),
        StructField(RAW_ETAG, StringType(), True),
        StructField(INGEST_SEQ, LongType(), True),
        StructField(ROW_NUM, LongType(), True),
    ]


def derived_fields(dataset: str) -> list[StructField]:
    """What the parse derives beyond the producer's columns (it costs regexes: done once, here)."""
    if dataset == ORDERS:
        return [StructField(ORDER_DATE, DateType(), True)]
    if dataset == ORDER_ITEMS:
        return [StructField(ITEM_KEY, StringType(), True)]
    return []


def staging_schema(dataset: str) -> StructType:
    return StructType(
        [StructField(c, StringType(), True) for c in COLUMNS[dataset]]
        + derived_fields(dataset)
        + bookkeeping_schema()
    )


@dataclass(frozen=True)
class FileVersion:
    """One producer file version: its relative key, raw ETag and arrival (epoch ms)."""

    rel: str
    raw_etag: str
    arrived_ms: int

    @property
    def dataset(self) -> str:
        return dataset_of(self.rel)

    @property
    def prefix(self) -> str:
        """The key prefix of this version's staging rows (no trailing slash)."""
        return staging_prefix(self.rel, self.raw_etag)


def staging_prefix(rel: str, raw_etag: str) -> str:
    digest = hashlib.sha256(f"{rel}\n{raw_etag}".encode()).hexdigest()[:32]
    return f"{STAGING}/{FORMAT_VERSION}/{dataset_of(rel)}/{VERSION_COLUMN}={digest}"


# monotonically_increasing_id(): "the partition ID in the upper 31 bits, and the record number
# within each partition in the lower 33 bits" (its documentation).
_RECORD_BITS = (1 << 33) - 1


def partition_rows(frame: DataFrame) -> tuple[int, ...]:
    """Rows per scan partition of ``frame``, in partition order (one small aggregation)."""
    per_partition = frame.select(F.spark_partition_id().alias("p")).groupBy("p").count()
    counts: dict[int, int] = {row["p"]: row["count"] for row in per_partition.collect()}
    return tuple(counts.get(p, 0) for p in range(frame.rdd.getNumPartitions()))


def row_numbers(frame: DataFrame, rows_per_partition: Sequence[int] | None = None) -> Column:
    """Each row's 1-based position in ``frame``'s scan order, without moving a row.

    A row's number is the rows of the scan partitions before its own plus its record number within
    its partition (``monotonically_increasing_id``'s documented bit layout). The scan order is the
    file order: the same guarantee a window ordered by ``monotonically_increasing_id`` relies on,
    without the window's shuffle of the whole file into one task and its sort (1.5-1.7 s instead
    of 2.4-2.6 s for a 600k-row file, bench/results/LOG.md, 329b9f6). ``rows_per_partition``: what
    :func:`partition_rows` gives, when a pass over ``frame`` counted them already (validation's
    shape check does); else it is counted now. Evaluate the column on ``frame`` itself (cached, or
    a deterministic scan): the counts describe its partitions.
    """
    counts = partition_rows(frame) if rows_per_partition is None else rows_per_partition
    offsets, before = [], 0
    for rows in counts:
        offsets.append(before)
        before += rows
    first = F.array(*[F.lit(o).cast("long") for o in offsets])[F.spark_partition_id()]
    return first + F.monotonically_increasing_id().bitwiseAND(F.lit(_RECORD_BITS)) + F.lit(1)


def stage_rows(
    frame: DataFrame, version: FileVersion, rows_per_partition: Sequence[int] | None = None
) -> DataFrame:
    """One file's rows (names and values normalised, in file order) as staging rows, numbered by
    :func:`row_numbers` (which counts the partitions now unless ``rows_per_partition`` is given)."""
    return _staged(
        frame,
        version.dataset,
        source=F.lit(version.rel),
        etag=F.lit(version.raw_etag),
        arrived=F.lit(version.arrived_ms),
        row_num=row_numbers(frame, rows_per_partition),
    )


VERSION_INDEX = "__ecomkpi_version"  # which of a write's versions a row is (write_staged_versions)


def stage_files_rows(
    frame: DataFrame,
    file_column: str,
    versions: Mapping[str, FileVersion],
    row_num: Column,
    order: Sequence[FileVersion] | None = None,
) -> DataFrame:
    """Several files' staging rows from one frame: ``file_column`` names each row's file (a key of
    ``versions``), ``row_num`` its 1-based position in that file. Rows of files not in ``versions``
    are left out. The rows carry :data:`VERSION_INDEX`, the position of their version in ``order``
    (default: in ``versions``), which :func:`write_staged_versions` writes them apart by."""
    if not versions:
        raise ValueError("no versions to stage")
    (dataset,) = {v.dataset for v in versions.values()}
    positions = list(versions.values()) if order is None else list(order)
    entries = []
    for name, v in versions.items():
        i = positions.index(v)
        value = F.struct(
            F.lit(v.rel).alias("rel"),
            F.lit(v.raw_etag).alias("etag"),
            F.lit(v.arrived_ms).cast("long").alias("arrived"),
            F.lit(i).alias("index"),
        )
        entries.extend([F.lit(name), value])
    version = F.element_at(F.create_map(*entries), F.col(file_column))
    picked = frame.where(F.col(file_column).isin(list(versions)))
    return _staged(
        picked,
        dataset,
        source=version.getField("rel"),
        etag=version.getField("etag"),
        arrived=version.getField("arrived"),
        row_num=row_num,
        extra=[version.getField("index").alias(VERSION_INDEX)],
    )


def _staged(
    frame: DataFrame,
    dataset: str,
    *,
    source: Column,
    etag: Column,
    arrived: Column,
    row_num: Column,
    extra: Sequence[Column] = (),
) -> DataFrame:
    present = set(frame.columns)
    rows = frame.select(
        *[(F.col(c) if c in present else F.lit(None).cast("string")).alias(c) for c in COLUMNS[dataset]],
        source.alias(SOURCE_FILE),
        etag.alias(RAW_ETAG),
        arrived.cast("long").alias(INGEST_SEQ),
        row_num.alias(ROW_NUM),
        *extra,
    )
    if dataset == ORDERS:
        rows = with_order_date(rows, target=ORDER_DATE)
    elif dataset == ORDER_ITEMS:
        rows = rows.withColumn(ITEM_KEY, item_identity(rows))
    names = staging_schema(dataset).fieldNames()
    return rows.select(*names, *([VERSION_INDEX] if extra else []))


def parse_file(
    spark: SparkSession,
    uri: str,
    version: FileVersion,
    header: tuple[str, ...] | None = None,
    *,
    keep_rows: Callable[[str, DataFrame], DataFrame] | None = None,
) -> DataFrame:
    """A CSV file's staging rows straight from the file: for files without staging rows (the
    rows are lazy; numbering them counts the file's rows per split now).

    ``header``: the file's raw header when already known; otherwise its first line is read. A
    header name repeated after normalisation keeps its first column, as validation requires.
    ``keep_rows(dataset, normalised)``: the rows to stage, e.g. without those the suite's drop rules
    leave out of an accepted file (what validation would have staged; row numbers then count the
    kept rows). Passed in by the reader, so this module needs nothing of validation.
    """
    raw_header = header if header is not None else read_header(spark, uri)
    if not raw_header:
        return local_frame(spark, [], staging_schema(version.dataset))
    frame = read_csv(spark, uri, raw_header).drop(CORRUPT_RECORD)
    first: dict[str, str] = {}
    for column, name in zip(frame.columns, raw_header, strict=True):
        first.setdefault(normalize_header(name), column)
    picked = normalize_columns(frame.select(*[F.col(f"`{c}`").alias(h) for h, c in first.items()]))
    if keep_rows is not None:
        picked = keep_rows(version.dataset, picked)
    return stage_rows(picked, version)


def _local_parts(parts: Sequence[Path]) -> tuple[dict[str, int], int]:
    """Local Parquet files' names and sizes, and their rows from the footers (no Spark job)."""
    rows = sum(pq.read_metadata(p).num_rows for p in parts)
    return {p.name: p.stat().st_size for p in parts}, rows


def write_staged(
    rows: DataFrame,
    uri: str,
    store: S3Store | None = None,
    *,
    dataset: str | None = None,
    unique_key: bool = False,
) -> KeySummary | None:
    """Write one version's rows, ``_SUCCESS`` last (readers check it).

    With ``store`` and the rows' ``dataset`` (one with a table key), the marker holds the rows'
    :class:`KeySummary`; ``unique_key`` is the caller's word that every key occurs once
    (validation's rule passed).

    With ``store`` and a local-mode session, the Parquet files are written to a local temporary
    folder and uploaded with one PUT each: Spark's file commit on S3 without an S3 committer
    renames every file twice (copy + delete, plus the listings s3a makes around each), which costs
    more than the write itself. Elsewhere (a cluster: executors write, the driver could not upload;
    or a local path) Spark writes to ``uri`` directly.
    """
    master = rows.sparkSession.sparkContext.master or ""
    written = None
    if store is not None and dataset in TABLE_KEYS:
        written = KeySummary(TABLE_KEYS[dataset][0], unique_key)
    # Read once, by one run: dictionary encoding (much of the write's CPU) buys nothing here.
    writer = rows.write.mode("overwrite").option("parquet.enable.dictionary", "false")
    if store is None or not master.startswith("local"):
        writer.parquet(uri)
        if store is not None:  # Spark's own marker is empty: ours says more
            prefix = uri.removeprefix(store.uri("")).rstrip("/")
            store.put_bytes(f"{prefix}/{SUCCESS_MARKER}", marker_body(written, parquet_files(store, prefix)))
        return written
    prefix = uri.removeprefix(store.uri("")).rstrip("/")
    with tempfile.TemporaryDirectory(prefix="ecomkpi-staging-") as tmp:
        writer.parquet(f"file://{tmp}/rows")
        parts = sorted(p for p in Path(tmp, "rows").iterdir() if p.suffix == ".parquet")
        delete_staged(store, prefix)  # an earlier attempt's files (a different split) must not stay
        for part in parts:
            store.client.upload_file(str(part), store.bucket, f"{prefix}/{part.name}")
        store.put_bytes(f"{prefix}/{SUCCESS_MARKER}", marker_body(written, *_local_parts(parts)))
    return written


def write_staged_versions(
    rows: DataFrame,
    versions: Sequence[FileVersion],
    store: S3Store,
    *,
    unique_key: bool = False,
) -> KeySummary | None:
    """Write several versions' rows (:func:`stage_files_rows`) with one Spark write, each version
    under its own prefix with its own ``_SUCCESS`` marker, exactly as :func:`write_staged` leaves one.

    In local mode the rows are written once, partitioned by version, to a local folder, and each
    version's files are uploaded under its prefix (a version without rows gets its marker only: a
    read of its prefix is empty). Elsewhere each version is written by Spark on its own (executors
    write; the driver could not upload their files).
    """
    (dataset,) = {v.dataset for v in versions} or {""}
    written = KeySummary(TABLE_KEYS[dataset][0], unique_key) if dataset in TABLE_KEYS else None
    master = rows.sparkSession.sparkContext.master or ""
    if not master.startswith("local"):
        for i, v in enumerate(versions):
            one = rows.where(F.col(VERSION_INDEX) == i).drop(VERSION_INDEX)
            write_staged(one, store.uri(v.prefix), store, dataset=dataset, unique_key=unique_key)
        return written
    writer = rows.write.mode("overwrite").option("parquet.enable.dictionary", "false")
    with tempfile.TemporaryDirectory(prefix="ecomkpi-staging-") as tmp:
        writer.partitionBy(VERSION_INDEX).parquet(f"file://{tmp}/rows")

        def upload(item: tuple[int, FileVersion]) -> None:
            i, version = item
            folder = Path(tmp, "rows", f"{VERSION_INDEX}={i}")
            parts = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
            delete_staged(store, version.prefix)  # an earlier attempt's files must not stay
            for part in parts:
                store.client.upload_file(str(part), store.bucket, f"{version.prefix}/{part.name}")
            body = marker_body(written, *_local_parts(parts))
            store.put_bytes(f"{version.prefix}/{SUCCESS_MARKER}", body)

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="staging-upload") as pool:
            list(pool.map(upload, enumerate(versions)))
    return written


def staged_files(store: S3Store, datasets: Iterable[str]) -> dict[str, dict[str, int]]:
    """Every staged version's Parquet files (name: size) by version prefix, for ``datasets``: one
    paginated listing per dataset instead of one per version (a day in many parts has many versions)."""
    out: dict[str, dict[str, int]] = {}
    for dataset in dict.fromkeys(datasets):
        for o in store.list(f"{STAGING}/{FORMAT_VERSION}/{dataset}/"):
            if o.key.endswith(".parquet"):
                prefix, name = o.key.rsplit("/", 1)
                out.setdefault(prefix, {})[name] = o.size
    return out


def read_staged(spark: SparkSession, dataset: str, uris: list[str]) -> DataFrame:
    """Every given version's staging rows as one frame, schema declared (no footers read for it).

    Versions in the staging layout (``<root>/version=<digest>``) are read through their root with
    the wanted versions as a partition filter: one listing of the root, whatever their number
    (a version folder still being written, or one of another run, is pruned before anything is
    read). Any other folder (a test's local path) is read as given.
    """
    schema = staging_schema(dataset)
    roots: dict[str, list[str]] = {}
    others: list[str] = []
    for uri in uris:
        root, _, leaf = uri.rstrip("/").rpartition("/")
        name, eq, value = leaf.partition("=")
        if root and eq and name == VERSION_COLUMN:
            roots.setdefault(root, []).append(value)
        else:
            others.append(uri)
    frames = [
        spark.read.schema(StructType([*schema.fields, StructField(VERSION_COLUMN, StringType(), True)]))
        .parquet(literal_path(root))
        .where(F.col(VERSION_COLUMN).isin(sorted(set(values))))
        .drop(VERSION_COLUMN)
        for root, values in roots.items()
    ]
    if others or not frames:
        frames.append(
            spark.read.schema(schema).parquet(*[literal_path(u) for u in others])
            if others
            else local_frame(spark, [], schema)
        )
    return reduce(DataFrame.unionByName, frames)


def delete_staged(store: S3Store, prefix: str) -> int:
    """Remove one version's staging rows (after it is applied); returns how many objects went."""
    keys = [o.key for o in store.list(f"{prefix}/")]
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        batch: list[ObjectIdentifierTypeDef] = [{"Key": k} for k in keys[start : start + 1000]]
        store.client.delete_objects(Bucket=store.bucket, Delete={"Objects": batch, "Quiet": True})
    return len(keys)
