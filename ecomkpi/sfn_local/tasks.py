"""Task resource handlers: what a ``Resource`` ARN does when the local executor runs a Task state.

A handler is any callable ``handler(parameters, context) -> result`` (see ``TaskHandler``). It
raises ``StatesError`` with the AWS error name on failure, so Retry/Catch see what they would see
in AWS. A handler may declare ``parameter_names``: the executor then rejects, at load time, a
definition passing a parameter the service does not know (AWS does the same when the state
machine is created).

* ``RunTaskHandler`` (``ecs:runTask.sync``) runs the container's command as a local process with
  the task definition's environment plus the container overrides (or, with a ``ContainerLauncher``,
  as a container of the pipeline image), and returns the ECS task description as the ``.sync``
  integration does. A non-zero exit of any container fails the
  state with ``States.TaskFailed`` whose Cause is that task JSON, as AWS does.
* ``WaitForTaskTokenHandler`` (``sqs:sendMessage.waitForTaskToken``) sends the message, then waits
  for ``SendTaskSuccess`` / ``SendTaskFailure`` on the attempt's token (``callbacks.py``).
* ``AwsApiHandler`` (``sns:publish``, ``dynamodb:updateItem``) passes the parameters to boto3
  against the configured endpoint and names service errors like AWS
  (``DynamoDB.ConditionalCheckFailedException``).

Kept whole: the handlers share the task context, parameter checks and AWS's error names; each is
one class, and ``default_handlers`` is the table a definition's resources resolve through.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ecomkpi.process_lines import read_lines, start_process, stop_group
from ecomkpi.sfn_local.callbacks import PendingTask, TaskCancelled
from ecomkpi.sfn_local.definition import (
    DYNAMODB_UPDATE_ITEM,
    ECS_RUN_TASK_SYNC,
    S3_GET_OBJECT,
    SNS_PUBLISH,
    SQS_SEND_MESSAGE_WAIT,
)
from ecomkpi.sfn_local.errors import TASK_FAILED, StatesError

if TYPE_CHECKING:
    from jobs.aws import ServiceName


@dataclass(frozen=True)
class TaskContext:
    """What a handler knows about the invocation; ``cancel`` is set on timeout or abort."""

    execution_arn: str
    execution_name: str
    state_name: str
    resource: str
    attempt: int
    cancel: threading.Event
    timeout_seconds: int | None = None
    # Set for ``.waitForTaskToken`` resources: the attempt's token and the answer to wait for.
    callback: PendingTask | None = None


class TaskHandler(Protocol):
    def __call__(self, parameters: Any, context: TaskContext) -> Any: ...


def parameter_names(handler: TaskHandler) -> frozenset[str] | None:
    """The parameters a handler accepts, or None when it does not say."""
    return getattr(handler, "parameter_names", None)


# --------------------------------------------------------------------------- ECS runTask.sync


class ContainerLauncher(Protocol):
    """Runs a task's container elsewhere than in a local process (``ecomkpi.container_runtime``):
    the process started is the launcher's (``podman run``), the environment the container's."""

    def launch(self, name: str, command: Sequence[str], overrides: Mapping[str, str]) -> list[str]: ...

    def process_environment(self) -> dict[str, str]: ...

    def environment(self) -> dict[str, str]:
        """The container's environment (without a run's overrides)."""
        ...

    def stop(self, name: str) -> None: ...


@dataclass(frozen=True)
class ContainerCommand:
    """How to run one task definition locally.

    ``name`` is the container name the definition overrides; ``sidecars`` are extra containers
    reported *before* it in ``Containers`` with ``sidecar_exit_code``, like a log router in a real
    task (which exits 137 when ECS kills it at shutdown). They exist so tests can prove the
    workflow reads the named container, not ``Containers[0]``.
    """

    name: str
    argv: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    sidecars: tuple[str, ...] = ()
    sidecar_exit_code: int = 0
    # Set: ``argv`` is the container's command, run by the launcher with only the container's
    # environment (the task definition's + the overrides), not this process's.
    launcher: ContainerLauncher | None = None


@dataclass(frozen=True)
class ContainerOutput:
    """One line written by a local container process."""

    execution_name: str
    state_name: str
    container_name: str
    stream: str  # "stdout" | "stderr"
    line: str
    task_arn: str


@dataclass(frozen=True)
class LocalTaskRun:
    """A finished local task, kept for tests and run reports."""

    task_arn: str
    execution_name: str
    state_name: str
    attempt: int
    container_name: str
    argv: tuple[str, ...]
    overrides: dict[str, str]
    exit_code: int | None
    log_path: Path | None


_ECS_PARAMETERS = frozenset(
    {
        "Cluster",
        "TaskDefinition",
        "LaunchType",
        "NetworkConfiguration",
        "Overrides",
        "PlatformVersion",
        "PropagateTags",
        "Tags",
        "Group",
        "Count",
        "StartedBy",
        "EnableExecuteCommand",
        "EnableECSManagedTags",
        "CapacityProviderStrategy",
        "ReferenceId",
        "PlacementConstraints",
        "PlacementStrategy",
    }
)
MAX_CONTAINER_OVERRIDES_BYTES = 8192
_CONTAINER_OVERRIDE_FIELDS = {"Name", "Environment", "Command", "Cpu", "Memory", "MemoryReservation"}


def _invalid(message: str) -> StatesError:
    return StatesError("ECS.InvalidParameterException", message)


class RunTaskHandler:
    """``arn:aws:states:::ecs:runTask.sync`` backed by local processes.

    ``task_definitions`` maps a task definition ARN to a ``ContainerCommand`` or a
    ``(container name, argv)`` pair. The process environment is ``os.environ`` (unless
    ``inherit_env`` is False) + ``base_env`` + the command's own environment + the container
    overrides of the state. Every output line goes to ``on_output`` and, with ``log_dir``, to
    ``<log_dir>/<execution>/<state>-<attempt>.log``.
    """

    parameter_names = _ECS_PARAMETERS

    def __init__(
        self,
        task_definitions: Mapping[str, ContainerCommand | tuple[str, Sequence[str]]],
        *,
        base_env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        on_output: Callable[[ContainerOutput], None] | None = None,
        log_dir: str | Path | None = None,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        kill_grace_seconds: float = 5.0,
    ) -> None:
        self.task_definitions: dict[str, ContainerCommand] = {
            arn: spec if isinstance(spec, ContainerCommand) else ContainerCommand(spec[0], tuple(spec[1]))
            for arn, spec in task_definitions.items()
        }
        self.base_env = dict(base_env or {})
        self.inherit_env = inherit_env
        self.on_output = on_output
        self.log_dir = Path(log_dir) if log_dir else None
        self.region = region
        self.account_id = account_id
        self.kill_grace_seconds = kill_grace_seconds
        self.runs: list[LocalTaskRun] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ request checks

    def _command(self, parameters: Any) -> ContainerCommand:
        if not isinstance(parameters, dict):
            raise _invalid("the parameters of ecs:runTask must be an object")
        task_definition = parameters.get("TaskDefinition")
        if not isinstance(task_definition, str):
            raise _invalid("TaskDefinition is required")
        command = self.task_definitions.get(task_definition)
        if command is None:
            raise StatesError(
                "ECS.ClientException",
                f"Unable to find task definition {task_definition!r} "
                f"(local task definitions: {sorted(self.task_definitions)})",
            )
        if parameters.get("LaunchType", "FARGATE") == "FARGATE":
            network = parameters.get("NetworkConfiguration", {}).get("AwsvpcConfiguration", {})
            subnets = network.get("Subnets")
            if not isinstance(subnets, list) or not subnets or not all(isinstance(s, str) for s in subnets):
                raise _invalid(
                    "Network Configuration must be provided when networkMode 'awsvpc' is specified."
                )
            groups = network.get("SecurityGroups", [])
            if not isinstance(groups, list) or not all(isinstance(s, str) for s in groups):
                raise _invalid("SecurityGroups must be an array of strings")
            if network.get("AssignPublicIp", "DISABLED") not in ("ENABLED", "DISABLED"):
                raise _invalid("AssignPublicIp must be ENABLED or DISABLED")
        return command

    def _overrides(
        self, parameters: dict[str, Any], command: ContainerCommand
    ) -> tuple[dict[str, str], tuple[str, ...]]:
        env: dict[str, str] = {}
        argv = command.argv
        overrides = parameters.get("Overrides", {}).get("ContainerOverrides", [])
        if not isinstance(overrides, list):
            raise _invalid("Overrides.ContainerOverrides must be an array")
        size = len(json.dumps(overrides, separators=(",", ":")).encode("utf-8"))
        if size > MAX_CONTAINER_OVERRIDES_BYTES:
            # ECS refuses RunTask when the container overrides' JSON exceeds 8 KiB in all.
            raise _invalid(
                f"Container Overrides length must be at most {MAX_CONTAINER_OVERRIDES_BYTES} "
                f"(these are {size} bytes)"
            )
        for override in overrides:
            name = override.get("Name") if isinstance(override, dict) else None
            if name != command.name and name not in command.sidecars:
                raise _invalid(f"Override for container named {name} is not valid. ")
            unknown = set(override) - _CONTAINER_OVERRIDE_FIELDS
            if unknown:
                raise _invalid(f"container override fields not supported locally: {sorted(unknown)}")
            if name != command.name:
                continue
            for item in override.get("Environment", []):
                if (
                    not isinstance(item, dict)
                    or not isinstance(item.get("Name"), str)
                    or not isinstance(item.get("Value"), str)
                ):
                    raise _invalid(f"Environment entries need string Name and Value, got {item!r}")
                env[item["Name"]] = item["Value"]
            if "Command" in override:
                argv = tuple(override["Command"])
        return env, argv

    # ------------------------------------------------------------------ running

    def __call__(self, parameters: Any, context: TaskContext) -> dict[str, Any]:
        command = self._command(parameters)
        overrides, argv = self._overrides(parameters, command)
        cluster = parameters.get("Cluster", "default")
        cluster_name = cluster.rsplit("/", 1)[-1]
        cluster_arn = (
            cluster
            if cluster.startswith("arn:")
            else f"arn:aws:ecs:{self.region}:{self.account_id}:cluster/{cluster_name}"
        )
        task_id = uuid.uuid4().hex
        task_arn = f"arn:aws:ecs:{self.region}:{self.account_id}:task/{cluster_name}/{task_id}"
        container_name = ""
        if command.launcher is not None:
            container_name = f"ecomkpi-{command.name}-{task_id[:12]}"
            launched = tuple(command.launcher.launch(container_name, argv, overrides))
            env = command.launcher.process_environment()
        else:
            launched = argv
            env = dict(os.environ) if self.inherit_env else {}
            env.update(self.base_env)
            env.update(command.environment)
            env.update(overrides)
        log_path = None
        if self.log_dir:
            log_path = (
                self.log_dir / context.execution_name / f"{context.state_name}-{context.attempt + 1}.log"
            )
            log_path.parent.mkdir(parents=True, exist_ok=True)
        created = _epoch_ms()
        exit_code = self._run(launched, env, command, context, task_arn, log_path, container_name)
        stopped = _epoch_ms()
        with self._lock:
            self.runs.append(
                LocalTaskRun(
                    task_arn,
                    context.execution_name,
                    context.state_name,
                    context.attempt,
                    command.name,
                    argv,
                    overrides,
                    exit_code,
                    log_path,
                )
            )
        task_definition = parameters["TaskDefinition"]
        family = task_definition.rsplit("/", 1)[-1].split(":")[0]

        def container(name: str, code: int) -> dict[str, Any]:
            return {
                "ContainerArn": f"arn:aws:ecs:{self.region}:{self.account_id}:container/"
                f"{cluster_name}/{task_id}/{uuid.uuid4()}",
                "ExitCode": code,
                "LastStatus": "STOPPED",
                "Name": name,
                "TaskArn": task_arn,
            }

        task = {
            "Attachments": [],
            "ClusterArn": cluster_arn,
            "Containers": [container(name, command.sidecar_exit_code) for name in command.sidecars]
            + [container(command.name, exit_code)],
            "CreatedAt": created,
            "StartedAt": created,
            "StoppedAt": stopped,
            "DesiredStatus": "STOPPED",
            "Group": f"family:{family}",
            "LastStatus": "STOPPED",
            "LaunchType": parameters.get("LaunchType", "FARGATE"),
            "Overrides": parameters.get("Overrides", {}),
            "StopCode": "EssentialContainerExited",
            "StoppedReason": "Essential container in task exited",
            "TaskArn": task_arn,
            "TaskDefinitionArn": task_definition,
        }
        # Like AWS: ANY container with a non-zero exit fails a .sync task, essential or not.
        if any(c["ExitCode"] != 0 for c in task["Containers"]):
            raise StatesError(TASK_FAILED, json.dumps(task))
        return task

    def _run(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        command: ContainerCommand,
        context: TaskContext,
        task_arn: str,
        log_path: Path | None,
        container_name: str = "",
    ) -> int:
        log = log_path.open("a", encoding="utf-8") if log_path else None
        lock = threading.Lock()

        def on_line(name: str, line: str) -> None:
            with lock:
                if log:
                    log.write(f"[{name}] {line}\n")
                    log.flush()
            if self.on_output:
                self.on_output(
                    ContainerOutput(
                        context.execution_name, context.state_name, command.name, name, line, task_arn
                    )
                )

        try:
            # Its own process group: a timeout kills the whole tree.
            proc = start_process(argv, env, command.cwd)
        except OSError as exc:
            if log:
                log.close()
            raise StatesError(TASK_FAILED, f"CannotStartContainerError: {exc}") from exc
        readers = read_lines(proc, on_line)
        try:
            while True:
                try:
                    code = proc.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    if context.cancel.is_set():
                        if command.launcher is not None:  # ECS's StopTask: SIGTERM, then SIGKILL
                            command.launcher.stop(container_name)
                        self._kill(proc)
                        raise TaskCancelled(task_arn) from None
        finally:
            for reader in readers:
                reader.join(timeout=5)
            if log:
                log.close()
        # ECS reports a signal death as 128 + signal number (137 for SIGKILL).
        return code if code >= 0 else 128 - code

    def _kill(self, proc: subprocess.Popen[str]) -> None:
        stop_group(proc, self.kill_grace_seconds)


def _epoch_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- AWS SDK integrations

_SNS_PUBLISH_PARAMETERS = frozenset(
    {
        "TopicArn",
        "TargetArn",
        "PhoneNumber",
        "Message",
        "Subject",
        "MessageStructure",
        "MessageAttributes",
        "MessageDeduplicationId",
        "MessageGroupId",
    }
)
_DYNAMODB_UPDATE_ITEM_PARAMETERS = frozenset(
    {
        "TableName",
        "Key",
        "UpdateExpression",
        "ConditionExpression",
        "ExpressionAttributeNames",
        "ExpressionAttributeValues",
        "ReturnValues",
        "ReturnConsumedCapacity",
        "ReturnItemCollectionMetrics",
        "ReturnValuesOnConditionCheckFailure",
        "AttributeUpdates",
        "Expected",
        "ConditionalOperator",
    }
)


def _jsonable(value: Any) -> Any:
    """boto3 responses may hold datetimes, bytes and Decimals; state data must be plain JSON."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class AwsApiHandler:
    """An optimized service integration that is one boto3 call (request/response pattern)."""

    def __init__(
        self,
        service: ServiceName,
        operation: str,
        error_prefix: str,
        parameter_names: frozenset[str] | None = None,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        client_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self.service = service
        self.operation = operation
        self.error_prefix = error_prefix
        self.parameter_names = parameter_names
        self.endpoint_url = endpoint_url
        self.region = region
        self._client_factory = client_factory
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                if self._client_factory is not None:
                    self._client = self._client_factory(self.service)
                else:
                    import boto3

                    self._client = boto3.session.Session().client(
                        self.service, region_name=self.region, endpoint_url=self.endpoint_url
                    )
            return self._client

    def __call__(self, parameters: Any, context: TaskContext) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        if not isinstance(parameters, dict):
            raise StatesError(TASK_FAILED, f"{self.service}:{self.operation} needs an object of parameters")
        try:
            response = getattr(self.client(), self.operation)(**parameters)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "UnknownError")
            name = code if code.endswith("Exception") else f"{code}Exception"
            meta = exc.response.get("ResponseMetadata", {})
            raise StatesError(
                f"{self.error_prefix}.{name}",
                f"{error.get('Message', '')} (Service: {self.error_prefix}; "
                f"Status Code: {meta.get('HTTPStatusCode')}; Error Code: {code}; "
                f"Request ID: {meta.get('RequestId')})",
            ) from exc
        except BotoCoreError as exc:
            raise StatesError(TASK_FAILED, f"{type(exc).__name__}: {exc}") from exc
        response.pop("ResponseMetadata", None)
        return _jsonable(self.shape(response))

    def shape(self, response: dict[str, Any]) -> dict[str, Any]:
        """The response as the integration returns it (boto3's and Step Functions' shapes differ)."""
        return response


