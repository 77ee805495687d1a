"""``plan_items`` on a small local lake: where new items go, which stored ones are superseded or moved.

Silver is seeded through :class:`~jobs.transformation.lake.Lake` (orders and items reduced to the
key, the order, the file version and row, arrival order and the partition); the new items are
staging rows as a run reads them. Each test asserts the plan's actions (what the MERGE will do, and
at which partition) and the counts and dates the run journals, not how the planner got there.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame

from jobs.contract import ORDER_ITEMS
from jobs.staging import staging_schema
from jobs.transformation.incremental import RunPlan, plan_items
from jobs.transformation.lake import RUN_ID, SCHEMAS, SILVER_ITEMS, SILVER_ORDERS, Lake
from jobs.transformation.versions import ACTION, MATCH_DATE, TablePlan

D1, D2 = date(2025, 7, 10), date(2025, 7, 11)
OLD, NEW = "order_items/2025-07-10/a.csv", "order_items/2025-07-11/b.csv"
ETAGS = {OLD: "e-old", NEW: "e-new"}
SEQ = {OLD: 100, NEW: 200}  # arrival: b.csv after a.csv


def _rows(names: list[str], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**dict.fromkeys(names), **r} for r in rows]


def item(key: str, order_id: str, src: str, num: int, **extra: Any) -> dict[str, Any]:
    """One item row of file version ``src`` (row ``num``), keyed by its producer id."""
    return {
        "id": key,
        "item_key": key,
        "order_id": order_id,
        "product_id": "p1",
        "sale_price": "10.00",
        "_source_file": src,
        "_raw_etag": ETAGS[src],
        "_ingest_seq": SEQ[src],
        "_row_num": num,
        **extra,
    }


def new_items(spark: Any, *rows: dict[str, Any]) -> DataFrame:
    """Staging rows of the item files applied now, stamped with the run (as ``plan_run`` reads them)."""
    schema = staging_schema(ORDER_ITEMS).add(RUN_ID, "string")
    return spark.createDataFrame(_rows(schema.fieldNames(), [{**r, RUN_ID: "r1"} for r in rows]), schema)


def seed(spark: Any, lake: Lake, table: str, rows: list[dict[str, Any]]) -> None:
    schema = SCHEMAS[table]
    lake.append(table, spark.createDataFrame(_rows(schema.fieldNames(), rows), schema))


def current_order(order_id: str, day: date | None) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "order_date": day,
        "_source_file": "orders/o.csv",
        "_raw_etag": "e-o",
        "_ingest_seq": 50,
        "_row_num": 1,
        "_is_current": True,
    }


def order_states(spark: Any, *rows: tuple[str, date | None, date | None]) -> DataFrame:
    return spark.createDataFrame(list(rows), "order_id string, old_date date, new_date date")


@pytest.fixture
def lake(spark: Any, tmp_path: Path) -> Lake:
    return Lake(spark, str(tmp_path / "lake"), run_id="r0")


def planned(
    spark: Any,
    lake: Lake,
    new: DataFrame,
    etags: dict[str, str],
    states: DataFrame | None = None,
) -> TablePlan:
    plan = RunPlan()
    plan_items(spark, lake, plan, new, etags, old_rows=False, order_states=states)
    assert plan.items is not None
    return plan.items


def actions_of(items: TablePlan) -> DataFrame:
    return items.actions.select(
        "item_key", "_source_file", ACTION, "_is_current", MATCH_DATE, "order_date"
    ).orderBy("item_key", "_source_file", ACTION)


def expected(spark: Any, rows: list[tuple[str, str, str, bool, date | None, date | None]]) -> DataFrame:
    return spark.createDataFrame(
        rows,
        f"item_key string, _source_file string, {ACTION} string, _is_current boolean, "
        f"{MATCH_DATE} date, order_date date",
    )


@pytest.mark.spark
def test_new_items_of_a_stored_order_go_to_its_date(spark: Any, lake: Lake) -> None:
    seed(spark, lake, SILVER_ORDERS, [current_order("o1", D1)])
    new = new_items(spark, item("i1", "o1", NEW, 1), item("i2", "o1", NEW, 2))

    items = planned(spark, lake, new, {NEW: ETAGS[NEW]})

    assert_df_equality(
        actions_of(items),
        expected(spark, [("i1", NEW, "insert", True, D1, D1), ("i2", NEW, "insert", True, D1, D1)]),
        ignore_nullable=True,
    )
    assert items.counts == {"insert": 2}
    assert items.inserts_only
    assert items.dates == {"2025-07-10"}
    assert not items.pending_partition


@pytest.mark.spark
def test_items_whose_order_has_not_arrived_go_to_the_pending_partition(spark: Any, lake: Lake) -> None:
    seed(spark, lake, SILVER_ORDERS, [current_order("o1", D1)])
    new = new_items(spark, item("i1", "o1", NEW, 1), item("i9", "o9", NEW, 2))  # o9: no order yet

    items = planned(spark, lake, new, {NEW: ETAGS[NEW]})

    assert_df_equality(
        actions_of(items),
        expected(spark, [("i1", NEW, "insert", True, D1, D1), ("i9", NEW, "insert", True, None, None)]),
        ignore_nullable=True,
    )
    assert items.counts == {"insert": 2}
    assert items.dates == {"2025-07-10"}
    assert items.pending_partition


@pytest.mark.spark
def test_a_key_stored_by_an_earlier_file_is_ranked_and_the_later_file_wins(spark: Any, lake: Lake) -> None:
    seed(spark, lake, SILVER_ORDERS, [current_order("o1", D1)])
    seed(spark, lake, SILVER_ITEMS, [item("i1", "o1", OLD, 1, order_date=D1, _is_current=True)])
    new = new_items(spark, item("i1", "o1", NEW, 1, sale_price="12.00"), item("i2", "o1", NEW, 2))

    items = planned(spark, lake, new, {NEW: ETAGS[NEW]})

    assert_df_equality(
        actions_of(items),
        expected(
            spark,
            [
                ("i1", OLD, "flag", False, D1, D1),  # stored row stays, no longer current
                ("i1", NEW, "insert", True, D1, D1),
                ("i2", NEW, "insert", True, D1, D1),  # solo key beside the collision
            ],
        ),
        ignore_nullable=True,
    )
    assert items.counts == {"insert": 2, "flag": 1}
    assert not items.inserts_only
    assert items.dates == {"2025-07-10"}
    assert not items.pending_partition


@pytest.mark.spark
def test_items_of_an_order_whose_date_moved_are_relocated(spark: Any, lake: Lake) -> None:
    seed(spark, lake, SILVER_ORDERS, [current_order("o1", D1), current_order("o2", D1)])
    seed(
        spark,
        lake,
        SILVER_ITEMS,
        [
            item("i1", "o1", OLD, 1, order_date=D1, _is_current=True),
            item("i2", "o1", OLD, 2, order_date=D1, _is_current=True),
            item("i3", "o2", OLD, 3, order_date=D1, _is_current=True),  # o2 keeps its date
        ],
    )
    # This run re-ranked o1 (a new version moved it to D2) and o2 (same date): no item files.
    states = order_states(spark, ("o1", D1, D2), ("o2", D1, D1))

    items = planned(spark, lake, new_items(spark), {}, states)

    assert_df_equality(
        actions_of(items),
        expected(
            spark,
            [
                ("i1", OLD, "delete", True, D1, D1),
                ("i1", OLD, "insert", True, D2, D2),
                ("i2", OLD, "delete", True, D1, D1),
                ("i2", OLD, "insert", True, D2, D2),
            ],
        ),
        ignore_nullable=True,
    )
    assert items.counts == {"delete": 2, "insert": 2}
    assert items.dates == {"2025-07-10", "2025-07-11"}
    assert not items.pending_partition


@pytest.mark.spark
def test_pending_items_move_to_the_date_of_their_order_when_it_arrives(spark: Any, lake: Lake) -> None:
    seed(spark, lake, SILVER_ITEMS, [item("i9", "o9", OLD, 1, order_date=None, _is_current=True)])
    states = order_states(spark, ("o9", None, D2))  # o9 arrived in this run

    items = planned(spark, lake, new_items(spark), {}, states)

    assert_df_equality(
        actions_of(items),
        expected(spark, [("i9", OLD, "delete", True, None, None), ("i9", OLD, "insert", True, D2, D2)]),
        ignore_nullable=True,
    )
    assert items.counts == {"delete": 1, "insert": 1}
    assert items.dates == {"2025-07-11"}
    assert items.pending_partition


@pytest.mark.spark
def test_nothing_to_plan_without_item_files_or_moved_orders(spark: Any, lake: Lake) -> None:
    seed(spark, lake, SILVER_ORDERS, [current_order("o1", D1)])
    plan = RunPlan()

    plan_items(spark, lake, plan, new_items(spark), {}, old_rows=False, order_states=order_states(spark))

    assert plan.items is None
