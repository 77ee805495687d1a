"""Check columns: the contract's typed interpretations of a file's string values, for the suites.

A producer's values are strings; whether ``sale_price`` is a number or ``created_at`` a timestamp
is decided by the same functions the KPI computation uses (``try_decimal``, ``with_order_date``,
``ORDER_STATUSES``), so validation can never accept a value the transformation would turn into a
null. Each check column holds the ORIGINAL text of a row that breaks its rule and null otherwise;
the suite asserts it is null. A report therefore shows the producer's own values ("abc", "12,5",
"2025-02-30 10:00:00") as samples, not a cast result.

Names are ``<source column>__<problem>``; the suites reference them and ``CHECK_COLUMNS`` is the
registry a test compares the suites against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.contract import ORDER_ITEMS, ORDER_STATUSES, ORDERS, PRODUCTS
from jobs.normalize import try_decimal, with_order_date

_ORDER_DATE = "__ecomkpi_order_date"
_KNOWN_PRODUCT = "__ecomkpi_known_product"


def _not_numeric(source: str) -> Column:
    return F.when(F.col(source).isNotNull() & try_decimal(source).isNull(), F.col(source))


def _negative(source: str) -> Column:
    return F.when(try_decimal(source) < 0, F.col(source))


def _unknown_status(source: str) -> Column:
    allowed = [s.lower() for s in ORDER_STATUSES]
    return F.when(F.col(source).isNotNull() & ~F.lower(F.col(source)).isin(allowed), F.col(source))


def _unparseable_created_at(source: str) -> Column:
    return F.when(F.col(source).isNotNull() & F.col(_ORDER_DATE).isNull(), F.col(source))


# Order dates outside these years are typos or sentinels (9999-12-31, 0001-01-01), never sales: they
# would each create a KPI day of their own. Inclusive bounds; README "Accepted and rejected kinds".
PLAUSIBLE_YEARS = (1970, 2099)


def _implausible_created_at(source: str) -> Column:
    year = F.year(F.col(_ORDER_DATE))
    low, high = PLAUSIBLE_YEARS
    return F.when(F.col(_ORDER_DATE).isNotNull() & ((year < low) | (year > high)), F.col(source))


# DynamoDB holds at most 2,048 bytes (UTF-8) in a partition key: CategoryKPIs' category_id is one.
MAX_KEY_BYTES = 2048
_SAMPLE_CHARS = 64  # of an over-long value in a report: its start and its size, not all of it


def _too_long_key(source: str) -> Column:
    size = F.octet_length(F.col(source))
    sample = F.concat(F.substring(F.col(source), 1, _SAMPLE_CHARS), F.lit("... ("), size, F.lit(" bytes)"))
    return F.when(size > MAX_KEY_BYTES, sample)


def _control_characters(source: str) -> Column:
    """Tabs, line breaks, NUL, ESC and the other C0/C1 controls: they would forge lines in logs and
    reports and break the CSV downloads of every day that sells the product."""
    return F.when(F.col(source).rlike(r"\p{Cc}"), F.col(source))


def _unknown_product(source: str) -> Column:
    return F.when(F.col(source).isNotNull() & F.col(_KNOWN_PRODUCT).isNull(), F.col(source))


# check column -> (source column, rule expression). The expression may use a staging column added
# by ``add_check_columns`` (the parsed order date, the product lookup).
CHECK_COLUMNS: dict[str, dict[str, tuple[str, Callable[[str], Column]]]] = {
    PRODUCTS: {
        "category__too_long": ("category", _too_long_key),
        "category__control_characters": ("category", _control_characters),
        "cost__not_numeric": ("cost", _not_numeric),
        "cost__negative": ("cost", _negative),
        "retail_price__not_numeric": ("retail_price", _not_numeric),
        "retail_price__negative": ("retail_price", _negative),
    },
    ORDERS: {
        "created_at__unparseable": ("created_at", _unparseable_created_at),
        "created_at__implausible": ("created_at", _implausible_created_at),
        "status__unknown": ("status", _unknown_status),
    },
    ORDER_ITEMS: {
        "sale_price__not_numeric": ("sale_price", _not_numeric),
        "sale_price__negative": ("sale_price", _negative),
        "product_id__unknown": ("product_id", _unknown_product),
    },
}


def with_columns_present(df: DataFrame, columns: Iterable[str]) -> tuple[DataFrame, frozenset[str]]:
    """Add each absent optional column as all-null, and say which were absent.

    The suite then runs unchanged on every file: an optional column (``status``, the items' ``id``)
    that is absent passes its rules. Absent REQUIRED columns are left absent, so that the suite's
    column-set rule sees them missing.
    """
    absent = [c for c in dict.fromkeys(columns) if c not in df.columns]
    if not absent:
        return df, frozenset()
    return df.withColumns({c: F.lit(None).cast("string") for c in absent}), frozenset(absent)


def add_check_columns(dataset: str, df: DataFrame, product_ids: DataFrame | None = None) -> DataFrame:
    """Add the dataset's check columns to a normalised frame.

    A check whose source column is absent is all-null (its rule passes; the column-set rule reports
    the absence). ``product_ids`` (one column ``id``, distinct) enables the unknown-product check;
    without it the check column is all-null too (the report notes that it was skipped).
    """
    checks = CHECK_COLUMNS[dataset]
    staged = df
    if dataset == ORDERS and "created_at" in df.columns:
        staged = with_order_date(staged, "created_at", _ORDER_DATE)
    if dataset == ORDER_ITEMS and "product_id" in df.columns:
        if product_ids is None:
            staged = staged.withColumn(_KNOWN_PRODUCT, F.col("product_id"))
        else:
            known = F.broadcast(product_ids.select(F.col("id").alias(_KNOWN_PRODUCT)))
            staged = staged.join(known, staged["product_id"] == known[_KNOWN_PRODUCT], "left")
    null = F.lit(None).cast("string")
    staged = staged.withColumns(
        {name: rule(source) if source in df.columns else null for name, (source, rule) in checks.items()}
    )
    return staged.drop(_ORDER_DATE, _KNOWN_PRODUCT)


def product_id_set(products: DataFrame) -> DataFrame:
    """The master data's product ids (trimmed, distinct), the lookup of the unknown-product check."""
    return products.select(F.col("id")).where(F.col("id").isNotNull()).distinct()
