"""The warm worker trusts its queue less: what a message may set, what its logs show, how long it
holds a precheck. Real SQS on the emulator; a runner stands in for the jobs (no Spark here)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest

from hosts.worker.loop import Worker
from hosts.worker.messages import PRECHECK_LISTS, TASK_VARIABLES
from hosts.worker.settings import WorkerSettings
from jobs.config import PipelineConfig
from lambda_trigger.prechecks import KEYS_VARIABLES, Prechecks

ROOT = Path(__file__).resolve().parents[2]
FORGED_KEY = "raw/orders/2025-07-10/p1.csv\n[ERROR] job=validation the bucket was wiped"


def _queue(moto_endpoint: str, names: Any, visibility: int = 30) -> tuple[Any, str]:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint)
    url = sqs.create_queue(
        QueueName=f"work-{names.suffix}", Attributes={"VisibilityTimeout": str(visibility)}
    )["QueueUrl"]
    return sqs, url


def _worker(sqs: Any, url: str, runner: Any, moto_endpoint: str, heartbeat_seconds: float = 0.2) -> Worker:
    settings = WorkerSettings(
        queue_url=url, poll_seconds=1, heartbeat_seconds=heartbeat_seconds, warm_batch=False
    )
    return Worker(
        settings,
        sqs=sqs,
        sfn=boto3.client("stepfunctions", endpoint_url=moto_endpoint),
        spark_factory=lambda: pytest.fail("the worker must not start Spark here"),
        base_env={"LAKE_PATH": "s3a://lake/x", "AWS_REGION": "us-east-1", "S3_BUCKET": "shop-bucket"},
        worker_id="test-worker",
        runner=runner,
    )


def _receive(sqs: Any, url: str) -> dict[str, Any]:
    (message,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
    return message


def _names_sent_by_the_workflows() -> set[str]:
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for entry in node.get("Environment", []) if isinstance(node.get("Environment"), list) else []:
                names.add(entry["Name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted((ROOT / "stepfunctions").glob("*.asl.json")):
        walk(json.loads(path.read_text()))
    return names


def test_the_allowed_variables_are_what_the_workflows_and_the_prechecks_send() -> None:
    sent = _names_sent_by_the_workflows()
    assert sent  # both definitions send the container environment
    assert TASK_VARIABLES == sent | set(KEYS_VARIABLES.values()) == sent | set(PRECHECK_LISTS)
    for never in ("AWS_ENDPOINT_URL", "LAKE_PATH", "AWS_ACCESS_KEY_ID", "SPARK_EXTRA_CONF"):
        assert never not in TASK_VARIABLES


@pytest.mark.parametrize(
    "variable", ["AWS_ENDPOINT_URL", "LAKE_PATH", "SPARK_EXTRA_CONF", "X\n[ERROR] forged"]
)
def test_a_message_setting_another_variable_is_refused_not_run(
    moto_endpoint: str, names: Any, variable: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forged precheck that points the worker's jobs at another endpoint or lake runs nothing."""
    sqs, url = _queue(moto_endpoint, names)
    environment = [
        {"Name": "S3_BUCKET", "Value": "shop-bucket"},
        {"Name": "BATCH_ID", "Value": "2025-07-10"},
        {"Name": variable, "Value": "http://attacker.example:4566"},
    ]
    sqs.send_message(
        QueueUrl=url, MessageBody=json.dumps({"Command": ["precheck"], "Environment": environment})
    )
    ran: list[str] = []
    worker = _worker(sqs, url, lambda command, configs: ran.append(command) or 0, moto_endpoint)

    worker.handle(_receive(sqs, url))

    assert ran == []
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]  # every line one JSON record: nothing forged
    (bad,) = [r for r in records if r["step"] == "message.bad"]
    assert bad["level"] == "ERROR"
    assert f"Environment sets {variable!r}, which a work message may not set" in bad["error"]
    assert not any(line.startswith("[ERROR]") for line in lines)
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None  # dropped


def test_a_key_with_a_line_break_cannot_forge_a_log_line(
    moto_endpoint: str, names: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A producer's key ends up in the messages of a broken run (here: the placement's error);
    every line the worker writes stays one JSON record, the key escaped inside it."""
    sqs, url = _queue(moto_endpoint, names)
    Prechecks(sqs, url).send(
        "shop-bucket", "2025-07-10", "raw/products/products.csv", {"ORDERS_KEYS": [FORGED_KEY]}
    )

    def broken(command: str, configs: Sequence[PipelineConfig]) -> int:
        (key,) = configs[0].orders_keys
        raise RuntimeError(f"{key} vanished before it could be copied to validated/")

    capsys.readouterr()  # the trigger's own log of the send (repr: escaped too)

    _worker(sqs, url, broken, moto_endpoint).handle(_receive(sqs, url))

    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    assert lines and not any(line.startswith("[ERROR]") for line in lines)
    records = [json.loads(line) for line in lines]  # every line one JSON record
    (trace,) = [r for r in records if r["step"] == "task.traceback"]
    assert FORGED_KEY in trace["traceback"] and trace["level"] == "ERROR"
    (end,) = [r for r in records if r["step"] == "precheck.end"]
    assert end["exit_code"] == 1 and FORGED_KEY in end["error"]


def test_a_held_precheck_is_not_received_again_while_it_runs(moto_endpoint: str, names: Any) -> None:
    """The queue's visibility timeout (2 s here, 30 s in the stack) is shorter than one beat (4 s):
    held only from the first beat on, the precheck was visible again meanwhile and a second worker
    ran the same parts into the same staging folder."""
    sqs, url = _queue(moto_endpoint, names, visibility=2)
    Prechecks(sqs, url).send("shop-bucket", "2025-07-10", "raw/products/products.csv", {"ORDERS_KEYS": ["k"]})
    started, release = threading.Event(), threading.Event()

    def slow(command: str, configs: Sequence[PipelineConfig]) -> int:
        started.set()
        release.wait(20)
        return 0

    worker = _worker(sqs, url, slow, moto_endpoint, heartbeat_seconds=4)
    thread = threading.Thread(target=worker.handle, args=(_receive(sqs, url),))
    thread.start()
    try:
        assert started.wait(10)
        time.sleep(2.5)  # past the queue's visibility timeout, before the first beat
        again = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0, VisibilityTimeout=0).get("Messages")
        assert again is None, "a second worker would have received the running precheck"
    finally:
        release.set()
        thread.join(20)
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None  # deleted when done
