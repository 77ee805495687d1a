"""Prechecks: parts validated as they land, their verdicts reused by the day's own run.

A precheck records verdicts, reports and staging rows and moves nothing; the day's run then places
every prechecked file without Spark. An order items verdict names the products master version its
unknown-product warning used, and a new master version makes the day's run check the part again.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import pytest

from jobs.validation import EXIT_REJECTED, ValidationResult, run
from jobs.validation.verdicts import NO_MASTER
from tests.support.validation import (
    PRODUCTS_CSV,
    PRODUCTS_KEY,
    Snapshot,
    create_bucket,
    get,
    get_json,
    item_row,
    items_csv,
    make_config,
    order_row,
    orders_csv,
    put,
    s3,
    snapshot,
)

ORD, ITM = "orders/2025-07-10", "order_items/2025-07-10"
GOOD, BAD, ITEMS = f"{ORD}/part1.csv", f"{ORD}/part2.csv", f"{ITM}/part1.csv"


@dataclass(frozen=True)
class Day:
    config: object
    precheck: ValidationResult
    prechecked: Snapshot
    batch: ValidationResult
    after: Snapshot


@pytest.fixture(scope="module")
def day(moto_endpoint: str, spark) -> Day:
    config = make_config(
        moto_endpoint,
        f"ecomkpi-precheck-{uuid.uuid4().hex[:8]}",
        orders=[f"raw/{GOOD}", f"raw/{BAD}"],
        items=[f"raw/{ITEMS}"],
        run_id="2025-07-10-p-1",
    )
    create_bucket(config)
    put(config, PRODUCTS_KEY, PRODUCTS_CSV)
    put(config, f"raw/{GOOD}", orders_csv(order_row(1), order_row(2)))
    put(config, f"raw/{BAD}", orders_csv(order_row(3), order_row("")))  # order_id null: rejected
    put(config, f"raw/{ITEMS}", items_csv(item_row(1), item_row(2, product=777)))  # 777: unknown
    precheck = run(config, spark, precheck=True)
    prechecked = snapshot(config)
    batch_config = config.with_(run_id="2025-07-10-v-1")
    batch = run(batch_config, spark)
    return Day(batch_config, precheck, prechecked, batch, snapshot(batch_config))


def test_a_precheck_records_verdicts_and_moves_nothing(day: Day) -> None:
    decided = {f.rel: f.verdict for f in day.precheck.files}
    assert decided == {"products/products.csv": "passed", GOOD: "passed", BAD: "rejected", ITEMS: "passed"}
    for rel in decided:
        assert day.prechecked.stages_of(rel) == ["raw"], rel
        record = get_json(day.config, f"logs/validation/verdicts/{rel}.json")
        assert record["etag"] == day.prechecked.etags[f"raw/{rel}"]
        assert record["run_id"] == "2025-07-10-p-1"
    staged = {k.split("/")[2] for k in day.prechecked.keys if k.startswith("staging/")}
    assert staged == {"products", "orders", "order_items"}
    summary = get_json(day.config, "logs/validation/2025-07-10/2025-07-10-p-1/summary.json")
    assert summary["mode"] == "precheck" and summary["spark_used"] is True


def test_the_days_run_places_prechecked_files_without_spark(day: Day) -> None:
    assert day.batch.spark_used is False
    assert day.batch.exit_code == EXIT_REJECTED
    assert all(f.reused and f.decided_by == "2025-07-10-p-1" for f in day.batch.files)
    assert day.after.stages_of(GOOD) == ["validated"]
    assert day.after.stages_of(ITEMS) == ["validated"]
    assert day.after.stages_of(BAD) == ["invalid"]
    assert f"invalid/{BAD}.report.json" in day.after.keys
    assert day.after.stages_of("products/products.csv") == ["raw", "validated"]
    rejected = day.batch.outcome(BAD)
    assert [(f.rule, f.column) for f in rejected.failures] == [("order_id is not null", "order_id")]
    alert_text = get(day.config, "logs/validation/2025-07-10/2025-07-10-v-1/rejections.txt").decode()
    assert f"- raw/{BAD} -> invalid/{BAD}" in alert_text
    assert "decided by run 2025-07-10-p-1: logs/validation/2025-07-10/2025-07-10-p-1/" in alert_text


def test_an_items_verdict_names_the_master_it_was_checked_against(day: Day) -> None:
    record = get_json(day.config, f"logs/validation/verdicts/{ITEMS}.json")
    assert record["products_version"] == day.prechecked.etags[PRODUCTS_KEY]
    assert get_json(day.config, f"logs/validation/verdicts/{GOOD}.json")["products_version"] == ""
    warnings = day.batch.outcome(ITEMS).warnings
    assert [(w.rule, w.failing_rows) for w in warnings] == [("product_id is in the products master data", 1)]


def test_a_new_master_version_makes_the_day_check_its_items_again(moto_endpoint: str, spark) -> None:
    config = make_config(
        moto_endpoint,
        f"ecomkpi-precheck-{uuid.uuid4().hex[:8]}",
        items=[f"raw/{ITEMS}"],
        run_id="2025-07-10-p-1",
    )
    create_bucket(config)
    put(config, f"raw/{ITEMS}", items_csv(item_row(1), item_row(2, product=777)))
    first = run(config, spark, precheck=True)  # no master yet: no ids to check against
    assert first.outcome(ITEMS).verdict == "passed"
    assert get_json(config, f"logs/validation/verdicts/{ITEMS}.json")["products_version"] == NO_MASTER
    assert [f.rel for f in first.files] == [ITEMS]  # the missing master is left to the day's run

    put(config, PRODUCTS_KEY, PRODUCTS_CSV + b"777,1,Hats,Cap,Acme,9.00,Men,SKU777,1\n")
    batch = run(config.with_(run_id="2025-07-10-v-1"), spark)
    items = batch.outcome(ITEMS)
    assert not items.reused and items.decided_by == "2025-07-10-v-1"
    assert items.warnings == []  # 777 is in the new master
    record = get_json(config, f"logs/validation/verdicts/{ITEMS}.json")
    assert record["products_version"] == snapshot(config).etags[PRODUCTS_KEY]


def test_runs_of_one_process_read_a_master_version_once(moto_endpoint: str, spark) -> None:
    """A warm worker validates many items parts against one master: the ids are read for its first
    run and reused while the master keeps its ETag; a new version is read again."""
    config = make_config(moto_endpoint, f"ecomkpi-precheck-{uuid.uuid4().hex[:8]}", run_id="run-a")
    create_bucket(config)
    put(config, PRODUCTS_KEY, PRODUCTS_CSV)

    def items_part(run_id: str, product: int) -> tuple[ValidationResult, list[dict]]:
        rel = f"{ITM}/{run_id}.csv"
        put(config, f"raw/{rel}", items_csv(item_row(1, product=product)))
        result = run(config.with_(run_id=run_id, order_items_keys=(f"raw/{rel}",)), spark, precheck=True)
        log = get(config, f"logs/validation/2025-07-10/{run_id}.log").decode()
        ids = [json.loads(line) for line in log.splitlines() if '"products.ids"' in line]
        return result, ids

    _, first_ids = items_part("run-a", product=1)
    second, second_ids = items_part("run-b", product=777)
    assert [e.get("reused", False) for e in first_ids + second_ids] == [False, True]
    assert [w.rule for w in second.outcome(f"{ITM}/run-b.csv").warnings] == [
        "product_id is in the products master data"
    ]  # the reused ids are the master's: 777 is not in it

    put(config, PRODUCTS_KEY, PRODUCTS_CSV + b"777,1,Hats,Cap,Acme,9.00,Men,SKU777,1\n")
    third, third_ids = items_part("run-c", product=777)
    assert [e.get("reused", False) for e in third_ids] == [False]  # a new version is read
    assert third.outcome(f"{ITM}/run-c.csv").warnings == []


def test_a_workers_precheck_leaves_its_data_docs_for_when_it_is_idle(moto_endpoint: str, spark) -> None:
    """Nobody waits for a precheck's answer, but the day's task queued behind it waits for it to end:
    the worker's precheck (run_job) leaves its Data Docs to ``after_answer`` as a task does."""
    from hosts.worker.messages import PRECHECK
    from hosts.worker.runs import run_job

    config = make_config(
        moto_endpoint, f"ecomkpi-precheck-{uuid.uuid4().hex[:8]}", orders=[f"raw/{GOOD}"], run_id="p-docs"
    )
    create_bucket(config)
    put(config, PRODUCTS_KEY, PRODUCTS_CSV)
    put(config, f"raw/{GOOD}", orders_csv(order_row(1)))
    later: list = []
    assert run_job(PRECHECK, [config], spark, later) == 0
    prefix = "logs/validation/2025-07-10/p-docs/data_docs/"
    listed = s3(config).list_objects_v2(Bucket=config.bucket, Prefix=prefix)
    assert listed["KeyCount"] == 0 and len(later) == 1
    later[0]()
    assert get(config, f"{prefix}index.html")
