"""The Step Functions AWS JSON 1.0 API over HTTP, so unmodified boto3 code can use the executor.

boto3 sends ``POST /`` with ``X-Amz-Target: AWSStepFunctions.<Operation>`` and a JSON body; it
parses a JSON response, timestamps as epoch seconds, and maps an HTTP 400 body
``{"__type": "ExecutionAlreadyExists", "message": ...}`` to
``client.exceptions.ExecutionAlreadyExists``. Pointing the Lambda at it needs no code change:
``AWS_ENDPOINT_URL_SFN=http://127.0.0.1:<port>`` (boto3's service-specific endpoint variable).

Served operations: StartExecution, DescribeExecution, StopExecution, ListExecutions,
GetExecutionHistory, ListStateMachines, DescribeStateMachine, and the callback pattern's
SendTaskSuccess, SendTaskFailure, SendTaskHeartbeat. Anything else answers
``UnknownOperationException``. Signatures are not checked (any credentials work).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ecomkpi.sfn_local.callbacks import TaskTokens
from ecomkpi.sfn_local.errors import ApiError, ExecutionDoesNotExist, InvalidArn, StateMachineDoesNotExist
from ecomkpi.sfn_local.executor import Executor

log = logging.getLogger(__name__)

_TARGET_PREFIX = "AWSStepFunctions."


class _UnknownOperation(ApiError):
    code = "UnknownOperationException"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _page(items: list[Any], body: dict[str, Any], key: str) -> dict[str, Any]:
    """Offset-based pagination: ``nextToken`` is the index of the next item."""
    start = int(body.get("nextToken") or 0)
    size = int(body.get("maxResults") or 0) or 1000
    page: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        page["nextToken"] = str(start + size)
    return page


class StepFunctionsApi:
    """Dispatches API operations to the registered executors (one per state machine ARN)."""

    def __init__(self, executors: Executor | Sequence[Executor]) -> None:
        executors = [executors] if isinstance(executors, Executor) else list(executors)
        self.executors = {e.state_machine_arn: e for e in executors}
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "StartExecution": self.start_execution,
            "DescribeExecution": self.describe_execution,
            "StopExecution": self.stop_execution,
            "ListExecutions": self.list_executions,
            "GetExecutionHistory": self.get_execution_history,
            "ListStateMachines": self.list_state_machines,
            "DescribeStateMachine": self.describe_state_machine,
            "SendTaskSuccess": self.send_task_success,
            "SendTaskFailure": self.send_task_failure,
            "SendTaskHeartbeat": self.send_task_heartbeat,
        }

    def handle(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        function = self._operations.get(operation)
        if function is None:
            raise _UnknownOperation(f"operation {operation!r} is not served by the local executor")
        answer: dict[str, Any] = _jsonable(function(body))
        return answer

    def _machine(self, arn: Any) -> Executor:
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            raise InvalidArn(f"Invalid Arn: '{arn}'")
        executor = self.executors.get(arn)
        if executor is None:
            raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{arn}'")
        return executor

    def _machine_of_execution(self, arn: object) -> tuple[Executor, str]:
        """The executor of the execution ``arn`` and the ARN, checked to be one."""
        if not isinstance(arn, str) or ":execution:" not in arn:
            raise InvalidArn(f"Invalid Arn: '{arn}'")
        machine_arn = arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
        executor = self.executors.get(machine_arn)
        if executor is None:
            raise ExecutionDoesNotExist(f"Execution Does Not Exist: '{arn}'")
        return executor, arn

    def start_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        executor = self._machine(body.get("stateMachineArn"))
        arn = executor.start_execution(body.get("name"), body.get("input", "{}"))
        return {"executionArn": arn, "startDate": executor.describe_execution(arn)["startDate"]}

    def describe_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        executor, arn = self._machine_of_execution(body.get("executionArn"))
        return executor.describe_execution(arn)

    def stop_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        executor, arn = self._machine_of_execution(body.get("executionArn"))
        return executor.stop_execution(arn, body.get("error"), body.get("cause"))

    def list_executions(self, body: dict[str, Any]) -> dict[str, Any]:
        executor = self._machine(body.get("stateMachineArn"))
        return _page(executor.list_executions(body.get("statusFilter")), body, "executions")

    def get_execution_history(self, body: dict[str, Any]) -> dict[str, Any]:
        executor, arn = self._machine_of_execution(body.get("executionArn"))
        events = executor.get_execution_history(arn, bool(body.get("reverseOrder")))
        return _page([e.to_api() for e in events], body, "events")

    def list_state_machines(self, body: dict[str, Any]) -> dict[str, Any]:
        machines = [
            {
                "stateMachineArn": e.state_machine_arn,
                "name": e.name,
                "type": "STANDARD",
                "creationDate": e.creation_date,
            }
            for e in self.executors.values()
        ]
        return _page(machines, body, "stateMachines")

    def describe_state_machine(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._machine(body.get("stateMachineArn")).describe_state_machine()

    def _tokens(self, token: Any) -> TaskTokens:
        """The registry that issued ``token`` (or the first, which then names the error)."""
        registries = [e.tokens for e in self.executors.values()]
        return next((r for r in registries if isinstance(token, str) and r.knows(token)), registries[0])

    def send_task_success(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body.get("taskToken")
        self._tokens(token).succeed(token, body.get("output"))
        return {}

    def send_task_failure(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body.get("taskToken")
        self._tokens(token).fail(token, body.get("error"), body.get("cause"))
        return {}

    def send_task_heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body.get("taskToken")
        self._tokens(token).heartbeat(token)
        return {}


class _Handler(BaseHTTPRequestHandler):
    api: StepFunctionsApi  # set on the per-server subclass
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target", "")
        try:
            if not target.startswith(_TARGET_PREFIX):
                raise _UnknownOperation(f"missing or foreign X-Amz-Target header {target!r}")
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError as exc:
                raise ApiError(f"the request body is not JSON: {exc}") from exc
            self._reply(200, self.api.handle(target[len(_TARGET_PREFIX) :], body))
        except ApiError as exc:
            self._reply(400, {"__type": exc.code, "message": exc.message})
        except Exception as exc:
            log.exception("local Step Functions API failure")
            self._reply(500, {"__type": "InternalFailure", "message": f"{type(exc).__name__}: {exc}"})

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sfn api: " + format, *args)


class StepFunctionsServer:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port by default) serving ``StepFunctionsApi``."""

    def __init__(
        self, executors: Executor | Sequence[Executor], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        handler = type("BoundHandler", (_Handler,), {"api": StepFunctionsApi(executors)})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> StepFunctionsServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="sfn-local-http", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> StepFunctionsServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    executors: Executor | Sequence[Executor], host: str = "127.0.0.1", port: int = 0
) -> StepFunctionsServer:
    """Start serving in a background thread; call ``close()`` (or use ``with``) to stop."""
    return StepFunctionsServer(executors, host, port).start()
