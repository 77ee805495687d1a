"""The two ways the workflow runs its tasks, rendered from one source definition.

``stepfunctions/ecommerce-pipeline-workflow.asl.json`` is the source of truth: each task is an ECS
Fargate task per batch (``ecs:runTask.sync``), the cold path that isolates every batch.
``render_worker`` derives the warm-worker variant from it: every ``ecs:runTask.sync`` state sends the
same container environment as an SQS message with ``.waitForTaskToken`` to a long-running worker
(``jobs/worker.py``), which answers with the shape of a stopped ECS task. Because the answer has the
ECS shape, every Choice, error inspection, tracker update and alert after the task is shared; only
the Task states differ, and only in how the work is delivered:

* ``Parameters``: ``QueueUrl`` + a ``MessageBody`` with the token, the container command
  (``validate`` / ``transform``, as in the task definitions) and the overrides' ``Environment``;
* ``HeartbeatSeconds``: a worker that dies stops heartbeating and the attempt fails with
  ``States.HeartbeatTimeout``, which the state's retrier now lists (so the batch runs again on a
  live worker);
* nothing else: names, timeouts, retries, catches are the source's.

The rendered file is committed (CloudFormation deploys files, not Python) and a test checks it
equals ``render_worker`` of the source; ``python -m ecomkpi.workflow_modes`` rewrites it.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from ecomkpi.sfn_local.definition import ECS_RUN_TASK_SYNC, SQS_SEND_MESSAGE_WAIT

REPO_ROOT = Path(__file__).resolve().parents[1]
ECS_DEFINITION = REPO_ROOT / "stepfunctions" / "ecommerce-pipeline-workflow.asl.json"
WORKER_DEFINITION = REPO_ROOT / "stepfunctions" / "ecommerce-pipeline-workflow.worker.asl.json"
MODES = ("worker", "ecs")

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


def definition_path(mode: str) -> Path:
    if mode not in MODES:
        raise ValueError(f"unknown task mode {mode!r} (expected one of {', '.join(MODES)})")
    return WORKER_DEFINITION if mode == "worker" else ECS_DEFINITION


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


def render_text(source_text: str) -> str:
    return json.dumps(render_worker(json.loads(source_text)), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Rewrite the worker definition from the source (``--check``: exit 1 when it is stale)."""
    args = sys.argv[1:] if argv is None else argv
    text = render_text(ECS_DEFINITION.read_text(encoding="utf-8"))
    current = WORKER_DEFINITION.read_text(encoding="utf-8") if WORKER_DEFINITION.exists() else ""
    if "--check" in args:
        if current != text:
            print(f"{WORKER_DEFINITION} is stale: run python -m ecomkpi.workflow_modes", file=sys.stderr)
            return 1
        return 0
    WORKER_DEFINITION.write_text(text, encoding="utf-8")
    print(f"wrote {WORKER_DEFINITION.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
