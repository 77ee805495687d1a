"""The local executor on small hand-written definitions: Retry, Catch, timeouts, Choice, API rules."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import pytest

from ecomkpi.sfn_local import (
    ECS_RUN_TASK_SYNC,
    ContainerCommand,
    DefinitionError,
    ExecutionAlreadyExists,
    Executor,
    RunTaskHandler,
    StatesError,
    TaskContext,
    execution_status_change_event,
    load_definition,
)
from ecomkpi.sfn_local.errors import InvalidName

FAKE = "arn:aws:states:::sns:publish"  # any supported resource, served by a scripted handler


class ScriptedHandler:
    """Raises the scripted errors in order, then returns ``result``; records every call."""

    def __init__(self, errors: list[StatesError] | None = None, result: Any = None) -> None:
        self.errors = list(errors or [])
        self.result = {"ok": True} if result is None else result
        self.calls: list[tuple[Any, TaskContext]] = []

    def __call__(self, parameters: Any, context: TaskContext) -> Any:
        self.calls.append((parameters, context))
        if self.errors:
            raise self.errors.pop(0)
        return self.result


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def one_task(task: dict[str, Any], extra_states: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "StartAt": "Work",
        "States": {"Work": {"Type": "Task", "Resource": FAKE, **task}, **(extra_states or {})},
    }


def run(
    definition: dict[str, Any], handler: Any, input: Any = None, sleep: Any = None
) -> tuple[Executor, str]:
    executor = Executor(definition, {FAKE: handler}, sleep=sleep or RecordingSleep())
    arn = executor.start_execution("run-1", input or {"batch_id": "2025-07-10"})
    executor.wait(arn, timeout=30)
    return executor, arn


def event_types(executor: Executor, arn: str) -> list[str]:
    return [e.type for e in executor.get_execution_history(arn)]


# --------------------------------------------------------------------------- Retry


def test_retry_backoff_30_then_60_then_gives_up() -> None:
    handler = ScriptedHandler([StatesError("States.TaskFailed", f"boom {i}") for i in range(3)])
    sleep = RecordingSleep()
    definition = one_task(
        {
            "Retry": [
                {
                    "ErrorEquals": ["States.TaskFailed", "States.Timeout"],
                    "IntervalSeconds": 30,
                    "MaxAttempts": 2,
                    "BackoffRate": 2.0,
                }
            ],
            "End": True,
        }
    )
    executor, arn = run(definition, handler, sleep=sleep)
    description = executor.describe_execution(arn)
    assert description["status"] == "FAILED"
    assert description["error"] == "States.TaskFailed"
    assert description["cause"] == "boom 2"
    assert len(handler.calls) == 3
    assert [c.attempt for _, c in handler.calls] == [0, 1, 2]
    assert sleep.delays == [30, 60]
    retries = [e for e in executor.get_execution_history(arn) if e.type == "RetryScheduled"]
    assert [(e.details["attempt"], e.details["delaySeconds"]) for e in retries] == [(1, 30), (2, 60)]
    assert event_types(executor, arn) == [
        "ExecutionStarted",
        "TaskStateEntered",
        *(["TaskScheduled", "TaskStarted", "TaskFailed", "RetryScheduled"] * 2),
        "TaskScheduled",
        "TaskStarted",
        "TaskFailed",
        "ExecutionFailed",
    ]


def test_retry_succeeds_on_second_attempt_and_max_delay_caps() -> None:
    handler = ScriptedHandler([StatesError("Custom.Flaky", "1"), StatesError("Custom.Flaky", "2")])
    sleep = RecordingSleep()
    definition = one_task(
        {
            "Retry": [
                {
                    "ErrorEquals": ["Custom.Flaky"],
                    "IntervalSeconds": 10,
                    "MaxAttempts": 5,
                    "BackoffRate": 3.0,
                    "MaxDelaySeconds": 20,
                }
            ],
            "End": True,
        }
    )
    executor, arn = run(definition, handler, sleep=sleep)
    assert executor.describe_execution(arn)["status"] == "SUCCEEDED"
    assert sleep.delays == [10, 20]


def test_max_attempts_zero_means_no_retry_and_first_matching_retrier_wins() -> None:
    handler = ScriptedHandler([StatesError("DynamoDB.ConditionalCheckFailedException", "stale")])
    sleep = RecordingSleep()
    definition = one_task(
        {
            "Retry": [
                {"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"], "MaxAttempts": 0},
                {"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 1, "MaxAttempts": 3},
            ],
            "End": True,
        }
    )
    executor, arn = run(definition, handler, sleep=sleep)
    assert executor.describe_execution(arn)["error"] == "DynamoDB.ConditionalCheckFailedException"
    assert len(handler.calls) == 1
    assert sleep.delays == []


# --------------------------------------------------------------------------- Catch


def test_catch_places_error_at_result_path_and_keeps_the_input() -> None:
    handler = ScriptedHandler([StatesError("States.TaskFailed", "exit 2")])
    definition = one_task(
        {
            "Catch": [
                {"ErrorEquals": ["Other.Error"], "Next": "Wrong"},
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handled"},
            ],
            "End": True,
        },
        {
            "Wrong": {"Type": "Fail", "Error": "Wrong"},
            "Handled": {"Type": "Pass", "End": True},
        },
    )
    executor, arn = run(definition, handler, input={"batch_id": "2025-07-10", "generation": 3})
    description = executor.describe_execution(arn)
    assert description["status"] == "SUCCEEDED"
    assert json.loads(description["output"]) == {
        "batch_id": "2025-07-10",
        "generation": 3,
        "error": {"Error": "States.TaskFailed", "Cause": "exit 2"},
    }
    assert "PassStateEntered" in event_types(executor, arn)


def test_catch_result_path_null_discards_the_error_and_default_replaces_the_input() -> None:
    for result_path, expected in ((None, {"a": 1}), ("$", {"Error": "E.x", "Cause": "c"})):
        catcher: dict[str, Any] = {"ErrorEquals": ["States.ALL"], "Next": "Done"}
        if result_path is None:
            catcher["ResultPath"] = None
        executor, arn = run(
            one_task({"Catch": [catcher], "End": True}, {"Done": {"Type": "Succeed"}}),
            ScriptedHandler([StatesError("E.x", "c")]),
            input={"a": 1},
        )
        assert json.loads(executor.describe_execution(arn)["output"]) == expected


# --------------------------------------------------------------------------- TimeoutSeconds


def test_timeout_kills_the_process_and_is_not_matched_by_task_failed(tmp_path) -> None:
    """A local container sleeping past TimeoutSeconds: States.Timeout, skipping a TaskFailed catcher."""
    marker = tmp_path / "finished"
    run_task = RunTaskHandler(
        {
            "arn:aws:ecs:us-east-1:123456789012:task-definition/slow:1": ContainerCommand(
                "slow",
                (
                    sys.executable,
                    "-c",
                    f"import time, pathlib; time.sleep(20); pathlib.Path({str(marker)!r}).touch()",
                ),
            )
        },
        kill_grace_seconds=1.0,
    )
    definition = {
        "StartAt": "Slow",
        "States": {
            "Slow": {
                "Type": "Task",
                "Resource": ECS_RUN_TASK_SYNC,
                "Parameters": {
                    "TaskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/slow:1",
                    "NetworkConfiguration": {"AwsvpcConfiguration": {"Subnets": ["subnet-1"]}},
                },
                "TimeoutSeconds": 1,
                "Catch": [
                    {"ErrorEquals": ["States.TaskFailed"], "Next": "WrongCatch"},
                    {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "TimedOut"},
                ],
                "End": True,
            },
            "WrongCatch": {"Type": "Fail", "Error": "WrongCatch"},
            "TimedOut": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
        },
    }
    executor = Executor(definition, {ECS_RUN_TASK_SYNC: run_task})
    started = time.monotonic()
    arn = executor.start_execution("slow", {})
    description = executor.wait(arn, timeout=30)
    assert time.monotonic() - started < 10
    assert description["status"] == "FAILED"
    assert description["error"] == "States.Timeout"
    assert "TaskTimedOut" in event_types(executor, arn)
    time.sleep(0.5)
    assert not marker.exists(), "the timed-out process must have been killed"
    assert run_task.runs == []  # a killed task never reports an exit code


def test_timeout_retried_by_states_timeout_retrier() -> None:
    class Blocking:
        calls = 0

        def __call__(self, parameters: Any, context: TaskContext) -> Any:
            Blocking.calls += 1
            context.cancel.wait(10)
            raise RuntimeError("cancelled")

    sleep = RecordingSleep()
    definition = one_task(
        {
            "TimeoutSeconds": 1,
            "Retry": [{"ErrorEquals": ["States.Timeout"], "IntervalSeconds": 30, "MaxAttempts": 1}],
            "End": True,
        }
    )
    executor, arn = run(definition, Blocking(), sleep=sleep)
    assert executor.describe_execution(arn)["error"] == "States.Timeout"
    assert Blocking.calls == 2
    assert sleep.delays == [30]


# --------------------------------------------------------------------------- Choice on the named container

CHOICE_ON_NAMED_CONTAINER = {
    "StartAt": "ValidateData",
    "States": {
        "ValidateData": {
            "Type": "Task",
            "Resource": ECS_RUN_TASK_SYNC,
            "Parameters": {
                "TaskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/validation:1",
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {"Subnets.$": "States.StringSplit('a,b', ',')"}
                },
                "Overrides": {
                    "ContainerOverrides": [
                        {
                            "Name": "validation",
                            "Environment": [{"Name": "RUN_ID", "Value.$": "$$.Execution.Name"}],
                        }
                    ]
                },
            },
            "ResultSelector": {"ExitCodes.$": "$.Containers[?(@.Name == 'validation')].ExitCode"},
            "ResultPath": "$.validation",
            "Next": "CheckValidationResult",
        },
        "CheckValidationResult": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.validation.ExitCodes[0]", "IsPresent": False, "Next": "NotPassed"},
                {"Variable": "$.validation.ExitCodes[0]", "NumericEquals": 0, "Next": "TransformData"},
            ],
            "Default": "NotPassed",
        },
        "TransformData": {
            "Type": "Pass",
            "Result": "transformed",
            "ResultPath": "$.transformation",
            "End": True,
        },
        "NotPassed": {"Type": "Fail", "Error": "NotPassed"},
    },
}


def test_choice_on_named_container_exit_code_zero_goes_to_transform() -> None:
    """Exactly what moto gets wrong: exit 0 of the named container -> TransformData.

    A sidecar is listed first in Containers, so reading Containers[0] would be meaningless.
    """
    run_task = RunTaskHandler(
        {
            "arn:aws:ecs:us-east-1:123456789012:task-definition/validation:1": ContainerCommand(
                "validation", (sys.executable, "-c", "import sys; sys.exit(0)"), sidecars=("log-router",)
            )
        }
    )
    executor = Executor(CHOICE_ON_NAMED_CONTAINER, {ECS_RUN_TASK_SYNC: run_task})
    arn = executor.start_execution("exit-0", {"batch_id": "2025-07-10"})
    description = executor.wait(arn, timeout=30)
    assert description["status"] == "SUCCEEDED", description
    output = json.loads(description["output"])
    assert output["validation"] == {"ExitCodes": [0]}
    assert output["transformation"] == "transformed"
    entered = [
        e.details["name"] for e in executor.get_execution_history(arn) if e.type.endswith("StateEntered")
    ]
    assert entered == ["ValidateData", "CheckValidationResult", "TransformData"]
    assert run_task.runs[0].overrides == {"RUN_ID": "exit-0"}


@pytest.mark.parametrize(
    ("containers", "expected_exit_codes"),
    [
        ([{"Name": "validation", "ExitCode": 0}, {"Name": "sidecar", "ExitCode": 3}], [0]),
        ([{"Name": "sidecar", "ExitCode": 0}, {"Name": "validation", "ExitCode": 3}], [3]),
        ([{"Name": "sidecar", "ExitCode": 0}], []),
    ],
)
def test_choice_reads_the_named_container_not_the_first(containers: list, expected_exit_codes: list) -> None:
    """A task that 'succeeded' (e.g. a non-essential container failed) still routes by the named one."""
    handler = ScriptedHandler(result={"TaskArn": "arn:task", "Containers": containers})
    executor = Executor(CHOICE_ON_NAMED_CONTAINER, {ECS_RUN_TASK_SYNC: handler})
    arn = executor.start_execution("named", {})
    description = executor.wait(arn, timeout=30)
    if expected_exit_codes == [0]:
        assert description["status"] == "SUCCEEDED"
    else:
        assert (description["status"], description["error"]) == ("FAILED", "NotPassed")
    exited = [e for e in executor.get_execution_history(arn) if e.type == "TaskStateExited"]
    assert json.loads(exited[0].details["output"])["validation"] == {"ExitCodes": expected_exit_codes}


def test_failing_container_fails_the_state_with_the_task_as_cause() -> None:
    run_task = RunTaskHandler(
        {
            "arn:aws:ecs:us-east-1:123456789012:task-definition/validation:1": ContainerCommand(
                "validation", (sys.executable, "-c", "import sys; print('rejected'); sys.exit(2)")
            )
        }
    )
    executor = Executor(CHOICE_ON_NAMED_CONTAINER, {ECS_RUN_TASK_SYNC: run_task})
    arn = executor.start_execution("exit-2", {})
    description = executor.wait(arn, timeout=30)
    assert description["error"] == "States.TaskFailed"
    task = json.loads(description["cause"])
    assert task["Containers"][-1]["Name"] == "validation"
    assert task["Containers"][-1]["ExitCode"] == 2
    assert task["StopCode"] == "EssentialContainerExited"


# --------------------------------------------------------------------------- data flow details


def test_input_output_paths_parameters_and_context() -> None:
    definition = {
        "StartAt": "Shape",
        "States": {
            "Shape": {
                "Type": "Pass",
                "InputPath": "$.payload",
                "Parameters": {
                    "name.$": "$$.Execution.Name",
                    "state.$": "$$.State.Name",
                    "first.$": "States.ArrayGetItem($.items, 0)",
                    "static": {"nested.$": "$.items"},
                },
                "ResultPath": "$.shaped",
                "OutputPath": "$.shaped",
                "Next": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
    }
    executor, arn = run(definition, ScriptedHandler(), input={"payload": {"items": ["a", "b"]}})
    assert json.loads(executor.describe_execution(arn)["output"]) == {
        "name": "run-1",
        "state": "Shape",
        "first": "a",
        "static": {"nested": ["a", "b"]},
    }


def test_missing_path_is_a_runtime_error_that_catch_all_does_not_catch() -> None:
    definition = one_task(
        {
            "Parameters": {"x.$": "$.does_not_exist"},
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
            "End": True,
        },
        {"Caught": {"Type": "Succeed"}},
    )
    executor, arn = run(definition, ScriptedHandler())
    description = executor.describe_execution(arn)
    assert (description["status"], description["error"]) == ("FAILED", "States.Runtime")


# --------------------------------------------------------------------------- API rules


def test_start_execution_is_idempotent_while_running_and_names_are_unique() -> None:
    release = threading.Event()

    def blocked(parameters: Any, context: TaskContext) -> Any:
        release.wait(10)
        return {}

    ended: list[dict] = []
    executor = Executor(one_task({"End": True}), {FAKE: blocked}, on_execution_end=[ended.append])
    arn = executor.start_execution("batch-g1", {"generation": 1})
    assert executor.start_execution("batch-g1", '{"generation": 1}') == arn  # same name + input, running
    with pytest.raises(ExecutionAlreadyExists):
        executor.start_execution("batch-g1", {"generation": 2})
    assert [e["status"] for e in executor.list_executions()] == ["RUNNING"]
    release.set()
    executor.wait(timeout=10)
    with pytest.raises(ExecutionAlreadyExists):
        executor.start_execution("batch-g1", {"generation": 1})  # closed: no longer idempotent
    with pytest.raises(InvalidName):
        executor.start_execution("has space", {})
    assert [e["status"] for e in ended] == ["SUCCEEDED"]
    event = execution_status_change_event(ended[0])
    assert event["detail-type"] == "Step Functions Execution Status Change"
    assert event["detail"]["status"] == "SUCCEEDED" and event["detail"]["executionArn"] == arn


def test_stop_execution_aborts_and_kills() -> None:
    def blocked(parameters: Any, context: TaskContext) -> Any:
        context.cancel.wait(20)
        raise RuntimeError("cancelled")

    executor = Executor(one_task({"End": True}), {FAKE: blocked})
    arn = executor.start_execution("to-stop", {})
    time.sleep(0.2)
    executor.stop_execution(arn, "Operator", "stopped by test")
    description = executor.describe_execution(arn)
    assert (description["status"], description["error"]) == ("ABORTED", "Operator")


# --------------------------------------------------------------------------- load-time errors


def _problems(definition: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(DefinitionError) as err:
        load_definition(definition, **kwargs)
    return err.value.problems


def test_unknown_state_type_is_a_load_error() -> None:
    assert _problems({"StartAt": "A", "States": {"A": {"Type": "Sleep", "End": True}}}) == [
        "state 'A': unknown state type 'Sleep'"
    ]
    assert _problems({"StartAt": "A", "States": {"A": {"Type": "Wait", "Seconds": 1, "End": True}}}) == [
        "state 'A': state type 'Wait' is not supported by the local executor"
    ]


def test_unknown_field_is_a_load_error() -> None:
    assert _problems(one_task({"End": True, "Credentials": {}, "Typo": 1})) == [
        "state 'Work': unknown or unsupported field 'Credentials' for a Task state",
        "state 'Work': unknown or unsupported field 'Typo' for a Task state",
    ]
    assert _problems(one_task({"End": True, "Retry": [{"ErrorEquals": ["X"], "Bogus": 1}]})) == [
        "state 'Work'.Retry[0]: unknown or unsupported field 'Bogus'"
    ]


def test_unknown_resource_and_missing_handler_are_load_errors() -> None:
    (problem,) = _problems(
        {
            "StartAt": "A",
            "States": {"A": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True}},
        }
    )
    assert problem.startswith("state 'A': unsupported resource 'arn:aws:states:::lambda:invoke' (supported: ")
    assert FAKE in problem  # the message lists what is supported
    with pytest.raises(DefinitionError) as err:
        Executor(load_definition(one_task({"End": True})), {})
    assert err.value.problems == [f"state 'Work': no handler for resource '{FAKE}'"]


def test_unknown_service_parameter_is_a_load_error() -> None:
    run_task = RunTaskHandler({})
    definition = {
        "StartAt": "A",
        "States": {
            "A": {
                "Type": "Task",
                "Resource": ECS_RUN_TASK_SYNC,
                "Parameters": {"TaskDefinitio": "x"},
                "End": True,
            }
        },
    }
    with pytest.raises(DefinitionError) as err:
        Executor(definition, {ECS_RUN_TASK_SYNC: run_task})
    assert err.value.problems == [
        f"state 'A': field(s) ['TaskDefinitio'] are not supported by {ECS_RUN_TASK_SYNC}"
    ]


def test_structural_problems_are_all_listed() -> None:
    problems = _problems(
        {
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "Next": "Missing"},
                "B": {"Type": "Pass", "End": True, "Parameters": {"x.$": "not a path"}},
                "C": {"Type": "Task", "Resource": FAKE, "Next": "A", "End": True},
            },
        }
    )
    assert sorted(problems) == [
        "state 'A': transition to unknown state 'Missing'",
        "state 'B'.Parameters.x.$: path 'not a path' must start with '$' or '$$'",
        "state 'C': exactly one of Next or End is required",
    ]
    catch = [{"ErrorEquals": ["States.ALL"], "Next": "Work"}, {"ErrorEquals": ["X"], "Next": "Work"}]
    assert _problems(one_task({"End": True, "Catch": catch})) == [
        "state 'Work'.Catch[0].ErrorEquals: States.ALL must appear alone, in the last entry"
    ]
    assert _problems({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "B": {"Type": "Succeed"}}}) == [
        "state 'B' is not reachable from StartAt"
    ]


def test_substitutions_are_applied_and_unresolved_ones_rejected() -> None:
    definition = {
        "StartAt": "A",
        "States": {"A": {"Type": "Pass", "Result": "${Greeting} ${Name}", "End": True}},
    }
    loaded = load_definition(definition, {"Greeting": "hello", "Name": "world"})
    assert loaded.states["A"].result == "hello world"
    assert _problems(definition, substitutions={"Greeting": "hello"}) == [
        "no value for the definition substitution ${Name}"
    ]


def test_container_overrides_over_8_kib_are_refused_as_ecs_refuses_them() -> None:
    """AWS rejects RunTask when the overrides' JSON passes 8,192 bytes: a batch of ~80 keys per list."""
    run_task = RunTaskHandler(
        {
            "arn:aws:ecs:us-east-1:123456789012:task-definition/validation:1": ContainerCommand(
                "validation", (sys.executable, "-c", "import sys; sys.exit(0)")
            )
        }
    )

    def overrides(value: str) -> dict[str, Any]:
        return {
            "TaskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/validation:1",
            "NetworkConfiguration": {"AwsvpcConfiguration": {"Subnets": ["subnet-1"]}},
            "Overrides": {
                "ContainerOverrides": [
                    {"Name": "validation", "Environment": [{"Name": "ORDERS_KEYS", "Value": value}]}
                ]
            },
        }

    context = TaskContext("arn", "n", "ValidateData", ECS_RUN_TASK_SYNC, 0, threading.Event())
    keys = json.dumps([f"raw/orders/2025-07-10/orders_part{n:04d}.csv" for n in range(200)])
    with pytest.raises(StatesError) as refused:
        run_task(overrides(keys), context)
    assert refused.value.error == "ECS.InvalidParameterException"
    assert "at most 8192" in refused.value.cause
    assert run_task(overrides(keys[:7000]), context)["Containers"][0]["ExitCode"] == 0
