"""Keeping every version of a key and flagging the effective one, as MERGE-able actions.

Silver tables hold every row of every applied file version. A key's effective row is the one from
the latest file by arrival (``_ingest_seq`` = arrival ms, then ``_source_file``, then ``_row_num``);
``_is_current`` marks it on the stored rows themselves, so that the recompute of a date reads that
date's partition and nothing else, even when other versions of its keys sit in other partitions.

:func:`plan_versions` turns "these file versions arrive" into actions keyed by the physical
identity of a stored row (file, file version, row number, partition): ``insert``, ``update`` (an
identical row left by an interrupted attempt), ``delete`` (rows of a replaced file version, or the
old place of a row that moves) and ``flag`` (``_is_current`` changes). One MERGE applies them, or a
plain append when they are all inserts; applying the same plan twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame, Observation, Row, Window
from pyspark.sql import functions as F

from jobs.contract import INGEST_SEQ, ROW_NUM, SOURCE_FILE
from jobs.staging import ORDER_DATE
from jobs.transformation.lake import IS_CURRENT, SCHEMAS, Commit, Lake, sql_dates
from jobs.transformation.sources import RAW_ETAG

ACTION, MATCH_DATE = "_action", "_match_date"
INSERT, UPDATE, DELETE, FLAG = "insert", "update", "delete", "flag"
IDENTITY = (SOURCE_FILE, RAW_ETAG, ROW_NUM)  # one row of one file version
FINAL_DATE = "_final_date"  # where an existing row must end up (its partition unless it moves)
# What arrival_metrics() observes of a table's new rows.
ARRIVED_ROWS, ARRIVED_DATES, ARRIVED_PENDING = "_arrived_rows", "_arrived_dates", "_arrived_pending"


def latest_first() -> list[Column]:
    """Arrival order, latest first: file arrival, then file name (same millisecond), then line."""
    return [F.col(INGEST_SEQ).desc(), F.col(SOURCE_FILE).desc(), F.col(ROW_NUM).desc()]


@dataclass
class TablePlan:
    """The actions for one silver table (filters of a materialized frame), plus what they touch."""

    table: str
    actions: DataFrame
    dates: set[str] = field(default_factory=set)  # non-null partitions written or rewritten
    pending_partition: bool = False  # the null (pending) partition is touched
    counts: dict[str, int] = field(default_factory=dict)  # rows per action

    @property
    def inserts_only(self) -> bool:
        return set(self.counts) <= {INSERT}

    @property
    def empty(self) -> bool:
        return not self.counts

    @classmethod
    def of_inserts(cls, table: str, actions: DataFrame, seen: Mapping[str, Any]) -> TablePlan:
        """A plan whose actions are exactly the rows ``seen`` describes (:func:`arrival_metrics`, observed
        when they were materialized), each inserted at its ``order_date``: no query to summarize it."""
        plan = cls(table, actions)
        if seen[ARRIVED_ROWS]:
            plan.counts[INSERT] = int(seen[ARRIVED_ROWS])
            plan.dates = set(seen[ARRIVED_DATES] or ())
            plan.pending_partition = bool(seen[ARRIVED_PENDING])
        return plan

    def summarize(self) -> TablePlan:
        for row in self.actions.groupBy(ACTION, MATCH_DATE).count().collect():
            self.counts[row[ACTION]] = self.counts.get(row[ACTION], 0) + int(row["count"])
            if row[MATCH_DATE] is None:
                self.pending_partition = True
            else:
                self.dates.add(row[MATCH_DATE].isoformat())
        return self


def arrival_metrics() -> dict[str, Column]:
    """What :meth:`TablePlan.of_inserts` needs of a table's new rows: observe them when the rows are
    materialized, and a plan that turns out to insert them all is summarized with no query (an
    aggregation of the actions is two adaptive stages: two Spark jobs per table)."""
    return {
        ARRIVED_ROWS: F.count(F.lit(1)),
        ARRIVED_DATES: F.collect_set(F.date_format(ORDER_DATE, "yyyy-MM-dd")),
        ARRIVED_PENDING: F.max(F.col(ORDER_DATE).isNull().cast("int")),
    }


def silver_columns(table: str) -> list[str]:
    return SCHEMAS[table].fieldNames()


def materialize(df: DataFrame) -> DataFrame:
    """Compute ``df`` once and cut its lineage, so later plans stay small and never re-read inputs.

    (A local checkpoint is a SQL execution like any action: its scans count in the run's metrics.)
    """
    return df.localCheckpoint(eager=True)


def materialize_observed(df: DataFrame, **metrics: Column) -> tuple[DataFrame, dict[str, Any]]:
    """``materialize(df)`` and aggregates of its rows (name -> aggregate column), from the same job.

    An Observation collects them while the rows are computed: the key ranges a plan's lookups need
    cost no query of their own (a global aggregate is two adaptive stages, ~0.1-0.2 s each).
    """
    observation = Observation()
    done = materialize(df.observe(observation, *[column.alias(name) for name, column in metrics.items()]))
    return done, {name: _python_value(value) for name, value in observation.get.items()}


def _python_value(value: Any) -> Any:
    """An observed value as Python data on Spark 4.0 and 4.1 alike.

    Spark 4.1's ``Observation.get`` converts every value (a struct is a ``Row``, an array a
    ``list``); Spark 4.0's (EMR Serverless's emr-spark-8.0.0) hands structs and arrays over as Py4J
    Java objects, which the key ranges (structs) and arrival dates (an array) cannot read.
    """
    if type(value).__name__ != "JavaObject":  # py4j's class; py4j ships no type information
        return value
    if value.getClass().getName().startswith("org.apache.spark.sql.catalyst.expressions.GenericRow"):
        names = list(value.schema().fieldNames())
        return Row(**{name: _python_value(value.get(i)) for i, name in enumerate(names)})
    return [_python_value(value.apply(i)) for i in range(value.length())]  # a Scala Seq


def plan_table(
    table: str,
    key: str,
    new: DataFrame,
    existing: DataFrame,
    applying: dict[str, str],
    seen: Mapping[str, Any] | None = None,
) -> tuple[TablePlan, DataFrame]:
    """:func:`plan_versions` as a summarized :class:`TablePlan`, plus the re-ranked keys' states.

    ``seen``: :func:`arrival_metrics` of ``new``, observed when it was materialized; when no key
    collides the plan is those rows' inserts, and is summarized from them instead of by a query.
    """
    actions, states, inserts_only = _plan_versions(table, key, new, existing, applying)
    if inserts_only and seen is not None:
        return TablePlan.of_inserts(table, actions, seen), states
    return TablePlan(table, actions).summarize(), states


def _arrivals(table: str, key: str, solo: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Keys that collide with nothing: inserted where they belong, current, from nowhere (what
    ranking would conclude), and their states (no old date)."""
    cols = [c for c in silver_columns(table) if c != IS_CURRENT]
    inserts = solo.select(
        *cols,
        F.lit(True).alias(IS_CURRENT),
        F.lit(INSERT).alias(ACTION),
        F.col(ORDER_DATE).alias(MATCH_DATE),
    )
    states = solo.select(key, F.lit(None).cast("date").alias("old_date"), F.col(ORDER_DATE).alias("new_date"))
    return inserts, states


