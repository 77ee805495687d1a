"""Retries and re-uploads: a run killed anywhere and run again ends as if it had never failed.

Failures are injected at the stage boundaries the job reports through ``checkpoint`` (after a silver
commit, after the gold commit, before the archive) and inside the DynamoDB write (the n-th
BatchWriteItem raises), then the same batch is run again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from decimal import Decimal

import pytest

from jobs.transformation import job
from jobs.transformation.lake import (
    APPLIED_FILES,
    IS_CURRENT,
    ITEM_KEY,
    ORDER_DATE,
    SILVER_ITEMS,
    SILVER_ORDERS,
    Lake,
)
from jobs.transformation.serving import BatchWriter
from tests.jobs.transformation.test_transformation_batches import (
    assert_matches_oracle,
    load_batch_0710,
    load_batch_0711,
)
from tests.support.transformation import Crash, FlakyDynamoDB, Pipeline, crash_at, orders_csv

D = Decimal
BATCH = "2025-07-10"
# The producer corrects orders_part1: 1001 was really created on 07-12, 1002 was not returned and
# 1003 never existed (07-11 loses its only order; its item 5004 goes back to pending).
CORRECTED = orders_csv(
    ("1001", "u1", "Complete", "2025-07-12 10:00:00"),
    ("1002", "u2", "Complete", "2025-07-10 11:00:00"),
)


@pytest.fixture
def pipeline(moto_endpoint, spark, tmp_path) -> Pipeline:
    return Pipeline(moto_endpoint, spark, tmp_path)


def fail_first_write(monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    """The next run's first BatchWriteItem raises, as DynamoDB being down would."""
    original_write = BatchWriter.write
    calls = {"n": 0}

    def fail_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError(message)
        return original_write(self, *args, **kwargs)

    monkeypatch.setattr(BatchWriter, "write", fail_once)


def test_dynamodb_down_before_an_appending_plan_commits_then_retry(pipeline, monkeypatch):
    """A new day's KPIs are served before its silver commits: DynamoDB down stops the run before
    the lake changes, and the retry applies the files and serves the same KPIs."""
    p = pipeline
    keys = load_batch_0710(p)
    fail_first_write(monkeypatch, "injected: DynamoDB down while a new day is served")
    with pytest.raises(ConnectionError):
        p.run(BATCH, keys["orders"], keys["items"])
    assert p.daily() == {} and p.keys("processed/") == []
    assert p.silver(SILVER_ORDERS, "order_id") == [] and p.silver(APPLIED_FILES, "rel") == []

    retry = p.run(BATCH, keys["orders"], keys["items"])
    assert sorted(retry.files_applied) == [
        "order_items/2025-07-10/items_part1.csv",
        "orders/2025-07-10/orders_part1.csv",
        "products/products.csv",
    ]
    assert retry.recovered_dates == ["2025-07-10", "2025-07-11"]  # the journal named them
    assert_matches_oracle(p)
    assert len(p.silver(SILVER_ORDERS, "order_id", "_source_file")) == 3
    assert len(p.silver(SILVER_ITEMS, ITEM_KEY)) == 4


def test_a_lake_preparation_cancelled_mid_table_leaves_the_next_runs_right(pipeline, monkeypatch):
    """The worker's idle-time preparation yields to an arriving task by cancelling the table's Spark
    jobs in progress (jobs.spark_jobs.CancelWhen): read-only work, so a later preparation and the
    next runs end exactly as the oracle does."""
    p = pipeline
    keys = load_batch_0710(p)
    p.run(BATCH, keys["orders"], keys["items"])  # its commits leave silver_orders' state to build
    config = p.config("2025-07-11", [], [])
    main, in_table = threading.current_thread(), threading.Event()
    warm = Lake.warm

    def slow_start(self: Lake, table: str) -> bool:
        in_table.set()
        time.sleep(0.5)  # the watcher (every 0.2 s) sees the task arrive while the table is begun
        return warm(self, table)

    monkeypatch.setattr(Lake, "warm", slow_start)
    # Only the watching thread sees the task, and only once a table is begun: the preparation can
    # only stop by its jobs being cancelled.
    cancelled = job.warm_lake(
        config, p.spark, lambda: in_table.is_set() and threading.current_thread() is not main
    )
    monkeypatch.setattr(Lake, "warm", warm)
    assert cancelled["cancelled"] is True and cancelled["interrupted_before"] == job.WARM_TABLES[0]
    assert p.spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None  # the thread is untagged

    assert job.warm_lake(config, p.spark)["tables"] == list(job.WARM_TABLES)
    day = load_batch_0711(p)
    assert p.run("2025-07-11", day["orders"], day["items"]).status == "ok"
    assert_matches_oracle(p)


