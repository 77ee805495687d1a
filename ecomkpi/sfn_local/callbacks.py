"""Task tokens: the ``.waitForTaskToken`` callback pattern of the local executor.

A Task state whose resource ends in ``.waitForTaskToken`` gets a fresh token per attempt in
``$$.Task.Token``; the integration (an SQS message) carries it to a worker, and the state waits
until someone calls ``SendTaskSuccess`` / ``SendTaskFailure`` with it. ``SendTaskHeartbeat`` keeps
the state alive when it has ``HeartbeatSeconds``: a worker that dies stops beating and the state
fails with ``States.HeartbeatTimeout``, which the definition retries.

API behaviour mirrored from AWS: a token this service never issued is ``InvalidToken``; a token
whose task already ended (answered, timed out, retried, aborted) is ``TaskTimedOut``, so a worker
that wakes up late learns its answer is no longer wanted.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ecomkpi.sfn_local.errors import (
    HEARTBEAT_TIMEOUT,
    ApiError,
    InvalidOutput,
    InvalidToken,
    StatesError,
    TaskTimedOut,
)

# AWS API limits of SendTaskSuccess / SendTaskFailure.
MAX_OUTPUT_BYTES = 262_144
MAX_ERROR_CHARS = 256
MAX_CAUSE_CHARS = 32_768


class TaskCancelled(Exception):
    """Raised by a handler that stopped its work because ``context.cancel`` was set."""


@dataclass
class PendingTask:
    """One attempt of a callback task, waiting for its answer."""

    token: str
    execution_arn: str
    state_name: str
    heartbeat_seconds: float | None
    last_beat: float = field(default_factory=time.monotonic)
    answered: threading.Event = field(default_factory=threading.Event)
    output: Any = None
    error: StatesError | None = None

    def wait(self, cancel: threading.Event, poll: float = 0.05) -> Any:
        """Block until answered; raise the sent failure, a heartbeat timeout or ``TaskCancelled``."""
        while not self.answered.wait(poll):
            if cancel.is_set():
                raise TaskCancelled(self.token)
            if (
                self.heartbeat_seconds is not None
                and time.monotonic() - self.last_beat > self.heartbeat_seconds
            ):
                raise StatesError(HEARTBEAT_TIMEOUT, "the task sent no heartbeat within HeartbeatSeconds")
        if self.error is not None:
            raise self.error
        return self.output


class TaskTokens:
    """The tokens of one executor's callback tasks."""

    def __init__(self, heartbeat_scale: float = 1.0) -> None:
        # Tests scale HeartbeatSeconds down the way the local stack scales retry waits.
        self.heartbeat_scale = heartbeat_scale
        self._open: dict[str, PendingTask] = {}
        self._closed: set[str] = set()
        self._lock = threading.Lock()

    def open(self, execution_arn: str, state_name: str, heartbeat_seconds: int | None) -> PendingTask:
        nonce = json.dumps({"e": execution_arn, "s": state_name, "n": uuid.uuid4().hex}).encode()
        token = base64.urlsafe_b64encode(nonce).decode("ascii")
        beat = heartbeat_seconds * self.heartbeat_scale if heartbeat_seconds else None
        task = PendingTask(token, execution_arn, state_name, beat)
        with self._lock:
            self._open[token] = task
        return task

    def close(self, token: str) -> None:
        """The state stopped waiting (answered, timed out, retried, aborted)."""
        with self._lock:
            self._open.pop(token, None)
            self._closed.add(token)

    def knows(self, token: str) -> bool:
        with self._lock:
            return token in self._open or token in self._closed

    def _take(self, token: Any) -> PendingTask:
        if not isinstance(token, str) or not token:
            raise InvalidToken("Invalid token")
        with self._lock:
            task = self._open.get(token)
            closed = token in self._closed
        if task is None or task.answered.is_set():
            if closed or task is not None:
                raise TaskTimedOut("Task Timed Out: the task of this token has already ended")
            raise InvalidToken("Invalid token")
        return task

    def heartbeat(self, token: Any) -> None:
        self._take(token).last_beat = time.monotonic()

    def succeed(self, token: Any, output: Any) -> None:
        if not isinstance(output, str):
            raise ApiError("output is required and must be a JSON text")
        if len(output.encode("utf-8")) > MAX_OUTPUT_BYTES:
            raise ApiError(f"output: Member must have length less than or equal to {MAX_OUTPUT_BYTES}")
        try:
            value = json.loads(output)
        except json.JSONDecodeError as exc:
            raise InvalidOutput(f"Invalid Output: {exc}") from None
        task = self._take(token)
        task.output = value
        task.answered.set()

    def fail(self, token: Any, error: Any = None, cause: Any = None) -> None:
        error, cause = error or "", cause or ""
        if not isinstance(error, str) or len(error) > MAX_ERROR_CHARS:
            raise ApiError(f"error: Member must have length less than or equal to {MAX_ERROR_CHARS}")
        if not isinstance(cause, str) or len(cause) > MAX_CAUSE_CHARS:
            raise ApiError(f"cause: Member must have length less than or equal to {MAX_CAUSE_CHARS}")
        task = self._take(token)
        task.error = StatesError(error, cause)
        task.answered.set()