def plan_inserts(
    table: str, key: str, new: DataFrame, seen: Mapping[str, Any]
) -> tuple[TablePlan, DataFrame]:
    """:func:`plan_table` for rows known to collide with nothing (every key occurs once in ``new``
    and none is stored: the key ledger said so): their inserts, with no query at all. ``seen``:
    :func:`arrival_metrics` of ``new``, observed when it was materialized."""
    inserts, states = _arrivals(table, key, new)
    return TablePlan.of_inserts(table, inserts, seen), states


def plan_versions(
    table: str, key: str, new: DataFrame, existing: DataFrame, applying: dict[str, str]
) -> tuple[DataFrame, DataFrame]:
    """Actions that make ``existing`` + ``new`` consistent, and (key, old_date, new_date) per re-ranked key.

    ``new``: silver-shaped rows of the file versions applied now (``order_date`` = where they go).
    ``existing``: distinct stored rows that may change, with ``_final_date`` = where they must end
    up: every version of every key in ``new`` or in a replaced file version, and rows to relocate.
    ``applying``: rel → raw ETag of the file versions applied now. Stored rows of those files are
    "gone" (replaced), except that a stored row identical to a new one (same file version, row and
    partition: left by an interrupted attempt) is updated in place instead of deleted and re-added.

    Only keys that collide are ranked: a key that occurs once in ``new`` and has no stored row
    (nothing to supersede, no twin, nothing to move: a new day's keys, as a rule) is inserted as
    current directly, so the window, its shuffle and its sort see only the colliding rows. The
    colliding keys are found with one aggregation of the new keys plus the (already narrowed)
    stored rows, and materialized: they are few, and both halves filter on them; when there are
    none, the plan is the inserts alone.

    The colliding rows are ranked with window functions over one union (no self-joins); the scored
    union is materialized once and the actions are cheap filters of it that stay lazy.
    """
    actions, states, _ = _plan_versions(table, key, new, existing, applying)
    return actions, states


