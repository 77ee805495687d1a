"""The trigger Lambda against the moto server: real conditional writes, real StartExecution.

moto's Step Functions records executions without running them (execution is not enabled) and
rejects a second execution with the same name, so ``list_executions`` counts exactly what the
Lambda started. End-of-execution is simulated by sending the EventBridge status-change event.
"""

from __future__ import annotations

import functools
import json
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from jobs import aws
from lambda_trigger import batch_ids
from lambda_trigger.handler import lambda_handler
from lambda_trigger.s3_events import s3_event
from lambda_trigger.tracker import create_tracker_table

DAY = "2025-07-10"
PRODUCTS = "raw/products/products.csv"
NOW = datetime(2025, 7, 11, 8, 30, tzinfo=UTC)
DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
ROLE_ARN = "arn:aws:iam::123456789012:role/ecomkpi-sfn"

_EMULATOR_LOCK = threading.RLock()


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _EMULATOR_LOCK:
            return method(self, *args, **kwargs)

    return wrapper


@pytest.fixture(scope="module", autouse=True)
def atomic_emulator() -> Iterator[None]:
    """Give the in-process moto server DynamoDB's real per-item atomicity.

    moto evaluates a ConditionExpression and applies the update in separate Python steps while its
    HTTP server handles requests on many threads, so two conditional writes can both pass (the real
    service serialises writes to an item). The concurrency tests are about *our* protocol, so the
    emulator's item operations and StartExecution (name uniqueness) are serialised here.
    """
    from moto.dynamodb.responses import DynamoHandler
    from moto.stepfunctions.responses import StepFunctionResponse

    with pytest.MonkeyPatch.context() as patch:
        for name in ("get_item", "put_item", "update_item", "delete_item"):
            patch.setattr(DynamoHandler, name, _serialized(getattr(DynamoHandler, name)))
        patch.setattr(
            StepFunctionResponse, "start_execution", _serialized(StepFunctionResponse.start_execution)
        )
        yield


@dataclass
class Stack:
    """The emulated resources of one test and helpers to drive and inspect them."""

    bucket: str
    table: str
    sfn_arn: str
    s3: Any
    ddb: Any
    sfn: Any
    sqs: Any

    def executions(self) -> list[str]:
        listed = self.sfn.list_executions(stateMachineArn=self.sfn_arn)["executions"]
        return sorted(e["name"] for e in listed)

    def execution_input(self, name: str) -> dict[str, Any]:
        arn = self.sfn_arn.replace(":stateMachine:", ":execution:") + f":{name}"
        return json.loads(self.sfn.describe_execution(executionArn=arn)["input"])

    def inputs(self, name: str) -> dict[str, Any]:
        """The key list object the execution was started with (the input carries its key only)."""
        key = self.execution_input(name)["inputs_key"]
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def launched(self, name: str) -> dict[str, Any]:
        """The execution input with its key lists resolved, as the jobs see it."""
        inputs = self.inputs(name)
        return {
            **self.execution_input(name),
            "orders_keys": inputs["orders_keys"],
            "order_items_keys": inputs["order_items_keys"],
        }

    def item(self, batch_id: str) -> dict[str, Any]:
        raw = self.ddb.get_item(TableName=self.table, Key={"BatchId": {"S": batch_id}}, ConsistentRead=True)
        deserializer = TypeDeserializer()
        return {k: deserializer.deserialize(v) for k, v in raw.get("Item", {}).items()}

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError:
            return False
        return True

    def put(self, key: str, body: bytes = b"x\n") -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)


@pytest.fixture
def stack(moto_endpoint: str, names: Any, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("PIPELINE_BATCH_TRACKER_TABLE", names.tracker_table)
    monkeypatch.delenv("PRODUCTS_KEY", raising=False)
    monkeypatch.setattr(batch_ids, "utc_now", lambda: NOW)

    def make(service: str) -> Any:
        return boto3.client(service, endpoint_url=moto_endpoint, region_name="us-east-1")

    s3, ddb, sfn, sqs = make("s3"), make("dynamodb"), make("stepfunctions"), make("sqs")
    s3.create_bucket(Bucket=names.bucket)
    create_tracker_table(ddb, names.tracker_table)
    sfn_arn = sfn.create_state_machine(
        name=f"ecomkpi-{names.suffix}", definition=DEFINITION, roleArn=ROLE_ARN
    )["stateMachineArn"]
    monkeypatch.setenv("STEP_FUNCTION_ARN", sfn_arn)
    return Stack(names.bucket, names.tracker_table, sfn_arn, s3, ddb, sfn, sqs)


def set_execution_status(stack: Stack, name: str, status: str) -> None:
    """Make moto's execution ``name`` report ``status`` (moto records executions without running
    them, so they stay RUNNING): the trigger believes an end only from DescribeExecution."""
    from moto.core.utils import utcnow
    from moto.stepfunctions.models import stepfunctions_backends

    arn = stack.sfn_arn.replace(":stateMachine:", ":execution:") + f":{name}"
    execution = stepfunctions_backends["123456789012"]["us-east-1"].describe_execution(arn)
    execution.status = status
    execution.stop_date = None if status == "RUNNING" else utcnow()


def end_event(stack: Stack, name: str, status: str = "SUCCEEDED", *, ended: bool = True) -> dict[str, Any]:
    """The EventBridge "Step Functions Execution Status Change" event of one execution, which (when
    ``ended``) has ended with ``status`` as far as DescribeExecution is concerned."""
    arn = stack.sfn_arn.replace(":stateMachine:", ":execution:") + f":{name}"
    if ended:
        set_execution_status(stack, name, status)
    return {
        "version": "0",
        "id": "e1",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "region": "us-east-1",
        "resources": [arn],
        "detail": {
            "executionArn": arn,
            "stateMachineArn": stack.sfn_arn,
            "name": name,
            "status": status,
            "input": json.dumps(stack.execution_input(name)),
        },
    }


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": body, "eventSource": "aws:sqs"}
            for i, body in enumerate(bodies)
        ]
    }


def day_keys(table: str, *names: str, day: str = DAY) -> list[str]:
    return [f"raw/{table}/{day}/{n}" for n in names]


