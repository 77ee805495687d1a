"""The three ways the workflow runs its tasks, rendered from one source definition.

``stepfunctions/ecommerce-pipeline-workflow.asl.json`` is the source of truth: each task is an ECS
Fargate task per batch (``ecs:runTask.sync``), the cold path that isolates every batch.
``render_worker`` derives the warm-worker variant from it: every ``ecs:runTask.sync`` state sends the
same container environment as an SQS message with ``.waitForTaskToken`` to a long-running worker
(``hosts/worker/``), which answers with the shape of a stopped ECS task. Because the answer has the
ECS shape, every Choice, error inspection, tracker update and alert after the task is shared; only
the Task states differ, and only in how the work is delivered:

* ``Parameters``: ``QueueUrl`` + a ``MessageBody`` with the token, the container command
  (``validate`` / ``transform``, as in the task definitions) and the overrides' ``Environment``;
* ``HeartbeatSeconds``: a worker that dies stops heartbeating and the attempt fails with
  ``States.HeartbeatTimeout``, which the state's retrier now lists (so the batch runs again on a
  live worker);
* nothing else: names, timeouts, retries, catches are the source's.

``render_emr_serverless`` derives the third: each task becomes an EMR Serverless job run
(``emr-serverless:startJobRun.sync``) of ``scripts/emr_serverless_entry.py`` with the job's command as
its argument, the container environment as ``spark.emr-serverless.driverEnv.*`` properties, and
the jars, the ``jobs`` zip and Spark settings as ``SparkSubmitParameters`` (one substitution the stack
builds). A job run only ends SUCCESS or FAILED, so the job's exit code travels in a small result
object (``ECOMKPI_RESULT_KEY``, written by the entry point: ``{"TaskArn", "ExitCodes": [code]}``):
the entry point ends SUCCESS for 0 (passed) and 2 (data rejected) and FAILED for anything else (the
job broke: retried like a failed ECS task). Two states added after each task read that object
(``aws-sdk:s3:getObject``) and put it where the ECS result goes, in the same shape, so the Choice
states after it are the source's (docs/design.md "EMR Serverless job outcome").

The rendered files are committed (CloudFormation deploys files, not Python) and a test checks them
against the renderings of the source; ``python -m ecomkpi.workflow_modes`` rewrites them.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from ecomkpi.sfn_local.definition import (
    ECS_RUN_TASK_SYNC,
    EMR_SERVERLESS_START_JOB_RUN_SYNC,
    S3_GET_OBJECT,
    SQS_SEND_MESSAGE_WAIT,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
ECS_DEFINITION = REPO_ROOT / "stepfunctions" / "ecommerce-pipeline-workflow.asl.json"
WORKER_DEFINITION = REPO_ROOT / "stepfunctions" / "ecommerce-pipeline-workflow.worker.asl.json"
EMR_DEFINITION = REPO_ROOT / "stepfunctions" / "ecommerce-pipeline-workflow.emr-serverless.asl.json"
MODES = ("worker", "ecs", "emr-serverless")

# The container command of each task definition (infra/ecomkpi-stack.yaml, docker/entrypoint.sh).
COMMANDS = {
    "${ValidationTaskDefinitionArn}": "validate",
    "${TransformationTaskDefinitionArn}": "transform",
}
WORK_QUEUE_URL = "${WorkQueueUrl}"
# Longer than a Fargate worker takes to start when the service has scaled to zero (the heartbeat
# clock runs from when the message is sent), far shorter than the tasks' TimeoutSeconds.
HEARTBEAT_SECONDS = 300
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
WORKER_NOTE = (
    " Worker mode (rendered by ecomkpi/workflow_modes.py, do not edit): the task goes to the warm "
    "worker through the work queue with a task token; the worker answers with the shape of a stopped "
    "ECS task, so the checks after this state are the same; a worker that stops heartbeating fails "
    "the attempt with States.HeartbeatTimeout, which is retried."
)


# EMR Serverless mode: what the stack substitutes (infra/ecomkpi-stack.yaml, ecomkpi/local_stack.py).
EMR_APPLICATION_ID = "${EmrApplicationId}"
EMR_JOB_ROLE_ARN = "${EmrJobRoleArn}"
EMR_ENTRY_POINT = "${EmrEntryPoint}"
EMR_SPARK_SUBMIT_PARAMETERS = "${EmrSparkSubmitParameters}"
DRIVER_ENV = "spark.emr-serverless.driverEnv."
RESULT_KEY_ENV = "ECOMKPI_RESULT_KEY"
JOB_RUN_NAME_ENV = "ECOMKPI_JOB_RUN_NAME"
EMR_NOTE = (
    " EMR Serverless mode (rendered by ecomkpi/workflow_modes.py, do not edit): the job runs as an EMR "
    "Serverless job run of scripts/emr_serverless_entry.py; it ends SUCCESS for exit 0 and 2 and FAILED "
    "otherwise (retried), and leaves its exit code in the result object that the next two states read."
)


def definition_path(mode: str) -> Path:
    if mode not in MODES:
        raise ValueError(f"unknown task mode {mode!r} (expected one of {', '.join(MODES)})")
    return {"worker": WORKER_DEFINITION, "emr-serverless": EMR_DEFINITION}.get(mode, ECS_DEFINITION)


def _container_override(parameters: dict[str, Any], where: str) -> dict[str, Any]:
    overrides = parameters.get("Overrides", {}).get("ContainerOverrides", [])
    if len(overrides) != 1:
        raise ValueError(f"{where}: expected exactly one container override, found {len(overrides)}")
    override: dict[str, Any] = overrides[0]
    return override


def _worker_task(name: str, state: dict[str, Any]) -> dict[str, Any]:
    parameters = state["Parameters"]
    command = COMMANDS.get(parameters.get("TaskDefinition", ""))
    if command is None:
        raise ValueError(
            f"state {name}: no worker command for task definition {parameters.get('TaskDefinition')!r}"
        )
    override = _container_override(parameters, f"state {name}")
    rendered: dict[str, Any] = {}
    for key, value in state.items():
        if key == "Resource":
            rendered[key] = SQS_SEND_MESSAGE_WAIT
        elif key == "Parameters":
            rendered[key] = {
                "QueueUrl": WORK_QUEUE_URL,
                "MessageBody": {
                    "TaskToken.$": "$$.Task.Token",
                    "Command": [command],
                    "Container": override["Name"],
                    "Execution.$": "$$.Execution.Name",
                    "State": name,
                    "Environment": copy.deepcopy(override.get("Environment", [])),
                },
            }
        elif key == "Comment":
            rendered[key] = value + WORKER_NOTE
        elif key == "Retry":
            rendered[key] = [_with_heartbeat(r) for r in value]
        else:
            rendered[key] = copy.deepcopy(value)
        if key == "TimeoutSeconds":
            rendered["HeartbeatSeconds"] = HEARTBEAT_SECONDS
    rendered.setdefault("HeartbeatSeconds", HEARTBEAT_SECONDS)
    return rendered


def _with_heartbeat(retrier: dict[str, Any]) -> dict[str, Any]:
    retrier = copy.deepcopy(retrier)
    errors = retrier["ErrorEquals"]
    if "States.TaskFailed" in errors and HEARTBEAT_TIMEOUT not in errors:
        errors.append(HEARTBEAT_TIMEOUT)
    return retrier


def render_worker(source: dict[str, Any]) -> dict[str, Any]:
    """The warm-worker definition derived from the per-batch ECS one (see the module docstring)."""
    rendered = copy.deepcopy(source)
    rendered["Comment"] = source.get("Comment", "") + (
        " This is the warm-worker rendering: the tasks go to the worker through an SQS work queue."
    )
    for name, state in source["States"].items():
        if state.get("Type") == "Task" and state.get("Resource") == ECS_RUN_TASK_SYNC:
            rendered["States"][name] = _worker_task(name, state)
    return rendered


def result_key_format(state_name: str) -> str:
    """Where a job run of ``state_name`` leaves its outcome (an intrinsic over the execution input)."""
    return f"States.Format('control/results/{{}}/{{}}/{state_name}.json', $.batch_id, $$.Execution.Name)"


def _driver_env(environment: list[dict[str, Any]], state_name: str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for item in environment:
        if "Value.$" in item:
            properties[f"{DRIVER_ENV}{item['Name']}.$"] = item["Value.$"]
        else:
            properties[f"{DRIVER_ENV}{item['Name']}"] = item["Value"]
    properties[f"{DRIVER_ENV}{RESULT_KEY_ENV}.$"] = result_key_format(state_name)
    properties[f"{DRIVER_ENV}{JOB_RUN_NAME_ENV}.$"] = _job_run_name(state_name)
    return properties


def _job_run_name(state_name: str) -> str:
    return f"States.Format('{{}}-{state_name}', $$.Execution.Name)"


def _emr_task(name: str, state: dict[str, Any], outcome_state: str) -> dict[str, Any]:
    parameters = state["Parameters"]
    command = COMMANDS.get(parameters.get("TaskDefinition", ""))
    if command is None:
        raise ValueError(
            f"state {name}: no job command for task definition {parameters.get('TaskDefinition')!r}"
        )
    override = _container_override(parameters, f"state {name}")
    rendered: dict[str, Any] = {}
    for key, value in state.items():
        if key == "Resource":
            rendered[key] = EMR_SERVERLESS_START_JOB_RUN_SYNC
        elif key == "Parameters":
            rendered[key] = {
                "ApplicationId": EMR_APPLICATION_ID,
                "ExecutionRoleArn": EMR_JOB_ROLE_ARN,
                "Name.$": _job_run_name(name),
                # EMR cancels the run itself at the state's timeout (Step Functions' own timeout
                # stays the authority; this bounds what a lost .sync would keep billing).
                "ExecutionTimeoutMinutes": max(1, state.get("TimeoutSeconds", 3600) // 60),
                "JobDriver": {
                    "SparkSubmit": {
                        "EntryPoint": EMR_ENTRY_POINT,
                        "EntryPointArguments": [command],
                        "SparkSubmitParameters": EMR_SPARK_SUBMIT_PARAMETERS,
                    }
                },
                "ConfigurationOverrides": {
                    "ApplicationConfiguration": [
                        {
                            "Classification": "spark-defaults",
                            "Properties": _driver_env(override.get("Environment", []), name),
                        }
                    ]
                },
            }
        elif key == "Comment":
            rendered[key] = value + EMR_NOTE
        elif key == "ResultSelector":
            continue  # the job run's own output is kept whole; the outcome comes from the result object
        elif key == "ResultPath":
            rendered[key] = f"{value}_job_run"
        elif key == "Next":
            rendered[key] = f"Read{outcome_state}"
        else:
            rendered[key] = copy.deepcopy(value)
    return rendered


def _emr_outcome_states(name: str, state: dict[str, Any], outcome_state: str) -> dict[str, dict[str, Any]]:
    """Read the result object, then put it at the task's ResultPath in the ECS result's shape."""
    result_path = state["ResultPath"]
    failed = next(c for c in state["Catch"] if c["ErrorEquals"] == ["States.ALL"])
    return {
        f"Read{outcome_state}": {
            "Type": "Task",
            "Comment": (
                f"Read the outcome {name}'s job run left (rendered by ecomkpi/workflow_modes.py): "
                '{"TaskArn", "ExitCodes": [code]} at control/results/<batch>/<execution>/'
                f"{name}.json. Missing or unreadable after a SUCCESS run: the job broke after its work, "
                "handled like any task failure."
            ),
            "Resource": S3_GET_OBJECT,
            "Parameters": {"Bucket.$": "$.bucket", "Key.$": result_key_format(name)},
            "ResultSelector": {"Outcome.$": "States.StringToJson($.Body)"},
            "ResultPath": f"{result_path}_outcome",
            "Retry": [
                {
                    "ErrorEquals": ["States.TaskFailed"],
                    "IntervalSeconds": 2,
                    "MaxAttempts": 3,
                    "BackoffRate": 2.0,
                }
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": failed["Next"]}],
            "Next": outcome_state,
        },
        outcome_state: {
            "Type": "Pass",
            "Comment": "The same shape as the ECS task's ResultSelector, so the same Choice decides.",
            "Parameters": {
                "TaskArn.$": f"{result_path}_outcome.Outcome.TaskArn",
                "ExitCodes.$": f"{result_path}_outcome.Outcome.ExitCodes",
            },
            "ResultPath": result_path,
            "Next": state["Next"],
        },
    }


def render_emr_serverless(source: dict[str, Any]) -> dict[str, Any]:
    """The EMR Serverless definition derived from the per-batch ECS one (see the module docstring)."""
    rendered = copy.deepcopy(source)
    rendered["Comment"] = source.get("Comment", "") + (
        " This is the EMR Serverless rendering: the tasks are EMR Serverless job runs."
    )
    states: dict[str, Any] = {}
    for name, state in source["States"].items():
        if state.get("Type") == "Task" and state.get("Resource") == ECS_RUN_TASK_SYNC:
            outcome_state = f"{name}Outcome"
            states[name] = _emr_task(name, state, outcome_state)
            states.update(_emr_outcome_states(name, state, outcome_state))
        else:
            states[name] = copy.deepcopy(state)
    rendered["States"] = states
    return rendered


RENDERINGS = {WORKER_DEFINITION: render_worker, EMR_DEFINITION: render_emr_serverless}


def render_text(source_text: str, target: Path = WORKER_DEFINITION) -> str:
    rendered = RENDERINGS[target](json.loads(source_text))
    return json.dumps(rendered, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Rewrite the rendered definitions from the source (``--check``: exit 1 when one is stale)."""
    args = sys.argv[1:] if argv is None else argv
    source = ECS_DEFINITION.read_text(encoding="utf-8")
    stale = 0
    for target in RENDERINGS:
        text = render_text(source, target)
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if "--check" in args:
            if current != text:
                print(f"{target} is stale: run python -m ecomkpi.workflow_modes", file=sys.stderr)
                stale = 1
            continue
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target.name}")
    return stale


if __name__ == "__main__":
    raise SystemExit(main())