def _plan_versions(
    table: str, key: str, new: DataFrame, existing: DataFrame, applying: dict[str, str]
) -> tuple[DataFrame, DataFrame, bool]:
    """:func:`plan_versions`, and whether its actions are ``new``'s inserts alone (no key collides)."""
    cols = [c for c in silver_columns(table) if c != IS_CURRENT]
    repeated = new.groupBy(key).count().where(F.col("count") > 1).select(key)
    # ``existing`` stays lazy: a new day reads its (range-limited) lookup once, here; only when keys
    # collide is it read a second time, by the ranking below.
    # Counted by the job that materializes them (an isEmpty() afterwards is one more job).
    colliding, found = materialize_observed(
        repeated.unionByName(existing.select(key)).distinct(), keys=F.count(F.lit(1))
    )

    if not found["keys"]:  # a new day, as a rule: no ranking at all
        return (*_arrivals(table, key, new), True)
    # A null key never equals anything in a join: such rows (validation rejects them) stay ranked.
    solo_inserts, solo_states = _arrivals(
        table, key, new.where(F.col(key).isNotNull()).join(F.broadcast(colliding), key, "left_anti")
    )
    new = new.join(F.broadcast(colliding), key, "left_semi").unionByName(new.where(F.col(key).isNull()))
    gone = F.col(SOURCE_FILE).isin(sorted(applying)) if applying else F.lit(False)
    stored = existing.select(
        *cols,
        F.col(IS_CURRENT).alias("_was"),
        F.col(FINAL_DATE),
        gone.alias("_gone"),
        F.lit(False).alias("_is_new"),
    )
    arriving = new.select(
        *cols,
        F.lit(None).cast("boolean").alias("_was"),
        F.col(ORDER_DATE).alias(FINAL_DATE),
        F.lit(False).alias("_gone"),
        F.lit(True).alias("_is_new"),
    )
    rows = stored.unionByName(arriving)
    by_key = Window.partitionBy(key)
    # A new row and a stored row of the same file version at the same place are twins.
    twin_place = F.when(F.col("_is_new"), F.col(FINAL_DATE)).otherwise(F.col(ORDER_DATE))
    twins = Window.partitionBy(key, *IDENTITY, twin_place)  # same key: no second shuffle
    ranked = Window.partitionBy(key).orderBy(F.col("_gone").asc(), *latest_first())
    rerank = F.max(F.col("_is_new") | F.col("_gone")).over(by_key)
    scored = materialize(
        rows.withColumn("_rerank", rerank)
        .withColumn("_twin", (F.count(F.lit(1)).over(twins) > 1) & (F.col("_is_new") | F.col("_gone")))
        .withColumn(
            IS_CURRENT,
            F.when(F.col("_gone"), F.col("_was"))
            .when(F.col("_rerank"), F.row_number().over(ranked) == 1)
            .otherwise(F.col("_was")),
        )
    )

    def emit(where: Column, action: Column, match: Column, date: Column) -> Column:
        return F.when(where, F.struct(action.alias("a"), match.alias("m"), date.alias("d")))

    here, final = F.col(ORDER_DATE), F.col(FINAL_DATE)
    is_new, is_gone, twin = F.col("_is_new"), F.col("_gone"), F.col("_twin")
    kept = ~is_new & ~is_gone
    moves = ~here.eqNullSafe(final)
    # A row yields zero, one or two actions; one explode keeps it to one pass over `scored`.
    emitted = F.array(
        emit(is_new, F.when(twin, F.lit(UPDATE)).otherwise(F.lit(INSERT)), final, final),
        emit(is_gone & ~twin, F.lit(DELETE), here, here),
        emit(kept & moves, F.lit(DELETE), here, here),
        emit(kept & moves, F.lit(INSERT), final, final),
        emit(kept & ~moves & ~F.col(IS_CURRENT).eqNullSafe(F.col("_was")), F.lit(FLAG), here, here),
    )
    actions = scored.select(
        *cols, IS_CURRENT, F.explode(F.filter(emitted, lambda a: a.isNotNull())).alias("_act")
    ).select(
        *[F.col("_act.d").alias(ORDER_DATE) if c == ORDER_DATE else F.col(c) for c in cols],
        F.col(IS_CURRENT),
        F.col("_act.a").alias(ACTION),
        F.col("_act.m").alias(MATCH_DATE),
    )
    states = (
        scored.where("_rerank")
        .groupBy(key)
        .agg(
            F.max(F.when(~is_new & F.col("_was"), here)).alias("old_date"),
            F.max(F.when(~is_gone & F.col(IS_CURRENT), final)).alias("new_date"),
        )
    )
    return solo_inserts.unionByName(actions), solo_states.unionByName(states), False


def apply_plan(lake: Lake, plan: TablePlan) -> Commit | None:
    """Commit ``plan``: an append when every action inserts, else one MERGE on the row identity.

    The MERGE condition names the touched partitions, so Delta only opens their files.
    """
    if plan.empty:
        return None
    if plan.inserts_only:
        return lake.append(plan.table, plan.actions)
    partitions = [f"t.{ORDER_DATE} IN ({sql_dates(sorted(plan.dates))})"] if plan.dates else []
    if plan.pending_partition:
        partitions.append(f"t.{ORDER_DATE} IS NULL")
    condition = " AND ".join(
        [f"t.{c} = s.{c}" for c in IDENTITY]
        + [f"t.{ORDER_DATE} <=> s.{MATCH_DATE}", "(" + " OR ".join(partitions) + ")"]
    )
    values: dict[str, str | Column] = {c: f"s.{c}" for c in silver_columns(plan.table)}
    writes = f"s.{ACTION} IN ('{INSERT}', '{UPDATE}')"
    return lake.merge(
        plan.table,
        plan.actions,
        condition,
        lambda m: (
            m.whenMatchedDelete(f"s.{ACTION} = '{DELETE}'")
            .whenMatchedUpdate(f"s.{ACTION} = '{FLAG}'", {IS_CURRENT: f"s.{IS_CURRENT}"})
            .whenMatchedUpdate(writes, values)
            .whenNotMatchedInsert(writes, values)
        ),
    )
