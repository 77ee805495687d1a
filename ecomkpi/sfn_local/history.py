"""Execution history events, shaped like ``GetExecutionHistory`` returns them.

Event types and detail keys follow AWS (``TaskStateEntered`` + ``stateEnteredEventDetails``,
``TaskFailed`` + ``taskFailedEventDetails``...) so a run report or a test written against this
history reads the same as one written against the console. One addition: ``RetryScheduled``
(``retryScheduledEventDetails``: error, attempt, delaySeconds) records each retry and the delay
used, which AWS only shows implicitly as a gap between two ``TaskScheduled`` events.
``state`` is a convenience for Python callers (the state an event belongs to); it is not sent
over the HTTP API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_DETAIL_KEYS = {
    "ExecutionStarted": "executionStartedEventDetails",
    "ExecutionSucceeded": "executionSucceededEventDetails",
    "ExecutionFailed": "executionFailedEventDetails",
    "ExecutionTimedOut": "executionTimedOutEventDetails",
    "ExecutionAborted": "executionAbortedEventDetails",
    "TaskScheduled": "taskScheduledEventDetails",
    "TaskStarted": "taskStartedEventDetails",
    "TaskSucceeded": "taskSucceededEventDetails",
    "TaskFailed": "taskFailedEventDetails",
    "TaskTimedOut": "taskTimedOutEventDetails",
    "RetryScheduled": "retryScheduledEventDetails",
}


def detail_key(event_type: str) -> str:
    """The AWS key holding an event's details (``stateEnteredEventDetails`` for ``*StateEntered``)."""
    if event_type.endswith("StateEntered"):
        return "stateEnteredEventDetails"
    if event_type.endswith("StateExited"):
        return "stateExitedEventDetails"
    return _DETAIL_KEYS[event_type]


@dataclass(frozen=True)
class HistoryEvent:
    id: int
    type: str
    timestamp: datetime
    details: dict[str, Any] = field(default_factory=dict)
    state: str | None = None
    previous_event_id: int = 0

    def to_api(self) -> dict[str, Any]:
        """The event as the AWS JSON API returns it (timestamp as epoch seconds)."""
        event: dict[str, Any] = {
            "timestamp": self.timestamp.timestamp(),
            "type": self.type,
            "id": self.id,
            "previousEventId": self.previous_event_id,
        }
        event[detail_key(self.type)] = self.details
        return event
