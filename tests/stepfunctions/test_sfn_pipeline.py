"""The real workflow definition, end to end on the local executor with fake containers and moto.

The containers are tiny Python processes that record their environment and exit with a chosen
code; SNS, SQS and DynamoDB are the emulated services of ``moto_endpoint``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from ecomkpi.sfn_local import ContainerCommand, Executor, RunTaskHandler, default_handlers, placeholders

DEFINITION = Path(__file__).resolve().parents[2] / "stepfunctions" / "ecommerce-pipeline-workflow.asl.json"
ACCOUNT = "123456789012"
VALIDATION_TD = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/ecomkpi-validation:3"
TRANSFORMATION_TD = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/ecomkpi-transformation:3"
BATCH = "2025-07-10"

# Records the container environment (one JSON line per run) and exits with argv[2].
FAKE_CONTAINER = (
    "import json, os, sys; "
    "open(sys.argv[1], 'a').write(json.dumps(dict(os.environ)) + '\\n'); "
    "print('fake container', os.environ.get('RUN_ID')); "
    "sys.exit(int(sys.argv[2]))"
)


@dataclass
class Stack:
    executor: Executor
    run_task: RunTaskHandler
    delays: list[float]
    queue_url: str
    table: str
    bucket: str
    validation_env: Path
    transformation_env: Path
    sqs: Any
    dynamodb: Any
    # A second subscriber with a filter policy: only alerts of a failed run (kind run_failed), as a
    # team's on-call channel would subscribe (docs/alerts.md).
    on_call_queue_url: str = ""

    def envs(self, path: Path) -> list[dict[str, str]]:
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def tracker(self) -> dict[str, Any]:
        item = self.dynamodb.get_item(
            TableName=self.table, Key={"BatchId": {"S": BATCH}}, ConsistentRead=True
        )
        return {k: next(iter(v.values())) for k, v in item["Item"].items()}

    def alerts(self, queue_url: str = "") -> list[dict[str, Any]]:
        messages = []
        for _ in range(3):
            response = self.sqs.receive_message(
                QueueUrl=queue_url or self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            messages += [json.loads(m["Body"]) for m in response.get("Messages", [])]
            if messages:
                break
        return messages


def execution_input(generation: int = 1, bucket: str = "bucket") -> dict[str, Any]:
    return {
        "batch_id": BATCH,
        "generation": generation,
        "bucket": bucket,
        "products_key": "raw/products/products.csv",
        "inputs_key": f"control/inputs/{BATCH}/g{generation}-0123456789abcdef.json",
        "orders_count": 2,
        "order_items_count": 1,
        "triggered_at": "2025-07-10T06:00:00Z",
    }


def make_stack(
    moto_endpoint: str,
    names: Any,
    tmp_path: Path,
    validation_exit: int,
    transformation_exit: int,
    tracker_generation: int = 1,
    sidecar_exit: int = 0,
) -> Stack:
    session = boto3.session.Session(region_name="us-east-1")
    sns = session.client("sns", endpoint_url=moto_endpoint)
    sqs = session.client("sqs", endpoint_url=moto_endpoint)
    dynamodb = session.client("dynamodb", endpoint_url=moto_endpoint)
    topic_arn = sns.create_topic(Name=f"alerts-{names.suffix}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"alerts-{names.suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    on_call_url = sqs.create_queue(QueueName=f"on-call-{names.suffix}")["QueueUrl"]
    on_call_arn = sqs.get_queue_attributes(QueueUrl=on_call_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=on_call_arn,
        Attributes={"FilterPolicy": json.dumps({"kind": ["run_failed"], "severity": ["error"]})},
    )
    dynamodb.create_table(
        TableName=names.tracker_table,
        KeySchema=[{"AttributeName": "BatchId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "BatchId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(
        TableName=names.tracker_table,
        Item={
            "BatchId": {"S": BATCH},
            "triggered_generation": {"N": str(tracker_generation)},
            "status": {"S": "RUNNING"},
        },
    )
    validation_env = tmp_path / "validation-env.jsonl"
    transformation_env = tmp_path / "transformation-env.jsonl"
    run_task = RunTaskHandler(
        {
            VALIDATION_TD: ContainerCommand(
                "validation",
                (sys.executable, "-c", FAKE_CONTAINER, str(validation_env), str(validation_exit)),
                sidecars=("log-router",),  # listed first, like a FireLens sidecar
                sidecar_exit_code=sidecar_exit,
            ),
            TRANSFORMATION_TD: ContainerCommand(
                "transformation",
                (sys.executable, "-c", FAKE_CONTAINER, str(transformation_env), str(transformation_exit)),
            ),
        },
        base_env={"AWS_ENDPOINT_URL": moto_endpoint},
        log_dir=tmp_path / "logs",
    )
    substitutions = {
        "EcsClusterArn": f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/ecomkpi-local",
        "ValidationTaskDefinitionArn": VALIDATION_TD,
        "TransformationTaskDefinitionArn": TRANSFORMATION_TD,
        "ValidationContainerName": "validation",
        "TransformationContainerName": "transformation",
        "SubnetIds": "subnet-local-a,subnet-local-b",
        "SecurityGroupIds": "sg-local",
        "AlertsTopicArn": topic_arn,
        "BatchTrackerTableName": names.tracker_table,
        "BucketName": names.bucket,
        "DailyKpisTableName": names.daily_table,
        "CategoryKpisTableName": names.category_table,
    }
    delays: list[float] = []
    executor = Executor(
        DEFINITION,
        default_handlers(run_task, endpoint_url=moto_endpoint),
        substitutions=substitutions,
        sleep=delays.append,
    )
    return Stack(
        executor,
        run_task,
        delays,
        queue_url,
        names.tracker_table,
        names.bucket,
        validation_env,
        transformation_env,
        sqs,
        dynamodb,
        on_call_url,
    )


def attributes(alert: dict[str, Any]) -> dict[str, str]:
    """An SNS-to-SQS envelope's message attributes, as name -> string value."""
    return {name: a["Value"] for name, a in alert.get("MessageAttributes", {}).items()}


