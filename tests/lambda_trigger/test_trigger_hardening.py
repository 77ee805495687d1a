"""The trigger against inputs and senders it must not trust (issue #38), on the moto server.

Undated keys withdrawn, a deleted re-upload behind an older rejection, forged execution ends,
keys with control characters, a re-upload racing the move of an unrecognised key, the tracker's
open-days index and retention, and raw/ files whose event was lost.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from lambda_trigger import batch_ids, version_moves
from lambda_trigger.events import file_arrivals
from lambda_trigger.handler import build_coordinator, lambda_handler
from lambda_trigger.s3_events import s3_event
from tests.lambda_trigger import test_lambda_trigger as base
from tests.lambda_trigger.test_lambda_trigger import (
    DAY,
    NOW,
    PRODUCTS,
    RECONCILE,
    Stack,
    day_keys,
    deliver,
    end_event,
    sqs_event,
    withdraw_event,
)

# The trigger's emulated stack and the emulator's per-item atomicity, as in test_lambda_trigger.
atomic_emulator = base.atomic_emulator
stack = base.stack

UNDATED_TIME = f"{DAY}T09:00:00.000Z"  # an undated key belongs to its upload's date


def _start_day(stack: Stack, *extra: str) -> None:
    deliver(
        *(
            s3_event(stack.bucket, k)
            for k in [PRODUCTS, *day_keys("orders", "o.csv"), *day_keys("order_items", "i.csv"), *extra]
        )
    )


def _metric_sum(endpoint: str, bucket: str, name: str) -> float:
    cloudwatch = boto3.client("cloudwatch", endpoint_url=endpoint, region_name="us-east-1")
    stats = cloudwatch.get_metric_statistics(
        Namespace="ecomkpi",
        MetricName=name,
        Dimensions=[{"Name": "Bucket", "Value": bucket}],
        StartTime=datetime(2000, 1, 1, tzinfo=UTC),
        EndTime=datetime(2100, 1, 1, tzinfo=UTC),
        Period=86400,
        Statistics=["Sum"],
    )["Datapoints"]
    return sum(point["Sum"] for point in stats)


# -- item 4: withdrawals ------------------------------------------------------------------------------
def test_an_undated_key_deleted_before_processing_leaves_its_upload_day(stack: Stack) -> None:
    undated = "raw/orders/late_undated.csv"
    _start_day(stack)
    stack.put(undated)
    deliver(s3_event(stack.bucket, undated, event_time=UNDATED_TIME))
    assert undated in stack.item(DAY)["orders_keys"]

    stack.s3.delete_object(Bucket=stack.bucket, Key=undated)
    deliver(s3_event(stack.bucket, undated, event_name="ObjectRemoved:Delete", event_time=UNDATED_TIME))
    assert undated not in stack.item(DAY)["orders_keys"]
    deliver(end_event(stack, f"{DAY}-g1"))
    assert stack.launched(f"{DAY}-g2")["orders_keys"] == day_keys("orders", "o.csv")


def test_an_operator_can_withdraw_an_undated_key(stack: Stack) -> None:
    undated = "raw/order_items/items_undated.csv"
    _start_day(stack)
    deliver(s3_event(stack.bucket, undated, event_time=UNDATED_TIME))  # late: owes generation 2
    deliver(end_event(stack, f"{DAY}-g1"))
    assert undated in stack.launched(f"{DAY}-g2")["order_items_keys"]
    stack.put("invalid/order_items/items_undated.csv", b"bad\n")  # g2 rejected it

    assert lambda_handler(withdraw_event(undated), None) == {"batchItemFailures": []}
    assert undated not in stack.item(DAY)["order_items_keys"]
    assert stack.exists("invalid/withdrawn/order_items/items_undated.csv")
    deliver(end_event(stack, f"{DAY}-g2", "FAILED"))
    assert stack.launched(f"{DAY}-g3")["order_items_keys"] == day_keys("order_items", "i.csv")


def test_a_deleted_reupload_is_withdrawn_although_an_older_copy_is_in_invalid(stack: Stack) -> None:
    (orders,) = day_keys("orders", "o.csv")
    _start_day(stack)
    # g1 rejected the first upload (ETag "first"): validation's copy names the raw ETag it came from.
    stack.s3.put_object(
        Bucket=stack.bucket,
        Key=f"invalid/orders/{DAY}/o.csv",
        Body=b"bad\n",
        Metadata={"ecomkpi-raw-etag": "first"},
    )
    deliver(end_event(stack, f"{DAY}-g1", "FAILED"))
    deliver(s3_event(stack.bucket, orders, etag="second"))  # the producer uploads again ...
    deliver(s3_event(stack.bucket, orders, event_name="ObjectRemoved:Delete"))  # ... and takes it back
    assert orders not in stack.item(DAY).get("orders_keys", set())


def test_the_pipelines_own_delete_after_placing_the_last_upload_is_no_withdrawal(stack: Stack) -> None:
    (orders,) = day_keys("orders", "o.csv")
    _start_day(stack)
    deliver(s3_event(stack.bucket, orders, etag="second"))
    stack.s3.put_object(  # validation placed the second upload and deleted the raw key
        Bucket=stack.bucket,
        Key=f"validated/orders/{DAY}/o.csv",
        Body=b"ok\n",
        Metadata={"ecomkpi-raw-etag": "second"},
    )
    deliver(s3_event(stack.bucket, orders, event_name="ObjectRemoved:Delete"))
    assert orders in stack.item(DAY)["orders_keys"]


# -- item 9: execution ends are checked with DescribeExecution ----------------------------------------
def test_a_forged_succeeded_event_does_not_end_a_running_generation(stack: Stack) -> None:
    _start_day(stack)
    forged = end_event(stack, f"{DAY}-g1", "SUCCEEDED", ended=False)  # the execution still runs
    deliver(forged)
    assert lambda_handler(sqs_event(json.dumps(forged)), None) == {"batchItemFailures": []}
    item = stack.item(DAY)
    assert item["running"] is True and "ended_generation" not in item

    deliver(end_event(stack, f"{DAY}-g1", "FAILED"))  # the real end
    item = stack.item(DAY)
    assert (item["running"], item["last_execution_status"]) == (False, "FAILED")


def test_an_end_event_with_a_wrong_status_records_the_real_one(stack: Stack) -> None:
    _start_day(stack)
    event = end_event(stack, f"{DAY}-g1", "FAILED")
    event["detail"]["status"] = "SUCCEEDED"
    deliver(event)
    assert stack.item(DAY)["last_execution_status"] == "FAILED"


def test_an_end_event_of_an_execution_that_does_not_exist_is_ignored(stack: Stack) -> None:
    _start_day(stack)
    event = end_event(stack, f"{DAY}-g1")
    event["detail"]["name"] = f"{DAY}-g7"
    deliver(event)
    assert stack.item(DAY)["running"] is True


# -- item 10: control characters ---------------------------------------------------------------------
def test_a_key_with_control_characters_is_set_aside_and_logged_escaped(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    key = f"raw/orders/{DAY}/o\r[ERROR] forged line\t\x1b[31m.csv"
    stack.put(key)
    deliver(s3_event(stack.bucket, key))

    moved = "invalid/unrecognised/" + key.removeprefix("raw/")
    report = json.loads(stack.s3.get_object(Bucket=stack.bucket, Key=f"{moved}.report.json")["Body"].read())
    assert report["failures"][0]["rule"] == "no_control_characters" and report["file"] == key
    assert not stack.exists(key)
    assert "Item" not in stack.ddb.get_item(TableName=stack.table, Key={"BatchId": {"S": DAY}})
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    assert "o\\r[ERROR] forged line\\t\\x1b[31m.csv" in out


def test_a_newline_in_a_key_cannot_forge_a_log_line(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    # (moto's server cannot store a key holding a newline; S3 can: the event alone is enough here)
    key = f"raw/orders/{DAY}/o\n[ERROR] forged line.csv"
    deliver(s3_event(stack.bucket, key))
    assert "Item" not in stack.ddb.get_item(TableName=stack.table, Key={"BatchId": {"S": DAY}})
    lines = capsys.readouterr().out.splitlines()
    assert not any(line.startswith("[ERROR] forged") for line in lines)
    assert any("o\\n[ERROR] forged line.csv" in line for line in lines)


def test_every_log_record_is_one_line(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    lambda_handler(sqs_event("not json\n[ERROR] forged"), None)
    out = capsys.readouterr().out
    assert all(line.startswith(("[INFO]", "[WARN]", "[ERROR]")) for line in out.splitlines())


# -- item 11: the move of an unrecognised key is conditional ------------------------------------------
def test_a_reupload_while_an_unrecognised_key_moves_is_kept(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"raw/orders/{DAY}/o.CSV"
    stack.put(key, b"first\n")
    coordinator = build_coordinator()
    real_put = coordinator.s3.put_object

    def reupload_then_put(**kwargs: Any) -> Any:
        if kwargs["Key"].endswith(".report.json"):  # between the copy and the delete
            real_put(Bucket=stack.bucket, Key=key, Body=b"corrected\n")
        return real_put(**kwargs)

    monkeypatch.setattr(coordinator.s3, "put_object", reupload_then_put)
    (arrival,) = file_arrivals(s3_event(stack.bucket, key))
    coordinator.handle_arrival(arrival)
    assert stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"corrected\n"
    moved = "invalid/unrecognised/" + key.removeprefix("raw/")
    assert stack.s3.get_object(Bucket=stack.bucket, Key=moved)["Body"].read() == b"first\n"


def test_a_reupload_while_a_key_is_withdrawn_is_kept(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ecomkpi withdraw`` moves the version it looked at: a corrected upload landing between its
    copy and its delete stays in raw/ (the delete is conditional on the ETag), for its own event."""
    (late,) = day_keys("orders", "late.csv")
    _start_day(stack)
    stack.put(late, b"first\n")
    deliver(s3_event(stack.bucket, late))
    real_copy = version_moves.aws.copy_object

    def copy_then_reupload(s3: Any, bucket: str, source: str, destination: str, **kwargs: Any) -> None:
        real_copy(s3, bucket, source, destination, **kwargs)
        if source == late:
            stack.s3.put_object(Bucket=stack.bucket, Key=late, Body=b"corrected\n")

    monkeypatch.setattr(version_moves.aws, "copy_object", copy_then_reupload)
    assert lambda_handler(withdraw_event(late), None) == {"batchItemFailures": []}
    assert stack.s3.get_object(Bucket=stack.bucket, Key=late)["Body"].read() == b"corrected\n"
    withdrawn = "invalid/withdrawn/" + late.removeprefix("raw/")
    assert stack.s3.get_object(Bucket=stack.bucket, Key=withdrawn)["Body"].read() == b"first\n"


