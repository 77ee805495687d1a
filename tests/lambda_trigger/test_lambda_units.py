"""Pure unit tests of the trigger's parsing rules (no emulator needed)."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any
from urllib.parse import quote_plus

import pytest

from lambda_trigger.batch_ids import IgnoredKey, classify_key, is_batch_date
from lambda_trigger.coordinator import execution_arn_for
from lambda_trigger.events import (
    MalformedEvent,
    execution_end,
    file_arrivals,
    is_s3_test_event,
    parse_sqs_body,
)
from lambda_trigger.manifest import ManifestError, parse_manifest
from lambda_trigger.states import TERMINAL_STATUSES, ExecutionStatus
from lambda_trigger.tracker import BatchState

TODAY = date(2025, 7, 11)


@pytest.mark.parametrize(
    ("key", "kind", "batch_id", "dated"),
    [
        ("raw/products/products.csv", "products", "products_master_data", True),
        ("raw/orders/2025-07-10/orders_part1.csv", "orders", "2025-07-10", True),
        ("raw/order_items/2025-07-10/items.csv", "order_items", "2025-07-10", True),
        ("raw/orders/orders.csv", "orders", "2025-07-11", False),
        ("raw/order_items/x y.csv", "order_items", "2025-07-11", False),
        ("raw/manifests/2025-07-10.json", "manifest", "2025-07-10", True),
    ],
)
def test_classify_key_places_keys(key: str, kind: str, batch_id: str, dated: bool) -> None:
    info = classify_key(key, today=TODAY)
    assert (info.kind, info.batch_id, info.dated) == (kind, batch_id, dated)


@pytest.mark.parametrize(
    "key",
    [
        "validated/orders/2025-07-10/a.csv",
        "orders/2025-07-10/a.csv",
        "raw/orders/2025-07-10/a.json",
        "raw/orders/2025-07-10/a.csv.tmp",
        "raw/orders/../secrets/a.csv",
        "raw/orders/2025-07-10/..a.csv",
        "raw/orders/2025-02-30/a.csv",
        "raw/orders/2025-7-10/a.csv",
        "raw/orders/not-a-date/a.csv",
        "raw/orders/2025-07-10/deeper/a.csv",
        "raw/orders//a.csv",
        "raw/customers/2025-07-10/a.csv",
        "raw/products/other.csv",
        "raw/manifests/latest.json",
        "raw/manifests/2025-13-01.json",
    ],
)
def test_classify_key_rejects(key: str) -> None:
    with pytest.raises(IgnoredKey):
        classify_key(key, today=TODAY)


def test_is_batch_date() -> None:
    assert is_batch_date("2024-02-29")
    assert not is_batch_date("2025-02-29")
    assert not is_batch_date("20250710")


def test_file_arrivals_decodes_keys_and_skips_non_created() -> None:
    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "eventTime": "2025-07-10T00:00:00.000Z",
                "s3": {
                    "bucket": {"name": "b"},
                    "object": {
                        "key": quote_plus("raw/orders/2025-07-10/my file+1.csv", safe="/"),
                        "sequencer": "0A1",
                        "eTag": "e",
                    },
                },
            },
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectRemoved:Delete",
                "s3": {"bucket": {"name": "b"}, "object": {"key": "raw/orders/x.csv"}},
            },
        ]
    }
    arrivals = file_arrivals(event)
    assert [a.key for a in arrivals] == ["raw/orders/2025-07-10/my file+1.csv"]
    assert arrivals[0].token == "raw/orders/2025-07-10/my file+1.csv|seq:0A1"


def test_file_arrivals_rejects_records_without_key() -> None:
    with pytest.raises(MalformedEvent):
        file_arrivals({"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "b"}}}]})


def test_parse_sqs_body_unwraps_sns_and_rejects_garbage() -> None:
    inner = {"Event": "s3:TestEvent", "Bucket": "b"}
    envelope = {"Type": "Notification", "Message": json.dumps(inner)}
    assert parse_sqs_body(json.dumps(envelope)) == inner
    assert is_s3_test_event(parse_sqs_body(json.dumps(inner)))
    with pytest.raises(MalformedEvent):
        parse_sqs_body("not json")
    with pytest.raises(MalformedEvent):
        parse_sqs_body("[1, 2]")


def test_execution_end_parses_input() -> None:
    end = execution_end(
        {
            "source": "aws.states",
            "detail-type": "Step Functions Execution Status Change",
            "detail": {"name": "2025-07-10-g2", "status": "FAILED", "input": '{"bucket": "b"}'},
        }
    )
    assert (end.name, end.status, end.input, end.is_terminal) == (
        "2025-07-10-g2",
        "FAILED",
        {"bucket": "b"},
        True,
    )
    with pytest.raises(MalformedEvent):
        execution_end({"source": "aws.states", "detail": {}})


def test_parse_manifest_formats() -> None:
    flat = {
        "batch_id": "2025-07-10",
        "expected_keys": [
            "raw/orders/2025-07-10/o1.csv",
            "order_items/2025-07-10/i1.csv",
            "raw/products/products.csv",
        ],
    }
    assert parse_manifest(json.dumps(flat).encode(), "2025-07-10") == {
        "raw/orders/2025-07-10/o1.csv",
        "raw/order_items/2025-07-10/i1.csv",
    }
    split = {
        "orders": ["o1.csv", "orders/2025-07-10/o2.csv"],
        "order_items": ["raw/order_items/2025-07-10/i1.csv"],
    }
    assert parse_manifest(json.dumps(split).encode(), "2025-07-10") == {
        "raw/orders/2025-07-10/o1.csv",
        "raw/orders/2025-07-10/o2.csv",
        "raw/order_items/2025-07-10/i1.csv",
    }


@pytest.mark.parametrize(
    "doc",
    [
        b"not json",
        b"[]",
        json.dumps({"batch_id": "2025-07-11", "orders": ["o1.csv"]}).encode(),
        json.dumps({"orders": ["../o1.csv"]}).encode(),
        json.dumps({"expected_keys": ["raw/orders/2025-07-11/o1.csv"]}).encode(),
        json.dumps({"expected_keys": ["raw/orders/o1.csv"]}).encode(),
        json.dumps({"expected_keys": []}).encode(),
        json.dumps({"orders": "o1.csv"}).encode(),
    ],
)
def test_parse_manifest_rejects(doc: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(doc, "2025-07-10")


def _state(orders: int = 2, items: int = 1) -> BatchState:
    return BatchState(
        batch_id="2025-07-10",
        bucket="b",
        orders_keys=frozenset(f"raw/orders/2025-07-10/part {n:04d} [x].csv" for n in range(orders, 0, -1)),
        order_items_keys=frozenset(f"raw/order_items/2025-07-10/part {n:04d}.csv" for n in range(items)),
        triggered_generation=3,
        triggered_at="2025-07-10T00:00:00.000Z",
    )


def test_execution_input_carries_the_key_list_by_reference() -> None:
    state = _state()
    assert state.execution_name == "2025-07-10-g3"
    assert state.execution_input("b", "control/inputs/2025-07-10/g3-x.json") == {
        "batch_id": "2025-07-10",
        "generation": 3,
        "bucket": "b",
        "products_key": "raw/products/products.csv",
        "inputs_key": "control/inputs/2025-07-10/g3-x.json",
        "orders_count": 2,
        "order_items_count": 1,
        "triggered_at": "2025-07-10T00:00:00.000Z",
    }
    assert state.inputs_document()["orders_keys"] == [
        "raw/orders/2025-07-10/part 0001 [x].csv",
        "raw/orders/2025-07-10/part 0002 [x].csv",
    ]


def test_the_jobs_read_the_document_the_trigger_writes() -> None:
    from jobs.batch_inputs import parse_inputs
    from jobs.config import PipelineConfig

    state = _state(orders=500, items=500)
    document = json.loads(json.dumps(state.inputs_document()))
    config = parse_inputs(document, PipelineConfig(bucket="b", batch_id="2025-07-10"), "inputs")
    assert config.orders_keys == tuple(sorted(state.orders_keys))
    assert config.order_items_keys == tuple(sorted(state.order_items_keys))
    assert config.products_key == "raw/products/products.csv"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"version": 2, "batch_id": "2025-07-10"}, "version 2"),
        ({"version": 1, "batch_id": "2025-07-11"}, "lists keys of batch '2025-07-11'"),
        (
            {"version": 1, "batch_id": "2025-07-10", "orders_keys": "raw/x.csv"},
            "'orders_keys' must be a list",
        ),
        ([], "is not a JSON object"),
    ],
)
def test_a_wrong_inputs_document_is_a_clear_error(document: Any, problem: str) -> None:
    from jobs.batch_inputs import parse_inputs
    from jobs.config import ConfigError, PipelineConfig

    with pytest.raises(ConfigError, match=re.escape(problem)):
        parse_inputs(document, PipelineConfig(bucket="b", batch_id="2025-07-10"), "INPUTS_KEY s3://b/k")


def test_execution_arn_for() -> None:
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:ecomkpi"
    assert (
        execution_arn_for(arn, "2025-07-10-g1")
        == "arn:aws:states:us-east-1:123456789012:execution:ecomkpi:2025-07-10-g1"
    )


def test_execution_statuses_are_the_ones_step_functions_reports() -> None:
    """The closed set is AWS's own (the typed SDK's literal), and the terminal ones are terminal."""
    from typing import get_args

    from types_boto3_stepfunctions.literals import ExecutionStatusType

    assert set(ExecutionStatus) == set(get_args(ExecutionStatusType))
    assert set(ExecutionStatus) - {"RUNNING", "PENDING_REDRIVE"} == TERMINAL_STATUSES
    assert json.dumps({"s": ExecutionStatus.SUCCEEDED}) == '{"s": "SUCCEEDED"}'  # written as its string
