"""One source definition, two deployments: the worker rendering is derived, committed and checked."""

from __future__ import annotations

import json

from ecomkpi.sfn_local.definition import (
    ECS_RUN_TASK_SYNC,
    SQS_SEND_MESSAGE_WAIT,
    load_definition,
    placeholders,
)
from ecomkpi.workflow_modes import ECS_DEFINITION, WORKER_DEFINITION, main, render_text, render_worker


def source() -> dict:
    return json.loads(ECS_DEFINITION.read_text(encoding="utf-8"))


def test_the_committed_worker_definition_is_the_rendering_of_the_source() -> None:
    assert WORKER_DEFINITION.read_text(encoding="utf-8") == render_text(ECS_DEFINITION.read_text("utf-8")), (
        "stale: run python -m ecomkpi.workflow_modes"
    )
    assert main(["--check"]) == 0


def test_only_the_task_delivery_differs() -> None:
    ecs, worker = source(), render_worker(source())
    assert ecs["States"].keys() == worker["States"].keys()
    tasks = [n for n, s in ecs["States"].items() if s.get("Resource") == ECS_RUN_TASK_SYNC]
    assert tasks == ["ValidateData", "TransformData"]
    for name, state in ecs["States"].items():
        if name not in tasks:
            assert worker["States"][name] == state, name
            continue
        rendered = worker["States"][name]
        assert rendered["Resource"] == SQS_SEND_MESSAGE_WAIT
        for key in ("ResultSelector", "ResultPath", "TimeoutSeconds", "Catch", "Next"):
            assert rendered[key] == state[key], (name, key)
        assert rendered["HeartbeatSeconds"] < rendered["TimeoutSeconds"]
        override = state["Parameters"]["Overrides"]["ContainerOverrides"][0]
        body = rendered["Parameters"]["MessageBody"]
        assert body["Environment"] == override["Environment"]  # the same inputs as the container
        assert body["Container"] == override["Name"]
        assert body["TaskToken.$"] == "$$.Task.Token"
        for retrier in rendered["Retry"]:
            assert "States.HeartbeatTimeout" in retrier["ErrorEquals"]
    commands = [worker["States"][n]["Parameters"]["MessageBody"]["Command"] for n in tasks]
    assert commands == [["validate"], ["transform"]]


def test_the_worker_definition_needs_the_queue_and_no_ecs_settings() -> None:
    ecs, worker = placeholders(source()), placeholders(render_worker(source()))
    assert worker - ecs == {"WorkQueueUrl"}
    assert ecs - worker == {
        "EcsClusterArn",
        "ValidationTaskDefinitionArn",
        "TransformationTaskDefinitionArn",
        "SubnetIds",
        "SecurityGroupIds",
    }
    values = {name: f"value-of-{name}" for name in worker}
    values["WorkQueueUrl"] = "https://sqs.us-east-1.amazonaws.com/123456789012/ecomkpi-work"
    loaded = load_definition(WORKER_DEFINITION, values)
    assert loaded.states["ValidateData"].heartbeat_seconds == 300
