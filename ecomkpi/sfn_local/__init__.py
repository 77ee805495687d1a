"""A small local Step Functions executor for the pipeline's state machine.

moto's executor cannot serve this project (it evaluates ``$.validation.Containers[0].ExitCode``
in a Choice wrongly, cannot run ``ecs:runTask.sync`` and lacks GetActivityTask), so this package
runs the definition itself, following the AWS States Language rules for exactly the states and
fields the definition uses, and refuses anything else when the definition is loaded.

Typical use::

    run_task = RunTaskHandler({validation_arn: ContainerCommand("validation", argv), ...})
    executor = Executor(path, default_handlers(run_task, endpoint_url=moto), substitutions=subs)
    server = serve(executor)            # boto3: AWS_ENDPOINT_URL_SFN=server.endpoint_url
    arn = executor.start_execution("2025-07-10-g1", {...})
    executor.wait(arn, timeout=600)
"""

from ecomkpi.sfn_local.definition import (
    DYNAMODB_UPDATE_ITEM,
    ECS_RUN_TASK_SYNC,
    KNOWN_RESOURCES,
    S3_GET_OBJECT,
    SNS_PUBLISH,
    Definition,
    load_definition,
    placeholders,
)
from ecomkpi.sfn_local.errors import (
    ApiError,
    DefinitionError,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    StatesError,
)
from ecomkpi.sfn_local.executor import Executor, execution_status_change_event
from ecomkpi.sfn_local.history import HistoryEvent
from ecomkpi.sfn_local.http_api import StepFunctionsServer, serve
from ecomkpi.sfn_local.tasks import (
    AwsApiHandler,
    ContainerCommand,
    ContainerOutput,
    LocalTaskRun,
    RunTaskHandler,
    TaskContext,
    TaskHandler,
    default_handlers,
)

__all__ = [
    "DYNAMODB_UPDATE_ITEM",
    "ECS_RUN_TASK_SYNC",
    "KNOWN_RESOURCES",
    "S3_GET_OBJECT",
    "SNS_PUBLISH",
    "ApiError",
    "AwsApiHandler",
    "ContainerCommand",
    "ContainerOutput",
    "Definition",
    "DefinitionError",
    "ExecutionAlreadyExists",
    "ExecutionDoesNotExist",
    "Executor",
    "HistoryEvent",
    "LocalTaskRun",
    "RunTaskHandler",
    "StatesError",
    "StepFunctionsServer",
    "TaskContext",
    "TaskHandler",
    "default_handlers",
    "execution_status_change_event",
    "load_definition",
    "placeholders",
    "serve",
]
