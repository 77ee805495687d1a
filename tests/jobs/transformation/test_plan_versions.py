"""``plan_versions`` on small frames: which rows are inserted, flagged, deleted, and where they go.

Rows are silver_orders rows reduced to what the planner reads: the key, the file version and row
(the identity), arrival order and the partition. Solo keys skip ranking; these tests pin that the
shortcut decides exactly what ranking decides.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.transformation.lake import SCHEMAS, SILVER_ORDERS
from jobs.transformation.versions import (
    ACTION,
    FINAL_DATE,
    MATCH_DATE,
    TablePlan,
    arrival_metrics,
    materialize_observed,
    plan_table,
    plan_versions,
)

D1, D2 = date(2025, 7, 10), date(2025, 7, 11)


def orders(spark: Any, rows: list[tuple], current: bool | None = None) -> DataFrame:
    """(order_id, source_file, raw_etag, ingest_seq, row_num, order_date) as silver_orders rows."""
    schema = SCHEMAS[SILVER_ORDERS]
    data = [
        {
            **dict.fromkeys(schema.fieldNames()),
            "order_id": oid,
            "_source_file": src,
            "_raw_etag": etag,
            "_ingest_seq": seq,
            "_row_num": num,
            "order_date": day,
            "_is_current": current,
        }
        for oid, src, etag, seq, num, day in rows
    ]
    return spark.createDataFrame(data, schema)


def actions_of(actions: DataFrame) -> DataFrame:
    return actions.select("order_id", "_source_file", ACTION, "_is_current", MATCH_DATE).orderBy(
        "order_id", "_source_file", ACTION
    )


def expected(spark: Any, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(
        rows, f"order_id string, _source_file string, {ACTION} string, _is_current boolean, {MATCH_DATE} date"
    )


def empty_existing(spark: Any) -> DataFrame:
    return orders(spark, []).withColumn(FINAL_DATE, F.col("order_date"))


def test_solo_keys_are_inserted_as_current_without_ranking(spark: Any) -> None:
    new = orders(spark, [("1", "a.csv", "e1", 100, 1, D1), ("2", "a.csv", "e1", 100, 2, D2)])
    actions, states = plan_versions(SILVER_ORDERS, "order_id", new, empty_existing(spark), {"a.csv": "e1"})
    assert_df_equality(
        actions_of(actions),
        expected(spark, [("1", "a.csv", "insert", True, D1), ("2", "a.csv", "insert", True, D2)]),
        ignore_nullable=True,
    )
    assert sorted(tuple(r) for r in states.collect()) == [("1", None, D1), ("2", None, D2)]


def test_a_key_repeated_in_the_batch_is_ranked_latest_file_wins(spark: Any) -> None:
    new = orders(
        spark,
        [
            ("1", "a.csv", "e1", 100, 1, D1),
            ("1", "b.csv", "e2", 200, 1, D2),  # later arrival: current, and the order's date
            ("3", "a.csv", "e1", 100, 2, D1),  # solo beside a collision
        ],
    )
    actions, states = plan_versions(
        SILVER_ORDERS, "order_id", new, empty_existing(spark), {"a.csv": "e1", "b.csv": "e2"}
    )
    assert_df_equality(
        actions_of(actions),
        expected(
            spark,
            [
                ("1", "a.csv", "insert", False, D1),
                ("1", "b.csv", "insert", True, D2),
                ("3", "a.csv", "insert", True, D1),
            ],
        ),
        ignore_nullable=True,
    )
    assert sorted(tuple(r) for r in states.collect()) == [("1", None, D2), ("3", None, D1)]


def test_a_stored_version_is_flagged_off_and_the_new_one_takes_over(spark: Any) -> None:
    stored = orders(spark, [("1", "old.csv", "e0", 50, 1, D1)], current=True).withColumn(
        FINAL_DATE, F.col("order_date")
    )
    new = orders(spark, [("1", "new.csv", "e1", 100, 1, D2), ("2", "new.csv", "e1", 100, 2, D2)])
    actions, states = plan_versions(SILVER_ORDERS, "order_id", new, stored, {"new.csv": "e1"})
    assert_df_equality(
        actions_of(actions),
        expected(
            spark,
            [
                ("1", "new.csv", "insert", True, D2),
                ("1", "old.csv", "flag", False, D1),
                ("2", "new.csv", "insert", True, D2),
            ],
        ),
        ignore_nullable=True,
    )
    assert sorted(tuple(r) for r in states.collect()) == [("1", D1, D2), ("2", None, D2)]


def test_an_inserts_only_plan_is_summarized_from_what_was_observed_of_its_rows(spark: Any) -> None:
    """``plan_table`` with the rows' observed metrics gives the summary a query of the actions gives,
    pending (null-date) rows included; when keys collide it summarizes the actions themselves."""
    rows = [
        ("1", "a.csv", "e1", 100, 1, D1),
        ("2", "a.csv", "e1", 100, 2, D2),
        ("3", "a.csv", "e1", 100, 3, None),
    ]
    new, seen = materialize_observed(orders(spark, rows), **arrival_metrics())
    planned, _ = plan_table(SILVER_ORDERS, "order_id", new, empty_existing(spark), {"a.csv": "e1"}, seen)
    queried = TablePlan(SILVER_ORDERS, planned.actions).summarize()
    assert (planned.counts, planned.dates, planned.pending_partition) == (
        {"insert": 3},
        {"2025-07-10", "2025-07-11"},
        True,
    )
    assert (planned.counts, planned.dates, planned.pending_partition) == (
        queried.counts,
        queried.dates,
        queried.pending_partition,
    )

    # A repeated key: ranked, and summarized by a query (the observed counts would be wrong: one
    # of the two rows is stored as not current, but both are inserts, and "1" is flagged once).
    repeated, seen = materialize_observed(
        orders(spark, [*rows, ("1", "b.csv", "e2", 200, 1, D2)]), **arrival_metrics()
    )
    ranked, _ = plan_table(
        SILVER_ORDERS, "order_id", repeated, empty_existing(spark), {"a.csv": "e1", "b.csv": "e2"}, seen
    )
    assert ranked.counts == TablePlan(SILVER_ORDERS, ranked.actions).summarize().counts == {"insert": 4}
    assert not TablePlan.of_inserts(SILVER_ORDERS, new.limit(0), {**seen, "_arrived_rows": 0}).counts
