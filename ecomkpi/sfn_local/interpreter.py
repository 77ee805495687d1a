"""Running one execution of a validated definition, state by state, the way AWS does.

Data flow per state (AWS order): InputPath -> Parameters -> task/result -> ResultSelector ->
ResultPath (merged into the *raw* state input) -> OutputPath. On a task error the first
retrier whose ErrorEquals matches decides (attempts are counted per retrier, delay =
IntervalSeconds * BackoffRate^n capped by MaxDelaySeconds); when it is exhausted or none matches,
the first matching catcher places ``{"Error", "Cause"}`` at its ResultPath in the raw input.
``States.ALL`` matches everything, ``States.TaskFailed`` everything but ``States.Timeout``, and
``States.Runtime`` (a broken path, a missing Choice variable) is never retried or caught.

Kept whole: one loop over states; the steps above read in AWS's order in one place, which is what
a reader comparing it with the Step Functions documentation needs.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ecomkpi.sfn_local.callbacks import PendingTask, TaskTokens
from ecomkpi.sfn_local.definition import WAIT_FOR_TASK_TOKEN, Definition, Retrier, State
from ecomkpi.sfn_local.errors import (
    ALL,
    HEARTBEAT_TIMEOUT,
    NO_CHOICE_MATCHED,
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    TASK_FAILED,
    TIMEOUT,
    StatesError,
)
from ecomkpi.sfn_local.history import HistoryEvent
from ecomkpi.sfn_local.jsonpath import JsonPath, PathNotFound, set_path
from ecomkpi.sfn_local.tasks import TaskContext, TaskHandler

_HANDLER_GRACE_SECONDS = 30.0


def iso_now(moment: datetime | None = None) -> str:
    """Context-object timestamp format: ``2025-07-10T06:00:00.123Z``."""
    moment = moment or datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_matches(error_equals: tuple[str, ...], error: str) -> bool:
    """Whether a Retry/Catch ErrorEquals list matches ``error`` (AWS wildcard rules).

    ``States.Timeout`` also covers a missed heartbeat (``States.HeartbeatTimeout`` was added later
    as the narrower name); ``States.TaskFailed`` covers neither.
    """
    if error == RUNTIME:  # never retried nor caught, even by States.ALL
        return False
    timeouts = (TIMEOUT, HEARTBEAT_TIMEOUT)
    return any(
        name in (error, ALL)
        or (name == TASK_FAILED and error not in timeouts)
        or (name == TIMEOUT and error == HEARTBEAT_TIMEOUT)
        for name in error_equals
    )


def retry_delay(retrier: Retrier, retries_so_far: int, rng: Callable[[float, float], float]) -> float:
    """Seconds to wait before the next attempt (``retries_so_far`` retries already done)."""
    delay = retrier.interval_seconds * retrier.backoff_rate**retries_so_far
    if retrier.max_delay_seconds is not None:
        delay = min(delay, retrier.max_delay_seconds)
    if retrier.jitter_strategy == "FULL":
        delay = rng(0.0, delay)
    return delay


@dataclass
class Execution:
    """One execution's record; mutated only by its own thread, read under ``lock``."""

    arn: str
    name: str
    state_machine_arn: str
    input: Any
    start_date: datetime
    status: str = "RUNNING"
    stop_date: datetime | None = None
    output: Any = None
    error: str | None = None
    cause: str | None = None
    events: list[HistoryEvent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)
    abort: threading.Event = field(default_factory=threading.Event)
    abort_reason: tuple[str | None, str | None] = (None, None)

    @property
    def input_text(self) -> str:
        return json.dumps(self.input)

    def add_event(self, event_type: str, details: dict[str, Any], state: str | None = None) -> HistoryEvent:
        with self.lock:
            event_id = len(self.events) + 1
            event = HistoryEvent(event_id, event_type, datetime.now(UTC), details, state, event_id - 1)
            self.events.append(event)
            return event

    def history(self) -> list[HistoryEvent]:
        with self.lock:
            return list(self.events)

    def describe(self) -> dict[str, Any]:
        """The ``DescribeExecution`` response (dates as datetimes)."""
        with self.lock:
            result: dict[str, Any] = {
                "executionArn": self.arn,
                "stateMachineArn": self.state_machine_arn,
                "name": self.name,
                "status": self.status,
                "startDate": self.start_date,
                "input": self.input_text,
                "inputDetails": {"included": True},
            }
            if self.stop_date:
                result["stopDate"] = self.stop_date
            if self.status == "SUCCEEDED":
                result["output"] = json.dumps(self.output)
                result["outputDetails"] = {"included": True}
            if self.error is not None:
                result["error"] = self.error
            if self.cause is not None:
                result["cause"] = self.cause
            return result


