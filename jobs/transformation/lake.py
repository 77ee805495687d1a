"""The Delta tables of the lake: names, declared schemas, partitioning, and the few ways we write.

Layout under ``LAKE_PATH`` (see README.md in this package):

* ``silver_products``      every row of every applied products file version (small master data)
* ``silver_orders``        every order row version, partitioned by ``order_date`` (from its own
  ``created_at``); ``_is_current`` marks the one effective version per ``order_id``
* ``silver_order_items``   every item row version, partitioned by ``order_date`` = the current date
  of its order (null = "pending": the order has not arrived); ``_is_current`` per ``item_key``
* ``applied_files``        one row per applied file version (relative key + raw ETag)
* ``gold_daily_kpis`` / ``gold_category_kpis``  the KPI contract's rows, partitioned by ``date_key``

A missing table reads as an empty frame with its schema and is created by its first write, so a
fresh lake costs no extra commits.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from delta.tables import DeltaMergeBuilder, DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from jobs.contract import (
    CATEGORY_KPI_SCHEMA,
    COLUMNS,
    DAILY_KPI_SCHEMA,
    ORDER_ITEMS,
    ORDERS,
    PRODUCTS,
    SOURCE_FILE,
)
from jobs.local_frames import local_frame
from jobs.staging import ITEM_KEY, ORDER_DATE, bookkeeping_schema

SILVER_PRODUCTS = "silver_products"
SILVER_ORDERS = "silver_orders"
SILVER_ITEMS = "silver_order_items"
APPLIED_FILES = "applied_files"
GOLD_DAILY = "gold_daily_kpis"
GOLD_CATEGORY = "gold_category_kpis"
QUARANTINE = "quarantine"  # the rows drop rules left out (jobs/transformation/quarantine_table.py)

IS_CURRENT = "_is_current"
RUN_ID = "_run_id"


def _strings(names: tuple[str, ...]) -> list[StructField]:
    return [StructField(c, StringType(), True) for c in names]


_TRAILER = [StructField(IS_CURRENT, BooleanType(), True), StructField(RUN_ID, StringType(), True)]

QUARANTINE_SCHEMA = StructType(
    [
        StructField("date", DateType(), True),
        StructField("dataset", StringType(), True),
        StructField("source_file", StringType(), True),
        StructField("raw_etag", StringType(), True),
        StructField("row_number", LongType(), True),
        StructField("failed_rules", ArrayType(StringType(), True), True),
        StructField("raw_values", MapType(StringType(), StringType(), True), True),
        StructField("run_id", StringType(), True),
    ]
)

SCHEMAS: dict[str, StructType] = {
    SILVER_PRODUCTS: StructType(
        _strings(COLUMNS[PRODUCTS]) + bookkeeping_schema() + [StructField(RUN_ID, StringType(), True)]
    ),
    SILVER_ORDERS: StructType(
        [
            *_strings(COLUMNS[ORDERS]),
            StructField(ORDER_DATE, DateType(), True),
            *bookkeeping_schema(),
            *_TRAILER,
        ]
    ),
    SILVER_ITEMS: StructType(
        [
            *_strings(COLUMNS[ORDER_ITEMS]),
            StructField(ITEM_KEY, StringType(), True),
            StructField(ORDER_DATE, DateType(), True),
            *bookkeeping_schema(),
            *_TRAILER,
        ]
    ),
    APPLIED_FILES: StructType(
        [
            StructField("rel", StringType(), True),
            StructField("dataset", StringType(), True),
            StructField("raw_etag", StringType(), True),
            StructField("object_etag", StringType(), True),
            StructField("arrived_ms", LongType(), True),
            StructField("run_id", StringType(), True),
            StructField("applied_at", TimestampType(), True),
        ]
    ),
    GOLD_DAILY: DAILY_KPI_SCHEMA,
    GOLD_CATEGORY: CATEGORY_KPI_SCHEMA,
    QUARANTINE: QUARANTINE_SCHEMA,
}
PARTITIONS: dict[str, tuple[str, ...]] = {
    SILVER_PRODUCTS: (),
    SILVER_ORDERS: (ORDER_DATE,),
    SILVER_ITEMS: (ORDER_DATE,),
    APPLIED_FILES: (),
    GOLD_DAILY: ("date_key",),
    GOLD_CATEGORY: ("date_key",),
    QUARANTINE: ("date",),
}

# Columns Delta keeps min/max statistics for, set when a table is created. Only these are ever
# used to skip files (key-range lookups, replaced file versions); statistics on every column made
# silver writes markedly slower (measured in bench/README.md).
STATS_COLUMNS: dict[str, tuple[str, ...]] = {
    SILVER_ORDERS: ("order_id", SOURCE_FILE),
    SILVER_ITEMS: (ITEM_KEY, "order_id", SOURCE_FILE),
    APPLIED_FILES: ("rel",),
}


def conform(df: DataFrame, table: str) -> DataFrame:
    """Exactly the table's declared columns, in order and type (writes never infer or evolve).

    One ``selectExpr`` of SQL casts: built as Column objects, a dozen columns cost ~40 Py4J round
    trips per write (~0.1 s each time in a warm worker, bench/results/LOG.md, bb7579c).
    """
    return df.selectExpr(*_CASTS[table])


def _cast_sql(field: StructField) -> str:
    name = "`" + field.name.replace("`", "``") + "`"
    return f"CAST({name} AS {field.dataType.simpleString()}) AS {name}"


_CASTS: dict[str, list[str]] = {
    table: [_cast_sql(f) for f in schema.fields] for table, schema in SCHEMAS.items()
}


@dataclass(frozen=True)
class Commit:
    """What one Delta commit did, from the table history's operationMetrics."""

    table: str
    version: int
    operation: str
    metrics: dict[str, int]

    @property
    def rows_written(self) -> int:
        return self.metrics.get("numOutputRows", 0)

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "version": self.version, "operation": self.operation, **self.metrics}


