"""Loading a state machine definition: substitutions, then a full validation of every state.

The local executor must never run something different from what AWS would run. So instead of
ignoring what it does not know, the loader rejects it up front, listing *all* problems at once:
unknown state types, unknown or unsupported fields, unsupported resources, malformed paths and
intrinsic calls, dangling ``Next`` targets, unreachable states, bad Retry/Catch blocks.

``${Name}`` placeholders are replaced inside JSON strings after parsing (like CloudFormation's
``DefinitionSubstitutions``); any placeholder left without a value is an error, because AWS would
otherwise run with a literal ``${SubnetIds}`` and fail much later.

Kept whole: the loader and the validator of every field of every state type; the validator's
checks are one list a reader compares with the Amazon States Language specification.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecomkpi.sfn_local.choice import Rule, compile_rule
from ecomkpi.sfn_local.errors import ALL, DefinitionError
from ecomkpi.sfn_local.jsonpath import JsonPath, JsonPathSyntaxError, parse_path, parse_reference_path
from ecomkpi.sfn_local.templates import Template, compile_template

ECS_RUN_TASK_SYNC = "arn:aws:states:::ecs:runTask.sync"
SNS_PUBLISH = "arn:aws:states:::sns:publish"
DYNAMODB_UPDATE_ITEM = "arn:aws:states:::dynamodb:updateItem"
S3_GET_OBJECT = "arn:aws:states:::aws-sdk:s3:getObject"
SQS_SEND_MESSAGE_WAIT = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
EMR_SERVERLESS_START_JOB_RUN_SYNC = "arn:aws:states:::emr-serverless:startJobRun.sync"
KNOWN_RESOURCES = frozenset(
    {
        ECS_RUN_TASK_SYNC,
        SNS_PUBLISH,
        DYNAMODB_UPDATE_ITEM,
        S3_GET_OBJECT,
        SQS_SEND_MESSAGE_WAIT,
        EMR_SERVERLESS_START_JOB_RUN_SYNC,
    }
)
WAIT_FOR_TASK_TOKEN = ".waitForTaskToken"

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_ROOT = parse_path("$")

_COMMON = {"Type", "Comment", "QueryLanguage"}
_FIELDS: dict[str, set[str]] = {
    "Task": _COMMON
    | {
        "Resource",
        "Next",
        "End",
        "InputPath",
        "OutputPath",
        "Parameters",
        "ResultSelector",
        "ResultPath",
        "Retry",
        "Catch",
        "TimeoutSeconds",
        "HeartbeatSeconds",
    },
    "Pass": _COMMON | {"Next", "End", "InputPath", "OutputPath", "Parameters", "Result", "ResultPath"},
    "Choice": _COMMON | {"Choices", "Default", "InputPath", "OutputPath"},
    "Succeed": _COMMON | {"InputPath", "OutputPath"},
    "Fail": _COMMON | {"Error", "Cause", "ErrorPath", "CausePath"},
}
_UNSUPPORTED_TYPES = {"Wait", "Parallel", "Map"}
_TOP_LEVEL = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}
_RETRIER_FIELDS = {
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "Comment",
}
_CATCHER_FIELDS = {"ErrorEquals", "Next", "ResultPath", "Comment"}


@dataclass(frozen=True)
class Retrier:
    error_equals: tuple[str, ...]
    interval_seconds: int = 1
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_seconds: int | None = None
    jitter_strategy: str = "NONE"


@dataclass(frozen=True)
class Catcher:
    error_equals: tuple[str, ...]
    next: str
    result_path: JsonPath | None  # None: ResultPath null (discard the error, keep the input)


@dataclass
class State:
    """A validated state; optional paths are ``None`` when the definition sets them to null."""

    name: str
    type: str
    raw: dict[str, Any]
    next: str | None = None
    end: bool = False
    input_path: JsonPath | None = _ROOT
    output_path: JsonPath | None = _ROOT
    result_path: JsonPath | None = _ROOT
    parameters: Template | None = None
    result_selector: Template | None = None
    result: Any = None
    has_result: bool = False
    resource: str | None = None
    timeout_seconds: int | None = None
    heartbeat_seconds: int | None = None
    retriers: list[Retrier] = field(default_factory=list)
    catchers: list[Catcher] = field(default_factory=list)
    choices: list[Rule] = field(default_factory=list)
    default: str | None = None
    error: str | None = None
    cause: str | None = None
    error_path: JsonPath | None = None
    cause_path: JsonPath | None = None

    def transitions(self) -> list[str]:
        """Every state this one can hand over to (used for the reachability check)."""
        targets = [self.next] if self.next else []
        targets += [c.next for c in self.catchers]
        targets += [r.next for r in self.choices if r.next]
        if self.default:
            targets.append(self.default)
        return targets


@dataclass
class Definition:
    start_at: str
    states: dict[str, State]
    raw: dict[str, Any]
    comment: str | None = None
    timeout_seconds: int | None = None

    @property
    def text(self) -> str:
        """The definition after substitution, as DescribeStateMachine returns it."""
        return json.dumps(self.raw, indent=2)

    def resources(self) -> set[str]:
        return {s.resource for s in self.states.values() if s.resource}


def load_definition(
    source: str | Path | Mapping[str, Any],
    substitutions: Mapping[str, str] | None = None,
    resources: Iterable[str] = KNOWN_RESOURCES,
) -> Definition:
    """Parse, substitute and validate; raise ``DefinitionError`` listing every problem.

    ``source`` is a path to a file, a JSON text or an already parsed mapping.
    ``resources`` are the Task resources that may appear (the executor passes the ones it has
    handlers for).
    """
    raw = _read(source)
    raw = substitute(raw, substitutions or {})
    return _Validator(raw, frozenset(resources)).run()


def _read(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        copy: dict[str, Any] = json.loads(json.dumps(source))  # a deep, JSON-only copy
        return copy
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
        text = Path(source).read_text(encoding="utf-8")
    else:
        text = source
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DefinitionError(f"the definition is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise DefinitionError("the definition must be a JSON object")
    return raw


def placeholders(raw: Any) -> set[str]:
    """All ``${Name}`` placeholder names used anywhere in the (parsed) definition."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, str):
            found.update(_PLACEHOLDER.findall(node))
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(key)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(raw)
    return found


