"""What the worker answers Step Functions: the shape of a stopped ECS task, or a named failure.

Both task modes end a Task state the same way, so the workflow decides the same way: exit 0 and 2
(data rejected) are ``SendTaskSuccess`` with a description shaped like ``ecs:runTask.sync``'s output
(``Containers[].Name/ExitCode``); a broken run is ``SendTaskFailure``, which the state retries.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hosts.worker.heartbeat import STALE_TOKEN_ERRORS, error_code
from hosts.worker.log import log
from hosts.worker.messages import TaskMessage

if TYPE_CHECKING:
    from types_boto3_stepfunctions import SFNClient

EXIT_OK, EXIT_BROKEN, EXIT_REJECTED = 0, 1, 2
FAILED_ERROR = "Worker.TaskFailed"
# A task whose worker was stopped (SIGTERM) before answering; retried by the states' States.TaskFailed.
STOPPED_ERROR = "Worker.Stopped"
BAD_MESSAGE_ERROR = "Worker.BadMessage"
MAX_CAUSE_CHARS = 32_768


def task_description(message: TaskMessage, worker_id: str, exit_code: int, reason: str) -> dict[str, Any]:
    """What the workflow reads: the shape of a stopped ECS task with one container."""
    task_arn = f"worker/{worker_id}/{uuid.uuid4().hex}"
    return {
        "TaskArn": task_arn,
        "Containers": [
            {"Name": message.container, "ExitCode": exit_code, "LastStatus": "STOPPED", "TaskArn": task_arn}
        ],
        "LastStatus": "STOPPED",
        "StopCode": "EssentialContainerExited",
        "StoppedReason": reason,
        "Worker": worker_id,
    }


class Answers:
    """Sends the answers of one worker; a failed send is logged, never raised (the state's own
    timeout or retry then decides)."""

    def __init__(self, sfn: SFNClient, worker_id: str) -> None:
        self.sfn, self.worker_id = sfn, worker_id

    def task(self, task: TaskMessage, exit_code: int, error: str) -> None:
        reason = error or f"{task.command} exited {exit_code}"
        if exit_code in (EXIT_OK, EXIT_REJECTED):
            description = task_description(task, self.worker_id, exit_code, reason)
            self._send(
                lambda: self.sfn.send_task_success(taskToken=task.token, output=json.dumps(description))
            )
        else:
            cause = f"{task.container} on worker {self.worker_id} broke (exit {exit_code}): {error}"
            self.failure(task.token, FAILED_ERROR, cause)

    def failure(self, token: str, error: str, cause: str) -> None:
        self._send(
            lambda: self.sfn.send_task_failure(taskToken=token, error=error, cause=cause[-MAX_CAUSE_CHARS:])
        )

    def _send(self, call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as exc:
            # The state already gave up (timed out, aborted): its retry or the execution's end decides.
            level = "INFO" if error_code(exc) in STALE_TOKEN_ERRORS else "ERROR"
            log("answer.failed", level=level, error=f"{type(exc).__name__}: {exc}")
