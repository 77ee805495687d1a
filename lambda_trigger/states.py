"""The closed sets of strings the trigger writes and compares, as ``StrEnum``s.

Each member is the exact string stored in DynamoDB, written to a report or read from AWS, so a
member compares equal to (and hashes like) its string: items written before these types existed,
and the workflow's own writes, read back the same.
"""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    """A Step Functions execution's status (DescribeExecution, the status-change event)."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"
    PENDING_REDRIVE = "PENDING_REDRIVE"


TERMINAL_STATUSES = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.ABORTED}
)
# ``last_execution_status`` of a generation whose confirmed execution does not exist (the sweep).
LOST = "LOST"


class BatchStatus(StrEnum):
    """A tracker item's ``status``: informational (the page shows it), no decision to run reads it
    (the sweep's stuck-day alert does: a PENDING or WAITING_FOR_PRODUCTS day that stalls).

    The trigger writes PENDING, WAITING_FOR_PRODUCTS, TRIGGERED, FAILED (an execution that ended
    or was lost) and SUCCEEDED; the workflow writes SUCCEEDED / FAILED itself; the products item is
    UPDATED.
    """

    PENDING = "PENDING"
    WAITING_FOR_PRODUCTS = "WAITING_FOR_PRODUCTS"
    TRIGGERED = "TRIGGERED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    UPDATED = "UPDATED"


class SweepOutcome(StrEnum):
    """What the reconcile sweep did with one batch (the counts it logs and returns)."""

    IDLE = "idle"
    RUNNING = "running"
    FINISHED = "finished"
    LOST = "lost"
    RECONCILED = "reconciled"
    FAILED = "failed"
    UNANNOUNCED = "unannounced"  # files in raw/ no event told about, fed in as arrivals
    STUCK = "stuck"  # days alerted as waiting too long for their files (lambda_trigger/stuck_days.py)


class Verdict(StrEnum):
    """The ``verdict`` of the reports the trigger writes beside a file it sets aside (validation's
    own verdicts, passed and rejected, are jobs/validation/verdicts.py's)."""

    UNRECOGNISED = "unrecognised"
    WITHDRAWN = "withdrawn"
