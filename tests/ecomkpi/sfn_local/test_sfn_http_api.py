"""boto3's own stepfunctions client against the HTTP facade, reached via AWS_ENDPOINT_URL_SFN."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from ecomkpi.sfn_local import Executor, StepFunctionsServer, TaskContext, serve

RESOURCE = "arn:aws:states:::sns:publish"
DEFINITION = {
    "StartAt": "Work",
    "States": {
        "Work": {"Type": "Task", "Resource": RESOURCE, "ResultPath": "$.work", "Next": "Check"},
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.fail", "BooleanEquals": True, "Next": "Broken"}],
            "Default": "Done",
        },
        "Broken": {"Type": "Fail", "Error": "Custom.Broken", "Cause": "asked to fail"},
        "Done": {"Type": "Succeed"},
    },
}


class Gate:
    """A task handler that blocks until released, so an execution can be observed while RUNNING."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.release.set()

    def __call__(self, parameters: Any, context: TaskContext) -> Any:
        self.release.wait(10)
        return {"MessageId": "local"}


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def server(gate: Gate) -> Iterator[StepFunctionsServer]:
    executor = Executor(DEFINITION, {RESOURCE: gate})
    with serve(executor) as running:
        yield running
    executor.shutdown()


@pytest.fixture
def client(server: StepFunctionsServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A client built exactly as the Lambda builds it: no endpoint_url argument."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", server.endpoint_url)
    assert server.endpoint_url.startswith("http://127.0.0.1:")
    return boto3.session.Session(region_name="us-east-1").client("stepfunctions")


SM_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:ecommerce-pipeline-workflow"


def test_start_and_describe_execution(client: Any) -> None:
    started = client.start_execution(
        stateMachineArn=SM_ARN, name="2025-07-10-g1", input=json.dumps({"fail": False})
    )
    arn = started["executionArn"]
    assert arn == "arn:aws:states:us-east-1:123456789012:execution:ecommerce-pipeline-workflow:2025-07-10-g1"
    waiter_done = False
    for _ in range(100):
        description = client.describe_execution(executionArn=arn)
        if description["status"] != "RUNNING":
            waiter_done = True
            break
        threading.Event().wait(0.05)
    assert waiter_done
    assert description["status"] == "SUCCEEDED"
    assert json.loads(description["output"]) == {"fail": False, "work": {"MessageId": "local"}}
    assert description["stopDate"] >= description["startDate"]

    executions = client.list_executions(stateMachineArn=SM_ARN)["executions"]
    assert [(e["name"], e["status"]) for e in executions] == [("2025-07-10-g1", "SUCCEEDED")]
    events = client.get_execution_history(executionArn=arn)["events"]
    assert events[0]["type"] == "ExecutionStarted"
    assert events[-1]["type"] == "ExecutionSucceeded"
    assert {"TaskScheduled", "TaskSucceeded", "ChoiceStateEntered"} <= {e["type"] for e in events}
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))


def test_failed_execution_reports_error_and_cause(client: Any) -> None:
    arn = client.start_execution(stateMachineArn=SM_ARN, name="fails", input='{"fail": true}')["executionArn"]
    for _ in range(100):
        description = client.describe_execution(executionArn=arn)
        if description["status"] != "RUNNING":
            break
        threading.Event().wait(0.05)
    assert (description["status"], description["error"], description["cause"]) == (
        "FAILED",
        "Custom.Broken",
        "asked to fail",
    )
    assert client.list_executions(stateMachineArn=SM_ARN, statusFilter="SUCCEEDED")["executions"] == []


def test_execution_already_exists_maps_to_the_boto3_exception(client: Any, gate: Gate) -> None:
    gate.release.clear()
    first = client.start_execution(stateMachineArn=SM_ARN, name="dup", input='{"fail": false}')
    again = client.start_execution(stateMachineArn=SM_ARN, name="dup", input='{"fail": false}')
    assert again["executionArn"] == first["executionArn"]  # same name + input while running
    with pytest.raises(client.exceptions.ExecutionAlreadyExists):
        client.start_execution(stateMachineArn=SM_ARN, name="dup", input='{"fail": true}')
    gate.release.set()


def test_state_machine_and_error_operations(client: Any) -> None:
    machines = client.list_state_machines()["stateMachines"]
    assert [(m["name"], m["stateMachineArn"], m["type"]) for m in machines] == [
        ("ecommerce-pipeline-workflow", SM_ARN, "STANDARD")
    ]
    described = client.describe_state_machine(stateMachineArn=SM_ARN)
    assert json.loads(described["definition"])["StartAt"] == "Work"
    assert described["status"] == "ACTIVE"
    with pytest.raises(client.exceptions.StateMachineDoesNotExist):
        client.start_execution(stateMachineArn=SM_ARN + "-other", name="x")
    with pytest.raises(client.exceptions.ExecutionDoesNotExist):
        client.describe_execution(executionArn=SM_ARN.replace(":stateMachine:", ":execution:") + ":nope")
    with pytest.raises(client.exceptions.InvalidName):
        client.start_execution(stateMachineArn=SM_ARN, name="bad/name")
    with pytest.raises(client.exceptions.InvalidExecutionInput):
        client.start_execution(stateMachineArn=SM_ARN, name="bad-input", input="{not json")
    too_big = json.dumps({"keys": ["x" * 100] * 2700})  # > 256 KB, what a day's keys inline become
    with pytest.raises(ClientError) as refused:
        client.start_execution(stateMachineArn=SM_ARN, name="too-big", input=too_big)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "262144" in refused.value.response["Error"]["Message"]
