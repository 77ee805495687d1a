"""Schema drift: a producer's header that differs from the contract is accepted when the contract allows
it, recorded in the file's report, its verdict record and the dataset's schema history, and a form
no file had before raises one SNS notice (not one per file)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from jobs.validation.drift import drift_of, schema_history
from jobs.validation.job import run as validate
from tests.support.validation import (
    ORDERS_HEADER,
    PRODUCTS_CSV,
    PRODUCTS_KEY,
    create_bucket,
    get_json,
    make_config,
    put,
    s3,
)

ORDERS = ORDERS_HEADER.split(",")


def test_the_contracts_header_is_no_drift() -> None:
    assert drift_of("orders", ORDERS) is None
    assert drift_of("unknown", ["a"]) is None


def test_new_missing_and_reordered_columns_are_told_apart() -> None:
    new = drift_of("orders", [*ORDERS, "coupon_code"])
    assert new is not None and new.new == ("coupon_code",) and not new.missing and not new.reordered
    fewer = [c for c in ORDERS if c != "gender"]
    missing = drift_of("orders", fewer)
    assert missing is not None and missing.missing == ("gender",) and not missing.new
    moved = drift_of("orders", [ORDERS[1], ORDERS[0], *ORDERS[2:]])
    assert moved is not None and moved.reordered and not moved.new and not moved.missing
    renamed = drift_of("orders", [("sex" if c == "gender" else c) for c in ORDERS])
    assert renamed is not None and renamed.new == ("sex",) and renamed.missing == ("gender",)
    assert "new column(s) sex" in renamed.describe() and "missing: gender" in renamed.describe()
    # The same header is the same form; another header another one.
    assert (
        renamed.signature == drift_of("orders", [("sex" if c == "gender" else c) for c in ORDERS]).signature
    )  # type: ignore[union-attr]
    assert renamed.signature != new.signature


def _orders(header: list[str], order_id: int) -> bytes:
    values = {"order_id": str(order_id), "user_id": "7", "status": "Complete", "gender": "F",
              "created_at": "2025-07-10 10:00:00", "num_of_item": "1", "coupon_code": "X1", "channel": "web"}  # fmt: skip
    return (",".join(header) + "\n" + ",".join(values.get(c, "") for c in header) + "\n").encode()


def _notices(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    found = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            return found
        for m in messages:
            found.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.mark.spark
def test_a_new_form_is_accepted_recorded_and_announced_once(moto_endpoint: str, spark: Any) -> None:
    import boto3

    bucket = f"ecomkpi-drift-{uuid.uuid4().hex[:8]}"
    region = {"region_name": "us-east-1", "endpoint_url": moto_endpoint}
    sns, sqs = boto3.client("sns", **region), boto3.client("sqs", **region)
    topic = sns.create_topic(Name=f"alerts-{bucket}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"alerts-{bucket}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    wider = [*ORDERS, "coupon_code"]  # a new column, twice in one run
    keys = [f"raw/orders/2025-07-10/part{i}.csv" for i in range(3)]
    config = make_config(moto_endpoint, bucket, orders=keys, run_id="run-1", SNS_TOPIC_ARN=topic)
    create_bucket(config)
    put(config, PRODUCTS_KEY, PRODUCTS_CSV)
    put(config, keys[0], _orders(wider, 1))
    put(config, keys[1], _orders(wider, 2))
    put(config, keys[2], _orders(ORDERS, 3))  # the contract's own header: no drift
    result = validate(config, spark)
    assert result.exit_code == 0

    for key in keys[:2]:
        rel = key.removeprefix("raw/")
        s3(config).head_object(Bucket=bucket, Key=f"validated/{rel}")  # accepted
        report = get_json(config, f"logs/validation/2025-07-10/run-1/reports/{rel}.json")
        assert report["schema_drift"]["new"] == ["coupon_code"], report
        assert any("new column(s) coupon_code" in n for n in report["notes"]), report["notes"]
        verdict = get_json(config, f"logs/validation/verdicts/{rel}.json")
        assert verdict["schema_drift"]["signature"] == report["schema_drift"]["signature"]
    plain = get_json(config, "logs/validation/2025-07-10/run-1/reports/orders/2025-07-10/part2.csv.json")
    assert "schema_drift" not in plain

    from jobs.s3_store import S3Store

    history = schema_history(S3Store(config), "orders")
    assert [h["new"] for h in history] == [["coupon_code"]]
    assert history[0]["first_seen"]["file"] in keys[:2]
    notices = _notices(sqs, queue)
    assert len(notices) == 1, notices
    attributes = {k: v["Value"] for k, v in notices[0]["MessageAttributes"].items()}
    assert attributes == {
        "kind": "schema_drift",
        "severity": "info",
        "day": "2025-07-10",
        "dataset": "orders",
    }
    assert "coupon_code" in notices[0]["Message"]

    # The next day: the known form raises nothing; another new one its own notice.
    later = ["raw/orders/2025-07-11/a.csv", "raw/orders/2025-07-11/b.csv"]
    config2 = make_config(
        moto_endpoint, bucket, orders=later, run_id="run-2", BATCH_ID="2025-07-11", SNS_TOPIC_ARN=topic
    )
    put(config2, later[0], _orders(wider, 4).replace(b"2025-07-10", b"2025-07-11"))
    put(config2, later[1], _orders([*ORDERS, "channel"], 5).replace(b"2025-07-10", b"2025-07-11"))
    assert validate(config2, spark).exit_code == 0
    notices = _notices(sqs, queue)
    assert [n["MessageAttributes"]["dataset"]["Value"] for n in notices] == ["orders"]
    assert (
        "channel" in notices[0]["Message"] and "coupon_code" not in notices[0]["Message"].split("Columns:")[0]
    )
    assert sorted(tuple(h["new"]) for h in schema_history(S3Store(config2), "orders")) == [
        ("channel",),
        ("coupon_code",),
    ]
