"""The local Step Functions service for one state machine: executions in background threads.

Mirrors the API semantics the pipeline relies on:

* ``start_execution`` is idempotent like a STANDARD workflow: the same name with the same input
  while that execution runs returns the same ARN; any other reuse of a name raises
  ``ExecutionAlreadyExists`` (the Lambda relies on this to dedupe S3 events);
* executions run concurrently, each in its own thread; ``wait`` blocks until they end;
* ``on_execution_end`` callbacks get the final ``describe_execution`` dict; the local stack turns
  it into the EventBridge "Step Functions Execution Status Change" event
  (``execution_status_change_event``) for the Lambda.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ecomkpi.sfn_local.callbacks import TaskTokens
from ecomkpi.sfn_local.definition import Definition, load_definition
from ecomkpi.sfn_local.errors import (
    DefinitionError,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    InvalidExecutionInput,
    InvalidName,
    ValidationException,
)
from ecomkpi.sfn_local.history import HistoryEvent
from ecomkpi.sfn_local.interpreter import Execution, Interpreter
from ecomkpi.sfn_local.tasks import TaskHandler, parameter_names

log = logging.getLogger(__name__)

DEFAULT_NAME = "ecommerce-pipeline-workflow"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"
# AWS: 1-80 characters, no whitespace, brackets, wildcards, these specials or control characters.
_INVALID_NAME = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")

ExecutionEndCallback = Callable[[dict[str, Any]], None]


class Executor:
    """One registered state machine and its executions."""

    def __init__(
        self,
        definition: Definition | str | Path | Mapping[str, Any],
        handlers: Mapping[str, TaskHandler],
        *,
        substitutions: Mapping[str, str] | None = None,
        name: str = DEFAULT_NAME,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT,
        role_arn: str | None = None,
        sleep: Callable[[float], None] | None = None,
        on_execution_end: Iterable[ExecutionEndCallback] = (),
        heartbeat_scale: float = 1.0,
    ) -> None:
        """Load (if needed) and check the definition against the handlers.

        ``sleep`` replaces the wait between retries (tests record the delays instead of
        waiting); by default the wait is real and interrupted by ``stop_execution``.
        ``heartbeat_scale`` multiplies the states' HeartbeatSeconds (tests shorten them).
        """
        if not isinstance(definition, Definition):
            definition = load_definition(definition, substitutions, resources=handlers.keys())
        _check_handlers(definition, handlers)
        self.definition = definition
        self.name = name
        self.region = region
        self.account_id = account_id
        self.state_machine_arn = f"arn:aws:states:{region}:{account_id}:stateMachine:{name}"
        self.role_arn = role_arn or f"arn:aws:iam::{account_id}:role/{name}-role"
        self.creation_date = datetime.now(UTC)
        self.on_execution_end: list[ExecutionEndCallback] = list(on_execution_end)
        self.tokens = TaskTokens(heartbeat_scale)
        self._interpreter = Interpreter(
            definition,
            handlers,
            state_machine_arn=self.state_machine_arn,
            state_machine_name=name,
            role_arn=self.role_arn,
            region=region,
            sleep=sleep,
            tokens=self.tokens,
        )
        self._executions: dict[str, Execution] = {}  # by name
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ API

    def execution_arn(self, name: str) -> str:
        return f"arn:aws:states:{self.region}:{self.account_id}:execution:{self.name}:{name}"

    def start_execution(self, name: str | None = None, input: Any = None) -> str:
        """Start an execution and return its ARN; ``input`` is JSON text or a JSON-able value."""
        name = name if name is not None else str(uuid.uuid4())
        if not 1 <= len(name) <= 80 or _INVALID_NAME.search(name):
            raise InvalidName(f"Invalid Name: '{name}'")
        data = _parse_input(input)
        with self._lock:
            existing = self._executions.get(name)
            if existing is not None:
                if existing.status == "RUNNING" and existing.input == data:
                    return existing.arn
                raise ExecutionAlreadyExists(f"Execution Already Exists: '{existing.arn}'")
            execution = Execution(
                arn=self.execution_arn(name),
                name=name,
                state_machine_arn=self.state_machine_arn,
                input=data,
                start_date=datetime.now(UTC),
            )
            self._executions[name] = execution
        thread = threading.Thread(target=self._run, args=(execution,), name=f"sfn-{name}", daemon=True)
        thread.start()
        return execution.arn

    def describe_execution(self, execution_arn: str) -> dict[str, Any]:
        return self._get(execution_arn).describe()

    def list_executions(self, status_filter: str | None = None) -> list[dict[str, Any]]:
        """Newest first, like AWS."""
        with self._lock:
            executions = list(self._executions.values())
        rows = []
        for execution in sorted(executions, key=lambda e: e.start_date, reverse=True):
            full = execution.describe()
            if status_filter and full["status"] != status_filter:
                continue
            keys = ("executionArn", "stateMachineArn", "name", "status", "startDate", "stopDate")
            rows.append({k: full[k] for k in keys if k in full})
        return rows

    def get_execution_history(self, execution_arn: str, reverse_order: bool = False) -> list[HistoryEvent]:
        events = self._get(execution_arn).history()
        return list(reversed(events)) if reverse_order else events

    def stop_execution(
        self, execution_arn: str, error: str | None = None, cause: str | None = None
    ) -> dict[str, Any]:
        """Abort a running execution (its running task process is killed)."""
        execution = self._get(execution_arn)
        if not execution.done.is_set():
            execution.abort_reason = (error, cause)
            execution.abort.set()
        execution.done.wait(60)
        return {"stopDate": execution.describe().get("stopDate", datetime.now(UTC))}

    def wait(self, execution_arn: str | None = None, timeout: float | None = None) -> Any:
        """Block until one execution (its description is returned) or all of them end.

        With no ARN, waits until no execution is running, including ones started meanwhile
        (e.g. by an ``on_execution_end`` callback), and returns all descriptions.
        Raises ``TimeoutError`` when ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if execution_arn is not None:
            execution = self._get(execution_arn)
            if not execution.done.wait(remaining()):
                raise TimeoutError(f"{execution_arn} still running after {timeout} s")
            return execution.describe()
        while True:
            with self._lock:
                running = [e for e in self._executions.values() if not e.done.is_set()]
            if not running:
                return [e.describe() for e in self._executions.values()]
            if not running[0].done.wait(remaining()):
                raise TimeoutError(f"{len(running)} execution(s) still running after {timeout} s")

    def describe_state_machine(self) -> dict[str, Any]:
        return {
            "stateMachineArn": self.state_machine_arn,
            "name": self.name,
            "status": "ACTIVE",
            "definition": self.definition.text,
            "roleArn": self.role_arn,
            "type": "STANDARD",
            "creationDate": self.creation_date,
        }

    def shutdown(self, timeout: float = 60.0) -> None:
        """Abort every running execution (killing local task processes) and wait for them."""
        with self._lock:
            running = [e for e in self._executions.values() if not e.done.is_set()]
        for execution in running:
            execution.abort_reason = ("Shutdown", "the local executor was shut down")
            execution.abort.set()
        for execution in running:
            execution.done.wait(timeout)

    # ------------------------------------------------------------------ internals

    def _get(self, execution_arn: str) -> Execution:
        name = execution_arn.rsplit(":", 1)[-1]
        with self._lock:
            execution = self._executions.get(name)
        if execution is None or execution.arn != execution_arn:
            raise ExecutionDoesNotExist(f"Execution Does Not Exist: '{execution_arn}'")
        return execution

    def _run(self, execution: Execution) -> None:
        try:
            self._interpreter.run(execution)
            description = execution.describe()
            for callback in list(self.on_execution_end):
                try:
                    callback(description)
                except Exception:
                    log.exception("on_execution_end callback failed for %s", execution.arn)
        finally:
            execution.done.set()


