"""The products master through three uploads: broken values, a missing column, then a good file.

The master is never moved out of raw/ (every batch reads it): each version is COPIED to invalid/
or validated/, and a good version supersedes the last rejection.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from jobs.validation import EXIT_OK, EXIT_REJECTED, ValidationResult, run
from jobs.validation.locations import META_RAW_ETAG
from jobs.validation.reports import RULE_COLUMN_PRESENT
from tests.support.validation import (
    PRODUCTS_CSV,
    PRODUCTS_KEY,
    Snapshot,
    create_bucket,
    item_row,
    items_csv,
    make_config,
    put,
    snapshot,
)

MASTER = "products/products.csv"
ITEMS_KEY = "raw/order_items/2025-07-10/items.csv"
HEADER = "id,cost,category,name,brand,retail_price,department,sku,distribution_center_id"
BAD_VALUES = "\n".join(
    [
        HEADER,
        "1,10.5,Jeans,Slim,Acme,25.00,Men,SKU1,1",
        ",1,Jeans,Slim,Acme,2,Men,SKU9,1",
        "2,abc,Socks,Warm,Acme,7.99,Women,,1",
        "2,-1,,Warm,Acme,x,Women,SKU3,1",
        "4,1,Socks,Warm,Acme,-5,Women,SKU4,1",
    ]
).encode()
NO_SKU = b"id,cost,category,retail_price\n1,10.5,Jeans,25.00\n"


@dataclass(frozen=True)
class Phase:
    result: ValidationResult
    after: Snapshot


@pytest.fixture(scope="module")
def phases(moto_endpoint: str, spark) -> dict[str, Phase]:
    config = make_config(moto_endpoint, f"ecomkpi-valprod-{uuid.uuid4().hex[:8]}", items=[ITEMS_KEY])
    create_bucket(config)
    out: dict[str, Phase] = {}
    for n, (name, body) in enumerate(
        (("bad_values", BAD_VALUES), ("no_sku", NO_SKU), ("good", PRODUCTS_CSV))
    ):
        put(config, PRODUCTS_KEY, body)
        if n == 0:
            put(config, ITEMS_KEY, items_csv(item_row(1), item_row(2, product=3), item_row(3, product=4)))
        cfg = config.with_(run_id=f"run-{name}")
        out[name] = Phase(run(cfg, spark), snapshot(cfg))
    return out


def test_bad_values_reject_the_master_but_keep_it_in_raw(phases: dict[str, Phase]) -> None:
    phase = phases["bad_values"]
    assert phase.result.exit_code == EXIT_REJECTED
    outcome = phase.result.outcome(PRODUCTS_KEY)
    assert outcome.verdict == "rejected"
    assert phase.after.stages_of(MASTER) == ["raw", "invalid"]
    assert phase.after.metadata[f"invalid/{MASTER}"][META_RAW_ETAG] == phase.after.etags[PRODUCTS_KEY]
    report = phase.after.reports[f"invalid/{MASTER}.report.json"]
    failed = {(f["rule"], f["column"]): f for f in report["failures"]}
    assert set(failed) == {
        ("id is not null", "id"),
        ("id is unique", "id"),
        ("sku is not null", "sku"),
        ("category is not null", "category"),
        ("cost is numeric", "cost"),
        ("cost >= 0", "cost"),
        ("retail_price is numeric", "retail_price"),
        ("retail_price >= 0", "retail_price"),
    }
    assert failed[("cost is numeric", "cost")]["samples"] == ["abc"]
    assert failed[("retail_price >= 0", "retail_price")]["samples"] == ["-5"]
    assert any("stays in raw/products/products.csv" in n for n in report["notes"])


def test_items_of_the_batch_are_still_judged_and_placed(phases: dict[str, Phase]) -> None:
    phase = phases["bad_values"]
    items = phase.result.outcome(ITEMS_KEY)
    assert items.verdict == "passed"  # its own rules hold; the master's ids (1, 2, 4) still answer
    assert [(w.rule, w.failing_rows, w.samples) for w in items.warnings] == [
        ("product_id is in the products master data", 1, ("3",))
    ]
    assert phase.after.stages_of("order_items/2025-07-10/items.csv") == ["validated"]


def test_missing_column_rejects_the_new_version(phases: dict[str, Phase]) -> None:
    phase = phases["no_sku"]
    outcome = phase.result.outcome(PRODUCTS_KEY)
    assert [(f.rule, f.column) for f in outcome.failures] == [(RULE_COLUMN_PRESENT, "sku")]
    assert phase.after.metadata[f"invalid/{MASTER}"][META_RAW_ETAG] == phase.after.etags[PRODUCTS_KEY]
    assert phase.result.outcome(ITEMS_KEY).reused  # passed earlier: not read again


def test_good_master_is_copied_and_supersedes_the_rejection(phases: dict[str, Phase]) -> None:
    phase, before = phases["good"], phases["no_sku"]
    assert phase.result.exit_code == EXIT_OK
    assert phase.after.stages_of(MASTER) == ["raw", "validated"]
    assert phase.after.metadata[f"validated/{MASTER}"][META_RAW_ETAG] == phase.after.etags[PRODUCTS_KEY]
    old_etag = before.after.etags[PRODUCTS_KEY]
    assert f"invalid/superseded/{MASTER}.{old_etag}" in phase.after.keys
    assert f"invalid/superseded/{MASTER}.{old_etag}.report.json" in phase.after.keys


LONG_CATEGORY = "€" * 700  # 700 characters, 2,100 bytes of UTF-8: over DynamoDB's 2,048-byte key
UNSAFE_CATEGORIES = (
    f"id,cost,category,retail_price,sku\n1,1.00,{LONG_CATEGORY},2.00,S1\n"
    "2,1.00,Sale\tItems,2.00,S2\n3,1.00,\x1b[31mRed,2.00,S3\n4,1.00,Socks,2.00,S4\n"
).encode()


def test_a_category_no_kpi_table_can_key_rejects_the_master(moto_endpoint: str, spark) -> None:
    """A category is CategoryKPIs' partition key: longer than 2,048 bytes it fails every write of
    the days that sell it, and control characters forge log lines; both reject the file."""
    config = make_config(moto_endpoint, f"ecomkpi-valcat-{uuid.uuid4().hex[:8]}")
    create_bucket(config)
    put(config, PRODUCTS_KEY, UNSAFE_CATEGORIES)

    result = run(config, spark)

    assert result.exit_code == EXIT_REJECTED
    report = snapshot(config).reports[f"invalid/{MASTER}.report.json"]
    failed = {f["rule"]: f for f in report["failures"]}
    assert set(failed) == {"category is at most 2048 bytes", "category has no control characters"}
    assert {f["column"] for f in failed.values()} == {"category"}
    too_long = failed["category is at most 2048 bytes"]
    assert too_long["failing_rows"] == 1
    assert too_long["samples"] == ["€" * 64 + "... (2100 bytes)"]  # its start and size, not 2 KB
    assert sorted(failed["category has no control characters"]["samples"]) == ["\x1b[31mRed", "Sale\tItems"]
