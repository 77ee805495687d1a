"""The KPI contract on hand-built frames; every expected number is worked out in the comments."""

from __future__ import annotations

from decimal import Decimal

from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs.contract import CATEGORY_KPI_SCHEMA, DAILY_KPI_SCHEMA
from jobs.kpis import (
    category_kpis,
    daily_kpis,
    kpi_rows,
    prepare_items,
    prepare_orders,
    prepare_products,
)
from jobs.local_frames import local_frame
from jobs.normalize import normalize_columns, with_order_date

D = Decimal


def frame(spark, columns, rows):
    return spark.createDataFrame(rows, schema=", ".join(f"`{c}` string" for c in columns))


def orders_df(spark, rows, columns=("order_id", "user_id", "status", "created_at", "returned_at")):
    return frame(spark, columns, rows)


def items_df(spark, rows, columns=("id", "order_id", "product_id", "sale_price")):
    return frame(spark, columns, rows)


def products_df(spark, rows=(("p1", "Jeans"), ("p2", "Tops"))):
    return frame(spark, ("id", "category"), list(rows))


def kpis_from_one_join(orders, items, products):
    """(daily, category) of :func:`jobs.kpis.kpi_rows`, the transformation's one-join form, as two frames."""
    rows = kpi_rows(orders, items, products)
    return (
        rows.where(F.col("daily").isNotNull()).select("daily.*"),
        rows.where(F.col("category").isNotNull()).select("category.*"),
    )


def computed(frame):
    """``frame`` computed once, as a frame of its rows: a KPI plan on two rows is about ten query
    stages (1.5-2 s a collect here), and a test looks at its result several times."""
    return local_frame(frame.sparkSession, frame.collect(), frame.schema)