class _Aborted(Exception):
    pass


class _ExecutionTimedOut(Exception):
    pass


class Interpreter:
    """Runs executions of one definition; shared by all executions of a state machine."""

    def __init__(
        self,
        definition: Definition,
        handlers: Mapping[str, TaskHandler],
        *,
        state_machine_arn: str,
        state_machine_name: str,
        role_arn: str,
        region: str,
        sleep: Callable[[float], None] | None = None,
        rng: Callable[[float, float], float] = random.uniform,
        tokens: TaskTokens | None = None,
    ) -> None:
        self.definition = definition
        self.handlers = dict(handlers)
        self.state_machine_arn = state_machine_arn
        self.state_machine_name = state_machine_name
        self.role_arn = role_arn
        self.region = region
        self.sleep = sleep
        self.rng = rng
        self.tokens = tokens or TaskTokens()

    # ------------------------------------------------------------------ the execution loop

    def run(self, execution: Execution) -> None:
        """Run ``execution`` to its end; its status, output/error and history are filled in."""
        execution.add_event(
            "ExecutionStarted",
            {"input": execution.input_text, "inputDetails": {"truncated": False}, "roleArn": self.role_arn},
        )
        deadline = None
        if self.definition.timeout_seconds:
            deadline = time.monotonic() + self.definition.timeout_seconds
        data = execution.input
        name: str | None = self.definition.start_at
        try:
            while name is not None:
                self._check(execution, deadline)
                state = self.definition.states[name]
                entered = datetime.now(UTC)
                execution.add_event(
                    f"{state.type}StateEntered", {"name": name, "input": json.dumps(data)}, state=name
                )
                context = self._context(execution, state, entered)
                data, name = self._run_state(state, data, execution, context, deadline)
                execution.add_event(
                    f"{state.type}StateExited",
                    {"name": state.name, "output": json.dumps(data)},
                    state=state.name,
                )
            self._finish(execution, "SUCCEEDED", output=data)
            execution.add_event("ExecutionSucceeded", {"output": json.dumps(data)})
        except StatesError as err:
            self._finish(execution, "FAILED", error=err.error or None, cause=err.cause or None)
            details = {k: v for k, v in (("error", err.error), ("cause", err.cause)) if v}
            execution.add_event("ExecutionFailed", details)
        except _Aborted:
            error, cause = execution.abort_reason
            self._finish(execution, "ABORTED", error=error, cause=cause)
            execution.add_event(
                "ExecutionAborted", {k: v for k, v in (("error", error), ("cause", cause)) if v}
            )
        except _ExecutionTimedOut:
            cause = f"The execution exceeded TimeoutSeconds ({self.definition.timeout_seconds})"
            self._finish(execution, "TIMED_OUT", error=TIMEOUT, cause=cause)
            execution.add_event("ExecutionTimedOut", {"error": TIMEOUT, "cause": cause})
        except Exception as exc:  # a bug here must still end the execution, visibly
            cause = f"{type(exc).__name__}: {exc}"
            self._finish(execution, "FAILED", error="States.Runtime", cause=cause)
            execution.add_event("ExecutionFailed", {"error": "States.Runtime", "cause": cause})

    @staticmethod
    def _finish(
        execution: Execution,
        status: str,
        *,
        output: Any = None,
        error: str | None = None,
        cause: str | None = None,
    ) -> None:
        with execution.lock:
            execution.status = status
            execution.stop_date = datetime.now(UTC)
            execution.output = output
            execution.error = error
            execution.cause = cause

    @staticmethod
    def _check(execution: Execution, deadline: float | None) -> None:
        if execution.abort.is_set():
            raise _Aborted
        if deadline is not None and time.monotonic() >= deadline:
            raise _ExecutionTimedOut

    def _context(self, execution: Execution, state: State, entered: datetime) -> dict[str, Any]:
        return {
            "Execution": {
                "Id": execution.arn,
                "Name": execution.name,
                "Input": copy.deepcopy(execution.input),
                "StartTime": iso_now(execution.start_date),
                "RoleArn": self.role_arn,
            },
            "StateMachine": {"Id": self.state_machine_arn, "Name": self.state_machine_name},
            "State": {"Name": state.name, "EnteredTime": iso_now(entered), "RetryCount": 0},
        }

    def _run_state(
        self, state: State, data: Any, execution: Execution, context: dict[str, Any], deadline: float | None
    ) -> tuple[Any, str | None]:
        if state.type == "Task":
            return self._task(state, data, execution, context, deadline)
        if state.type == "Pass":
            effective = self._apply_path(state.input_path, data, "InputPath")
            if state.parameters:
                effective = state.parameters.evaluate(effective, context)
            result = copy.deepcopy(state.result) if state.has_result else effective
            output = self._apply_result_path(state.result_path, data, result)
            return self._apply_path(state.output_path, output, "OutputPath"), state.next
        if state.type == "Choice":
            effective = self._apply_path(state.input_path, data, "InputPath")
            target = next((r.next for r in state.choices if r.matches(effective, context)), state.default)
            if target is None:
                raise StatesError(NO_CHOICE_MATCHED, f"No Matches! (state {state.name!r})")
            return self._apply_path(state.output_path, effective, "OutputPath"), target
        if state.type == "Succeed":
            effective = self._apply_path(state.input_path, data, "InputPath")
            return self._apply_path(state.output_path, effective, "OutputPath"), None
        if state.type == "Fail":
            error = state.error if state.error_path is None else self._string_at(state.error_path, data)
            cause = state.cause if state.cause_path is None else self._string_at(state.cause_path, data)
            raise StatesError(error or "", cause or "")
        raise AssertionError(state.type)  # pragma: no cover - the loader admits no other type

    # ------------------------------------------------------------------ paths

    @staticmethod
    def _apply_path(path: JsonPath | None, data: Any, field_name: str) -> Any:
        if path is None:
            return {}
        try:
            return path.evaluate(data)
        except PathNotFound:
            raise StatesError(
                RUNTIME,
                f"Invalid path '{path.text}' : No results for path: {field_name} of {json.dumps(data)[:500]}",
            ) from None

    @staticmethod
    def _apply_result_path(path: JsonPath | None, raw_input: Any, result: Any) -> Any:
        if path is None:
            return copy.deepcopy(raw_input)
        try:
            return set_path(raw_input, path, result)
        except TypeError as exc:
            raise StatesError(
                RESULT_PATH_MATCH_FAILURE, f"Unable to apply ResultPath '{path.text}' to the input: {exc}"
            ) from None

    @staticmethod
    def _string_at(path: JsonPath, data: Any) -> str:
        try:
            value = path.evaluate(data)
        except PathNotFound:
            raise StatesError(RUNTIME, f"The path '{path.text}' of the Fail state does not exist") from None
        if not isinstance(value, str):
            raise StatesError(RUNTIME, f"The path '{path.text}' of the Fail state is not a string")
        return value

    # ------------------------------------------------------------------ tasks

    def _task(
        self,
        state: State,
        raw_input: Any,
        execution: Execution,
        context: dict[str, Any],
        deadline: float | None,
    ) -> tuple[Any, str | None]:
        effective = self._apply_path(state.input_path, raw_input, "InputPath")
        retries = [0] * len(state.retriers)
        attempt = 0
        while True:
            # Each attempt of a callback task gets its own token; parameters see it (and the
            # attempt's RetryCount) in the context object.
            callback = None
            if state.resource and state.resource.endswith(WAIT_FOR_TASK_TOKEN):
                callback = self.tokens.open(execution.arn, state.name, state.heartbeat_seconds)
                context["Task"] = {"Token": callback.token}
            try:
                parameters = state.parameters.evaluate(effective, context) if state.parameters else effective
            except StatesError:
                if callback is not None:
                    self.tokens.close(callback.token)
                raise
            try:
                result = self._invoke(state, parameters, execution, attempt, deadline, callback)
            except StatesError as err:
                index = next(
                    (i for i, r in enumerate(state.retriers) if error_matches(r.error_equals, err.error)),
                    None,
                )
                if index is not None and retries[index] < state.retriers[index].max_attempts:
                    delay = retry_delay(state.retriers[index], retries[index], self.rng)
                    retries[index] += 1
                    attempt += 1
                    context["State"]["RetryCount"] = attempt
                    execution.add_event(
                        "RetryScheduled",
                        {
                            "name": state.name,
                            "error": err.error,
                            "retrierIndex": index,
                            "attempt": attempt,
                            "delaySeconds": delay,
                        },
                        state=state.name,
                    )
                    self._wait(delay, execution, deadline)
                    continue
                return self._catch(state, err, raw_input)
            finally:
                if callback is not None:
                    self.tokens.close(callback.token)
            # Errors past the task (ResultSelector, ResultPath, OutputPath) are not retried:
            # running the task again would not change them. Catchable ones go to the catchers.
            try:
                if state.result_selector:
                    result = state.result_selector.evaluate(result, context)
                output = self._apply_result_path(state.result_path, raw_input, result)
                return self._apply_path(state.output_path, output, "OutputPath"), state.next
            except StatesError as err:
                return self._catch(state, err, raw_input)

    def _catch(self, state: State, err: StatesError, raw_input: Any) -> tuple[Any, str]:
        for catcher in state.catchers:
            if error_matches(catcher.error_equals, err.error):
                output = self._apply_result_path(catcher.result_path, raw_input, err.output())
                return output, catcher.next
        raise err

    def _wait(self, delay: float, execution: Execution, deadline: float | None) -> None:
        if self.sleep is not None:
            self.sleep(delay)
        else:
            limit = delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic()))
            execution.abort.wait(limit)
        self._check(execution, deadline)

    def _invoke(
        self,
        state: State,
        parameters: Any,
        execution: Execution,
        attempt: int,
        deadline: float | None,
        callback: PendingTask | None = None,
    ) -> Any:
        assert state.resource is not None
        handler = self.handlers[state.resource]
        service, _, operation = state.resource.rpartition(":::")[2].partition(":")
        kind = {"resourceType": service, "resource": operation}
        execution.add_event(
            "TaskScheduled",
            {
                **kind,
                "region": self.region,
                "parameters": json.dumps(parameters),
                **({"timeoutInSeconds": state.timeout_seconds} if state.timeout_seconds else {}),
                **({"heartbeatInSeconds": state.heartbeat_seconds} if state.heartbeat_seconds else {}),
            },
            state=state.name,
        )
        execution.add_event("TaskStarted", kind, state=state.name)
        cancel = threading.Event()
        task_context = TaskContext(
            execution.arn,
            execution.name,
            state.name,
            state.resource,
            attempt,
            cancel,
            state.timeout_seconds,
            callback,
        )
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = handler(copy.deepcopy(parameters), task_context)
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=target, name=f"sfn-{execution.name}-{state.name}", daemon=True)
        started = time.monotonic()
        state_deadline = started + state.timeout_seconds if state.timeout_seconds else None
        thread.start()
        while thread.is_alive():
            thread.join(0.05)
            if not thread.is_alive():
                break
            now = time.monotonic()
            if execution.abort.is_set():
                cancel.set()
                thread.join(_HANDLER_GRACE_SECONDS)
                raise _Aborted
            if (
                deadline is not None
                and now >= deadline
                and (state_deadline is None or deadline <= state_deadline)
            ):
                cancel.set()
                thread.join(_HANDLER_GRACE_SECONDS)
                raise _ExecutionTimedOut
            if state_deadline is not None and now >= state_deadline:
                cancel.set()
                thread.join(_HANDLER_GRACE_SECONDS)
                err = StatesError(
                    TIMEOUT, f"Task timed out after {state.timeout_seconds} seconds (TimeoutSeconds)"
                )
                execution.add_event(
                    "TaskTimedOut", {**kind, "error": err.error, "cause": err.cause}, state=state.name
                )
                raise err
        if "error" in box:
            exc = box["error"]
            err = (
                exc
                if isinstance(exc, StatesError)
                else StatesError(TASK_FAILED, f"{type(exc).__name__}: {exc}")
            )
            event = "TaskTimedOut" if err.error == HEARTBEAT_TIMEOUT else "TaskFailed"
            execution.add_event(event, {**kind, "error": err.error, "cause": err.cause}, state=state.name)
            raise err
        result = box.get("result")
        try:
            output = json.dumps(result)
        except (TypeError, ValueError) as exc:
            err = StatesError(TASK_FAILED, f"the task result is not JSON: {exc}")
            execution.add_event(
                "TaskFailed", {**kind, "error": err.error, "cause": err.cause}, state=state.name
            )
            raise err from None
        execution.add_event("TaskSucceeded", {**kind, "output": output}, state=state.name)
        return result
