"""The callback pattern on the local executor: sqs:sendMessage.waitForTaskToken, SendTask*, heartbeats.

A real SQS queue on the emulator carries the token; the answers go through boto3's stepfunctions
client to the executor's HTTP API, exactly as a worker in AWS would send them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from ecomkpi.sfn_local import Executor, serve
from ecomkpi.sfn_local.definition import SQS_SEND_MESSAGE_WAIT
from ecomkpi.sfn_local.errors import DefinitionError
from ecomkpi.sfn_local.tasks import default_handlers
from tests.support.queues import next_message


def definition(heartbeat: int | None = 2, retries: int = 1) -> dict[str, Any]:
    task: dict[str, Any] = {
        "Type": "Task",
        "Resource": SQS_SEND_MESSAGE_WAIT,
        "Parameters": {
            "QueueUrl": "${QueueUrl}",
            "MessageBody": {
                "TaskToken.$": "$$.Task.Token",
                "Batch.$": "$.batch",
                "Try.$": "$$.State.RetryCount",
            },
        },
        "ResultPath": "$.work",
        "TimeoutSeconds": 60,
        "Retry": [
            {
                "ErrorEquals": ["States.HeartbeatTimeout"],
                "IntervalSeconds": 1,
                "MaxAttempts": retries,
                "BackoffRate": 1.0,
            }
        ],
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}],
        "End": True,
    }
    if heartbeat:
        task["HeartbeatSeconds"] = heartbeat
    return {
        "StartAt": "Work",
        "States": {"Work": task, "Failed": {"Type": "Pass", "End": True}},
    }


class Stack:
    def __init__(self, endpoint: str, queue_url: str, executor: Executor, sfn: Any, sqs: Any) -> None:
        self.endpoint, self.queue_url, self.executor, self.sfn, self.sqs = (
            endpoint,
            queue_url,
            executor,
            sfn,
            sqs,
        )

    def receive(self, timeout: float = 60) -> dict[str, Any]:
        message = next_message(self.sqs, self.queue_url, timeout)
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return json.loads(message["Body"])


def make_stack(
    moto_endpoint: str, names: Any, monkeypatch: pytest.MonkeyPatch, **kwargs: Any
) -> Iterator[Stack]:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint)
    queue_url = sqs.create_queue(QueueName=f"work-{names.suffix}")["QueueUrl"]
    executor = Executor(
        definition(**kwargs),
        default_handlers(endpoint_url=moto_endpoint),
        substitutions={"QueueUrl": queue_url},
        sleep=lambda _s: None,
    )
    with serve(executor) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", server.endpoint_url)
        yield Stack(moto_endpoint, queue_url, executor, boto3.client("stepfunctions"), sqs)
    executor.shutdown()


@pytest.fixture
def stack(moto_endpoint: str, names: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """No HeartbeatSeconds: these tests answer once, and on a busy machine (CI runs them beside the JVM
    tests) receiving a message and answering it took longer than a 2 s heartbeat (a spent token)."""
    yield from make_stack(moto_endpoint, names, monkeypatch, heartbeat=None)


@pytest.fixture
def beating_stack(moto_endpoint: str, names: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """HeartbeatSeconds 8: the first beat must come within it of the message being sent, and on a busy
    machine receiving the message took more than 2 s (a clean-clone rehearsal, 2026-12-08)."""
    yield from make_stack(moto_endpoint, names, monkeypatch, heartbeat=8)


def test_send_task_success_is_the_state_result(stack: Stack) -> None:
    arn = stack.executor.start_execution("ok", {"batch": "2025-07-10"})
    body = stack.receive()
    assert body["Batch"] == "2025-07-10" and body["Try"] == 0
    stack.sfn.send_task_success(taskToken=body["TaskToken"], output=json.dumps({"ExitCode": 0}))
    done = stack.executor.wait(arn, timeout=10)
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"])["work"] == {"ExitCode": 0}
    # The token is spent: a second answer is refused the way AWS refuses it.
    with pytest.raises(stack.sfn.exceptions.TaskTimedOut):
        stack.sfn.send_task_success(taskToken=body["TaskToken"], output="{}")


def test_send_task_failure_fails_the_state_with_its_error(stack: Stack) -> None:
    arn = stack.executor.start_execution("fail", {"batch": "b"})
    body = stack.receive()
    stack.sfn.send_task_failure(taskToken=body["TaskToken"], error="Worker.TaskFailed", cause="boom")
    done = stack.executor.wait(arn, timeout=10)
    assert json.loads(done["output"])["error"] == {"Error": "Worker.TaskFailed", "Cause": "boom"}


def test_a_missed_heartbeat_retries_with_a_new_token_and_the_old_one_is_dead(beating_stack: Stack) -> None:
    stack = beating_stack
    arn = stack.executor.start_execution("beat", {"batch": "b"})
    first = stack.receive()
    for _ in range(3):  # heartbeats keep the attempt alive past HeartbeatSeconds
        stack.sfn.send_task_heartbeat(taskToken=first["TaskToken"])
        time.sleep(1)
    # ...then silence: the attempt times out and the retrier sends a second message.
    second = stack.receive(timeout=30)
    assert second["Try"] == 1 and second["TaskToken"] != first["TaskToken"]
    with pytest.raises(stack.sfn.exceptions.TaskTimedOut):
        stack.sfn.send_task_heartbeat(taskToken=first["TaskToken"])
    stack.sfn.send_task_success(taskToken=second["TaskToken"], output='{"ok": true}')
    done = stack.executor.wait(arn, timeout=10)
    assert done["status"] == "SUCCEEDED"
    events = [e.type for e in stack.executor.get_execution_history(arn)]
    assert "TaskTimedOut" in events and "RetryScheduled" in events


def test_api_errors_name_the_problem(moto_endpoint: str, names: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # No HeartbeatSeconds: on a busy machine the three calls below can take longer than a 2 s heartbeat.
    for stack in make_stack(moto_endpoint, names, monkeypatch, heartbeat=None):
        arn = stack.executor.start_execution("errors", {"batch": "b"})
        body = stack.receive()
        with pytest.raises(stack.sfn.exceptions.InvalidToken):
            stack.sfn.send_task_success(taskToken="not-a-token", output="{}")
        with pytest.raises(stack.sfn.exceptions.InvalidOutput):
            stack.sfn.send_task_success(taskToken=body["TaskToken"], output="{not json")
        stack.sfn.send_task_success(taskToken=body["TaskToken"], output="{}")
        assert stack.executor.wait(arn, timeout=10)["status"] == "SUCCEEDED"


def test_heartbeat_timeout_is_caught_when_retries_run_out(
    moto_endpoint: str, names: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for stack in make_stack(moto_endpoint, names, monkeypatch, heartbeat=1, retries=0):
        arn = stack.executor.start_execution("dead", {"batch": "b"})
        stack.receive()
        done = stack.executor.wait(arn, timeout=15)
        assert json.loads(done["output"])["error"]["Error"] == "States.HeartbeatTimeout"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s["Parameters"]["MessageBody"].pop("TaskToken.$"), "must pass $$.Task.Token"),
        (lambda s: s.update(HeartbeatSeconds=60), "HeartbeatSeconds must be smaller than TimeoutSeconds"),
        (lambda s: s.update(HeartbeatSeconds=0), "HeartbeatSeconds must be a positive integer"),
    ],
)
def test_the_loader_rejects_callback_tasks_aws_would_reject(change: Any, problem: str) -> None:
    raw = definition()
    change(raw["States"]["Work"])
    with pytest.raises(DefinitionError) as err:
        Executor(raw, default_handlers(), substitutions={"QueueUrl": "https://queue"})
    # that problem alone, on the state that has it: not refused for some other reason as well
    (only,) = err.value.problems
    assert only.startswith("state 'Work': ") and problem in only, err.value.problems