_S3_GET_OBJECT_PARAMETERS = frozenset(
    {"Bucket", "Key", "VersionId", "IfMatch", "IfNoneMatch", "Range", "ExpectedBucketOwner"}
)


class S3GetObjectHandler(AwsApiHandler):
    """``aws-sdk:s3:getObject``: the Body comes back as text, as the AWS SDK integration returns it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("s3", "get_object", "S3", _S3_GET_OBJECT_PARAMETERS, **kwargs)

    def shape(self, response: dict[str, Any]) -> dict[str, Any]:
        body = response.get("Body")
        if body is not None and hasattr(body, "read"):
            response["Body"] = body.read().decode("utf-8", errors="replace")
        return response


_SQS_SEND_MESSAGE_PARAMETERS = frozenset(
    {
        "QueueUrl",
        "MessageBody",
        "DelaySeconds",
        "MessageAttributes",
        "MessageDeduplicationId",
        "MessageGroupId",
        "MessageSystemAttributes",
    }
)


class SqsSendMessageHandler(AwsApiHandler):
    """``sqs:sendMessage``: a JSON MessageBody is sent as its text, as the integration does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sqs", "send_message", "SQS", _SQS_SEND_MESSAGE_PARAMETERS, **kwargs)

    def __call__(self, parameters: Any, context: TaskContext) -> Any:
        if isinstance(parameters, dict) and not isinstance(parameters.get("MessageBody"), str):
            parameters = {**parameters, "MessageBody": json.dumps(parameters.get("MessageBody"))}
        return super().__call__(parameters, context)