@dataclass
class Lake:
    """The lake's tables at ``root`` (``s3a://bucket/lake`` or a local directory)."""

    spark: SparkSession
    root: str
    run_id: str = ""
    commits: list[Commit] = field(default_factory=list)
    _known: set[str] = field(default_factory=set)

    def path(self, table: str) -> str:
        return f"{self.root.rstrip('/')}/{table}"

    def exists(self, table: str) -> bool:
        if table not in self._known and DeltaTable.isDeltaTable(self.spark, self.path(table)):
            self._known.add(table)
        return table in self._known

    def empty(self, table: str) -> DataFrame:
        return local_frame(self.spark, [], SCHEMAS[table])

    def version(self, table: str) -> int | None:
        if not self.exists(table):
            return None
        last = DeltaTable.forPath(self.spark, self.path(table)).history(1).first()
        assert last is not None  # an existing Delta table has at least its creating commit
        return int(last["version"])

    def current_snapshot(self, table: str, refresh: bool = True) -> tuple[str, int] | None:
        """(table id, version) of the table's latest snapshot, asked of the log (a listing, no Spark
        job); ``refresh=False``: of the snapshot this process last saw or committed (no request).
        None when the table does not exist or Delta's internal API moved (callers then read)."""
        if not self.exists(table):
            return None
        try:
            jvm = self.spark.sparkContext._jvm
            assert jvm is not None
            delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(
                self.spark._jsparkSession, self.path(table)
            )
            none = jvm.scala.Option.empty()
            snapshot = delta_log.update(False, none, none) if refresh else delta_log.unsafeVolatileSnapshot()
            return str(snapshot.metadata().id()), int(snapshot.version())
        except Exception:
            return None

    def read(self, table: str, version: int | None = None) -> DataFrame:
        """The table (at ``version`` when given: plans are pinned to the snapshot they were made on)."""
        if not self.exists(table):
            return self.empty(table)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.path(table))

    def warm(self, table: str) -> bool:
        """Build the current snapshot's file list (and parsed statistics) of ``table`` now.

        Delta rebuilds a table's state (checkpoint + commits -> file list, then the statistics it
        skips files with) with Spark jobs the first time a new version is read: after every commit.
        Done while a warm worker waits for its next task, the next run's plan and recompute find it
        built. The lookup names a key no file holds, so the statistics (or the partition values)
        skip every file and nothing is read. False when the table does not exist.
        """
        if not self.exists(table):
            return False
        df = self.read(table)
        columns = STATS_COLUMNS.get(table) or PARTITIONS[table]
        if columns:
            df = df.where(F.col(columns[0]).cast("string") == F.lit(""))
        df.select(F.lit(1)).limit(1).collect()
        return True

    # --- writes: each returns the commit's metrics -----------------------------------------------

    def append(self, table: str, df: DataFrame) -> Commit:
        writer = conform(df, table).write.format("delta").mode("append").option("userMetadata", self.run_id)
        if not self.exists(table):
            if PARTITIONS[table]:
                writer = writer.partitionBy(*PARTITIONS[table])
            if table in STATS_COLUMNS:  # a `delta.` option on the creating write is a table property
                writer = writer.option("delta.dataSkippingStatsColumns", ",".join(STATS_COLUMNS[table]))
        writer.save(self.path(table))
        return self._record(table)

    def overwrite(self, table: str, df: DataFrame, replace_where: str | None = None) -> Commit:
        """Replace the whole table, or with ``replace_where`` only the rows (partitions) it selects."""
        if not self.exists(table):
            return self.append(table, df)
        writer = (
            conform(df, table).write.format("delta").mode("overwrite").option("userMetadata", self.run_id)
        )
        if replace_where is not None:
            writer = writer.option("replaceWhere", replace_where)
        writer.save(self.path(table))
        return self._record(table)

    def merge(
        self,
        table: str,
        source: DataFrame,
        condition: str,
        clauses: Callable[[DeltaMergeBuilder], DeltaMergeBuilder],
    ) -> Commit:
        """MERGE ``source`` (alias ``s``) into the table (alias ``t``) with the given clauses."""
        target = DeltaTable.forPath(self.spark, self.path(table)).alias("t")
        clauses(target.merge(source.alias("s"), condition)).execute()
        return self._record(table)

    def _record(self, table: str) -> Commit:
        """Metrics of the commit just made, from its log entry (no Spark job; history() as fallback)."""
        self._known.add(table)
        try:
            commit = self._commit_from_log(table)
        except Exception:  # internal API moved: the public (slower) route
            row = DeltaTable.forPath(self.spark, self.path(table)).history(1).first()
            assert row is not None  # the commit just made
            commit = _commit(table, int(row["version"]), row["operation"], row["operationMetrics"])
        self.commits.append(commit)
        return commit

    def _commit_from_log(self, table: str) -> Commit:
        """Read ``_delta_log/<version>.json`` of the snapshot our own commit just installed."""
        jvm, jspark = self.spark.sparkContext._jvm, self.spark._jsparkSession
        assert jvm is not None  # a live context (it just ran the commit); else `_record` falls back
        delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(jspark, self.path(table))
        version = int(delta_log.unsafeVolatileSnapshot().version())
        path = jvm.org.apache.hadoop.fs.Path(f"{self.path(table)}/_delta_log/{version:020d}.json")
        fs = path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())
        stream = fs.open(path)
        try:
            reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
            while (line := reader.readLine()) is not None:
                if line.startswith('{"commitInfo"'):
                    info = json.loads(line)["commitInfo"]
                    return _commit(table, version, info.get("operation", ""), info.get("operationMetrics"))
        finally:
            stream.close()
        raise LookupError(f"no commitInfo in {path}")


def _commit(table: str, version: int, operation: str, metrics: dict[str, Any] | None) -> Commit:
    numbers = {k: int(v) for k, v in (metrics or {}).items() if str(v).lstrip("-").isdigit()}
    return Commit(table=table, version=version, operation=operation, metrics=numbers)


def iso_dates(dates: list[str]) -> list[str]:
    """The dates, each checked to be a real ``YYYY-MM-DD`` date: the only values ever put in SQL."""
    checked = []
    for d in dates:
        if not isinstance(d, str) or len(d) != 10 or date.fromisoformat(d).isoformat() != d:
            raise ValueError(f"not a YYYY-MM-DD date: {d!r}")
        checked.append(d)
    return checked


def sql_dates(dates: list[str]) -> str:
    """``DATE'..', DATE'..'`` for a partition predicate (MERGE conditions and replaceWhere are SQL)."""
    return ", ".join(f"DATE'{d}'" for d in iso_dates(dates))


def sql_date_keys(dates: list[str]) -> str:
    """``'..', '..'`` for a ``date_key`` (string) predicate, from checked dates only."""
    return ", ".join(f"'{d}'" for d in iso_dates(dates))