# -- item 8: open days and retention -------------------------------------------------------------------
def test_the_sweep_reads_only_open_days_and_finished_days_expire(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKER_RETENTION_DAYS", "30")
    days = [f"2025-06-{d:02d}" for d in range(1, 13)]
    deliver(s3_event(stack.bucket, PRODUCTS))
    for day in days:
        deliver(
            s3_event(stack.bucket, f"raw/orders/{day}/o.csv"),
            s3_event(stack.bucket, f"raw/order_items/{day}/i.csv"),
        )
    for day in days[:-1]:
        deliver(end_event(stack, f"{day}-g1"))

    finished = stack.item(days[0])
    assert "sweep_shard" not in finished
    assert finished["expires_at"] == int(NOW.timestamp()) + 30 * 86_400
    assert stack.item(days[-1])["sweep_shard"] == "open" and "expires_at" not in stack.item(days[-1])
    summary = lambda_handler(RECONCILE, None)["reconcile"]
    assert summary["running"] == 1 and summary["idle"] == 0  # the 11 finished days are not read

    deliver(s3_event(stack.bucket, f"raw/orders/{days[0]}/late.csv"))  # a late file reopens a day
    reopened = stack.item(days[0])
    assert reopened["sweep_shard"] == "open" and "expires_at" not in reopened
    ttl = stack.ddb.describe_time_to_live(TableName=stack.table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def test_a_full_sweep_still_reaches_days_without_the_open_marker(stack: Stack) -> None:
    _start_day(stack)
    stack.ddb.update_item(  # an item written before the marker existed, its end event lost
        TableName=stack.table, Key={"BatchId": {"S": DAY}}, UpdateExpression="REMOVE sweep_shard"
    )
    end_event(stack, f"{DAY}-g1")  # the execution ended; its event never arrives
    assert lambda_handler(RECONCILE, None)["reconcile"]["finished"] == 0
    assert lambda_handler({**RECONCILE, "full": True}, None)["reconcile"]["finished"] == 1
    assert stack.item(DAY)["running"] is False


# -- item 18: files nobody was told about --------------------------------------------------------------
def test_the_sweep_feeds_in_raw_files_whose_event_was_lost(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    monkeypatch.setenv("S3_BUCKET", stack.bucket)
    for key in [
        PRODUCTS,
        *day_keys("orders", "o.csv"),
        *day_keys("order_items", "i.csv"),
        f"raw/orders/{DAY}/x.txt",
    ]:
        stack.put(key)  # uploaded; no event reaches the trigger
    deliver(s3_event(stack.bucket, PRODUCTS))
    before = _metric_sum(moto_endpoint, stack.bucket, "UnannouncedKeys")

    assert lambda_handler(RECONCILE, None)["reconcile"]["unannounced"] == 0  # too young to tell
    later = datetime.now(UTC) + timedelta(minutes=20)
    monkeypatch.setattr(batch_ids, "utc_now", lambda: later)
    assert lambda_handler(RECONCILE, None)["reconcile"]["unannounced"] == 3
    assert stack.executions() == [f"{DAY}-g1"]
    assert stack.exists(f"invalid/unrecognised/orders/{DAY}/x.txt")
    assert _metric_sum(moto_endpoint, stack.bucket, "UnannouncedKeys") == before + 3
    assert lambda_handler(RECONCILE, None)["reconcile"]["unannounced"] == 0  # all known now


def test_the_raw_listing_is_bounded_and_resumes(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_BUCKET", stack.bucket)
    monkeypatch.setenv("RAW_LISTING_LIMIT", "2")
    keys = day_keys("orders", "a.csv", "b.csv", "c.csv")
    for key in keys:
        stack.put(key)
    later = datetime.now(UTC) + timedelta(minutes=20)
    monkeypatch.setattr(batch_ids, "utc_now", lambda: later)
    assert lambda_handler(RECONCILE, None)["reconcile"]["unannounced"] == 2
    assert lambda_handler(RECONCILE, None)["reconcile"]["unannounced"] == 1
    assert sorted(stack.item(DAY)["orders_keys"]) == keys


def test_a_day_at_dynamodbs_item_limit_sets_the_next_key_aside(stack: Stack) -> None:
    # A day that already holds ~390 KB of keys (about 400 keys of S3's maximum 1,024 bytes), filled
    # in one write here; then parts keep coming.
    stack.ddb.update_item(
        TableName=stack.table,
        Key={"BatchId": {"S": DAY}},
        UpdateExpression="SET earlier_keys = :pad",
        ExpressionAttributeValues={":pad": {"S": "k" * 390_000}},
    )
    keys = [f"raw/orders/{DAY}/{'p' * 900}{i:04d}.csv" for i in range(30)]
    for key in keys:
        stack.put(key)
        assert lambda_handler(s3_event(stack.bucket, key), None) == {"status": "ok"}
    # (moto applies the ADD before it refuses the item's size, so the item itself cannot tell;
    # DynamoDB's write is atomic. What the producer sees is where each file went.)
    refused = [k for k in keys if not stack.exists(k)]
    assert 0 < len(refused) < len(keys) and refused == keys[-len(refused) :]  # the first ones fit
    for key in refused:
        report = json.loads(
            stack.s3.get_object(
                Bucket=stack.bucket, Key="invalid/unrecognised/" + key.removeprefix("raw/") + ".report.json"
            )["Body"].read()
        )
        assert report["failures"][0]["rule"] == "day_key_limit"


# -- stuck days (lambda_trigger/stuck_days.py) ----------------------------------------------------------
def test_a_day_that_waits_too_long_alerts_once_per_wait(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sns = boto3.client("sns", endpoint_url=stack.s3.meta.endpoint_url, region_name="us-east-1")
    topic = sns.create_topic(Name=f"alerts-{stack.bucket}")["TopicArn"]
    inbox = stack.sqs.create_queue(QueueName=f"stuck-{stack.bucket}")["QueueUrl"]
    inbox_arn = stack.sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    # A team that wants only stuck days: the filter a subscription would use.
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn,
                  Attributes={"FilterPolicy": json.dumps({"kind": ["stuck_day"]})})  # fmt: skip
    monkeypatch.setenv("ALERTS_TOPIC_ARN", topic)
    monkeypatch.setenv("STUCK_AFTER_MINUTES", "120")

    def alerts() -> list[dict[str, Any]]:
        got = stack.sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]

    def at(minutes: int) -> None:
        monkeypatch.setattr(batch_ids, "utc_now", lambda: NOW + timedelta(minutes=minutes))

    orders = day_keys("orders", "o1.csv", "o2.csv")
    items = day_keys("order_items", "i.csv")
    manifest = f"raw/manifests/{DAY}.json"
    stack.put(manifest, json.dumps({"expected_keys": [*orders, *items]}).encode())
    deliver(s3_event(stack.bucket, manifest), s3_event(stack.bucket, PRODUCTS))
    deliver(s3_event(stack.bucket, orders[0]), s3_event(stack.bucket, items[0]))  # o2.csv never comes

    at(119)
    assert lambda_handler(RECONCILE, None)["reconcile"]["stuck"] == 0 and alerts() == []
    at(121)
    assert lambda_handler(RECONCILE, None)["reconcile"]["stuck"] == 1
    (alert,) = alerts()
    attributes = {k: v["Value"] for k, v in alert["MessageAttributes"].items()}
    assert attributes == {"kind": "stuck_day", "severity": "warning", "day": DAY, "waiting_for": "parts"}
    assert orders[1] in alert["Message"] and alert["Subject"] == f"ecomkpi: day {DAY} is waiting for parts"
    at(240)
    assert lambda_handler(RECONCILE, None)["reconcile"]["stuck"] == 0 and alerts() == []  # once per wait

    deliver(s3_event(stack.bucket, day_keys("orders", "o3.csv")[0]))  # an unlisted part: a new wait
    at(240 + 121)
    lambda_handler(RECONCILE, None)
    assert [a["MessageAttributes"]["day"]["Value"] for a in alerts()] == [DAY]
    deliver(s3_event(stack.bucket, orders[1]))  # the part comes: the day runs and is no longer waiting
    assert stack.executions() == [f"{DAY}-g1"]
    at(240 + 500)
    lambda_handler(RECONCILE, None)
    assert alerts() == []
