"""The work queue's messages, read once at the boundary into typed values.

Three kinds arrive: a task of the worker-mode state machine (``sqs:sendMessage.waitForTaskToken``:
a token, a command and the container overrides' ``Environment``), a precheck of the trigger (no token,
``Command: ["precheck"]``: a part to validate before its day is complete), and anything else, which
is unreadable and answered, when it carries a token, with ``Worker.BadMessage``. ``parse`` decodes a
body once; the loop, the keeper and the precheck gathering match on what it returns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

COMMANDS = ("validate", "transform")
PRECHECK = "precheck"
PRECHECK_LISTS = ("ORDERS_KEYS", "ORDER_ITEMS_KEYS")  # the key lists prechecks of one day merge
# What differs between two transformation tasks that may share a run: the batch and its inputs.
PER_BATCH_VARIABLES = frozenset(
    {
        "BATCH_ID",
        "BATCH_GENERATION",
        "RUN_ID",
        "INPUTS_KEY",
        "PRODUCTS_KEY",
        "ORDERS_KEYS",
        "ORDER_ITEMS_KEYS",
        "RECOMPUTE_DATES",
    }
)
# The variables a work message may set: those the workflow's Task states send (stepfunctions/*.asl.json;
# a test derives them from both definitions) and the key lists of the trigger's prechecks
# (lambda_trigger/prechecks.py). The endpoint, the lake, credentials and Spark's settings come from
# the worker's own task definition only: a message that sets anything else is refused, not run.
TASK_VARIABLES = frozenset(
    {
        "S3_BUCKET",
        "PRODUCTS_KEY",
        "INPUTS_KEY",
        "BATCH_ID",
        "BATCH_GENERATION",
        "RUN_ID",
        "PIPELINE_BATCH_TRACKER_TABLE",
        "DAILY_KPIS_TABLE",
        "CATEGORY_KPIS_TABLE",
        *PRECHECK_LISTS,
    }
)


@dataclass(frozen=True)
class TaskMessage:
    """A work queue message, as the worker-mode Task states build it."""

    token: str
    command: str
    container: str
    execution: str
    state: str
    environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: str) -> TaskMessage:
        """Raise ``ValueError`` naming what is wrong."""
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("the message body is not a JSON object")
        return cls.of(data)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> TaskMessage:
        environment = environment_of(data)  # first: a refused precheck says why, not "no TaskToken"
        token = data.get("TaskToken")
        if not isinstance(token, str) or not token:
            raise ValueError("the message has no TaskToken")
        command = data.get("Command")
        if not (isinstance(command, list) and len(command) == 1 and command[0] in COMMANDS):
            raise ValueError(f"Command must be one of {[[c] for c in COMMANDS]}, got {command!r}")
        return cls(
            token=token,
            command=command[0],
            container=str(data.get("Container") or command[0]),
            execution=str(data.get("Execution") or ""),
            state=str(data.get("State") or ""),
            environment=environment,
        )

    def shares_run_with(self, other: TaskMessage) -> bool:
        """Both are transformations of the same stack (bucket, lake, tables): one run can serve both."""

        def shared(env: Mapping[str, str]) -> dict[str, str]:
            return {k: v for k, v in env.items() if k not in PER_BATCH_VARIABLES}

        return (
            self.command == other.command == "transform"
            and self.container == other.container
            and shared(self.environment) == shared(other.environment)
        )


@dataclass(frozen=True)
class Precheck:
    """A part of a day still being uploaded, to validate now; nobody waits for an answer."""

    environment: dict[str, str]

    @property
    def day(self) -> tuple[str | None, str | None]:
        """(bucket, day): the prechecks of one day are one run."""
        return self.environment.get("S3_BUCKET"), self.environment.get("BATCH_ID")

    def key_list(self, name: str) -> list[str]:
        """Its ``ORDERS_KEYS`` / ``ORDER_ITEMS_KEYS``; [] when unreadable (the run's config, built
        from the lead message, names the problem; a gathered message's keys are then dropped)."""
        try:
            keys = json.loads(self.environment.get(name) or "[]")
        except json.JSONDecodeError:
            return []
        return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


@dataclass(frozen=True)
class Unreadable:
    """A message the worker cannot serve: why, and its token if it has one (to answer the state)."""

    problem: str
    token: str | None = None


Message = TaskMessage | Precheck | Unreadable


def environment_of(data: Mapping[str, Any]) -> dict[str, str]:
    """A message's ``Environment`` ([{Name, Value}], as in ECS container overrides) as a dict."""
    env_list = data.get("Environment", [])
    if not isinstance(env_list, list) or not all(
        isinstance(e, dict) and isinstance(e.get("Name"), str) and isinstance(e.get("Value"), str)
        for e in env_list
    ):
        raise ValueError("Environment must be a list of {Name, Value} strings")
    environment = {e["Name"]: e["Value"] for e in env_list}
    refused = sorted(set(environment) - TASK_VARIABLES)
    if refused:  # repr: a name is the sender's text, shown escaped
        raise ValueError(
            f"Environment sets {', '.join(map(repr, refused))}, which a work message may not set "
            f"(it may set {', '.join(sorted(TASK_VARIABLES))})"
        )
    return environment


def parse(body: str) -> Message:
    """What a message body is: a task, a precheck, or unreadable (with the reason)."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError) as exc:
        return Unreadable(f"{type(exc).__name__}: {exc}")
    if not isinstance(data, dict):
        return Unreadable("ValueError: the message body is not a JSON object")
    raw_token = data.get("TaskToken")
    token = raw_token if isinstance(raw_token, str) and raw_token else None
    try:
        if not raw_token and data.get("Command") == [PRECHECK]:
            return Precheck(environment_of(data))
        return TaskMessage.of(data)
    except ValueError as exc:
        return Unreadable(f"ValueError: {exc}", token)
