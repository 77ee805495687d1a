"""The from-scratch oracle on a few local CSV files, against hand-computed KPIs."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from chispa import assert_df_equality

from jobs.contract import CATEGORY_KPI_SCHEMA, DAILY_KPI_SCHEMA
from jobs.oracle import effective_files, kpis_from_files

D = Decimal


def write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_oracle_applies_files_in_arrival_order_with_replacement(spark, tmp_path):
    products = write(
        tmp_path, "p.csv", "id,category,sku,cost,retail_price\np1,Jeans,s1,1,2\np2,Tops,s2,1,2\n"
    )
    # Header with a BOM, odd case and padding; quoted values; o9 only exists in the first version.
    orders_v1 = write(
        tmp_path,
        "o1.csv",
        '\ufeffORDER_ID , User_Id,status,created_at\n"o1",u1,Complete,2025-07-10 10:00:00\n'
        "o9,u9,Complete,2025-07-10 12:00:00\n",
    )
    orders_v2 = write(
        tmp_path,
        "o1b.csv",
        "order_id,user_id,status,created_at,returned_at\n"
        "o1,u1,Complete,2025-07-10 10:00:00,\n"
        "o2,u2,Complete,2025-07-10 11:00:00,2025-07-12 08:00:00\n",
    )
    # A later, different file moves o2 to 07-11 (its latest version wins).
    orders_late = write(
        tmp_path, "o3.csv", "order_id,user_id,status,created_at\no2,u2,Returned,2025-07-11 09:00:00\n"
    )
    items = write(
        tmp_path,
        "i.csv",
        "id,order_id,product_id,sale_price\n"
        "i1,o1,p1,10.005\n"
        "i2,o1,p2,5.00\n"
        "i3,o2,p1,7.50\n"
        "i4,o9,p1,99.00\n"
        "i5,o2,zz,0.495\n",
    )
    files = [
        ("raw/products/products.csv", products),
        ("orders/2025-07-10/orders_part1.csv", orders_v1),
        ("order_items/2025-07-10/items.csv", items),
        ("orders/2025-07-10/orders_part1.csv", orders_v2),  # re-upload: replaces o1.csv's rows
        ("orders/2025-07-11/orders_part1.csv", orders_late),
    ]
    assert [s.rel for s in effective_files(files)["orders"]] == [
        "orders/2025-07-10/orders_part1.csv",
        "orders/2025-07-11/orders_part1.csv",
    ]
    daily, category = kpis_from_files(spark, files)
    # 07-10: o1 only (o9 vanished with the first version, o2 moved): i1 10.005 + i2 5.00 = 15.005
    #        -> 15.01 (half-up), 2 items, not returned, 1 customer.
    # 07-11: o2 (returned): i3 7.50 + i5 0.495 = 7.995 -> 8.00, 2 items, 100.00 %, 1 customer.
    expected_daily = spark.createDataFrame(
        [("2025-07-10", 1, D("15.01"), 2, D("0.00"), 1), ("2025-07-11", 1, D("8.00"), 2, D("100.00"), 1)],
        DAILY_KPI_SCHEMA,
    )
    assert_df_equality(daily, expected_daily, ignore_row_order=True, ignore_nullable=True)
    # Jeans 07-10: 10.005 -> 10.01 over {o1}; Tops 07-10: 5.00; Jeans 07-11: 7.50 over {o2}, returned;
    # Unknown (product zz) 07-11: 0.495 -> 0.50 (half-up) over {o2}, returned.
    expected_category = spark.createDataFrame(
        [
            ("Jeans", "2025-07-10", D("10.01"), D("10.01"), D("0.00")),
            ("Tops", "2025-07-10", D("5.00"), D("5.00"), D("0.00")),
            ("Jeans", "2025-07-11", D("7.50"), D("7.50"), D("100.00")),
            ("Unknown", "2025-07-11", D("0.50"), D("0.50"), D("100.00")),
        ],
        CATEGORY_KPI_SCHEMA,
    )
    assert_df_equality(category, expected_category, ignore_row_order=True, ignore_nullable=True)


def test_oracle_items_without_ids_and_empty_input(spark, tmp_path):
    orders = write(tmp_path, "o.csv", "order_id,user_id,created_at\no1,u1,2025-07-10T23:30:00-02:00\n")
    items = write(tmp_path, "i.csv", "order_id,product_id,sale_price\no1,p1,1.10\no1,p1,1.10\n")
    daily, category = kpis_from_files(spark, [("orders/x.csv", orders), ("order_items/x.csv", items)])
    # Two identical lines without an id are two items; the order's UTC date is 07-11; no products
    # master yet, so the category is Unknown.
    assert [tuple(r) for r in daily.collect()] == [("2025-07-11", 1, D("2.20"), 2, D("0.00"), 1)]
    assert [tuple(r) for r in category.collect()] == [
        ("Unknown", "2025-07-11", D("2.20"), D("2.20"), D("0.00"))
    ]
    empty_daily, empty_category = kpis_from_files(spark, [])
    assert empty_daily.collect() == [] and empty_category.collect() == []
