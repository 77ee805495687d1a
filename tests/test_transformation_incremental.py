"""Incrementality, measured: a new day reads and rewrites nothing of the days before it.

Shown twice: by the run's own counters (rows each lake table returned to the run's scans, from
Spark's SQL metrics) and by the Delta commit history (operationMetrics of the gold commits).
"""

from __future__ import annotations

from delta.tables import DeltaTable

from jobs.transformation.lake import GOLD_CATEGORY, GOLD_DAILY, SILVER_ITEMS, SILVER_ORDERS, Lake
from tests.support.transformation import PRODUCTS_V1, Pipeline, items_csv, orders_csv


def day_files(p: Pipeline, day: int) -> tuple[str, str]:
    """Day ``day`` of July: 3 orders (ids d001..d003), 2 items each (ids d0001..d0006)."""
    date = f"2025-07-{day:02d}"
    orders = [(f"{day}00{n}", f"u{n}", "Complete", f"{date} 1{n}:00:00") for n in range(1, 4)]
    items = [
        (f"{day}000{2 * n + k - 2}", f"{day}00{n}", f"p{k}", f"{n}.{k}0") for n in range(1, 4) for k in (1, 2)
    ]
    return (
        p.put(f"orders/{date}/orders.csv", orders_csv(*orders)),
        p.put(f"order_items/{date}/items.csv", items_csv(*items)),
    )


def test_a_new_day_reads_and_rewrites_only_that_day(moto_endpoint, spark, tmp_path):
    p = Pipeline(moto_endpoint, spark, tmp_path)
    p.put("products/products.csv", PRODUCTS_V1)
    history = [day_files(p, d) for d in (1, 2, 3)]
    first = p.run("2025-07-03", [o for o, _ in history], [i for _, i in history])
    assert first.touched_dates == ["2025-07-01", "2025-07-02", "2025-07-03"]
    served_before = {d: v["run_id"] for d, v in p.daily().items()}

    orders, items = day_files(p, 4)
    run = p.run("2025-07-04", [orders], [items])

    assert run.touched_dates == ["2025-07-04"]
    # Silver rows returned to any scan of this run (lookups, append, recompute): none. The lookups
    # skip days 1-3 by file statistics, and day 4's KPIs come from the run's own rows (its plan only
    # appends) before the commits, not from reading back what it wrote (3 orders + 6 items before).
    assert run.rows_read_by_table[SILVER_ORDERS] == 0
    assert run.rows_read_by_table[SILVER_ITEMS] == 0
    assert run.rows_read_by_table[GOLD_DAILY] == run.rows_read_by_table[GOLD_CATEGORY] == 0
    # Every commit only added files: nothing of days 1-3 was removed or rewritten.
    by_table = {c["table"]: c for c in run.commits}
    assert by_table[SILVER_ORDERS]["operation"] == by_table[SILVER_ITEMS]["operation"] == "WRITE"
    assert all(c.get("numRemovedFiles", 0) == 0 for c in run.commits)
    lake = Lake(spark, p.lake)
    for table in (GOLD_DAILY, GOLD_CATEGORY):
        last = DeltaTable.forPath(spark, lake.path(table)).history(1).first()
        predicate = last["operationParameters"]["predicate"]
        assert "'2025-07-04'" in predicate and "2025-07-03" not in predicate
        assert last["operationMetrics"]["numRemovedFiles"] == "0"
        assert int(last["operationMetrics"]["numOutputRows"]) == (1 if table == GOLD_DAILY else 2)
    daily = p.daily()
    assert {d: daily[d]["run_id"] for d in served_before} == served_before  # days 1-3 not rewritten
    assert daily["2025-07-04"]["run_id"] == run.run_id and daily["2025-07-04"]["total_items_sold"] == 6
    assert p.served() == p.expected()


def test_ids_passing_a_power_of_ten_still_skip_the_history(moto_endpoint, spark, tmp_path):
    """Ids are strings: a day whose ids go from 2 to 3 digits has the lexicographic range
    ["100", "99"], which holds nearly every 2-digit id stored. The lookups use one range per length
    when the ids are all integers, so the history is still skipped by file statistics."""
    p = Pipeline(moto_endpoint, spark, tmp_path)
    p.put("products/products.csv", PRODUCTS_V1)
    history = (
        p.put(
            "orders/2025-07-01/orders.csv",
            orders_csv(*[(str(n), "u1", "Complete", "2025-07-01 10:00:00") for n in (11, 12, 13)]),
        ),
        p.put(
            "order_items/2025-07-01/items.csv",
            items_csv(*[(str(40 + n), str(11 + n % 3), "p1", "1.00") for n in range(6)]),
        ),
    )
    p.run("2025-07-01", [history[0]], [history[1]])

    orders = p.put(
        "orders/2025-07-02/orders.csv",
        orders_csv(*[(str(n), "u2", "Complete", "2025-07-02 10:00:00") for n in (98, 99, 100)]),
    )
    items = p.put(
        "order_items/2025-07-02/items.csv",
        items_csv(*[(str(n), ("98", "99", "100")[n % 3], "p2", "2.00") for n in (97, 98, 99, 100, 101, 102)]),
    )
    run = p.run("2025-07-02", [orders], [items])

    assert run.touched_dates == ["2025-07-02"]
    assert run.rows_read_by_table[SILVER_ORDERS] == 0
    assert run.rows_read_by_table[SILVER_ITEMS] == 0
    assert p.served() == p.expected()