def test_retry_after_lake_commit_and_identical_reupload_change_nothing(pipeline, monkeypatch):
    """A correction (it moves and deletes stored rows) is served after its commits: DynamoDB down
    then leaves the lake applied, and the retry only serves the pending dates."""
    p = pipeline
    keys = load_batch_0710(p)
    p.run(BATCH, keys["orders"], keys["items"])
    p.put("orders/2025-07-10/orders_part1.csv", CORRECTED)
    fail_first_write(monkeypatch, "injected: DynamoDB down after the lake commit")
    with pytest.raises(ConnectionError):
        p.run(BATCH, keys["orders"], keys["items"])
    assert p.keys("validated/orders/") == ["validated/orders/2025-07-10/orders_part1.csv"]

    retry = p.run(BATCH, keys["orders"], keys["items"])
    # The files are applied already: nothing is re-read, the pending dates are served.
    assert retry.files_applied == [] and retry.recovered_dates == ["2025-07-10", "2025-07-11", "2025-07-12"]
    assert retry.touched_dates == ["2025-07-10", "2025-07-11", "2025-07-12"]
    assert_matches_oracle(p)
    assert len(p.silver(SILVER_ORDERS, "order_id", "_source_file")) == 2
    before = p.daily(), p.category()

    # Byte-identical re-upload: same raw ETag, so the run applies and recomputes nothing.
    p.put("orders/2025-07-10/orders_part1.csv", CORRECTED)
    same = p.run(BATCH, keys["orders"], keys["items"])
    assert same.files_applied == [] and same.touched_dates == [] and same.commits == []
    assert same.files_skipped["orders/2025-07-10/orders_part1.csv"] == "this version is already applied"
    assert (p.daily(), p.category()) == before  # not even updated_at / run_id changed


def test_what_another_writer_records_as_applied_is_seen_by_the_next_run(pipeline):
    """A process remembers ``applied_files`` at the version it last read or wrote (a warm worker's
    discovery then reads nothing); a commit by anyone else (another worker, a Fargate task) moves
    the table past that version, and the next run reads the table again."""
    p = pipeline
    keys = load_batch_0710(p)
    p.run(BATCH, keys["orders"], keys["items"])
    lake = Lake(p.spark, p.lake)
    seen = job._APPLIED_SEEN[lake.path(APPLIED_FILES)]
    assert seen.snapshot == lake.current_snapshot(APPLIED_FILES)  # our own commits kept it current

    p.put("orders/2025-07-10/orders_part1.csv", CORRECTED)
    # Another writer applied the corrected version: its row in applied_files (not through our cache).
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=1)
    etag = hashlib.md5(CORRECTED.encode()).hexdigest()
    row = ("orders/2025-07-10/orders_part1.csv", "orders", etag, etag, 1, "other-run", later)
    lake.append(APPLIED_FILES, p.spark.createDataFrame([row], lake.empty(APPLIED_FILES).schema))

    again = p.run(BATCH, keys["orders"], keys["items"])
    assert again.files_applied == []  # a stale cache would apply the corrected version a second time
    assert again.files_skipped["orders/2025-07-10/orders_part1.csv"] == "this version is already applied"


def test_killed_at_every_stage_then_rerun_ends_like_an_uninterrupted_run(pipeline):
    p = pipeline
    keys = load_batch_0710(p)
    p.run(BATCH, keys["orders"], keys["items"])
    p.put("orders/2025-07-10/orders_part1.csv", CORRECTED)

    attempts = [
        {"checkpoint": crash_at("silver_order_items")},  # items moved, orders not yet
        {"checkpoint": crash_at("gold")},  # silver + applied_files committed, served, gold written
        {"dynamodb": FlakyDynamoDB(p.ddb, fail_on_call=2)},  # daily written, categories not, no gold
        {"checkpoint": crash_at("journal_cleared")},  # served, not archived
    ]
    for attempt in attempts:
        with pytest.raises((Crash, ConnectionError)):
            p.run(BATCH, keys["orders"], keys["items"], **attempt)
        assert p.keys("validated/orders/") == ["validated/orders/2025-07-10/orders_part1.csv"]
    final = p.run(BATCH, keys["orders"], keys["items"])
    assert final.status == "ok"

    assert_matches_oracle(p)
    daily = p.daily()
    assert set(daily) == {"2025-07-10", "2025-07-12"}  # 07-11 lost its only order: item deleted
    assert (daily["2025-07-10"]["total_orders"], daily["2025-07-10"]["return_rate"]) == (1, D("0"))
    assert daily["2025-07-12"]["total_revenue"] == D("15.50")
    assert ("Shoes", "2025-07-11") not in p.category()
    # The lake holds each row once, in the right partition, with one current version per key.
    assert p.silver(SILVER_ORDERS, "order_id", ORDER_DATE, IS_CURRENT) == [
        ("1001", dt.date(2025, 7, 12), True),
        ("1002", dt.date(2025, 7, 10), True),
    ]
    assert p.silver(SILVER_ITEMS, ITEM_KEY, ORDER_DATE, IS_CURRENT) == [
        ("5001", dt.date(2025, 7, 12), True),
        ("5002", dt.date(2025, 7, 12), True),
        ("5003", dt.date(2025, 7, 10), True),
        ("5004", None, True),  # its order vanished: pending again
    ]
    assert p.keys("processed/orders/") == ["processed/orders/2025-07-10/orders_part1.csv"]
    assert p.keys("validated/") == ["validated/products/products.csv"]
    assert p.keys("lake/") == ["lake/_key_ranges.json"]  # lock released, no pending dates; the key ledger
