"""Planning a run: the silver actions for the new file versions, and the dates they touch.

The touched dates are the dates of the orders in the new files (and the old dates of the order
rows they replace or supersede), the dates of the orders that new items belong to (whether the
order arrived before, with, or after them), and, when a products version changes categories, the
dates of the items of those products. Only those dates are recomputed.

What a plan reads from silver (each intermediate result is materialized once, before anything is written):
* versions of the ``order_id`` / ``item_key`` values in the new files: a lookup limited to the
  keys' min/max range (one per length for integer ids: :func:`key_range`), so Delta's per-file
  statistics skip history files outside it (monotonic ids: nothing but the newest files), then a
  semi-join for the exact keys;
* the current date of the orders that new items belong to, when this run does not re-rank them
  (same range lookup; none when a day's orders and items arrive together);
* rows of file versions being replaced, by ``_source_file`` statistics (only when a file is
  replaced or an earlier attempt was interrupted);
* the items of orders whose current date changes: their old partition and the pending one;
* on a category change in the products master: the ``product_id``/``order_date`` columns of
  current items (the one full-history read, and only in that case).

A lookup the key ledger proves empty is not made (:func:`fresh_keys`,
:mod:`jobs.transformation.key_ledger`): a new day's plan reads no silver table at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from jobs.contract import ORDER_ITEMS, ORDERS, PRODUCTS, SOURCE_FILE, UNKNOWN_CATEGORY
from jobs.key_ranges import KeyRange, key_range
from jobs.kpis import prepare_products
from jobs.local_frames import local_frame
from jobs.staging import ITEM_KEY, ORDER_DATE, PRODUCER_KEY
from jobs.transformation.key_ledger import ITEM_KEYS, ITEM_ORDER_IDS, ORDER_IDS, KeyLedger
from jobs.transformation.lake import (
    IS_CURRENT,
    RUN_ID,
    SILVER_ITEMS,
    SILVER_ORDERS,
    SILVER_PRODUCTS,
    Lake,
    sql_dates,
)
from jobs.transformation.sources import SourceFile, read_new_rows
from jobs.transformation.versions import (
    FINAL_DATE,
    IDENTITY,
    TablePlan,
    arrival_metrics,
    materialize,
    materialize_observed,
    plan_inserts,
    plan_table,
)

# Joins with frames that grow with the new files (their keys, the re-ranked orders) carry no
# broadcast hint: a forced broadcast of a large day's item keys ran a small driver out of memory
# (bench/README.md). Adaptive execution still broadcasts them at run time when they turn out small.
ISIN_LIMIT = 1000  # above this, product ids are semi-joined instead of listed in the filter
# Conditions as SQL text, for key_range's observed metrics and, through F.expr, as filters.
MOVED = "NOT (old_date <=> new_date)"  # a re-ranked order whose date changes
ORPHAN = "_ranked IS NULL"  # a new item whose order this run does not re-rank
NO_MOVES: dict[str, Any] = {"m_low": None}  # moved_metrics() of orders none of whose items is stored


@dataclass
class RunPlan:
    """Everything a run will write to silver, and the dates that makes dirty."""

    products: DataFrame | None = None  # the new content of silver_products, when it changes
    product_dates: set[str] = field(default_factory=set)
    items: TablePlan | None = None
    orders: TablePlan | None = None
    # Key ledger name -> range of the keys of the rows the plan adds (key_ledger: widened with them
    # before the commits); the planner's lookups it skipped because the ledger proved them empty.
    key_ranges: dict[str, KeyRange | None] = field(default_factory=dict)
    lookups_skipped: list[str] = field(default_factory=list)

    @property
    def additive(self) -> bool:
        """Every silver action appends: the stored rows stay as they are (a new day, as a rule)."""
        return all(p is None or p.inserts_only for p in (self.items, self.orders))

    def arriving(self) -> dict[str, DataFrame]:
        """Silver table -> the rows the plan adds (meaningful as "the new state" when ``additive``)."""
        return {p.table: p.actions for p in (self.items, self.orders) if p is not None and not p.empty}

    @property
    def dates(self) -> set[str]:
        dates = set(self.product_dates)
        for plan in (self.items, self.orders):
            if plan is not None:
                dates |= plan.dates
        return dates


def _in_range(col: str, seen: Mapping[str, Any], name: str) -> Column:
    """A literal range predicate on ``col`` for the keys observed as ``name`` (:func:`key_range`):
    what lets Delta skip files by their min/max statistics.

    Keys are strings, so integer ids of several lengths have a lexicographic range that spans every
    shorter id above the first digit: a day whose ids pass from 99 to 100 has ["100", "99"], which
    holds nearly all of the 2-digit history. For integers, one range per length instead.
    """
    low, high = seen[f"{name}_nlow"], seen[f"{name}_nhigh"]
    if not seen[f"{name}_integers"] or low is None or low["length"] == high["length"]:
        return F.col(col).between(F.lit(seen[f"{name}_low"]), F.lit(seen[f"{name}_high"]))
    ranges = [
        F.col(col).between(
            F.lit(low["key"] if length == low["length"] else "1" + "0" * (length - 1)),
            F.lit(high["key"] if length == high["length"] else "9" * length),
        )
        for length in range(low["length"], high["length"] + 1)
    ]
    return reduce(or_, ranges)


def plan_products(
    spark: SparkSession, lake: Lake, plan: RunPlan, new: DataFrame, rels: Sequence[str]
) -> None:
    """New silver_products content; dates of current items whose product changed category."""
    before = lake.read(SILVER_PRODUCTS)
    after = materialize(before.where(~F.col(SOURCE_FILE).isin(list(rels))).unionByName(new))

    def categories(df: DataFrame) -> DataFrame:
        return prepare_products(df).select(
            "product_id", F.coalesce("category", F.lit(UNKNOWN_CATEGORY)).alias("category")
        )

    old, fresh = categories(before).alias("b"), categories(after).alias("a")
    changed = old.join(fresh, "product_id", "full").where(
        F.coalesce("b.category", F.lit(UNKNOWN_CATEGORY)) != F.coalesce("a.category", F.lit(UNKNOWN_CATEGORY))
    )
    ids = [r["product_id"] for r in changed.select("product_id").collect()]
    plan.products = after
    if not ids:
        return
    items = lake.read(SILVER_ITEMS).where(F.col(IS_CURRENT) & F.col(ORDER_DATE).isNotNull())
    if len(ids) <= ISIN_LIMIT:
        hit = items.where(F.col("product_id").isin(ids))
    else:
        schema = StructType([StructField("product_id", StringType())])
        hit = items.join(
            F.broadcast(local_frame(spark, [(i,) for i in ids], schema)), "product_id", "left_semi"
        )
    plan.product_dates = {r[ORDER_DATE].isoformat() for r in hit.select(ORDER_DATE).distinct().collect()}


def moved_metrics() -> dict[str, Column]:
    """What the items' lookups need of the orders a run re-ranks whose date changes ("moved"): their
    old dates, whether any was pending, their id range (observed while the states are computed)."""
    moved = F.expr(MOVED)
    return {
        "m_dates": F.collect_set(F.when(moved, F.date_format("old_date", "yyyy-MM-dd"))),
        "m_pending": F.max(F.when(moved, F.col("old_date").isNull().cast("int"))),
        **key_range("m", "order_id", MOVED),
    }


def plan_orders(
    lake: Lake,
    plan: RunPlan,
    new: DataFrame,
    etags: dict[str, str],
    old_rows: bool,
    seen: dict[str, Any],
) -> DataFrame:
    """Plan silver_orders; returns (order_id, old_date, new_date) for every order it re-ranks.

    ``seen``: what was observed when ``new`` was materialized: the range of ``order_id``
    (:func:`key_range` ``o``) and :func:`arrival_metrics`.
    """
    silver = lake.read(SILVER_ORDERS)
    keys = new.select("order_id")
    ids = seen
    if old_rows:  # rows of the replaced versions: their orders must be re-ranked without them
        keys, ids = materialize_observed(
            keys.unionByName(silver.where(F.col(SOURCE_FILE).isin(sorted(etags))).select("order_id")),
            **key_range("o", "order_id"),
        )
    existing = silver.where(_in_range("order_id", ids, "o")).join(
        keys.where(F.col("order_id").isNotNull()), "order_id", "left_semi"
    )
    plan.orders, states = plan_table(
        SILVER_ORDERS,
        "order_id",
        new,
        existing.withColumn(FINAL_DATE, F.col(ORDER_DATE)),
        etags,
        seen,
    )
    return states


def plan_items(
    spark: SparkSession,
    lake: Lake,
    plan: RunPlan,
    new: DataFrame,
    etags: dict[str, str],
    old_rows: bool,
    order_states: DataFrame | None,
    moved_stats: dict[str, Any] | None = None,
    ledger: KeyLedger | None = None,
    sources: Sequence[SourceFile] = (),
) -> None:
    """Plan silver_order_items: new rows at their order's date, superseded versions, moved orders.

    ``new``: the new files' rows (lazy: read once, here, dated by the re-ranked orders in the same
    job); ``order_states``: the orders this run re-ranks (None: the run has no orders);
    ``moved_stats``: :func:`moved_metrics` of them, as observed when they were computed (else one
    query here). ``ledger``: the keys silver stores (:mod:`jobs.transformation.key_ledger`), and
    ``sources`` the item files applied now: a lookup the ledger proves empty is not made.
    """
    silver = lake.read(SILVER_ITEMS)
    producer_key = F.expr(PRODUCER_KEY)
    replaced = silver.where(F.col(SOURCE_FILE).isin(sorted(etags))) if old_rows else None
    # Where the orders of the new items are now: re-ranked in this run, else ("orphans") their
    # current row in silver, looked up below (none when a day's orders came with its items).
    if order_states is not None:
        ranked = order_states.select(
            "order_id", F.col("new_date").alias(ORDER_DATE), F.lit(True).alias("_ranked")
        )
        joined = new.join(ranked, "order_id", "left")
    else:
        joined = new.select(
            "*", F.lit(None).cast("date").alias(ORDER_DATE), F.lit(None).cast("boolean").alias("_ranked")
        )
    orphan = F.expr(ORPHAN)
    # Materialized (the planner reads it twice: the solo keys and the colliding ones), with the
    # ranges the lookups need observed by the same job.
    dated, seen = materialize_observed(
        joined,
        **key_range("orphan", "order_id", ORPHAN),
        **key_range("k", ITEM_KEY, PRODUCER_KEY),
        **key_range("io", "order_id"),
        **arrival_metrics(),
    )
    plan.key_ranges[ITEM_KEYS] = KeyRange.observed(seen, "k")
    plan.key_ranges[ITEM_ORDER_IDS] = KeyRange.observed(seen, "io")
    keys = dated.select(ITEM_KEY)
    if replaced is not None:
        keys, seen_keys = materialize_observed(
            keys.unionByName(replaced.select(ITEM_KEY)).where(producer_key),
            **key_range("k", ITEM_KEY),
        )
        seen.update(seen_keys)
    keys = keys.where(producer_key)
    if order_states is not None and moved_stats is None:
        first = order_states.agg(*[c.alias(n) for n, c in moved_metrics().items()]).first()
        moved_stats = first.asDict() if first is not None else None
    m = moved_stats or {"m_low": None}
    moved = None
    if order_states is not None and m["m_low"] is not None:
        moved = order_states.where(MOVED)
    if moved is None and not etags:
        return  # no new items and no order changed date: nothing to do for items

    orphans = KeyRange.observed(seen, "orphan")
    if orphans is not None and ledger is not None and ledger.clear_of(ORDER_IDS, orphans):
        plan.lookups_skipped.append("orders of items")  # none stored: the items stay pending
    elif orphans is not None:
        found = (
            lake.read(SILVER_ORDERS)
            .where(F.col(IS_CURRENT) & _in_range("order_id", seen, "orphan"))
            .join(dated.where(orphan).select("order_id").distinct(), "order_id", "left_semi")
            .select("order_id", F.col(ORDER_DATE).alias("_found"))
        )
        dated, seen_dated = materialize_observed(
            dated.join(found, "order_id", "left")
            .withColumn(ORDER_DATE, F.coalesce(F.col(ORDER_DATE), F.col("_found")))
            .drop("_found"),
            **arrival_metrics(),
        )
        seen.update(seen_dated)
    new_dated = dated.drop("_ranked")
    # Every new key occurs once and none is stored: the items are inserts (unless orders move).
    if (
        moved is None
        and replaced is None
        and fresh_keys(sources, ledger, ITEM_KEYS, dated, ITEM_KEY, plan.key_ranges[ITEM_KEYS], PRODUCER_KEY)
    ):
        plan.lookups_skipped.append("stored items")
        plan.items, _ = plan_inserts(SILVER_ITEMS, ITEM_KEY, new_dated, seen)
        return

    parts: list[DataFrame] = []
    if seen["k_low"] is not None:
        parts.append(silver.where(_in_range(ITEM_KEY, seen, "k")).join(keys, ITEM_KEY, "left_semi"))
    if replaced is not None:
        parts.append(replaced)
    if moved is not None:
        where = [f"{ORDER_DATE} IN ({sql_dates(sorted(m['m_dates']))})"] if m["m_dates"] else []
        if m["m_pending"]:
            where.append(f"{ORDER_DATE} IS NULL")
        parts.append(
            silver.where(" OR ".join(where))
            .where(_in_range("order_id", m, "m"))
            .join(moved.select("order_id"), "order_id", "left_semi")
        )
    existing = lake.empty(SILVER_ITEMS)
    for part in parts:
        existing = existing.unionByName(part)
    if len(parts) > 1:
        existing = existing.dropDuplicates([*IDENTITY, ORDER_DATE])
    if moved is not None:
        target = moved.select("order_id", F.col("new_date").alias("_to"), F.lit(True).alias("_moved"))
        existing = existing.join(target, "order_id", "left").withColumn(
            FINAL_DATE, F.when(F.col("_moved").isNotNull(), F.col("_to")).otherwise(F.col(ORDER_DATE))
        )
    else:
        existing = existing.withColumn(FINAL_DATE, F.col(ORDER_DATE))
    plan.items, _ = plan_table(SILVER_ITEMS, ITEM_KEY, new_dated, existing, etags, seen)


def fresh_keys(
    sources: Sequence[SourceFile],
    ledger: KeyLedger | None,
    name: str,
    rows: DataFrame,
    key: str,
    keys: KeyRange | None,
    where: str | None = None,
) -> bool:
    """True when the new ``rows`` (materialized; their ``key`` values spanning ``keys``, ``where``
    limits which values count) hold each key once and silver stores none of them: validation
    recorded every file's key as unique (staging markers, :class:`jobs.staging_marker.KeySummary`), the
    ledger's ``name`` misses ``keys``, and, with several files, no key repeats among the rows (one
    small query per file set, whatever the number of files: a single file needs none). Comparing
    the files' key ranges instead would fail for the parts of an export that deals its rows out
    in turn, whose ranges all overlap, and send the plan to its lookups and ranking."""
    if ledger is None or not ledger.clear_of(name, keys):
        return False
    if not all(s.key_summary is not None and s.key_summary.unique for s in sources):
        return False
    if len(sources) < 2:
        return True
    counted = rows if where is None else rows.where(F.expr(where))
    return counted.groupBy(key).count().where(F.col("count") > 1).isEmpty()


def plan_run(
    spark: SparkSession,
    lake: Lake,
    sources: dict[str, list[SourceFile]],
    run_id: str,
    old_rows: bool,
    ledger: KeyLedger | None = None,
) -> RunPlan:
    """Plan products, orders, then items (items need the orders' new dates), reading nothing else.

    ``old_rows``: rows of the applied files may already be stored (a file is replaced, or an
    interrupted attempt wrote part of this run), so look for them by ``_source_file``.
    ``ledger``: the keys silver stores, when known: a lookup it proves empty is skipped (a new
    day's plan reads no silver table); None looks everything up.
    """
    plan = RunPlan()
    stamp = F.lit(run_id).alias(RUN_ID)

    if sources.get(PRODUCTS):
        new = read_new_rows(spark, PRODUCTS, sources[PRODUCTS]).select("*", stamp)
        plan_products(spark, lake, plan, new, [s.rel for s in sources[PRODUCTS]])

    states, moved = None, None
    if sources.get(ORDERS):
        etags = {s.rel: s.raw_etag for s in sources[ORDERS]}
        # Read once (staging rows: already typed, dated and numbered) and reused by every lookup.
        new, seen = materialize_observed(
            read_new_rows(spark, ORDERS, sources[ORDERS]).select("*", stamp),
            **key_range("o", "order_id"),
            o_nulls=F.expr("count_if(order_id IS NULL)"),
            **arrival_metrics(),
        )
        ids = plan.key_ranges[ORDER_IDS] = KeyRange.observed(seen, "o")
        if (
            not old_rows
            and not seen["o_nulls"]
            and fresh_keys(sources[ORDERS], ledger, ORDER_IDS, new, "order_id", ids)
        ):
            assert ledger is not None  # fresh_keys holds
            plan.lookups_skipped.append("stored orders")
            plan.orders, inserted = plan_inserts(SILVER_ORDERS, "order_id", new, seen)
            if ledger.clear_of(ITEM_ORDER_IDS, ids):  # no stored item waits for one of these orders
                plan.lookups_skipped.append("items of orders")
                states, moved = inserted, NO_MOVES
            else:
                states, moved = materialize_observed(inserted, **moved_metrics())
        else:
            # Items use the re-ranked orders' dates in several lookups: compute them once (3 columns).
            states, moved = materialize_observed(
                plan_orders(lake, plan, new, etags, old_rows, seen), **moved_metrics()
            )

    if sources.get(ORDER_ITEMS) or states is not None:
        item_sources = sources.get(ORDER_ITEMS, [])
        etags = {s.rel: s.raw_etag for s in item_sources}
        new = read_new_rows(spark, ORDER_ITEMS, item_sources).select("*", stamp)
        replacing = old_rows and bool(item_sources)
        plan_items(spark, lake, plan, new, etags, replacing, states, moved, ledger, item_sources)
    return plan