class WaitForTaskTokenHandler:
    """``<integration>.waitForTaskToken``: run the request, then wait for the token's answer.

    The request's own response is discarded: the state's result is the output sent with
    ``SendTaskSuccess``; ``SendTaskFailure`` fails the state with the sent error and cause.
    """

    def __init__(self, send: TaskHandler) -> None:
        self.send = send
        self.parameter_names = parameter_names(send)

    def __call__(self, parameters: Any, context: TaskContext) -> Any:
        if context.callback is None:
            raise StatesError(TASK_FAILED, "a .waitForTaskToken task was invoked without a task token")
        self.send(parameters, context)
        return context.callback.wait(context.cancel)


def default_handlers(
    run_task: TaskHandler | None = None,
    *,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    client_factory: Callable[[str], Any] | None = None,
) -> dict[str, TaskHandler]:
    """Handlers for the resources the pipeline definitions use (ECS only when ``run_task`` given)."""
    handlers: dict[str, TaskHandler] = {
        SNS_PUBLISH: AwsApiHandler(
            "sns",
            "publish",
            "SNS",
            _SNS_PUBLISH_PARAMETERS,
            endpoint_url=endpoint_url,
            region=region,
            client_factory=client_factory,
        ),
        DYNAMODB_UPDATE_ITEM: AwsApiHandler(
            "dynamodb",
            "update_item",
            "DynamoDB",
            _DYNAMODB_UPDATE_ITEM_PARAMETERS,
            endpoint_url=endpoint_url,
            region=region,
            client_factory=client_factory,
        ),
        S3_GET_OBJECT: S3GetObjectHandler(
            endpoint_url=endpoint_url, region=region, client_factory=client_factory
        ),
    }
    handlers[SQS_SEND_MESSAGE_WAIT] = WaitForTaskTokenHandler(
        SqsSendMessageHandler(endpoint_url=endpoint_url, region=region, client_factory=client_factory)
    )
    if run_task is not None:
        handlers[ECS_RUN_TASK_SYNC] = run_task
    return handlers