def kpis(spark, orders, items, products=None):
    o = prepare_orders(orders)
    i = prepare_items(items)
    p = prepare_products(products if products is not None else products_df(spark))
    daily, category = computed(daily_kpis(o, i)), computed(category_kpis(o, i, p))
    # The transformation's one-join form must give the same rows on every case of this file.
    one_daily, one_category = (computed(f) for f in kpis_from_one_join(o, i, p))
    assert_df_equality(one_daily, daily, ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(one_category, category, ignore_row_order=True, ignore_nullable=True)
    return daily, category


CREATED_AT_CASES = [
    ("2025-07-10 12:00:00", "2025-07-10"),
    ("2025-07-10T12:00:00", "2025-07-10"),
    ("2025-07-10 23:59:59.123456", "2025-07-10"),
    ("2025-07-10T23:59:59.5Z", "2025-07-10"),
    ("2025-07-10 01:00:00 UTC", "2025-07-10"),
    ("2025-07-10 01:00:00UTC", "2025-07-10"),
    ("2025-07-10T01:30:00+02:00", "2025-07-09"),  # 23:30 UTC the day before
    ("2025-07-10T01:30:00+0200", "2025-07-09"),
    ("2025-07-10T01:30:00+02", "2025-07-09"),
    ("2025-07-10T02:00:00+02:00", "2025-07-10"),  # exactly midnight UTC
    ("2025-07-10T22:30:00-02:00", "2025-07-11"),  # 00:30 UTC the next day
    ("2025-07-10 20:00:00-0500", "2025-07-11"),
    ("2025-12-31T23:00:00-01:00", "2026-01-01"),  # year boundary
    ("  2025-07-10 12:00:00  ", "2025-07-10"),
    ("2025-07-10", None),  # no time part: not an accepted form
    ("10/07/2025 12:00:00", None),
    ("2025-13-10 12:00:00", None),
    ("2025-02-30 12:00:00", None),
    ("2025-07-10 24:00:00", None),
    ("2025-07-10 12:00:00 CET", None),
    ("not a date", None),
    (None, None),
]


def test_order_date_accepts_exactly_the_contract_forms(spark):
    # One frame for all cases: a Spark action per case would cost seconds each.
    df = spark.createDataFrame(CREATED_AT_CASES, "created_at string, expected string")
    got = with_order_date(df).select(
        "created_at", "expected", F.date_format("order_date", "yyyy-MM-dd").alias("d")
    )
    mismatches = [(r["created_at"], r["expected"], r["d"]) for r in got.collect() if r["d"] != r["expected"]]
    assert mismatches == []


def test_daily_and_category_kpis_hand_computed(spark):
    # o1 (u1, Complete): items p1 10.00 + p2 5.50  -> not returned
    # o2 (u2, returned lower-case): item p1 20.00 -> returned
    # o3 (u1, Complete, returned_at set): item p2 4.50 -> returned only by returned_at
    # o4 (u3, Processing): no items -> counts in total_orders only
    orders = orders_df(
        spark,
        [
            ("o1", "u1", "Complete", "2025-07-10 10:00:00", None),
            ("o2", "u2", "returned", "2025-07-10 11:00:00", None),
            ("o3", "u1", "Complete", "2025-07-10 12:00:00", "2025-07-12 09:00:00"),
            ("o4", "u3", "Processing", "2025-07-10 13:00:00", ""),
        ],
    )
    items = items_df(
        spark,
        [
            ("i1", "o1", "p1", "10.00"),
            ("i2", "o1", "p2", "5.50"),
            ("i3", "o2", "p1", "20.00"),
            ("i4", "o3", "p2", "4.50"),
        ],
    )
    daily, category = kpis(spark, orders, items)
    # total_orders 4; revenue 10+5.5+20+4.5 = 40.00; items 4; returned 2/4 = 50.00%; customers u1,u2,u3 = 3
    expected_daily = spark.createDataFrame(
        [("2025-07-10", 4, D("40.00"), 4, D("50.00"), 3)], DAILY_KPI_SCHEMA
    )
    assert_df_equality(daily, expected_daily, ignore_nullable=True)
    # Jeans: o1 10.00 + o2 20.00 = 30.00 over {o1,o2}: AOV 15.00, returned {o2} 1/2 = 50.00
    # Tops: o1 5.50 + o3 4.50 = 10.00 over {o1,o3}: AOV 5.00, returned {o3} 1/2 = 50.00
    expected_cat = spark.createDataFrame(
        [
            ("Jeans", "2025-07-10", D("30.00"), D("15.00"), D("50.00")),
            ("Tops", "2025-07-10", D("10.00"), D("5.00"), D("50.00")),
        ],
        CATEGORY_KPI_SCHEMA,
    )
    assert_df_equality(category, expected_cat, ignore_row_order=True, ignore_nullable=True)


def test_capitalised_status_and_missing_return_columns(spark):
    orders = frame(
        spark,
        ("order_id", "user_id", "status", "created_at"),
        [
            ("o1", "u1", "RETURNED", "2025-07-10 10:00:00"),
            ("o2", "u1", " Returned ", "2025-07-10 10:00:00"),
            ("o3", "u2", "Shipped", "2025-07-10 10:00:00"),
        ],
    )
    daily, _ = kpis(spark, orders, items_df(spark, []))
    # 2 of 3 returned = 66.666.. -> 66.67 (half-up); 2 customers; no items -> revenue 0.00
    assert daily.collect()[0].asDict() == {
        "date_key": "2025-07-10", "total_orders": 3, "total_revenue": D("0.00"), "total_items_sold": 0,
        "return_rate": D("66.67"), "unique_customers": 2,
    }  # fmt: skip
    # Without status and returned_at columns nothing is returned.
    bare = frame(spark, ("order_id", "user_id", "created_at"), [("o1", "u1", "2025-07-10 10:00:00")])
    daily, _ = kpis(spark, bare, items_df(spark, []))
    assert daily.first()["return_rate"] == D("0.00")


def test_plus_two_hours_midnight_moves_order_and_its_items_to_previous_day(spark):
    orders = orders_df(spark, [("o1", "u1", "Complete", "2025-07-10T01:30:00+02:00", None)])
    items = items_df(spark, [("i1", "o1", "p1", "7.25")])
    daily, category = kpis(spark, orders, items)
    assert [r["date_key"] for r in daily.collect()] == ["2025-07-09"]
    assert [(r["category_id"], r["date_key"]) for r in category.collect()] == [("Jeans", "2025-07-09")]


def test_unknown_product_counts_daily_and_in_unknown_category(spark):
    orders = orders_df(spark, [("o1", "u1", "Complete", "2025-07-10 10:00:00", None)])
    items = items_df(spark, [("i1", "o1", "p1", "3.00"), ("i2", "o1", "zzz", "2.00")])
    daily, category = kpis(spark, orders, items)
    assert daily.first()["total_revenue"] == D("5.00")
    assert daily.first()["total_items_sold"] == 2
    got = {r["category_id"]: r["daily_revenue"] for r in category.collect()}
    assert got == {"Jeans": D("3.00"), "Unknown": D("2.00")}


def test_item_whose_order_is_missing_is_not_counted_until_the_order_arrives(spark):
    orders = orders_df(spark, [("o1", "u1", "Complete", "2025-07-10 10:00:00", None)])
    items = items_df(spark, [("i1", "o1", "p1", "3.00"), ("i2", "o9", "p1", "100.00")])
    daily, _ = kpis(spark, orders, items)
    assert (daily.first()["total_revenue"], daily.first()["total_items_sold"]) == (D("3.00"), 1)
    later = orders.unionByName(orders_df(spark, [("o9", "u2", "Complete", "2025-07-10 11:00:00", None)]))
    daily, _ = kpis(spark, later, items)
    assert (daily.first()["total_revenue"], daily.first()["total_items_sold"]) == (D("103.00"), 2)


def test_later_file_replaces_order_and_item_rows(spark):
    # o1 first arrives as Complete on 07-10 (seq 1), then a later file (seq 2) says Returned on 07-11.
    orders = (
        frame(
            spark,
            ("order_id", "user_id", "status", "created_at", "_ingest_seq", "_row_num"),
            [
                ("o1", "u1", "Complete", "2025-07-10 10:00:00", "1", "0"),
                ("o1", "u1", "Returned", "2025-07-11 10:00:00", "2", "0"),
            ],
        )
        .withColumn("_ingest_seq", F.col("_ingest_seq").cast("long"))
        .withColumn("_row_num", F.col("_row_num").cast("long"))
    )
    items = (
        frame(
            spark,
            ("id", "order_id", "product_id", "sale_price", "_source_file", "_ingest_seq", "_row_num"),
            [("i1", "o1", "p1", "10.00", "a.csv", "1", "0"), ("i1", "o1", "p2", "12.00", "b.csv", "2", "0")],
        )
        .withColumn("_ingest_seq", F.col("_ingest_seq").cast("long"))
        .withColumn("_row_num", F.col("_row_num").cast("long"))
    )
    daily, category = kpis(spark, orders, items)
    assert [
        (r["date_key"], r["total_orders"], r["total_revenue"], r["return_rate"]) for r in daily.collect()
    ] == [("2025-07-11", 1, D("12.00"), D("100.00"))]
    assert [(r["category_id"], r["daily_revenue"]) for r in category.collect()] == [("Tops", D("12.00"))]


def test_items_without_id_are_each_their_own_unit(spark):
    orders = orders_df(spark, [("o1", "u1", "Complete", "2025-07-10 10:00:00", None)])
    items = frame(
        spark,
        ("order_id", "product_id", "sale_price", "_source_file", "_row_num"),
        [("o1", "p1", "1.00", "f.csv", "0"), ("o1", "p1", "1.00", "f.csv", "1")],
    ).withColumn("_row_num", F.col("_row_num").cast("long"))
    daily, _ = kpis(spark, orders, items)
    assert (daily.first()["total_items_sold"], daily.first()["total_revenue"]) == (2, D("2.00"))


def test_rounding_is_half_up_and_exact(spark):
    # Revenue 0.125 + 0.0000000001 = 0.1250000001 -> 0.13; AOV over 1 order the same.
    # Orders: 8, returned 1 -> 12.5 exactly -> 12.50; category: 3 orders, 1 returned -> 33.33
    # AOV Jeans: (10.005 + 0 + 0) / 3 orders = 3.335 -> 3.34 (half-up, a float would give 3.33)
    rows = [
        (f"o{i}", f"u{i}", "Returned" if i == 0 else "Complete", "2025-07-10 10:00:00", None)
        for i in range(8)
    ]
    orders = orders_df(spark, rows)
    items = items_df(
        spark,
        [("i0", "o0", "p1", "10.005"), ("i1", "o1", "p1", "0"), ("i2", "o2", "p1", "0.00")],
    )
    daily, category = kpis(spark, orders, items)
    d = daily.first()
    assert (d["total_revenue"], d["return_rate"]) == (D("10.01"), D("12.50"))
    c = category.first()
    assert (c["daily_revenue"], c["avg_order_value"], c["avg_return_rate"]) == (
        D("10.01"),
        D("3.34"),
        D("33.33"),
    )


def test_one_join_form_counts_customers_and_returns_like_the_two_definitions(spark):
    """``kpi_rows`` turns the distinct-customer count into a sum over (date, customer) rows: a null
    customer, a customer with two orders and one whose order has no items must count as
    ``countDistinct`` does; a null returned flag (never made by ``prepare_orders``, possible in a
    hand-built frame) as ``count(when(...))`` and ``sum`` do in the two definitions."""
    day = F.to_date(F.lit("2025-07-10"))
    orders = spark.createDataFrame(
        [
            ("o1", "u1", True),
            ("o2", "u1", False),  # u1's second order: one customer
            ("o3", None, False),  # no customer: an order, not a customer
            ("o4", "u2", None),  # returned unknown
            ("o5", "u3", False),  # no items: counts in the day only
        ],
        "order_id string, user_id string, is_returned boolean",
    ).withColumn("order_date", day)
    items = spark.createDataFrame(
        [
            ("i1", "o1", "p1", D("10.00")),
            ("i2", "o2", "p1", D("5.00")),
            ("i3", "o3", "p1", D("2.50")),
            ("i4", "o4", "p2", D("1.00")),
            ("i5", "o4", "p2", None),
        ],
        "item_key string, order_id string, product_id string, sale_price decimal(38,10)",
    )
    products = prepare_products(products_df(spark))
    daily, category = computed(daily_kpis(orders, items)), computed(category_kpis(orders, items, products))
    one_daily, one_category = (computed(f) for f in kpis_from_one_join(orders, items, products))
    assert_df_equality(one_daily, daily, ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(one_category, category, ignore_row_order=True, ignore_nullable=True)
    d = one_daily.first()
    # 5 orders, 3 customers (u1, u2, u3), 5 items, 18.50; 1 of 5 returned (o4 unknown) -> 20.00
    assert (d["total_orders"], d["unique_customers"], d["total_items_sold"]) == (5, 3, 5)
    assert (d["total_revenue"], d["return_rate"]) == (D("18.50"), D("20.00"))
    # Tops holds o4 alone, whose returned flag is unknown: 0 of 1 returned, as count(when(...)) says.
    tops = one_category.where("category_id = 'Tops'").first()
    assert (tops["daily_revenue"], tops["avg_return_rate"]) == (D("1.00"), D("0.00"))


def test_header_normalisation_and_trimming(spark):
    raw = spark.createDataFrame(
        [(" o1 ", "u1", "2025-07-10 10:00:00", "  ")],
        "`\ufeffOrder_ID ` string, ` USER_ID` string, `Created_At` string, `RETURNED_AT` string",
    )
    norm = normalize_columns(raw)
    assert norm.columns == ["order_id", "user_id", "created_at", "returned_at"]
    row = norm.first()
    assert (row["order_id"], row["returned_at"]) == ("o1", None)