def entered_states(executor: Executor, arn: str) -> list[str]:
    return [e.details["name"] for e in executor.get_execution_history(arn) if e.type.endswith("StateEntered")]


def test_definition_uses_exactly_the_documented_substitutions() -> None:
    documented = {
        "EcsClusterArn",
        "ValidationTaskDefinitionArn",
        "TransformationTaskDefinitionArn",
        "ValidationContainerName",
        "TransformationContainerName",
        "SubnetIds",
        "SecurityGroupIds",
        "AlertsTopicArn",
        "BatchTrackerTableName",
        "BucketName",
        "DailyKpisTableName",
        "CategoryKpisTableName",
    }
    used = placeholders(json.loads(DEFINITION.read_text()))
    assert used <= documented
    assert documented - used == {"BucketName"}  # the bucket comes from the execution input


def _known_statelint_gaps(states: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(state, section, field, value) of each ``.$`` field statelint 3.1.0 rejects but AWS accepts."""
    found: list[tuple[str, str, str, str]] = []

    def walk(node: Any, state: str, section: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith(".$") and isinstance(value, str) and ("[?(" in value or "\n" in value):
                    found.append((state, section, key, value))
                walk(value, state, section)
        elif isinstance(node, list):
            for item in node:
                walk(item, state, section)

    for name, state in states.items():
        for section, value in state.items():
            walk(value, name, section)
    return found


def test_statelint_accepts_the_definition_except_known_gaps(tmp_path: Path) -> None:
    """statelint 3.1.0 has no JSONPath filter grammar and matches intrinsics without DOTALL.

    AWS accepts both (Jayway filters in Parameters/ResultSelector; newlines inside a
    States.Format literal, cf. aws/amazon-states-language-service#96). So: one finding per such
    field and nothing else, and zero findings once those fields are replaced by plain equivalents.
    """
    definition = json.loads(DEFINITION.read_text())
    gaps = _known_statelint_gaps(definition["States"])
    assert {field for _, _, field, _ in gaps} == {"ExitCodes.$", "Message.$"}
    assert len(gaps) == 5  # ExitCodes in 2 ResultSelectors + 2 Read*ExitCode states, the alert Message

    statelint = [sys.executable, "-m", "statelint"]
    result = subprocess.run([*statelint, str(DEFINITION)], capture_output=True, text=True, check=False)
    findings = sorted(line.strip() for line in result.stdout.splitlines()[1:] if line.strip())
    expected = sorted(
        f'Field "{field}" of {section} at "State Machine.States.{state}" '
        "is not a JSONPath or intrinsic function expression"
        for state, section, field, _ in gaps
    )
    assert findings == expected, result.stdout

    text = DEFINITION.read_text()
    for _, _, _, value in gaps:
        plain = value.replace("\n", " ")
        if "[?(" in plain:
            plain = plain[: plain.index("[?(")] + "[*].ExitCode"
        text = text.replace(json.dumps(value)[1:-1], json.dumps(plain)[1:-1])
    plain_file = tmp_path / "plain.asl.json"
    plain_file.write_text(text)
    assert _known_statelint_gaps(json.loads(text)["States"]) == []
    result = subprocess.run([*statelint, str(plain_file)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_success_runs_both_tasks_and_marks_the_tracker(
    moto_endpoint: str, names: Any, tmp_path: Path
) -> None:
    stack = make_stack(moto_endpoint, names, tmp_path, validation_exit=0, transformation_exit=0)
    arn = stack.executor.start_execution(f"{BATCH}-g1", execution_input(bucket=stack.bucket))
    description = stack.executor.wait(arn, timeout=60)
    assert description["status"] == "SUCCEEDED", description
    assert entered_states(stack.executor, arn) == [
        "ValidateData",
        "CheckValidationResult",
        "TransformData",
        "CheckTransformationResult",
        "CheckRejections",
        "RecordSuccess",
        "PipelineSucceeded",
    ]
    output = json.loads(description["output"])
    assert output["validation"]["ExitCodes"] == [0]  # the named container, the sidecar is first
    assert stack.tracker()["status"] == "SUCCEEDED"
    assert stack.tracker()["last_run"] == f"{BATCH}-g1"

    (validation,) = stack.envs(stack.validation_env)
    assert validation["S3_BUCKET"] == stack.bucket
    assert validation["PRODUCTS_KEY"] == "raw/products/products.csv"
    assert validation["INPUTS_KEY"] == execution_input()["inputs_key"]
    assert "ORDERS_KEYS" not in validation and "ORDER_ITEMS_KEYS" not in validation
    assert (validation["BATCH_ID"], validation["BATCH_GENERATION"], validation["RUN_ID"]) == (
        BATCH,
        "1",
        f"{BATCH}-g1",
    )
    assert validation["AWS_ENDPOINT_URL"] == moto_endpoint
    (transformation,) = stack.envs(stack.transformation_env)
    assert transformation["DAILY_KPIS_TABLE"] == names.daily_table
    assert transformation["CATEGORY_KPIS_TABLE"] == names.category_table
    assert transformation["PIPELINE_BATCH_TRACKER_TABLE"] == names.tracker_table
    log = (tmp_path / "logs" / f"{BATCH}-g1" / "ValidateData-1.log").read_text()
    assert f"fake container {BATCH}-g1" in log
    assert stack.alerts() == []


def test_a_newer_generation_owns_the_batch(moto_endpoint: str, names: Any, tmp_path: Path) -> None:
    stack = make_stack(moto_endpoint, names, tmp_path, 0, 0, tracker_generation=2)
    arn = stack.executor.start_execution(f"{BATCH}-g1", execution_input(generation=1, bucket=stack.bucket))
    description = stack.executor.wait(arn, timeout=60)
    assert description["status"] == "SUCCEEDED"
    assert (
        json.loads(description["output"])["tracker_update"]["Error"]
        == "DynamoDB.ConditionalCheckFailedException"
    )
    assert stack.tracker()["status"] == "RUNNING"  # untouched: generation 2 will record its own outcome
    assert stack.delays == []  # the conditional failure is not retried


def test_rejected_data_is_retried_the_rest_transformed_then_alerted_and_recorded(
    moto_endpoint: str, names: Any, tmp_path: Path
) -> None:
    stack = make_stack(moto_endpoint, names, tmp_path, validation_exit=2, transformation_exit=0)
    name = f"{BATCH}-g1"
    # What the validation task writes (the fake container does not): the alert quotes it.
    rejections = (
        "1 file(s) rejected:\n"
        f"- raw/order_items/{BATCH}/part2.csv -> invalid/order_items/{BATCH}/part2.csv\n"
        "    rule 'sale_price >= 0' on column 'sale_price' (3 rows)\n"
    )
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=stack.bucket)
    s3.put_object(
        Bucket=stack.bucket, Key=f"logs/validation/{BATCH}/{name}/rejections.txt", Body=rejections.encode()
    )
    arn = stack.executor.start_execution(name, execution_input(bucket=stack.bucket))
    description = stack.executor.wait(arn, timeout=60)

    assert description["status"] == "FAILED"
    assert description["error"] == "Validation.DataRejected"
    assert "exited 2" in description["cause"]
    assert len(stack.envs(stack.validation_env)) == 3  # first run + 2 retries
    assert stack.delays == [30, 60]
    assert len(stack.envs(stack.transformation_env)) == 1  # the files that passed are not held back
    assert entered_states(stack.executor, arn) == [
        "ValidateData",
        "InspectValidationError",
        "ParseValidationTask",
        "ReadValidationExitCode",
        "CheckValidationResult",
        "TransformData",
        "CheckTransformationResult",
        "CheckRejections",
        "DataRejected",
        "ValidationFailed",
        "EnsureErrorCause",
        "RecordFailure",
        "BuildAlert",
        "ReadRejections",
        "ClassifyAlert",
        "AlertOnRejectedFiles",
        "NotifyFailure",
        "PipelineFailed",
    ]
    # the first TaskFailed carries the ECS task; the named container is second, after the sidecar
    failed = [e for e in stack.executor.get_execution_history(arn) if e.type == "TaskFailed"]
    containers = json.loads(failed[0].details["cause"])["Containers"]
    assert [(c["Name"], c["ExitCode"]) for c in containers] == [("log-router", 0), ("validation", 2)]

    tracker = stack.tracker()
    assert (tracker["status"], tracker["failed_state"], tracker["last_run"]) == (
        "FAILED",
        "ValidateData",
        name,
    )
    assert tracker["failure_error"] == "Validation.DataRejected"
    assert "exited 2" in tracker["failure_cause"]  # the alert's cause stays with the batch (GET /status)

    (alert,) = stack.alerts()
    assert alert["Subject"] == f"ecomkpi: batch {BATCH} failed at ValidateData"
    message = alert["Message"]
    assert f"Batch: {BATCH} (generation 1)" in message
    assert f"Execution: {arn}" in message
    assert "Failed state: ValidateData" in message
    assert "Error: Validation.DataRejected" in message
    assert "exited 2" in message
    assert f"s3://{stack.bucket}/logs/validation/{BATCH}/{name}/" in message
    assert f"s3://{stack.bucket}/invalid/" in message
    assert names.tracker_table in message
    assert f"Rejected files:\n{rejections}" in message
    assert attributes(alert) == {
        "kind": "rejected_files",
        "severity": "warning",
        "day": BATCH,
        "stage": "ValidateData",
        "error": "Validation.DataRejected",
    }
    assert stack.alerts(stack.on_call_queue_url) == []  # filtered out: not a failed run


@pytest.mark.parametrize("exit_code", [1, 137])
def test_transformation_failure_is_recorded_with_its_stage(
    moto_endpoint: str, names: Any, tmp_path: Path, exit_code: int
) -> None:
    stack = make_stack(moto_endpoint, names, tmp_path, validation_exit=0, transformation_exit=exit_code)
    arn = stack.executor.start_execution(f"{BATCH}-g1", execution_input(bucket=stack.bucket))
    description = stack.executor.wait(arn, timeout=60)
    assert description["status"] == "FAILED"
    assert len(stack.envs(stack.transformation_env)) == 3
    assert stack.tracker()["failed_state"] == "TransformData"
    (alert,) = stack.alerts()
    assert "Failed state: TransformData" in alert["Message"]
    assert f"s3://{stack.bucket}/logs/transformation/{BATCH}/{BATCH}-g1.log" in alert["Message"]
    # No rejections.txt for this run: the alert says so instead of failing to go out.
    assert "Rejected files:\n(no list of rejected files" in alert["Message"]
    assert attributes(alert) == {
        "kind": "run_failed",
        "severity": "error",
        "day": BATCH,
        "stage": "TransformData",
        "error": "Transformation.ContainerFailed",
    }
    (routed,) = stack.alerts(stack.on_call_queue_url)  # the filtered subscriber gets this one
    assert routed["Message"] == alert["Message"]


def test_a_failing_sidecar_does_not_fail_a_passed_validation(
    moto_endpoint: str, names: Any, tmp_path: Path
) -> None:
    """ECS .sync fails the state when a sidecar exits 137; the named container's 0 still decides."""
    stack = make_stack(
        moto_endpoint, names, tmp_path, validation_exit=0, transformation_exit=0, sidecar_exit=137
    )
    arn = stack.executor.start_execution(f"{BATCH}-g1", execution_input(bucket=stack.bucket))
    description = stack.executor.wait(arn, timeout=60)
    assert description["status"] == "SUCCEEDED", description
    assert stack.delays == [30, 60]  # retried first: Retry cannot look inside the cause
    assert entered_states(stack.executor, arn)[:5] == [
        "ValidateData",
        "InspectValidationError",
        "ParseValidationTask",
        "ReadValidationExitCode",
        "CheckValidationResult",
    ]
    assert "TransformData" in entered_states(stack.executor, arn)
    assert json.loads(description["output"])["validation"]["ExitCodes"] == [0]
    assert stack.tracker()["status"] == "SUCCEEDED"