def deliver(*events: dict[str, Any]) -> None:
    for event in events:
        lambda_handler(event, None)


def run_to_quiescence(stack: Stack, status: str = "SUCCEEDED", batch_id: str = DAY) -> list[str]:
    """End the running generation (EventBridge event) until no new generation starts."""
    for _ in range(10):
        item = stack.item(batch_id)
        if not item.get("running"):
            return stack.executions()
        deliver(end_event(stack, str(item["execution_name"]), status))
    raise AssertionError("generations never stopped")


# -- basic flow ------------------------------------------------------------------------------------
def test_complete_batch_triggers_once_with_exact_input(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    (orders,) = day_keys("orders", "orders_part1.csv")
    (items,) = day_keys("order_items", "order_items_part1.csv")
    deliver(s3_event(stack.bucket, PRODUCTS))
    deliver(s3_event(stack.bucket, orders))
    assert stack.executions() == []
    deliver(s3_event(stack.bucket, items))

    assert stack.executions() == [f"{DAY}-g1"]
    payload = stack.execution_input(f"{DAY}-g1")
    assert payload == {
        "batch_id": DAY,
        "generation": 1,
        "bucket": stack.bucket,
        "products_key": PRODUCTS,
        "inputs_key": payload["inputs_key"],
        "orders_count": 1,
        "order_items_count": 1,
        "triggered_at": "2025-07-11T08:30:00.000Z",
    }
    assert payload["inputs_key"].startswith(f"control/inputs/{DAY}/g1-")
    assert stack.inputs(f"{DAY}-g1") == {
        "version": 1,
        "batch_id": DAY,
        "generation": 1,
        "products_key": PRODUCTS,
        "orders_keys": [orders],
        "order_items_keys": [items],
    }
    item = stack.item(DAY)
    assert item["triggered_generation"] == 1
    assert item["running"] is True and item["start_confirmed"] is True and item["dirty"] is False
    assert item["step_function_triggered"] is True and item["status"] == "TRIGGERED"
    assert item["orders_files_arrived"] and item["order_items_files_arrived"] and item["product_file_arrived"]
    assert item["execution_arn"].endswith(f":{DAY}-g1")
    assert stack.item("products_master_data")["products_key"] == PRODUCTS

    out = capsys.readouterr().out
    assert (
        "[INFO] Products master data batch updated. No Step Function trigger from this file directly." in out
    )
    assert (
        f"[INFO] All required files for Daily Batch ID {DAY} are ready. Preparing to trigger Step Function."
        in out
    )
    assert "[INFO] Triggering Step Function with input: {" in out


def test_end_event_without_new_files_starts_nothing(stack: Stack) -> None:
    deliver(
        *(
            s3_event(stack.bucket, k)
            for k in [PRODUCTS, *day_keys("orders", "o.csv"), *day_keys("order_items", "i.csv")]
        )
    )
    event = end_event(stack, f"{DAY}-g1")
    deliver(event, event)
    item = stack.item(DAY)
    assert (item["running"], item["status"], item["last_execution_status"], item["ended_generation"]) == (
        False,
        "SUCCEEDED",
        "SUCCEEDED",
        1,
    )
    assert stack.executions() == [f"{DAY}-g1"]


def test_non_terminal_and_foreign_status_events_are_ignored(stack: Stack) -> None:
    deliver(
        *(
            s3_event(stack.bucket, k)
            for k in [PRODUCTS, *day_keys("orders", "o.csv"), *day_keys("order_items", "i.csv")]
        )
    )
    running = end_event(stack, f"{DAY}-g1", "RUNNING")
    foreign = end_event(stack, f"{DAY}-g1")
    foreign["detail"]["stateMachineArn"] = "arn:aws:states:us-east-1:123456789012:stateMachine:other"
    adhoc = end_event(stack, f"{DAY}-g1")
    adhoc["detail"]["name"] = "manual-run-1"
    longer_name = end_event(stack, f"{DAY}-g1")  # ecomkpi-<x>-worker starts with ecomkpi-<x>
    longer_name["detail"]["stateMachineArn"] = stack.sfn_arn + "-worker"
    deliver(running, foreign, adhoc, longer_name)
    assert stack.item(DAY)["running"] is True

    of_a_version = end_event(stack, f"{DAY}-g1")  # a published version of this machine is ours
    of_a_version["detail"]["stateMachineArn"] = stack.sfn_arn + ":3"
    deliver(of_a_version)
    assert stack.item(DAY)["running"] is False


# -- bounded items ---------------------------------------------------------------------------------
def test_tracker_item_does_not_grow_with_reuploads(stack: Stack) -> None:
    """A shop re-uploading one file every minute: the item keeps one entry for the key."""
    (orders,) = day_keys("orders", "o.csv")
    deliver(s3_event(stack.bucket, orders))
    size_after_one = len(json.dumps(stack.item(DAY), default=str))
    for _ in range(300):
        deliver(s3_event(stack.bucket, orders))
    item = stack.item(DAY)
    assert item["arrival_count"] == 301
    assert len(json.dumps(item, default=str)) <= size_after_one + 2  # only the count's digits grow


@pytest.mark.slow  # ~20 s of emulated DynamoDB writes: kept out of `make test-fast`
def test_two_hundred_parts_start_one_execution_with_all_keys(stack: Stack) -> None:
    """Beyond ECS's 8 KiB of overrides inline (200 keys are ~9 KB). 200, not 500: moto rewrites the
    whole tracker item on each UpdateItem, so the test's time grows with the square of the parts."""
    orders = day_keys("orders", *(f"orders part {n:03d} [batch 7].csv" for n in range(100)))
    items = day_keys("order_items", *(f"order items part {n:03d}.csv" for n in range(100)))
    manifest_key = f"raw/manifests/{DAY}.json"
    stack.put(manifest_key, json.dumps({"expected_keys": [*orders, *items]}).encode())
    deliver(s3_event(stack.bucket, manifest_key), s3_event(stack.bucket, PRODUCTS))
    deliver(*(s3_event(stack.bucket, k) for k in [*orders, *items]))

    assert stack.executions() == [f"{DAY}-g1"]
    launched = stack.launched(f"{DAY}-g1")
    assert launched["orders_keys"] == sorted(orders) and launched["order_items_keys"] == sorted(items)
    assert (launched["orders_count"], launched["order_items_count"]) == (100, 100)
    raw_input = json.dumps(stack.execution_input(f"{DAY}-g1"))
    assert len(raw_input.encode()) < 1024  # inline, the 200 keys would be ~9 KB
    item_bytes = len(json.dumps(stack.item(DAY), default=str).encode())
    assert item_bytes < 200 * 200  # ~150 bytes per part with a manifest: ~2,600 parts fit in 400 KB


# -- the scheduled sweep ---------------------------------------------------------------------------
RECONCILE = {"ecomkpi": "reconcile"}


def _start_day(stack: Stack) -> None:
    deliver(
        *(
            s3_event(stack.bucket, k)
            for k in [PRODUCTS, *day_keys("orders", "o.csv"), *day_keys("order_items", "i.csv")]
        )
    )


def test_sweep_finishes_a_generation_whose_status_event_was_lost(stack: Stack) -> None:
    _start_day(stack)
    deliver(s3_event(stack.bucket, day_keys("orders", "late.csv")[0]))  # owes generation 2
    arn = stack.item(DAY)["execution_arn"]
    stack.sfn.stop_execution(executionArn=arn)  # it ends; EventBridge's event never arrives

    summary = lambda_handler(RECONCILE, None)["reconcile"]
    assert summary["finished"] == 1
    item = stack.item(DAY)
    assert (item["ended_generation"], item["last_execution_status"]) == (1, "ABORTED")
    assert stack.executions() == [f"{DAY}-g1", f"{DAY}-g2"]
    assert lambda_handler(RECONCILE, None)["reconcile"]["running"] == 1  # g2 runs: nothing to do


def test_sweep_starts_a_claim_whose_start_never_returned(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_once(monkeypatch, after_start=False)
    with pytest.raises(ClientError):
        _start_day(stack)
    assert stack.executions() == [] and stack.item(DAY)["start_confirmed"] is False
    assert lambda_handler(RECONCILE, None)["reconcile"]["reconciled"] == 1
    assert stack.executions() == [f"{DAY}-g1"] and stack.item(DAY)["start_confirmed"] is True


def test_sweep_reruns_a_generation_whose_execution_does_not_exist(stack: Stack) -> None:
    _start_day(stack)
    missing = stack.item(DAY)["execution_arn"] + "-gone"
    stack.ddb.update_item(
        TableName=stack.table,
        Key={"BatchId": {"S": DAY}},
        UpdateExpression="SET execution_arn = :arn",
        ExpressionAttributeValues={":arn": {"S": missing}},
    )
    assert lambda_handler(RECONCILE, None)["reconcile"]["lost"] == 1
    item = stack.item(DAY)
    assert item["triggered_generation"] == 2 and item["running"] is True
    assert stack.executions() == [f"{DAY}-g1", f"{DAY}-g2"]


def test_a_replaced_tracker_item_does_not_take_an_old_execution_for_its_own(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    _start_day(stack)
    deliver(end_event(stack, f"{DAY}-g1"))
    stack.ddb.delete_item(TableName=stack.table, Key={"BatchId": {"S": DAY}})  # the table was replaced
    monkeypatch.setattr(batch_ids, "utc_now", lambda: datetime(2025, 7, 12, 9, 0, tzinfo=UTC))

    _start_day(stack)  # producers upload the day again: numbering restarts at 1, whose name is taken
    item = stack.item(DAY)
    assert (item["triggered_generation"], item["running"], item["start_confirmed"]) == (2, True, True)
    assert stack.executions() == [f"{DAY}-g1", f"{DAY}-g2"]
    assert stack.execution_input(f"{DAY}-g2")["triggered_at"] == "2025-07-12T09:00:00.000Z"


# -- exactly once under concurrency -----------------------------------------------------------------
def _hammer(events: list[dict[str, Any]]) -> None:
    barrier = threading.Barrier(len(events))

    def call(event: dict[str, Any]) -> Any:
        barrier.wait()
        return lambda_handler(event, None)

    with ThreadPoolExecutor(max_workers=len(events)) as pool:
        for future in [pool.submit(call, e) for e in events]:
            future.result()  # re-raises any handler failure


def _claims(capsys: pytest.CaptureFixture[str]) -> int:
    """How many generations were claimed (the claim logs this line exactly once)."""
    return capsys.readouterr().out.count("are ready. Preparing to trigger Step Function.")


def test_fifty_concurrent_invocations_start_one_execution_per_generation(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = [PRODUCTS, *day_keys("orders", "o1.csv", "o2.csv"), *day_keys("order_items", "i1.csv", "i2.csv")]
    distinct = [s3_event(stack.bucket, k) for k in keys]
    rng = random.Random(7)
    deliveries = [distinct[i % len(distinct)] for i in range(50)]  # every event ~10 times
    rng.shuffle(deliveries)
    _hammer(deliveries)

    assert stack.executions() == [f"{DAY}-g1"]
    assert _claims(capsys) == 1  # one winning claim, not several claims deduplicated by the name
    item = stack.item(DAY)
    assert item["arrival_count"] == 4  # duplicates were not counted
    assert item["orders_keys"] == set(keys[1:3]) and item["order_items_keys"] == set(keys[3:])

    # Phase 2: the end event of g1 (duplicated) races with late files (also duplicated).
    late = [
        s3_event(stack.bucket, k) for k in [*day_keys("orders", "o3.csv"), *day_keys("order_items", "i3.csv")]
    ]
    ends = [end_event(stack, f"{DAY}-g1")] * 20
    mixed = ends + [late[i % 2] for i in range(30)]
    rng.shuffle(mixed)
    _hammer(mixed)
    assert stack.executions() == [f"{DAY}-g1", f"{DAY}-g2"]
    assert _claims(capsys) == 1

    final = run_to_quiescence(stack)
    assert final[:2] == [f"{DAY}-g1", f"{DAY}-g2"] and len(final) <= 3
    last = stack.launched(final[-1])
    assert last["orders_keys"] == sorted([*keys[1:3], *day_keys("orders", "o3.csv")])
    assert last["order_items_keys"] == sorted([*keys[3:], *day_keys("order_items", "i3.csv")])
    assert last["generation"] == len(final)


def test_duplicated_and_reordered_events(stack: Stack) -> None:
    orders = s3_event(stack.bucket, day_keys("orders", "o.csv")[0])
    items = s3_event(stack.bucket, day_keys("order_items", "i.csv")[0])
    products = s3_event(stack.bucket, PRODUCTS)
    deliver(items, items, orders, items, products, orders, products)
    assert stack.executions() == [f"{DAY}-g1"]
    # The whole sequence redelivered while running and after the end: still one generation.
    deliver(orders, items, products)
    deliver(end_event(stack, f"{DAY}-g1"))
    deliver(products, items, orders)
    assert stack.executions() == [f"{DAY}-g1"]
    assert stack.item(DAY)["dirty"] is False


# -- key handling ------------------------------------------------------------------------------------
def test_files_without_date_folder_belong_to_their_upload_date(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Uploaded just before midnight, processed after it (NOW is the next morning): the upload's day."""
    late = "2025-07-10T23:59:59.900Z"
    deliver(
        s3_event(stack.bucket, PRODUCTS),
        s3_event(stack.bucket, "raw/orders/orders.csv", event_time=late),
        s3_event(stack.bucket, "raw/order_items/order_items.csv", event_time=late),
    )
    assert stack.executions() == [f"{DAY}-g1"]
    payload = stack.launched(f"{DAY}-g1")
    assert payload["orders_keys"] == ["raw/orders/orders.csv"]
    out = capsys.readouterr().out
    assert (
        f"[WARN] No date partition found in key raw/orders/orders.csv. Assigning current UTC date {DAY}"
        in out
    )


def test_undated_event_without_time_uses_the_clock(stack: Stack) -> None:
    event = s3_event(stack.bucket, "raw/orders/orders.csv")
    del event["Records"][0]["eventTime"]
    deliver(event)
    assert stack.item("2025-07-11")["orders_keys"] == {"raw/orders/orders.csv"}


def test_key_with_space_is_decoded(stack: Stack) -> None:
    event = s3_event(stack.bucket, f"raw/orders/{DAY}/my file.csv")
    assert event["Records"][0]["s3"]["object"]["key"] == f"raw/orders/{DAY}/my+file.csv"
    deliver(s3_event(stack.bucket, PRODUCTS), event, s3_event(stack.bucket, f"raw/order_items/{DAY}/a+b.csv"))
    payload = stack.launched(f"{DAY}-g1")
    assert payload["orders_keys"] == [f"raw/orders/{DAY}/my file.csv"]
    assert payload["order_items_keys"] == [f"raw/order_items/{DAY}/a+b.csv"]


def _unrecognised_count(stack: Stack, cloudwatch: Any) -> float:
    stats = cloudwatch.get_metric_statistics(
        Namespace="ecomkpi",
        MetricName="UnrecognisedKeys",
        Dimensions=[{"Name": "Bucket", "Value": stack.bucket}],
        StartTime=datetime(2000, 1, 1, tzinfo=UTC),
        EndTime=datetime(2100, 1, 1, tzinfo=UTC),
        Period=86400,
        Statistics=["Sum"],
    )["Datapoints"]
    return sum(point["Sum"] for point in stats)


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        (f"raw/orders/{DAY}/o.txt", "csv_extension"),
        (f"raw/orders/{DAY}/o.CSV", "csv_extension"),
        (f"raw/orders/{DAY}/../o.csv", "no_dot_segments"),
        ("raw/orders/2025-02-30/o.csv", "date_partition"),
        (f"raw/orders/{DAY}/deeper/o.csv", "folder_depth"),
        ("raw/products/other.csv", "known_table"),
        ("raw/manifests/notes.json", "manifest_name"),
        (f"raw/orders/{DAY}/100% [final] o'neil.txt", "csv_extension"),
    ],
)
def test_unrecognised_keys_move_to_invalid_with_a_report(
    stack: Stack, key: str, rule: str, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.put(key, b"order_id,user_id\n1,2\n")
    cloudwatch = boto3.client("cloudwatch", endpoint_url=moto_endpoint, region_name="us-east-1")
    before = _unrecognised_count(stack, cloudwatch)
    deliver(s3_event(stack.bucket, key))

    moved = "invalid/unrecognised/" + key.removeprefix("raw/")
    assert not stack.exists(key)
    assert stack.s3.get_object(Bucket=stack.bucket, Key=moved)["Body"].read() == b"order_id,user_id\n1,2\n"
    report = json.loads(stack.s3.get_object(Bucket=stack.bucket, Key=f"{moved}.report.json")["Body"].read())
    assert report["file"] == key and report["verdict"] == "unrecognised"
    assert report["failures"][0]["rule"] == rule and report["location"] == moved
    assert stack.ddb.scan(TableName=stack.table)["Items"] == []  # no batch is touched
    assert _unrecognised_count(stack, cloudwatch) == before + 1
    assert f"[WARN] Moved unrecognised s3://{stack.bucket}/{key}" in capsys.readouterr().out

    deliver(s3_event(stack.bucket, key))  # a redelivery finds nothing left to move and counts nothing
    assert _unrecognised_count(stack, cloudwatch) == before + 1


def test_keys_outside_raw_are_left_alone(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    key = f"validated/orders/{DAY}/o.csv"
    stack.put(key)
    deliver(s3_event(stack.bucket, key))
    assert stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == b"x\n"
    assert stack.ddb.scan(TableName=stack.table)["Items"] == []
    assert "[INFO] Ignoring s3://" in capsys.readouterr().out


def test_events_of_another_bucket_are_refused(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_BUCKET", stack.bucket)
    deliver(*(s3_event("someone-elses-bucket", k) for k in [PRODUCTS, *day_keys("orders", "o.csv")]))
    assert stack.ddb.scan(TableName=stack.table)["Items"] == []


def test_object_removed_events_are_ignored(stack: Stack) -> None:
    deliver(s3_event(stack.bucket, day_keys("orders", "o.csv")[0], event_name="ObjectRemoved:Delete"))
    assert stack.ddb.scan(TableName=stack.table)["Items"] == []


def test_s3_test_event_is_ignored(stack: Stack) -> None:
    test_event = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2025-07-10T00:00:00Z",
        "Bucket": "b",
    }
    assert lambda_handler(test_event, None) == {"status": "ok"}
    assert lambda_handler(sqs_event(json.dumps(test_event)), None) == {"batchItemFailures": []}
    assert stack.ddb.scan(TableName=stack.table)["Items"] == []


# -- manifests ------------------------------------------------------------------------------------------
def test_manifest_batch_waits_for_every_listed_key(stack: Stack) -> None:
    orders = day_keys("orders", "orders_part1.csv", "orders_part2.csv")
    items = day_keys("order_items", "order_items_part1.csv")
    manifest_key = f"raw/manifests/{DAY}.json"
    stack.put(manifest_key, json.dumps({"batch_id": DAY, "expected_keys": [*orders, *items]}).encode())
    deliver(s3_event(stack.bucket, manifest_key), s3_event(stack.bucket, PRODUCTS))
    deliver(s3_event(stack.bucket, orders[0]), s3_event(stack.bucket, items[0]))
    assert stack.executions() == []  # orders_part2 still missing
    assert stack.item(DAY)["expected_keys"] == {*orders, *items}
    deliver(s3_event(stack.bucket, orders[1]))
    assert stack.executions() == [f"{DAY}-g1"]
    assert stack.launched(f"{DAY}-g1")["orders_keys"] == orders


def test_manifest_with_relative_table_lists(stack: Stack) -> None:
    manifest_key = f"raw/manifests/{DAY}.json"
    stack.put(manifest_key, json.dumps({"orders": ["a.csv", "b.csv"], "order_items": ["c.csv"]}).encode())
    deliver(s3_event(stack.bucket, manifest_key), s3_event(stack.bucket, PRODUCTS))
    deliver(
        *(
            s3_event(stack.bucket, k)
            for k in [*day_keys("orders", "a.csv"), *day_keys("order_items", "c.csv")]
        )
    )
    assert stack.executions() == []
    deliver(s3_event(stack.bucket, day_keys("orders", "b.csv")[0]))
    assert stack.executions() == [f"{DAY}-g1"]


def test_invalid_manifest_is_logged_and_ignored(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    manifest_key = f"raw/manifests/{DAY}.json"
    stack.put(manifest_key, b"{not json")
    deliver(s3_event(stack.bucket, manifest_key))
    assert "[ERROR] Ignoring manifest" in capsys.readouterr().out
    assert not stack.exists(manifest_key) and stack.exists(f"invalid/unrecognised/manifests/{DAY}.json")
    deliver(
        *(
            s3_event(stack.bucket, k)
            for k in [PRODUCTS, *day_keys("orders", "o.csv"), *day_keys("order_items", "i.csv")]
        )
    )
    assert stack.executions() == [f"{DAY}-g1"]


# -- late files and recovery ----------------------------------------------------------------------------
def test_late_file_runs_next_generation_only_after_end_event(stack: Stack) -> None:
    orders = day_keys("orders", "o1.csv", "o2.csv")
    (items,) = day_keys("order_items", "i1.csv")
    deliver(*(s3_event(stack.bucket, k) for k in [PRODUCTS, orders[0], items]))
    assert stack.executions() == [f"{DAY}-g1"]

    late = s3_event(stack.bucket, orders[1])
    deliver(late, late)
    assert stack.executions() == [f"{DAY}-g1"]  # g1 still running: no overlap
    assert stack.item(DAY)["dirty"] is True

    g1_end = end_event(stack, f"{DAY}-g1")
    deliver(g1_end)
    assert stack.executions() == [f"{DAY}-g1", f"{DAY}-g2"]
    payload = stack.launched(f"{DAY}-g2")
    assert (
        payload["generation"] == 2
        and payload["orders_keys"] == orders
        and payload["order_items_keys"] == [items]
    )

    deliver(g1_end, late)  # duplicates of both: nothing new
    deliver(end_event(stack, f"{DAY}-g2"))
    assert stack.executions() == [f"{DAY}-g1", f"{DAY}-g2"]
    item = stack.item(DAY)
    assert (item["triggered_generation"], item["running"], item["status"]) == (2, False, "SUCCEEDED")


def test_failed_validation_then_corrected_reupload_recovers(stack: Stack) -> None:
    (orders,) = day_keys("orders", "o1.csv")
    (items,) = day_keys("order_items", "i1.csv")
    bad_upload = s3_event(stack.bucket, orders)
    deliver(s3_event(stack.bucket, PRODUCTS), bad_upload, s3_event(stack.bucket, items))
    deliver(end_event(stack, f"{DAY}-g1", "FAILED"))
    item = stack.item(DAY)
    assert (item["status"], item["last_execution_status"], item["running"]) == ("FAILED", "FAILED", False)
    assert stack.executions() == [f"{DAY}-g1"]

    deliver(bad_upload)  # a late duplicate of the original upload event is not a new upload
    assert stack.executions() == [f"{DAY}-g1"]

    deliver(s3_event(stack.bucket, orders))  # corrected file, same key, new sequencer
    assert stack.executions() == [f"{DAY}-g1", f"{DAY}-g2"]
    assert stack.launched(f"{DAY}-g2")["orders_keys"] == [orders]
    deliver(end_event(stack, f"{DAY}-g2"))
    assert stack.item(DAY)["status"] == "SUCCEEDED"


def test_workflow_writing_status_itself_is_tolerated(stack: Stack) -> None:
    deliver(
        *(
            s3_event(stack.bucket, k)
            for k in [PRODUCTS, *day_keys("orders", "o.csv"), *day_keys("order_items", "i.csv")]
        )
    )
    # The workflow's own final step writes the status before the EventBridge event arrives.
    stack.ddb.update_item(
        TableName=stack.table,
        Key={"BatchId": {"S": DAY}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "SUCCEEDED"}},
    )
    deliver(s3_event(stack.bucket, day_keys("orders", "late.csv")[0]))
    assert stack.executions() == [f"{DAY}-g1"]
    deliver(end_event(stack, f"{DAY}-g1"))
    assert stack.executions() == [f"{DAY}-g1", f"{DAY}-g2"]


# -- products last -------------------------------------------------------------------------------------------
def test_products_arriving_last_release_waiting_batches(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    other = "2025-07-09"
    deliver(
        *(
            s3_event(stack.bucket, k)
            for k in [*day_keys("orders", "o.csv"), *day_keys("order_items", "i.csv")]
        ),
        *(
            s3_event(stack.bucket, k)
            for k in [*day_keys("orders", "o.csv", day=other), *day_keys("order_items", "i.csv", day=other)]
        ),
        s3_event(stack.bucket, day_keys("orders", "only-orders.csv", day="2025-07-08")[0]),
    )
    assert stack.executions() == []
    item = stack.item(DAY)
    assert item["waiting_for_products"] is True and item["status"] == "WAITING_FOR_PRODUCTS"
    assert stack.item("products_master_data")["waiting_batches"] == {DAY, other}

    deliver(s3_event(stack.bucket, PRODUCTS))
    assert stack.executions() == [f"{other}-g1", f"{DAY}-g1"]
    assert "waiting_batches" not in stack.item("products_master_data")  # emptied set is removed
    assert stack.item(DAY)["waiting_for_products"] is False
    assert "Products master data batch updated" in capsys.readouterr().out

    deliver(s3_event(stack.bucket, PRODUCTS))  # products re-upload: no re-run of finished batches
    assert stack.executions() == [f"{other}-g1", f"{DAY}-g1"]


def test_products_and_last_file_racing(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    """Products and the completing file arrive at the same time, many times: exactly one start."""
    deliver(s3_event(stack.bucket, day_keys("orders", "o.csv")[0]))
    products = s3_event(stack.bucket, PRODUCTS)
    items = s3_event(stack.bucket, day_keys("order_items", "i.csv")[0])
    capsys.readouterr()
    _hammer([products, items] * 10)
    assert stack.executions() == [f"{DAY}-g1"]
    assert _claims(capsys) == 1


# -- SQS wiring ----------------------------------------------------------------------------------------------
def test_sqs_batch_reports_only_the_bad_message(stack: Stack) -> None:
    bodies = [
        json.dumps(s3_event(stack.bucket, PRODUCTS)),
        "this is not json",
        json.dumps(s3_event(stack.bucket, day_keys("orders", "o.csv")[0])),
        json.dumps(
            {
                "Type": "Notification",
                "Message": json.dumps(s3_event(stack.bucket, day_keys("order_items", "i.csv")[0])),
            }
        ),
    ]
    assert lambda_handler(sqs_event(*bodies), None) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert stack.executions() == [f"{DAY}-g1"]
    # EventBridge events routed through the same queue work as well.
    deliver(s3_event(stack.bucket, day_keys("orders", "late.csv")[0]))
    assert lambda_handler(sqs_event(json.dumps(end_event(stack, f"{DAY}-g1"))), None) == {
        "batchItemFailures": []
    }
    assert stack.executions() == [f"{DAY}-g1", f"{DAY}-g2"]


def test_real_s3_notifications_through_sqs(stack: Stack, names: Any) -> None:
    """moto's own S3 -> SQS notifications (test event first, encoded keys) drive the handler."""
    queue_url = stack.sqs.create_queue(QueueName=f"ecomkpi-events-{names.suffix}")["QueueUrl"]
    queue_arn = stack.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    stack.s3.put_bucket_notification_configuration(
        Bucket=stack.bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    for key in [
        PRODUCTS,
        f"raw/orders/{DAY}/part one.csv",
        f"raw/order_items/{DAY}/items.csv",
        "notes/readme.txt",
    ]:
        stack.put(key)

    messages: list[dict[str, Any]] = []
    while batch := stack.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        messages.extend(batch)
    assert json.loads(messages[0]["Body"])["Event"] == "s3:TestEvent"
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "eventSource": "aws:sqs",
            }
            for m in messages
        ]
    }
    assert lambda_handler(event, None) == {"batchItemFailures": []}
    assert stack.executions() == [f"{DAY}-g1"]
    assert stack.launched(f"{DAY}-g1")["orders_keys"] == [f"raw/orders/{DAY}/part one.csv"]
    assert lambda_handler(event, None) == {"batchItemFailures": []}  # the whole batch redelivered
    assert stack.executions() == [f"{DAY}-g1"]


# -- StartExecution failures -----------------------------------------------------------------------------------
def _fail_once(monkeypatch: pytest.MonkeyPatch, *, after_start: bool) -> list[str]:
    """Make the handler's cached Step Functions client fail its next StartExecution once.

    ``after_start`` simulates a lost response: the execution starts, then the call errors.
    """
    client = aws.client("stepfunctions", retries=aws.REQUEST_RETRIES)
    real = client.start_execution
    calls: list[str] = []

    def flaky(**kwargs: Any) -> Any:
        calls.append(kwargs["name"])
        if len(calls) == 1:
            if after_start:
                real(**kwargs)
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailable", "Message": "try later"}}, "StartExecution"
            )
        return real(**kwargs)

    monkeypatch.setattr(client, "start_execution", flaky)
    return calls


@pytest.mark.parametrize("after_start", [False, True])
def test_start_failure_is_retried_by_redelivery_with_same_name(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, after_start: bool
) -> None:
    calls = _fail_once(monkeypatch, after_start=after_start)
    deliver(s3_event(stack.bucket, PRODUCTS), s3_event(stack.bucket, day_keys("orders", "o.csv")[0]))
    last = sqs_event(json.dumps(s3_event(stack.bucket, day_keys("order_items", "i.csv")[0])))
    assert lambda_handler(last, None) == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    item = stack.item(DAY)
    assert (item["triggered_generation"], item["running"], item["start_confirmed"]) == (1, True, False)
    assert stack.executions() == ([f"{DAY}-g1"] if after_start else [])

    assert lambda_handler(last, None) == {"batchItemFailures": []}  # SQS redelivery
    assert stack.executions() == [f"{DAY}-g1"]
    assert calls == [f"{DAY}-g1", f"{DAY}-g1"]
    assert stack.item(DAY)["start_confirmed"] is True
    assert lambda_handler(last, None) == {"batchItemFailures": []}
    assert calls == [f"{DAY}-g1", f"{DAY}-g1"]  # confirmed: no further attempts


def test_direct_s3_invocation_raises_on_start_failure(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_once(monkeypatch, after_start=False)
    deliver(s3_event(stack.bucket, PRODUCTS), s3_event(stack.bucket, day_keys("orders", "o.csv")[0]))
    items = s3_event(stack.bucket, day_keys("order_items", "i.csv")[0])
    with pytest.raises(ClientError):
        lambda_handler(items, None)  # Lambda's async retry re-invokes with the same event
    deliver(items)
    assert stack.executions() == [f"{DAY}-g1"]


def test_missing_state_machine_arn_fails_fast(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEP_FUNCTION_ARN")
    with pytest.raises(RuntimeError, match="STEP_FUNCTION_ARN"):
        lambda_handler(s3_event(stack.bucket, PRODUCTS), None)


def test_create_tracker_table_is_idempotent(stack: Stack) -> None:
    assert create_tracker_table(stack.ddb, stack.table) == stack.table
    description = stack.ddb.describe_table(TableName=stack.table)["Table"]
    assert description["KeySchema"] == [{"AttributeName": "BatchId", "KeyType": "HASH"}]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


# -- withdrawals -----------------------------------------------------------------------------------
def withdraw_event(key: str, reason: str = "the shop re-issued it") -> dict[str, Any]:
    """What ``ecomkpi withdraw`` sends through the trigger's queue."""
    return sqs_event(json.dumps({"ecomkpi": "withdraw", "key": key, "reason": reason}))


def test_a_file_deleted_before_processing_leaves_its_day(stack: Stack) -> None:
    _start_day(stack)
    (late,) = day_keys("orders", "late.csv")
    stack.put(late)
    deliver(s3_event(stack.bucket, late))
    stack.s3.delete_object(Bucket=stack.bucket, Key=late)  # the producer takes it back
    deliver(s3_event(stack.bucket, late, event_name="ObjectRemoved:Delete"))
    assert late not in stack.item(DAY)["orders_keys"]

    deliver(end_event(stack, f"{DAY}-g1"))
    assert stack.executions() == [f"{DAY}-g1", f"{DAY}-g2"]  # the withdrawal owes a generation
    assert stack.launched(f"{DAY}-g2")["orders_keys"] == day_keys("orders", "o.csv")


def test_the_pipelines_own_deletes_are_not_withdrawals(stack: Stack) -> None:
    _start_day(stack)
    (orders,) = day_keys("orders", "o.csv")
    stack.put(f"validated/orders/{DAY}/o.csv")  # validation copied it, then deleted the raw key
    deliver(s3_event(stack.bucket, orders, event_name="ObjectRemoved:Delete"))
    item = stack.item(DAY)
    assert orders in item["orders_keys"] and item["dirty"] is False


def test_withdrawing_a_missing_manifest_key_lets_the_day_run(stack: Stack) -> None:
    orders = day_keys("orders", "o1.csv", "o2.csv")
    (items,) = day_keys("order_items", "i1.csv")
    manifest_key = f"raw/manifests/{DAY}.json"
    stack.put(manifest_key, json.dumps({"expected_keys": [*orders, items]}).encode())
    deliver(*(s3_event(stack.bucket, k) for k in [manifest_key, PRODUCTS, orders[0], items]))
    assert stack.executions() == []  # o2 is missing and will never come
    assert lambda_handler(withdraw_event(orders[1]), None) == {"batchItemFailures": []}
    assert stack.executions() == [f"{DAY}-g1"]
    assert stack.launched(f"{DAY}-g1")["orders_keys"] == [orders[0]]
    report = json.loads(
        stack.s3.get_object(Bucket=stack.bucket, Key=f"invalid/withdrawn/orders/{DAY}/o2.csv.report.json")[
            "Body"
        ].read()
    )
    assert report["verdict"] == "withdrawn" and report["summary"].endswith("the shop re-issued it")


def test_withdrawing_a_rejected_file_stops_it_failing_later_generations(stack: Stack) -> None:
    (orders,) = day_keys("orders", "o.csv")
    good, bad = day_keys("order_items", "i1.csv", "i2.csv")
    deliver(*(s3_event(stack.bucket, k) for k in [orders, good, bad, PRODUCTS]))  # g1 has all three
    # What validation leaves for the rejected file: the copy and its report in invalid/.
    stack.put(f"invalid/order_items/{DAY}/i2.csv", b"bad\n")
    stack.put(f"invalid/order_items/{DAY}/i2.csv.report.json", b'{"verdict": "rejected"}')
    deliver(end_event(stack, f"{DAY}-g1", "FAILED"))

    lambda_handler(withdraw_event(bad), None)
    assert not stack.exists(f"invalid/order_items/{DAY}/i2.csv")
    assert stack.exists(f"invalid/withdrawn/order_items/{DAY}/i2.csv")
    assert stack.exists(f"invalid/withdrawn/order_items/{DAY}/i2.csv.rejection.report.json")
    assert stack.executions() == [f"{DAY}-g1", f"{DAY}-g2"]
    assert stack.launched(f"{DAY}-g2")["order_items_keys"] == [good]


def test_withdrawing_an_unknown_key_changes_nothing(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    _start_day(stack)
    lambda_handler(withdraw_event(day_keys("orders", "never.csv")[0]), None)
    lambda_handler(withdraw_event("raw/products/products.csv"), None)
    assert stack.executions() == [f"{DAY}-g1"] and stack.item(DAY)["dirty"] is False
    assert "Cannot withdraw 'raw/products/products.csv'" in capsys.readouterr().out


def test_ecomkpi_withdraw_reaches_the_trigger_through_its_queue(stack: Stack, names: Any) -> None:
    from ecomkpi.cli import main

    orders = day_keys("orders", "o1.csv", "o2.csv")
    (items,) = day_keys("order_items", "i1.csv")
    manifest_key = f"raw/manifests/{DAY}.json"
    stack.put(manifest_key, json.dumps({"expected_keys": [*orders, items]}).encode())
    deliver(*(s3_event(stack.bucket, k) for k in [manifest_key, PRODUCTS, orders[0], items]))
    queue_url = stack.sqs.create_queue(QueueName=f"raw-events-{names.suffix}")["QueueUrl"]

    assert main(["withdraw", orders[1], "--reason", "never coming", "--queue-url", queue_url]) == 0
    (message,) = stack.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    event = sqs_event(message["Body"])
    assert lambda_handler(event, None) == {"batchItemFailures": []}
    assert stack.executions() == [f"{DAY}-g1"]


# -- manifests leave raw/ once their day is done ----------------------------------------------------
def _manifest_day(stack: Stack) -> str:
    orders, items = day_keys("orders", "o1.csv")[0], day_keys("order_items", "i1.csv")[0]
    manifest_key = f"raw/manifests/{DAY}.json"
    stack.put(manifest_key, json.dumps({"expected_keys": [orders, items]}).encode())
    etag = stack.s3.head_object(Bucket=stack.bucket, Key=manifest_key)["ETag"].strip('"')
    deliver(s3_event(stack.bucket, manifest_key, etag=etag), s3_event(stack.bucket, PRODUCTS))
    deliver(s3_event(stack.bucket, orders), s3_event(stack.bucket, items))
    return manifest_key


def test_a_manifest_moves_to_processed_when_its_day_succeeds(stack: Stack) -> None:
    manifest_key = _manifest_day(stack)
    deliver(end_event(stack, f"{DAY}-g1", "FAILED"))
    assert stack.exists(manifest_key)  # a failed day keeps it
    stack.ddb.update_item(  # pretend a corrected part started generation 2, which succeeds
        TableName=stack.table,
        Key={"BatchId": {"S": DAY}},
        UpdateExpression="SET running = :t, triggered_generation = :g, execution_name = :n",
        ExpressionAttributeValues={":t": {"BOOL": True}, ":g": {"N": "1"}, ":n": {"S": f"{DAY}-g1"}},
    )
    deliver(end_event(stack, f"{DAY}-g1"))
    assert not stack.exists(manifest_key) and stack.exists(f"processed/manifests/{DAY}.json")


def test_a_manifest_reuploaded_meanwhile_stays_in_raw(stack: Stack) -> None:
    manifest_key = _manifest_day(stack)
    stack.put(
        manifest_key, b'{"orders": ["o1.csv", "o2.csv"], "order_items": ["i1.csv"]}'
    )  # event not yet in
    deliver(end_event(stack, f"{DAY}-g1"))
    assert stack.exists(manifest_key) and not stack.exists(f"processed/manifests/{DAY}.json")


# -- prechecks (a warm worker serves the stack) -----------------------------------------------------
def _prechecks(stack: Stack, queue_url: str) -> list[dict[str, str]]:
    """The environments of the precheck messages in the work queue (taken off it)."""
    found = []
    while True:
        messages = stack.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return found
        for m in messages:
            body = json.loads(m["Body"])
            assert body["Command"] == ["precheck"] and "TaskToken" not in body
            found.append({e["Name"]: e["Value"] for e in body["Environment"]})
            stack.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def work_queue(stack: Stack, names: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    url = stack.sqs.create_queue(QueueName=f"work-{names.suffix}")["QueueUrl"]
    monkeypatch.setenv("PRECHECK_QUEUE_URL", url)
    monkeypatch.setenv("S3_BUCKET", stack.bucket)
    return url


def test_parts_that_do_not_complete_their_day_are_sent_to_be_prechecked(
    stack: Stack, work_queue: str
) -> None:
    orders = day_keys("orders", "o1.csv", "o2.csv")
    (items,) = day_keys("order_items", "i1.csv")
    manifest_key = f"raw/manifests/{DAY}.json"
    stack.put(manifest_key, json.dumps({"batch_id": DAY, "expected_keys": [*orders, items]}).encode())
    deliver(s3_event(stack.bucket, manifest_key), s3_event(stack.bucket, PRODUCTS))
    master = _prechecks(stack, work_queue)  # no day waits for the master: it is prechecked too
    assert [(m["BATCH_ID"], m["PRODUCTS_KEY"], "ORDERS_KEYS" in m) for m in master] == [
        ("products_master_data", PRODUCTS, False)
    ]
    deliver(s3_event(stack.bucket, orders[0]), s3_event(stack.bucket, items))
    sent = _prechecks(stack, work_queue)
    assert [(m.get("ORDERS_KEYS"), m.get("ORDER_ITEMS_KEYS")) for m in sent] == [
        (json.dumps([orders[0]]), None),
        (None, json.dumps([items])),
    ]
    for m in sent:
        assert m["S3_BUCKET"] == stack.bucket and m["BATCH_ID"] == DAY and m["PRODUCTS_KEY"] == PRODUCTS
        assert m["RUN_ID"].startswith(f"{DAY}-p-")
    assert len({m["RUN_ID"] for m in sent}) == 2

    completing = s3_event(stack.bucket, orders[1])
    deliver(completing)  # completes the day: its execution validates it
    assert stack.executions() == [f"{DAY}-g1"]
    assert _prechecks(stack, work_queue) == []
    deliver(completing)  # the same event redelivered: nothing new to check
    late = day_keys("orders", "o3.csv")[0]
    deliver(s3_event(stack.bucket, late))  # a late part while g1 runs: g2 will find it checked
    assert [m.get("ORDERS_KEYS") for m in _prechecks(stack, work_queue)] == [json.dumps([late])]


def test_without_a_work_queue_nothing_is_prechecked(
    stack: Stack, names: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = stack.sqs.create_queue(QueueName=f"work-{names.suffix}")["QueueUrl"]
    monkeypatch.delenv("PRECHECK_QUEUE_URL", raising=False)
    deliver(s3_event(stack.bucket, PRODUCTS), s3_event(stack.bucket, day_keys("orders", "o1.csv")[0]))
    assert _prechecks(stack, url) == []


def test_a_precheck_that_cannot_be_sent_does_not_fail_the_upload(
    stack: Stack, work_queue: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRECHECK_QUEUE_URL", work_queue + "-gone")
    (orders,) = day_keys("orders", "o1.csv")
    deliver(s3_event(stack.bucket, PRODUCTS), s3_event(stack.bucket, orders))
    assert stack.item(DAY)["orders_files_arrived"]
    assert "[WARN] Could not send the precheck of {'ORDERS_KEYS': ['raw/orders/2025-07-10/o1.csv']}" in (
        capsys.readouterr().out
    )
