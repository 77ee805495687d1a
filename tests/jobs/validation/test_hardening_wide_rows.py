"""A record with more fields than Spark's CSV reader holds (``maxColumns``, 20,480) is a rejection.

univocity fails the whole read on such a record, so before this rule the validation task broke
(exit 1) on every retry of the day instead of rejecting the one file with a report.
"""

from __future__ import annotations

import uuid

from jobs.validation import EXIT_OK, EXIT_REJECTED, run
from jobs.validation.reading import unreadable
from jobs.validation.structural import MAX_FIELDS, RULE_MAX_FIELDS
from tests.support.validation import (
    PRODUCTS_CSV,
    PRODUCTS_KEY,
    create_bucket,
    get_json,
    make_config,
    order_row,
    orders_csv,
    put,
)

ORDERS = "raw/orders/2025-07-10/wide.csv"
# 80 KiB of good rows first: the wide record lies past the 64 KiB head, so only Spark's read meets it.
GOOD_ROWS = [order_row(n) for n in range(1, 2500)]
WIDE_ROW = "9999" + ",x" * MAX_FIELDS  # MAX_FIELDS + 1 fields


def test_a_record_past_the_head_wider_than_the_reader_holds_is_rejected(moto_endpoint: str, spark) -> None:
    config = make_config(moto_endpoint, f"ecomkpi-wide-{uuid.uuid4().hex[:8]}", orders=[ORDERS])
    create_bucket(config)
    put(config, PRODUCTS_KEY, PRODUCTS_CSV)
    body = orders_csv(*GOOD_ROWS, WIDE_ROW, order_row(10_000))
    assert body.index(WIDE_ROW.encode()) > 64 * 1024
    put(config, ORDERS, body)

    result = run(config, spark)

    assert result.exit_code == EXIT_REJECTED
    outcome = result.outcome(ORDERS)
    assert outcome.verdict == "rejected"
    assert [f.rule for f in outcome.failures] == [RULE_MAX_FIELDS]
    report = get_json(config, "invalid/orders/2025-07-10/wide.csv.report.json")
    assert report["file"].endswith("orders/2025-07-10/wide.csv")
    assert [f["rule"] for f in report["failures"]] == ["rows have at most 20,480 fields"]
    assert result.outcome(PRODUCTS_KEY).verdict == "passed" and result.exit_code != EXIT_OK


def test_the_record_is_told_apart_when_the_jvm_dropped_the_exception_message() -> None:
    """A JVM that has thrown univocity's ArrayIndexOutOfBoundsException often from compiled code may
    throw it without a message (HotSpot's OmitStackTraceInFastThrow): the failure is still a record
    past the reader's maxColumns, not a broken task. Both texts as Spark 4.1 reports them."""
    with_message = (
        "[MALFORMED_CSV_RECORD] Malformed CSV record: 9999,x,x\n"
        "Caused by: com.univocity.parsers.common.TextParsingException: java.lang.ArrayIndexOutOfBoundsException"
        f" - Index {MAX_FIELDS} out of bounds for length {MAX_FIELDS}"
    )
    without = (
        "[MALFORMED_CSV_RECORD] Malformed CSV record: 9999,x,x\n"
        "Caused by: com.univocity.parsers.common.TextParsingException: java.lang.ArrayIndexOutOfBoundsException"
        " - null\nCaused by: java.lang.ArrayIndexOutOfBoundsException"
    )
    for text in (with_message, without):
        shape = unreadable(RuntimeError(text))
        assert shape is not None and [f.rule for f in shape.findings] == [RULE_MAX_FIELDS], text
    assert unreadable(RuntimeError("java.lang.OutOfMemoryError: Java heap space")) is None
