"""The exceptions of the local Step Functions executor.

Three families, kept apart because they end up in different places:

* ``DefinitionError``: the definition cannot be run as written (raised at load time, listing every
  problem found, so a typo never surfaces half way through a run);
* ``StatesError``: a runtime error *inside* an execution, named like AWS names them
  (``States.TaskFailed``, ``States.Timeout``, ``DynamoDB.ConditionalCheckFailedException``...) so
  Retry/Catch match on them exactly as in AWS;
* ``ApiError``: an API call was refused (``ExecutionAlreadyExists``...), mapped 1:1 to the AWS error
  codes the HTTP facade returns, so boto3 raises ``client.exceptions.<Code>``.
"""

from __future__ import annotations

# Error names defined by the States language that the executor raises itself.
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
RUNTIME = "States.Runtime"
ALL = "States.ALL"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"


class SfnLocalError(Exception):
    """Base class of everything this package raises on purpose."""


class DefinitionError(SfnLocalError):
    """The definition is invalid or uses something the local executor does not implement."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid state machine definition ({len(self.problems)} problem(s)):\n{lines}")


class StatesError(SfnLocalError):
    """A named error raised while running a state; ``error``/``cause`` become the error output."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause

    def output(self) -> dict[str, str]:
        """The error output a Catch places at its ResultPath."""
        return {"Error": self.error, "Cause": self.cause}


class ApiError(SfnLocalError):
    """An API request refused with an AWS error code (HTTP 400 on the facade)."""

    code = "ValidationException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ExecutionAlreadyExists(ApiError):
    code = "ExecutionAlreadyExists"


class ExecutionDoesNotExist(ApiError):
    code = "ExecutionDoesNotExist"


class StateMachineDoesNotExist(ApiError):
    code = "StateMachineDoesNotExist"


class InvalidName(ApiError):
    code = "InvalidName"


class InvalidArn(ApiError):
    code = "InvalidArn"


class InvalidExecutionInput(ApiError):
    code = "InvalidExecutionInput"


class ValidationException(ApiError):
    code = "ValidationException"


class TaskDoesNotExist(ApiError):
    code = "TaskDoesNotExist"


class InvalidToken(ApiError):
    code = "InvalidToken"


class TaskTimedOut(ApiError):
    code = "TaskTimedOut"


class InvalidOutput(ApiError):
    code = "InvalidOutput"
