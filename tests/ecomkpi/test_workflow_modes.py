"""One source definition, three deployments: the worker and EMR Serverless renderings are derived,
committed and checked."""

from __future__ import annotations

import json

from ecomkpi.sfn_local.definition import (
    ECS_RUN_TASK_SYNC,
    EMR_SERVERLESS_START_JOB_RUN_SYNC,
    S3_GET_OBJECT,
    SQS_SEND_MESSAGE_WAIT,
    load_definition,
    placeholders,
)
from ecomkpi.workflow_modes import (
    ECS_DEFINITION,
    EMR_DEFINITION,
    WORKER_DEFINITION,
    definition_path,
    main,
    render_emr_serverless,
    render_text,
    render_worker,
)


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


# --------------------------------------------------------------------------- the EMR Serverless rendering

EMR_TASK_STATES = {
    "ValidateData": ("validate", "$.validation", "InspectValidationError"),
    "TransformData": ("transform", "$.transformation", "InspectTransformationError"),
}


def test_the_committed_emr_definition_is_the_rendering_of_the_source() -> None:
    assert EMR_DEFINITION.read_text(encoding="utf-8") == render_text(
        ECS_DEFINITION.read_text("utf-8"), EMR_DEFINITION
    ), "stale: run python -m ecomkpi.workflow_modes"
    assert definition_path("emr-serverless") == EMR_DEFINITION


def test_the_three_renderings_keep_every_state_after_the_tasks() -> None:
    """Every state of the source that is not a task is the same in all three files, and each of
    them reaches the same Choice with the ECS result's shape: the decisions are made once."""
    ecs, worker, emr = source(), render_worker(source()), render_emr_serverless(source())
    for name, state in ecs["States"].items():
        if name in EMR_TASK_STATES:
            continue
        assert worker["States"][name] == state == emr["States"][name], name
    added = set(emr["States"]) - set(ecs["States"])
    assert added == {f"Read{n}Outcome" for n in EMR_TASK_STATES} | {f"{n}Outcome" for n in EMR_TASK_STATES}


def test_emr_tasks_run_the_entry_point_with_the_container_environment() -> None:
    ecs, emr = source(), render_emr_serverless(source())
    for name, (command, result_path, inspect) in EMR_TASK_STATES.items():
        state, rendered = ecs["States"][name], emr["States"][name]
        assert rendered["Resource"] == EMR_SERVERLESS_START_JOB_RUN_SYNC
        for key in ("TimeoutSeconds", "Retry", "Catch"):
            assert rendered[key] == state[key], (name, key)
        assert rendered["Catch"][0]["Next"] == inspect
        params = rendered["Parameters"]
        submit = params["JobDriver"]["SparkSubmit"]
        assert submit == {
            "EntryPoint": "${EmrEntryPoint}",
            "EntryPointArguments": [command],
            "SparkSubmitParameters": "${EmrSparkSubmitParameters}",
        }
        assert params["ExecutionTimeoutMinutes"] * 60 == state["TimeoutSeconds"]
        (config,) = params["ConfigurationOverrides"]["ApplicationConfiguration"]
        assert config["Classification"] == "spark-defaults"
        props = config["Properties"]
        # The container's environment, one driverEnv property per variable, the same values.
        override = state["Parameters"]["Overrides"]["ContainerOverrides"][0]
        for item in override["Environment"]:
            key = f"spark.emr-serverless.driverEnv.{item['Name']}"
            if "Value.$" in item:
                assert props[f"{key}.$"] == item["Value.$"]
            else:
                assert props[key] == item["Value"]
        assert len(props) <= 100  # the API's limit of properties per classification
        # The job's outcome is read where the job was told to write it, then shaped like ECS's.
        key_format = props["spark.emr-serverless.driverEnv.ECOMKPI_RESULT_KEY.$"]
        read = emr["States"][rendered["Next"]]
        assert read["Resource"] == S3_GET_OBJECT
        assert read["Parameters"] == {"Bucket.$": "$.bucket", "Key.$": key_format}
        # An unreadable outcome is a task failure like any other (no "Containers" in its cause).
        assert read["Catch"][0]["Next"] == inspect
        shape = emr["States"][read["Next"]]
        assert shape["Type"] == "Pass" and shape["ResultPath"] == result_path
        assert set(shape["Parameters"]) == {"TaskArn.$", "ExitCodes.$"}
        assert shape["Next"] == state["Next"]


def test_the_emr_definition_needs_the_application_and_no_ecs_settings() -> None:
    ecs, emr = placeholders(source()), placeholders(render_emr_serverless(source()))
    assert emr - ecs == {"EmrApplicationId", "EmrJobRoleArn", "EmrEntryPoint", "EmrSparkSubmitParameters"}
    assert ecs - emr == {
        "EcsClusterArn",
        "ValidationTaskDefinitionArn",
        "TransformationTaskDefinitionArn",
        "SubnetIds",
        "SecurityGroupIds",
    }
    values = {name: f"value-of-{name}" for name in emr}
    loaded = load_definition(EMR_DEFINITION, values)
    assert loaded.states["ValidateData"].resource == EMR_SERVERLESS_START_JOB_RUN_SYNC


def test_a_stale_rendering_is_reported(tmp_path, monkeypatch) -> None:
    import ecomkpi.workflow_modes as modes

    stale = tmp_path / "emr.asl.json"
    stale.write_text("{}", encoding="utf-8")
    monkeypatch.setattr(modes, "RENDERINGS", {stale: render_emr_serverless})
    assert main(["--check"]) == 1
    assert main([]) == 0 and main(["--check"]) == 0
    assert json.loads(stale.read_text("utf-8")) == render_emr_serverless(source())
