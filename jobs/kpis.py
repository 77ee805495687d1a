"""The KPI contract as pure DataFrame functions (no I/O).

Inputs are the effective rows after de-duplication (see :func:`effective_rows`); every function
returns a new DataFrame, so notebooks, the transformation job, the from-scratch oracle and tests
share one implementation. Money stays an exact decimal end to end; rounding is half-up, once, at
the output.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.contract import (
    CATEGORY_KPI_SCHEMA,
    DAILY_KPI_SCHEMA,
    INGEST_SEQ,
    MONEY_OUT,
    RATE_OUT,
    ROW_NUM,
    SOURCE_FILE,
    UNKNOWN_CATEGORY,
)
from jobs.normalize import is_returned, try_decimal, with_order_date


def effective_rows(
    df: DataFrame, key: Sequence[str], order: Sequence[str] = (INGEST_SEQ, ROW_NUM)
) -> DataFrame:
    """Keep the latest row per key: a row from a later file (higher ``_ingest_seq``) wins.

    Re-uploads of one file are handled before this (the new version's rows replace the old
    version's), so the sequence only decides between different files.
    """
    present = [c for c in order if c in df.columns]
    if not present:
        return df.dropDuplicates(list(key))
    w = Window.partitionBy(*key).orderBy(*[F.col(c).desc_nulls_last() for c in present])
    return df.withColumn("_rank", F.row_number().over(w)).where("_rank = 1").drop("_rank")


def item_identity(df: DataFrame) -> Column:
    """Items are keyed by `id` when the producer sends one, else each row is its own item."""
    own = F.concat_ws("#", F.col(SOURCE_FILE), F.col(ROW_NUM).cast("string"))
    if "id" in df.columns:
        return F.coalesce(F.col("id"), F.concat(F.lit("row:"), own))
    return F.concat(F.lit("row:"), own)


def prepare_orders(orders: DataFrame, *, deduplicate: bool = True, dated: bool = False) -> DataFrame:
    """Normalised orders -> (order_id, user_id, order_date, is_returned), latest row per order.

    For the lake's current rows: ``deduplicate=False`` (they already hold one version per order:
    saves a shuffle and a sort of every row) and ``dated=True`` (their ``order_date`` was derived
    from ``created_at`` by :func:`with_order_date` when they were stored: saves six regular
    expressions per row).
    """
    typed = (orders if dated else with_order_date(orders)).select(
        F.col("order_id"),
        F.col("user_id"),
        F.col("order_date"),
        is_returned(orders).alias("is_returned"),
        *[c for c in (INGEST_SEQ, ROW_NUM) if c in orders.columns],
    )
    latest = effective_rows(typed, ["order_id"]) if deduplicate else typed
    return latest.select("order_id", "user_id", "order_date", "is_returned")


def prepare_items(items: DataFrame, *, deduplicate: bool = True) -> DataFrame:
    """Normalised order items -> (item_key, order_id, product_id, sale_price), latest per item.

    ``deduplicate=False``: the rows already hold one version per item (see :func:`prepare_orders`).
    """
    for c in (SOURCE_FILE, ROW_NUM):
        if c not in items.columns:
            items = items.withColumn(c, F.lit(None).cast("string" if c == SOURCE_FILE else "long"))
    typed = items.select(
        item_identity(items).alias("item_key"),
        F.col("order_id"),
        F.col("product_id"),
        try_decimal("sale_price").alias("sale_price"),
        *[c for c in (INGEST_SEQ, ROW_NUM) if c in items.columns],
    )
    latest = effective_rows(typed, ["item_key"]) if deduplicate else typed
    return latest.select("item_key", "order_id", "product_id", "sale_price")


def prepare_products(products: DataFrame) -> DataFrame:
    """Normalised products -> (product_id, category), latest row per product id."""
    typed = products.select(
        F.col("id").alias("product_id"),
        F.col("category"),
        *[c for c in (INGEST_SEQ, ROW_NUM) if c in products.columns],
    )
    return effective_rows(typed, ["product_id"]).select("product_id", "category")


def half_up_ratio(numerator: Column, denominator: Column, factor: int = 1) -> Column:
    """``round_half_up(factor * numerator / denominator, 2)`` exactly, for numerator >= 0, denominator > 0.

    Spark's decimal division rounds the quotient to a finite scale before ``round`` sees it, which
    can round twice; SQL ``div`` on decimals is exact integral division, so
    ``(200*factor*n + d) div (2*d)`` gives the half-up cents with no intermediate rounding.
    """
    n = numerator.cast("decimal(38,10)")
    d = denominator.cast("decimal(38,10)")
    cents = F.call_function("div", n * F.lit(200 * factor) + d, d * F.lit(2))
    return (cents.cast("decimal(38,0)") / F.lit(100)).cast(MONEY_OUT)


def percentage(part: Column, whole: Column) -> Column:
    """100 × part / whole, rounded half-up to 2 places."""
    return half_up_ratio(part, whole, 100).cast(RATE_OUT)


def attach_order_dates(orders: DataFrame, items: DataFrame) -> DataFrame:
    """Items of orders that have arrived, with their order's date and returned flag.

    Items whose order is missing are not dropped from storage; they simply have no date yet.
    """
    return items.join(orders.select("order_id", "order_date", "is_returned"), "order_id", "inner")


def daily_kpis(orders: DataFrame, items: DataFrame) -> DataFrame:
    """DailyKPIs per order date over prepared orders and items (docs/kpi-contract.md)."""
    o = orders.where(F.col("order_date").isNotNull())
    per_order = o.groupBy("order_date").agg(
        F.count(F.lit(1)).alias("total_orders"),
        F.sum(F.col("is_returned").cast("long")).alias("returned_orders"),
        F.countDistinct("user_id").alias("unique_customers"),
    )
    per_item = (
        attach_order_dates(o, items)
        .groupBy("order_date")
        .agg(F.sum("sale_price").alias("revenue"), F.count(F.lit(1)).alias("total_items_sold"))
    )
    joined = per_order.join(per_item, "order_date", "left")
    return joined.select(
        F.date_format("order_date", "yyyy-MM-dd").alias("date_key"),
        F.col("total_orders").cast("long"),
        F.round(F.coalesce(F.col("revenue"), F.lit(0).cast("decimal(38,10)")), 2)
        .cast(MONEY_OUT)
        .alias("total_revenue"),
        F.coalesce(F.col("total_items_sold"), F.lit(0)).cast("long").alias("total_items_sold"),
        percentage(F.col("returned_orders"), F.col("total_orders")).alias("return_rate"),
        F.col("unique_customers").cast("long"),
    ).to(DAILY_KPI_SCHEMA)


def category_kpis(orders: DataFrame, items: DataFrame, products: DataFrame) -> DataFrame:
    """CategoryKPIs per (category, order date); unknown products count in ``Unknown``."""
    o = orders.where(F.col("order_date").isNotNull())
    with_cat = attach_order_dates(o, items).join(
        products.select("product_id", "category"), "product_id", "left"
    )
    with_cat = with_cat.withColumn("category", F.coalesce(F.col("category"), F.lit(UNKNOWN_CATEGORY)))
    # Two plain aggregations (per order, then per category and day) instead of two distinct counts
    # in one: Spark runs the latter by duplicating every row (Expand) before a wider shuffle.
    per_order = with_cat.groupBy("category", "order_date", "order_id").agg(
        F.sum("sale_price").alias("revenue"), F.max("is_returned").alias("is_returned")
    )
    agg = per_order.groupBy("category", "order_date").agg(
        F.sum("revenue").alias("revenue"),
        F.count(F.lit(1)).alias("orders"),
        F.count(F.when(F.col("is_returned"), 1)).alias("returned_orders"),
    )
    revenue = F.coalesce(F.col("revenue"), F.lit(0).cast("decimal(38,10)"))
    return agg.select(
        F.col("category").alias("category_id"),
        F.date_format("order_date", "yyyy-MM-dd").alias("date_key"),
        F.round(revenue, 2).cast(MONEY_OUT).alias("daily_revenue"),
        money_ratio(revenue, F.col("orders")).alias("avg_order_value"),
        percentage(F.col("returned_orders"), F.col("orders")).alias("avg_return_rate"),
    ).to(CATEGORY_KPI_SCHEMA)


def money_ratio(amount: Column, count: Column) -> Column:
    """amount / count rounded half-up to 2 places (amount ≥ 0)."""
    return half_up_ratio(amount, count)


def kpi_rows(orders: DataFrame, items: DataFrame, products: DataFrame) -> DataFrame:
    """Both KPI tables in one frame: column ``daily`` or ``category`` holds a row of that table.

    The same numbers as :func:`daily_kpis` and :func:`category_kpis`, from ONE items-orders join and
    one collect. Two partial aggregations feed one rollup: items joined to their orders and products
    are summed per (date, category, order); the orders alone are counted per (date, customer), so
    that an order without items still counts and each customer is one row (the distinct count
    becomes a sum). Each kind of row fills its own columns and zeros the other's, so one rollup over
    their union gives the per-(category, date) sums (level 0; the customer rows' null category is
    dropped) and the per-date totals (level 1) with plain sums of exact decimals and counts.
    Everything is one query on purpose: two frames derived from the shared join would each re-run it
    (Spark prunes their inputs differently, so it cannot reuse the exchange); and a union instead of
    joining per-date counts to the sums saves the join's two shuffles (tests/jobs/transformation/test_job_budget.py counts
    the jobs; bench/results/LOG.md, 2026-12-02). The transformation uses this; the oracle keeps the two separate definitions,
    and the tests compare one against the other.
    """
    o = orders.where(F.col("order_date").isNotNull())
    zero_count = F.lit(0).cast("long")  # the other row kind's counts
    per_order = (
        attach_order_dates(o, items)
        .join(products.select("product_id", "category"), "product_id", "left")
        .withColumn("category", F.coalesce(F.col("category"), F.lit(UNKNOWN_CATEGORY)))
        .groupBy("order_date", "category", "order_id")
        .agg(
            F.sum("sale_price").alias("revenue"),
            F.count(F.lit(1)).alias("items"),
            F.max("is_returned").alias("is_returned"),
        )
        .select(
            "order_date",
            "category",
            "revenue",
            "items",
            F.lit(1).cast("long").alias("category_orders"),
            F.when(F.col("is_returned"), 1).otherwise(0).cast("long").alias("category_returned"),
            zero_count.alias("orders"),
            zero_count.alias("returned"),
            zero_count.alias("customers"),
        )
    )
    per_customer = (
        o.groupBy("order_date", "user_id")
        .agg(
            F.count(F.lit(1)).alias("orders"),
            F.sum(F.col("is_returned").cast("long")).alias("returned"),
        )
        .select(
            "order_date",
            F.lit(None).cast("string").alias("category"),
            F.lit(None).cast("decimal(38,10)").alias("revenue"),
            zero_count.alias("items"),
            zero_count.alias("category_orders"),
            zero_count.alias("category_returned"),
            "orders",
            "returned",
            # countDistinct's rule: orders without a customer count, a null customer does not.
            F.col("user_id").isNotNull().cast("long").alias("customers"),
        )
    )
    sums = (
        per_order.unionByName(per_customer)
        .rollup("order_date", "category")  # (date, category) -> level 0, (date) -> 1, () dropped
        .agg(
            F.sum("revenue").alias("revenue"),
            F.sum("items").alias("items"),
            F.sum("category_orders").alias("category_orders"),
            F.sum("category_returned").alias("category_returned"),
            F.sum("orders").alias("total_orders"),
            F.sum("returned").alias("returned_today"),
            F.sum("customers").alias("unique_customers"),
            F.grouping_id().alias("_level"),
        )
        .where(F.col("order_date").isNotNull())
    )
    zero = F.lit(0).cast("decimal(38,10)")
    revenue = F.coalesce(F.col("revenue"), zero)  # a date whose orders have no items
    date_key = F.date_format("order_date", "yyyy-MM-dd")
    category = F.struct(
        F.col("category").alias("category_id"),
        date_key.alias("date_key"),
        F.round(revenue, 2).cast(MONEY_OUT).alias("daily_revenue"),
        money_ratio(revenue, F.col("category_orders")).alias("avg_order_value"),
        percentage(F.col("category_returned"), F.col("category_orders")).alias("avg_return_rate"),
    ).cast(CATEGORY_KPI_SCHEMA)
    daily = F.struct(
        date_key.alias("date_key"),
        F.col("total_orders").cast("long").alias("total_orders"),
        F.round(revenue, 2).cast(MONEY_OUT).alias("total_revenue"),
        F.col("items").cast("long").alias("total_items_sold"),
        percentage(F.col("returned_today"), F.col("total_orders")).alias("return_rate"),
        F.col("unique_customers").cast("long").alias("unique_customers"),
    ).cast(DAILY_KPI_SCHEMA)
    is_daily = F.col("_level") == 1
    is_category = (F.col("_level") == 0) & F.col("category").isNotNull()
    return sums.where(is_daily | is_category).select(
        F.when(is_daily, daily).alias("daily"), F.when(is_category, category).alias("category")
    )
