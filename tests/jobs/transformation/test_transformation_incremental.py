"""Incrementality, measured: a new day reads and rewrites nothing of the days before it.

Shown twice: by the run's own counters (rows each lake table returned to the run's scans, from
Spark's SQL metrics) and by the Delta commit history (operationMetrics of the gold commits).
"""

from __future__ import annotations

import json
from decimal import Decimal

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


NEW_DAY_SKIPS = ["stored orders", "items of orders", "stored items"]


def test_the_key_ledger_spares_a_new_day_its_lookups_and_never_a_collision(moto_endpoint, spark, tmp_path):
    """A new day's ids lie above everything stored: the key ledger (jobs.transformation.key_ledger)
    proves it and the plan reads no silver table. A file that re-sends a stored order, two parts of
    one batch sharing an id, items that wait for their order, and a lake whose ledger is gone (an
    earlier release's) all look up as before, and every state served equals the oracle's."""
    p = Pipeline(moto_endpoint, spark, tmp_path)
    p.put("products/products.csv", PRODUCTS_V1)
    p.run("2025-07-01", *[[f] for f in day_files(p, 1)])
    ledger_key = "lake/_key_ranges.json"
    first = json.loads(p.s3.get_object(Bucket=p.bucket, Key=ledger_key)["Body"].read())
    assert first["complete"] is True and first["ranges"][f"{SILVER_ORDERS}.order_id"]["high"] == "1003"

    new_day = p.run("2025-07-02", *[[f] for f in day_files(p, 2)])
    assert new_day.lookups_skipped == NEW_DAY_SKIPS
    assert new_day.rows_read_by_table[SILVER_ORDERS] == 0 and new_day.rows_read_by_table[SILVER_ITEMS] == 0
    assert p.served() == p.expected()

    # Order 1002 again (now returned) beside a new one: its stored version must be found and ranked.
    resent = p.put(
        "orders/2025-07-03/orders.csv",
        orders_csv(
            ("1002", "u2", "Returned", "2025-07-01 12:00:00"),
            ("3001", "u9", "Complete", "2025-07-03 09:00:00"),
        ),
    )
    correction = p.run("2025-07-03", [resent], [])
    assert "stored orders" not in correction.lookups_skipped
    assert p.served() == p.expected() and p.daily()["2025-07-01"]["return_rate"] == Decimal("33.33")

    # Two parts of one batch with ids of their own: still no lookup (their ranges miss each other).
    apart = [
        p.put(
            f"orders/2025-07-04/apart{n}.csv",
            orders_csv((f"40{n}0", "u4", "Complete", "2025-07-04 09:00:00")),
        )
        for n in (1, 2)
    ]
    assert p.run("2025-07-04", apart, []).lookups_skipped[:1] == ["stored orders"]
    assert p.served() == p.expected()

    # Two parts of one batch share order 4101 (new to the ledger): the later part wins, by ranking.
    parts = [
        p.put(f"orders/2025-07-04/part{n}.csv", orders_csv(("4101", f"u{n}", status, "2025-07-04 10:00:00")))
        for n, status in ((1, "Complete"), (2, "Returned"))
    ]
    shared = p.run("2025-07-04", parts, [])
    assert "stored orders" not in shared.lookups_skipped
    assert p.served() == p.expected() and p.daily()["2025-07-04"]["total_orders"] == 3

    # Items that arrive before their order wait in the pending partition; the order finds them.
    early = p.put("order_items/2025-07-05/items.csv", items_csv(("50001", "5001", "p1", "9.00")))
    assert p.run("2025-07-05", [], [early]).touched_dates == []
    late = p.put(
        "orders/2025-07-05/orders.csv", orders_csv(("5001", "u5", "Complete", "2025-07-05 10:00:00"))
    )
    arrival = p.run("2025-07-05", [late], [])
    assert "items of orders" not in arrival.lookups_skipped
    assert p.served() == p.expected() and p.daily()["2025-07-05"]["total_items_sold"] == 1

    # A lake without its ledger (an earlier release made it): complete no more, every lookup made.
    p.s3.delete_object(Bucket=p.bucket, Key=ledger_key)
    blind = p.run("2025-07-06", *[[f] for f in day_files(p, 6)])
    assert blind.lookups_skipped == []
    assert p.served() == p.expected()
    assert json.loads(p.s3.get_object(Bucket=p.bucket, Key=ledger_key)["Body"].read())["complete"] is False