MAX_PAYLOAD_BYTES = 262_144  # Step Functions: execution input and state payloads, UTF-8


def _parse_input(value: Any) -> Any:
    if value is None:
        return {}
    text = value if isinstance(value, str) else None
    if text is not None and len(text.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        raise ValidationException(
            "1 validation error detected: Value at 'input' failed to satisfy constraint: "
            f"Member must have length less than or equal to {MAX_PAYLOAD_BYTES}"
        )
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidExecutionInput(f"Invalid State Machine Execution Input: '{exc}'") from exc
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise InvalidExecutionInput(f"the input is not JSON-serialisable: {exc}") from exc


def _check_handlers(definition: Definition, handlers: Mapping[str, TaskHandler]) -> None:
    """Every resource needs a handler, and Parameters may only name fields the service knows."""
    problems = []
    for state in definition.states.values():
        if state.resource is None:
            continue
        handler = handlers.get(state.resource)
        if handler is None:
            problems.append(f"state {state.name!r}: no handler for resource {state.resource!r}")
            continue
        known = parameter_names(handler)
        if known is not None and state.parameters is not None and hasattr(state.parameters.root, "order"):
            unknown = [k for k in state.parameters.root.order if k not in known]
            if unknown:
                problems.append(
                    f"state {state.name!r}: field(s) {unknown} are not supported by {state.resource}"
                )
    if problems:
        raise DefinitionError(problems)


def execution_status_change_event(
    description: Mapping[str, Any], account_id: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION
) -> dict[str, Any]:
    """The EventBridge event AWS emits when an execution changes status (dates in epoch ms)."""

    def millis(value: Any) -> int | None:
        return int(value.timestamp() * 1000) if isinstance(value, datetime) else None

    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [description["executionArn"]],
        "detail": {
            "executionArn": description["executionArn"],
            "stateMachineArn": description["stateMachineArn"],
            "name": description["name"],
            "status": description["status"],
            "startDate": millis(description.get("startDate")),
            "stopDate": millis(description.get("stopDate")),
            "input": description.get("input"),
            "output": description.get("output"),
            "inputDetails": {"included": True},
            "outputDetails": {"included": True} if description.get("output") is not None else None,
            "error": description.get("error"),
            "cause": description.get("cause"),
        },
    }
