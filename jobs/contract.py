"""The data and KPI contract in one place: dataset columns, accepted values, output schemas.

Validation rules, the KPI functions, the DynamoDB serving layer and the DuckDB benchmark all import
these names, so a change to the contract is a change in one file.
"""

from __future__ import annotations

from pyspark.sql.types import DecimalType, LongType, StringType, StructField, StructType

PRODUCTS, ORDERS, ORDER_ITEMS = "products", "orders", "order_items"
DATASETS = (PRODUCTS, ORDERS, ORDER_ITEMS)
TRANSACTION_DATASETS = (ORDERS, ORDER_ITEMS)  # the ones with a folder per day (<dataset>/<date>/)

# Column layout of the public TheLook eCommerce data set.
COLUMNS: dict[str, tuple[str, ...]] = {
    PRODUCTS: (
        "id", "cost", "category", "name", "brand", "retail_price", "department", "sku",
        "distribution_center_id",
    ),
    ORDERS: (
        "order_id", "user_id", "status", "gender", "created_at", "returned_at", "shipped_at",
        "delivered_at", "num_of_item",
    ),
    ORDER_ITEMS: (
        "id", "order_id", "user_id", "product_id", "inventory_item_id", "status", "created_at",
        "shipped_at", "delivered_at", "returned_at", "sale_price",
    ),
}  # fmt: skip

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    PRODUCTS: ("id", "sku", "cost", "category", "retail_price"),
    ORDERS: ("order_id", "user_id", "created_at"),
    ORDER_ITEMS: ("order_id", "product_id", "sale_price"),
}

ORDER_STATUSES = ("Complete", "Shipped", "Processing", "Cancelled", "Returned", "Delivered", "Pending")
RETURNED_STATUS = "returned"
UNKNOWN_CATEGORY = "Unknown"

# created_at forms: `YYYY-MM-DD HH:MM:SS` or with `T`, optional fraction, optional zone
# `Z`, ` UTC`, `+HH:MM`, `+HHMM`, `+HH` (or `-`). No zone means UTC. Java regex syntax (Spark).
CREATED_AT_REGEX = (
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
    r"(?:\s*(Z|z|UTC|utc|[+-]\d{2}(?::?\d{2})?))?$"
)

# Money inside the computation: exact decimals wide enough for any producer's precision.
MONEY_IN = DecimalType(38, 10)
MONEY_OUT = DecimalType(38, 2)
RATE_OUT = DecimalType(5, 2)

DAILY_KPI_SCHEMA = StructType(
    [
        StructField("date_key", StringType(), True),
        StructField("total_orders", LongType(), True),
        StructField("total_revenue", MONEY_OUT, True),
        StructField("total_items_sold", LongType(), True),
        StructField("return_rate", RATE_OUT, True),
        StructField("unique_customers", LongType(), True),
    ]
)
CATEGORY_KPI_SCHEMA = StructType(
    [
        StructField("category_id", StringType(), True),
        StructField("date_key", StringType(), True),
        StructField("daily_revenue", MONEY_OUT, True),
        StructField("avg_order_value", MONEY_OUT, True),
        StructField("avg_return_rate", RATE_OUT, True),
    ]
)
DAILY_KPI_COLUMNS = tuple(DAILY_KPI_SCHEMA.fieldNames())
CATEGORY_KPI_COLUMNS = tuple(CATEGORY_KPI_SCHEMA.fieldNames())
# Served rows of a date some of whose day files (orders/<date>/, order_items/<date>/) are rejected
# carry this count: the KPIs are then those of the files that passed, not the whole day. Absent: none.
REJECTED_FILES = "rejected_files"

# Bookkeeping columns the ingestion adds to every row (never part of a producer's file).
SOURCE_FILE = "_source_file"  # relative key of the file the row came from
INGEST_SEQ = "_ingest_seq"  # arrival order of that file's version; later replaces earlier
ROW_NUM = "_row_num"  # position within the file, identity of items without an `id`