def substitute(raw: Any, substitutions: Mapping[str, str]) -> Any:
    """Replace ``${Name}`` in every string (keys included); error if any name has no value."""
    missing = sorted(placeholders(raw) - set(substitutions))
    if missing:
        raise DefinitionError([f"no value for the definition substitution ${{{name}}}" for name in missing])

    def replace(node: Any) -> Any:
        if isinstance(node, str):
            return _PLACEHOLDER.sub(lambda m: str(substitutions[m.group(1)]), node)
        if isinstance(node, dict):
            return {replace(k): replace(v) for k, v in node.items()}
        if isinstance(node, list):
            return [replace(item) for item in node]
        return node

    return replace(raw)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class _Validator:
    def __init__(self, raw: dict[str, Any], resources: frozenset[str]) -> None:
        self.raw = raw
        self.resources = resources
        self.problems: list[str] = []

    def run(self) -> Definition:
        raw, problems = self.raw, self.problems
        for key in raw:
            if key not in _TOP_LEVEL:
                problems.append(f"unknown or unsupported top-level field {key!r}")
        self._query_language(raw, "the definition")
        if raw.get("Version", "1.0") != "1.0":
            problems.append(f"unsupported Version {raw.get('Version')!r}")
        timeout = raw.get("TimeoutSeconds")
        if timeout is not None and not _positive_int(timeout):
            problems.append("TimeoutSeconds must be a positive integer")
        start_at = raw.get("StartAt")
        states_raw = raw.get("States")
        if not isinstance(start_at, str):
            problems.append("StartAt is required and must be a string")
        if not isinstance(states_raw, dict) or not states_raw:
            problems.append("States is required and must be a non-empty object")
            raise DefinitionError(problems)
        states: dict[str, State] = {}
        for name, state_raw in states_raw.items():
            state = self._state(name, state_raw)
            if state is not None:
                states[name] = state
        if isinstance(start_at, str) and start_at not in states_raw:
            problems.append(f"StartAt {start_at!r} is not a state")
        for state in states.values():
            for target in state.transitions():
                if target not in states_raw:
                    problems.append(f"state {state.name!r}: transition to unknown state {target!r}")
        if isinstance(start_at, str) and start_at in states and not problems:
            reachable = self._reachable(start_at, states)
            for name in states_raw:
                if name not in reachable:
                    problems.append(f"state {name!r} is not reachable from StartAt")
        if problems:
            raise DefinitionError(problems)
        return Definition(
            start_at=start_at,  # type: ignore[arg-type]
            states=states,
            raw=raw,
            comment=raw.get("Comment"),
            timeout_seconds=timeout,
        )

    @staticmethod
    def _reachable(start: str, states: dict[str, State]) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            name = todo.pop()
            if name in seen or name not in states:
                continue
            seen.add(name)
            todo.extend(states[name].transitions())
        return seen

    def _query_language(self, raw: dict[str, Any], where: str) -> None:
        if raw.get("QueryLanguage", "JSONPath") != "JSONPath":
            self.problems.append(f"{where}: only QueryLanguage JSONPath is supported")

    # ------------------------------------------------------------------ states

    def _state(self, name: str, raw: Any) -> State | None:
        where = f"state {name!r}"
        if len(name) > 80:
            self.problems.append(f"{where}: state names are limited to 80 characters")
        if not isinstance(raw, dict):
            self.problems.append(f"{where}: must be an object")
            return None
        state_type = raw.get("Type")
        if state_type in _UNSUPPORTED_TYPES:
            self.problems.append(f"{where}: state type {state_type!r} is not supported by the local executor")
            return None
        if state_type not in _FIELDS:
            self.problems.append(f"{where}: unknown state type {state_type!r}")
            return None
        for key in raw:
            if key not in _FIELDS[state_type]:
                self.problems.append(
                    f"{where}: unknown or unsupported field {key!r} for a {state_type} state"
                )
        self._query_language(raw, where)
        if "Comment" in raw and not isinstance(raw["Comment"], str):
            self.problems.append(f"{where}: Comment must be a string")
        state = State(name=name, type=state_type, raw=raw)
        self._transition(state, raw, where)
        if "InputPath" in _FIELDS[state_type]:
            state.input_path = self._path(raw, "InputPath", where)
            state.output_path = self._path(raw, "OutputPath", where)
        if "ResultPath" in _FIELDS[state_type]:
            state.result_path = self._path(raw, "ResultPath", where, reference=True)
        if "Parameters" in raw:
            state.parameters = self._template(raw["Parameters"], f"{where}.Parameters")
        if "ResultSelector" in raw:
            state.result_selector = self._template(raw["ResultSelector"], f"{where}.ResultSelector")
        if "Result" in raw:
            state.result, state.has_result = raw["Result"], True
        if state_type == "Task":
            self._task(state, raw, where)
        elif state_type == "Choice":
            self._choice(state, raw, where)
        elif state_type == "Fail":
            self._fail(state, raw, where)
        return state

    def _transition(self, state: State, raw: dict[str, Any], where: str) -> None:
        has_next, has_end = "Next" in raw, "End" in raw
        if state.type in ("Task", "Pass"):
            if has_next == has_end:
                self.problems.append(f"{where}: exactly one of Next or End is required")
            if has_end and raw["End"] is not True:
                self.problems.append(f"{where}: End must be true")
            if has_next and not isinstance(raw["Next"], str):
                self.problems.append(f"{where}: Next must be a state name")
            state.next = raw.get("Next") if isinstance(raw.get("Next"), str) else None
            state.end = raw.get("End") is True

    def _path(self, raw: dict[str, Any], key: str, where: str, reference: bool = False) -> JsonPath | None:
        if key not in raw:
            return _ROOT
        value = raw[key]
        if value is None:
            return None
        try:
            return parse_reference_path(value) if reference else parse_path(value)
        except JsonPathSyntaxError as exc:
            self.problems.append(f"{where}.{key}: {exc}")
            return _ROOT

    def _template(self, value: Any, where: str) -> Template | None:
        if not isinstance(value, dict):
            self.problems.append(f"{where}: must be a JSON object")
            return None
        return compile_template(value, where, self.problems)

    def _task(self, state: State, raw: dict[str, Any], where: str) -> None:
        resource = raw.get("Resource")
        if not isinstance(resource, str):
            self.problems.append(f"{where}: Resource is required")
        elif resource not in self.resources:
            self.problems.append(
                f"{where}: unsupported resource {resource!r} (supported: {', '.join(sorted(self.resources))})"
            )
        state.resource = resource if isinstance(resource, str) else None
        if "TimeoutSeconds" in raw:
            if not _positive_int(raw["TimeoutSeconds"]):
                self.problems.append(f"{where}: TimeoutSeconds must be a positive integer")
            else:
                state.timeout_seconds = raw["TimeoutSeconds"]
        self._heartbeat(state, raw, where)
        state.retriers = self._retriers(raw.get("Retry", []), where)
        state.catchers = self._catchers(raw.get("Catch", []), where)

    def _heartbeat(self, state: State, raw: dict[str, Any], where: str) -> None:
        """AWS rejects at creation a callback task that never passes its token, and a heartbeat
        that is not shorter than the timeout (it could never fire)."""
        callback = bool(state.resource and state.resource.endswith(WAIT_FOR_TASK_TOKEN))
        if callback and "$$.Task.Token" not in json.dumps(raw.get("Parameters", {})):
            self.problems.append(f"{where}: a .waitForTaskToken task must pass $$.Task.Token in Parameters")
        if "HeartbeatSeconds" not in raw:
            return
        beat = raw["HeartbeatSeconds"]
        if not _positive_int(beat):
            self.problems.append(f"{where}: HeartbeatSeconds must be a positive integer")
        elif state.timeout_seconds is not None and beat >= state.timeout_seconds:
            self.problems.append(f"{where}: HeartbeatSeconds must be smaller than TimeoutSeconds")
        else:
            state.heartbeat_seconds = beat

    def _error_equals(self, value: Any, where: str, last: bool) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or not all(isinstance(e, str) for e in value):
            self.problems.append(f"{where}.ErrorEquals: must be a non-empty array of error names")
            return ()
        if ALL in value and (len(value) != 1 or not last):
            self.problems.append(f"{where}.ErrorEquals: {ALL} must appear alone, in the last entry")
        return tuple(value)

    def _retriers(self, value: Any, where: str) -> list[Retrier]:
        if not isinstance(value, list):
            self.problems.append(f"{where}.Retry: must be an array")
            return []
        retriers = []
        for i, item in enumerate(value):
            at = f"{where}.Retry[{i}]"
            if not isinstance(item, dict):
                self.problems.append(f"{at}: must be an object")
                continue
            for key in item:
                if key not in _RETRIER_FIELDS:
                    self.problems.append(f"{at}: unknown or unsupported field {key!r}")
            errors = self._error_equals(item.get("ErrorEquals"), at, last=i == len(value) - 1)
            interval = item.get("IntervalSeconds", 1)
            attempts = item.get("MaxAttempts", 3)
            backoff = item.get("BackoffRate", 2.0)
            max_delay = item.get("MaxDelaySeconds")
            jitter = item.get("JitterStrategy", "NONE")
            if not _positive_int(interval):
                self.problems.append(f"{at}.IntervalSeconds: must be a positive integer")
            if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
                self.problems.append(f"{at}.MaxAttempts: must be a non-negative integer")
            if not isinstance(backoff, int | float) or isinstance(backoff, bool) or backoff < 1:
                self.problems.append(f"{at}.BackoffRate: must be a number >= 1.0")
            if max_delay is not None and not _positive_int(max_delay):
                self.problems.append(f"{at}.MaxDelaySeconds: must be a positive integer")
            if jitter not in ("NONE", "FULL"):
                self.problems.append(f"{at}.JitterStrategy: must be NONE or FULL")
            retriers.append(Retrier(errors, interval, attempts, float(backoff), max_delay, jitter))
        return retriers

    def _catchers(self, value: Any, where: str) -> list[Catcher]:
        if not isinstance(value, list):
            self.problems.append(f"{where}.Catch: must be an array")
            return []
        catchers = []
        for i, item in enumerate(value):
            at = f"{where}.Catch[{i}]"
            if not isinstance(item, dict):
                self.problems.append(f"{at}: must be an object")
                continue
            for key in item:
                if key not in _CATCHER_FIELDS:
                    self.problems.append(f"{at}: unknown or unsupported field {key!r}")
            errors = self._error_equals(item.get("ErrorEquals"), at, last=i == len(value) - 1)
            target = item.get("Next")
            if not isinstance(target, str):
                self.problems.append(f"{at}.Next: a state name is required")
                continue
            result_path = self._path(item, "ResultPath", at, reference=True)
            catchers.append(Catcher(errors, target, result_path))
        return catchers

    def _choice(self, state: State, raw: dict[str, Any], where: str) -> None:
        choices = raw.get("Choices")
        if not isinstance(choices, list) or not choices:
            self.problems.append(f"{where}: Choices must be a non-empty array")
            return
        for i, item in enumerate(choices):
            rule = compile_rule(item, f"{where}.Choices[{i}]", self.problems, top_level=True)
            if rule is not None:
                state.choices.append(rule)
        default = raw.get("Default")
        if default is not None and not isinstance(default, str):
            self.problems.append(f"{where}: Default must be a state name")
        state.default = default

    def _fail(self, state: State, raw: dict[str, Any], where: str) -> None:
        for literal, path_field in (("Error", "ErrorPath"), ("Cause", "CausePath")):
            if literal in raw and path_field in raw:
                self.problems.append(f"{where}: {literal} and {path_field} are mutually exclusive")
            if literal in raw and not isinstance(raw[literal], str):
                self.problems.append(f"{where}: {literal} must be a string")
        state.error = raw.get("Error")
        state.cause = raw.get("Cause")
        for key in ("ErrorPath", "CausePath"):
            if key not in raw:
                continue
            value = raw[key]
            path: JsonPath | None = None
            if not isinstance(value, str) or value.lstrip().startswith("States."):
                self.problems.append(
                    f"{where}.{key}: must be a reference path (intrinsics are not supported)"
                )
            else:
                try:
                    path = parse_reference_path(value)
                except JsonPathSyntaxError as exc:
                    self.problems.append(f"{where}.{key}: {exc}")
            if key == "ErrorPath":
                state.error_path = path
            else:
                state.cause_path = path
