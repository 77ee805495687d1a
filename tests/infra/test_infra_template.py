"""Static checks of infra/ecomkpi-stack.yaml and scripts/deploy.sh (no AWS, no Docker).

cfn-lint on the template as committed and with every ASL inlined as ``Definition`` (so cfn-lint's
state machine checks see it), in one process; the ASLs' ``${...}``
placeholders against the template's ``DefinitionSubstitutions`` and docs/design.md's list; the
wiring the moto deploy cannot show (task sizes, log configuration, bucket settings, the worker's
service and its scaling); and the deploy script run against a fake ``aws`` CLI.

The template has two task modes (parameter ``TaskMode``). ``deployed`` resolves it the way
CloudFormation does for given parameters (conditions, ``Fn::If``, ``AWS::NoValue``), so the checks
read what each mode actually creates; tests/infra/test_infra_policies.py and tests/infra/test_infra_moto.py use
it too.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "ecomkpi-stack.yaml"
ASL = ROOT / "stepfunctions" / "ecommerce-pipeline-workflow.asl.json"
WORKER_ASL = ROOT / "stepfunctions" / "ecommerce-pipeline-workflow.worker.asl.json"
EMR_ASL = ROOT / "stepfunctions" / "ecommerce-pipeline-workflow.emr-serverless.asl.json"
DESIGN = ROOT / "docs" / "design.md"
DEPLOY = ROOT / "scripts" / "deploy.sh"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")

MODES = ("worker", "ecs")
# The state machine each mode deploys, and its definition file.
STATE_MACHINES = {"ecs": ("PipelineStateMachine", ASL), "worker": ("WorkerStateMachine", WORKER_ASL)}
# Substitutions only the ECS definition has (the worker definition sends to a queue instead).
ECS_ONLY_SUBSTITUTIONS = {
    "EcsClusterArn",
    "ValidationTaskDefinitionArn",
    "TransformationTaskDefinitionArn",
    "SubnetIds",
    "SecurityGroupIds",
}
WORKER_RESOURCES = {
    "WorkQueue",
    "WorkQueuePolicy",
    "WorkQueueDeadLetterQueue",
    "WorkQueueDeadLetterAlarm",
    "PrecheckQueue",
    "PrecheckQueuePolicy",
    "PrecheckDeadLetterQueue",
    "PrecheckDeadLetterAlarm",
    "WorkerLogGroup",
    "WorkerTaskRole",
    "WorkerTaskDefinition",
    "WorkerService",
    "WorkerScalableTarget",
    "WorkerScaleOutPolicy",
    "WorkerScaleOutAlarm",
    "WorkerScaleInPolicy",
    "WorkerScaleInAlarm",
    "WorkerStateMachine",
}
ECS_RESOURCES = {"PipelineStateMachine"}


def load_template() -> dict[str, Any]:
    t, matches = decode(str(TEMPLATE))
    assert not matches, matches
    return json.loads(json.dumps(t))  # plain dicts / strs


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


NO_VALUE = object()


def condition_values(template: dict[str, Any], params: dict[str, str]) -> dict[str, bool]:
    """Every condition of the template for these parameters (defaults for the others)."""
    values = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()}
    values.update(params)
    done: dict[str, bool] = {}

    def arg(x: Any) -> Any:
        if isinstance(x, dict) and set(x) == {"Ref"}:
            return values[x["Ref"]]
        if isinstance(x, dict):
            return evaluate(x)
        return str(x)

    def evaluate(expr: Any) -> bool:
        ((fn, a),) = expr.items()
        if fn == "Condition":
            return named(a)
        if fn == "Fn::Equals":
            return arg(a[0]) == arg(a[1])
        if fn == "Fn::Not":
            return not evaluate(a[0])
        if fn == "Fn::And":
            return all(evaluate(x) for x in a)
        if fn == "Fn::Or":
            return any(evaluate(x) for x in a)
        raise AssertionError(f"condition function {fn} not handled here")

    def named(name: str) -> bool:
        if name not in done:
            done[name] = evaluate(template["Conditions"][name])
        return done[name]

    return {name: named(name) for name in template.get("Conditions", {})}


def deployed(template: dict[str, Any], params: dict[str, str] | None = None) -> dict[str, Any]:
    """The template as CloudFormation deploys it with ``params``: the resources and outputs whose
    Condition is false dropped, each ``Fn::If`` replaced by its branch, ``AWS::NoValue`` removed."""
    conditions = condition_values(template, params or {})

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Fn::If"}:
                name, yes, no = value["Fn::If"]
                return resolve(yes if conditions[name] else no)
            if value == {"Ref": "AWS::NoValue"}:
                return NO_VALUE
            out = {k: resolve(v) for k, v in value.items()}
            return {k: v for k, v in out.items() if v is not NO_VALUE}
        if isinstance(value, list):
            return [v for v in (resolve(x) for x in value) if v is not NO_VALUE]
        return value

    t = copy.deepcopy(template)
    for section in ("Resources", "Outputs"):
        t[section] = {
            name: resolve(body)
            for name, body in t.get(section, {}).items()
            if conditions.get(body.get("Condition", ""), True)
        }
    return t


@pytest.fixture(scope="module", params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def as_deployed(template: dict[str, Any], mode: str) -> dict[str, Any]:
    return deployed(template, {"TaskMode": mode})


def props(template: dict[str, Any], name: str) -> dict[str, Any]:
    return template["Resources"][name]["Properties"]


def asl_tasks(path: Path) -> dict[str, dict[str, Any]]:
    """The Task states of a workflow file (top level; ValidateData and TransformData are there)."""
    states = json.loads(path.read_text())["States"]
    return {n: st for n, st in states.items() if st.get("Type") == "Task"}


def longest_job_timeout() -> int:
    """The longest TimeoutSeconds of the two job states, from the worker workflow (the ECS one until
    it is rendered: the renderer keeps the timeouts)."""
    path = WORKER_ASL if WORKER_ASL.exists() else ASL
    tasks = asl_tasks(path)
    return max(int(tasks[n]["TimeoutSeconds"]) for n in ("ValidateData", "TransformData"))


def design_substitutions() -> set[str]:
    text = DESIGN.read_text()
    section = text.split("## Step Functions definition substitutions", 1)[1].split("\n## ", 1)[0]
    return set(PLACEHOLDER.findall(section))


def lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    """One cfn-lint process for all templates: its rule and schema loading is most of its time."""
    return subprocess.run([str(CFN_LINT), *map(str, paths)], capture_output=True, text=True, timeout=300)


def test_cfn_lint_clean_as_committed_and_with_every_workflow_inlined(
    template: dict[str, Any], tmp_path: Path
) -> None:
    """cfn-lint's state machine checks (E3601: the ASL, the optimized integrations' parameters) see a
    definition only when it is inlined as ``Definition``: the template is linted as committed and
    with the ecs, worker and emr-serverless definitions inlined."""
    inlined = copy.deepcopy(template)
    for name, path in (*STATE_MACHINES.values(), ("EmrServerlessStateMachine", EMR_ASL)):
        sm = props(inlined, name)
        sm.pop("DefinitionS3Location")
        sm["Definition"] = json.loads(path.read_text())
    path = tmp_path / "ecomkpi-stack.with-definitions.json"
    path.write_text(json.dumps(inlined, indent=1))
    result = lint(TEMPLATE, path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_substitutions_are_exactly_the_designed_names(template: dict[str, Any]) -> None:
    subs = props(template, "PipelineStateMachine")["DefinitionSubstitutions"]
    assert set(subs) == design_substitutions()
    assert props(template, "PipelineStateMachine")["DefinitionS3Location"] == (
        "../stepfunctions/ecommerce-pipeline-workflow.asl.json"
    )


def test_worker_substitutions_are_the_ecs_ones_less_ecs_plus_the_queue(template: dict[str, Any]) -> None:
    ecs = props(template, "PipelineStateMachine")["DefinitionSubstitutions"]
    worker = props(template, "WorkerStateMachine")["DefinitionSubstitutions"]
    assert set(worker) == (set(ecs) - ECS_ONLY_SUBSTITUTIONS) | {"WorkQueueUrl"}
    assert worker["WorkQueueUrl"] == {"Ref": "WorkQueue"}
    for name in set(worker) & set(ecs):
        assert worker[name] == ecs[name], name
    assert props(template, "WorkerStateMachine")["DefinitionS3Location"] == (
        "../stepfunctions/ecommerce-pipeline-workflow.worker.asl.json"
    )
    if WORKER_ASL.exists():
        used = set(PLACEHOLDER.findall(WORKER_ASL.read_text()))
        assert "WorkQueueUrl" in used
        assert not used & ECS_ONLY_SUBSTITUTIONS


@pytest.mark.parametrize("mode", MODES)
def test_every_asl_placeholder_is_substituted(template: dict[str, Any], mode: str) -> None:
    name, path = STATE_MACHINES[mode]
    if not path.exists():
        pytest.skip(f"{path.name} not written yet")
    text = path.read_text()
    subs = props(template, name)["DefinitionSubstitutions"]
    used = set(PLACEHOLDER.findall(text))
    assert used, "the workflow uses no substitution at all"
    assert used <= set(subs), f"placeholders without a substitution: {sorted(used - set(subs))}"
    leftover = PLACEHOLDER.sub(lambda m: "X" if m.group(1) in subs else m.group(0), text)
    assert "${" not in leftover
    json.loads(leftover)


def test_container_names_match_substitutions(template: dict[str, Any]) -> None:
    subs = props(template, "PipelineStateMachine")["DefinitionSubstitutions"]
    for task, sub, command, memory, cpu, log_group, role in (
        (
            "ValidationTaskDefinition",
            "ValidationContainerName",
            ["validate"],
            "ValidationTaskMemory",
            "ValidationTaskCpu",
            "ValidationLogGroup",
            "ValidationTaskRole",
        ),
        (
            "TransformationTaskDefinition",
            "TransformationContainerName",
            ["transform"],
            "TransformationTaskMemory",
            "TransformationTaskCpu",
            "TransformationLogGroup",
            "TransformationTaskRole",
        ),
    ):
        p = props(template, task)
        assert p["NetworkMode"] == "awsvpc"
        assert p["RequiresCompatibilities"] == ["FARGATE"]
        assert p["Memory"] == {"Ref": memory} and p["Cpu"] == {"Ref": cpu}
        assert p["TaskRoleArn"] == {"Fn::GetAtt": [role, "Arn"]}
        assert p["ExecutionRoleArn"] == {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}
        (container,) = p["ContainerDefinitions"]
        assert container["Name"] == subs[sub]
        assert container["Command"] == command
        assert container["Image"] == {"Ref": "ImageUri"}
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        assert env["S3_BUCKET"] == {"Ref": "BucketName"}
        assert env["DAILY_KPIS_TABLE"] == {"Ref": "DailyKpisTable"}
        assert env["CATEGORY_KPIS_TABLE"] == {"Ref": "CategoryKpisTable"}
        assert env["TASK_MEMORY_MIB"] == {"Ref": memory}
        assert not any("SECRET" in k or "ACCESS_KEY" in k for k in env)
        logs = container["LogConfiguration"]
        assert logs["LogDriver"] == "awslogs"
        assert logs["Options"]["awslogs-group"] == {"Ref": log_group}
        assert props(template, log_group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_bucket_settings_and_queue_wiring(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["PipelineBucket"]
    p = bucket["Properties"]
    assert p["BucketName"] == {"Ref": "BucketName"}
    assert all(p["PublicAccessBlockConfiguration"].values())
    assert p["VersioningConfiguration"]["Status"] == "Enabled"
    assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    configs = p["NotificationConfiguration"]["QueueConfigurations"]
    assert sorted(c["Event"] for c in configs) == ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    for queue_cfg in configs:  # arrivals and withdrawals (deleted before processing), raw/ only
        assert queue_cfg["Queue"] == {"Fn::GetAtt": ["RawEventsQueue", "Arn"]}
        assert queue_cfg["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "raw/"}]
    # The circular-dependency pattern: the bucket waits for the queue policy, which names the
    # bucket's ARN from the parameter rather than referencing the bucket.
    assert bucket["DependsOn"] == "RawEventsQueuePolicy"
    assert "PipelineBucket" not in json.dumps(props(template, "RawEventsQueuePolicy"))
    redrive = props(template, "RawEventsQueue")["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["RawEventsDeadLetterQueue", "Arn"]}
    esm = props(template, "TriggerEventSourceMapping")
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm["EventSourceArn"] == {"Fn::GetAtt": ["RawEventsQueue", "Arn"]}


def test_tables_and_topic(template: dict[str, Any]) -> None:
    keys = {
        "BatchTrackerTable": [("BatchId", "HASH")],
        "CategoryKpisTable": [("category_id", "HASH"), ("date_key", "RANGE")],
        "DailyKpisTable": [("date_key", "HASH")],
    }
    for name, schema in keys.items():
        p = props(template, name)
        assert [(k["AttributeName"], k["KeyType"]) for k in p["KeySchema"]] == schema
        assert {a["AttributeType"] for a in p["AttributeDefinitions"]} == {"S"}
        assert p["BillingMode"] == "PAY_PER_REQUEST"
        assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert p["SSESpecification"]["SSEEnabled"] is True
    assert props(template, "AlertsTopic")["TopicName"] == {
        "Fn::Sub": "ecommerce-pipeline-alerts-${EnvironmentName}"
    }


def test_data_outlives_the_stack(template: dict[str, Any]) -> None:
    """Deleting the stack, or an update that replaces them, keeps the bucket and the three tables:
    the data, the KPIs and the tracker's record of what each batch has and ran."""
    for name in ("PipelineBucket", "BatchTrackerTable", "CategoryKpisTable", "DailyKpisTable"):
        res = template["Resources"][name]
        assert (res.get("DeletionPolicy"), res.get("UpdateReplacePolicy")) == ("Retain", "Retain"), name


def lifecycle_expiry_days(template: dict[str, Any], key: str) -> int | None:
    """Days after which the bucket's lifecycle expires the current version of ``key`` (None: never)."""
    params = {k: v.get("Default") for k, v in template["Parameters"].items()}
    days = [
        int(
            params[r["ExpirationInDays"]["Ref"]]
            if isinstance(r["ExpirationInDays"], dict)
            else r["ExpirationInDays"]
        )
        for r in props(template, "PipelineBucket")["LifecycleConfiguration"]["Rules"]
        if r["Status"] == "Enabled" and "ExpirationInDays" in r and key.startswith(r.get("Prefix", ""))
    ]
    return min(days) if days else None


def test_lifecycle_expires_key_lists_and_logs_but_never_data(template: dict[str, Any]) -> None:
    assert lifecycle_expiry_days(template, "control/inputs/2025-07-10/g1-0123456789abcdef.json") == 30
    assert lifecycle_expiry_days(template, "logs/validation/2025-07-10/run.log") == 90
    for key in (
        "raw/orders/2025-07-10/a.csv",
        "validated/orders/2025-07-10/a.csv",
        "processed/orders/2025-07-10/a.csv",
        "invalid/unrecognised/orders/a.txt",
        "lake/silver_orders/_delta_log/00000000000000000000.json",
        "controls.csv",
    ):
        assert lifecycle_expiry_days(template, key) is None, key


def test_lambda_and_status_rule(as_deployed: dict[str, Any], mode: str) -> None:
    template = as_deployed
    state_machine = {"Ref": STATE_MACHINES[mode][0]}
    fn = props(template, "TriggerFunction")
    assert fn["Runtime"] == "python3.11"
    assert fn["Handler"] == "lambda_trigger.handler.lambda_handler"
    assert fn["Environment"]["Variables"] == {
        "PIPELINE_BATCH_TRACKER_TABLE": {"Ref": "BatchTrackerTable"},
        "STEP_FUNCTION_ARN": state_machine,
        # the bucket it accepts events from and writes key lists / moved keys to
        "S3_BUCKET": {"Ref": "BucketName"},
        # worker mode: parts go to the warm worker's queue to be validated as they land
        **({"PRECHECK_QUEUE_URL": {"Ref": "PrecheckQueue"}} if mode == "worker" else {}),
        # finished days expire after the retention; the sweep feeds in unannounced raw/ files
        "TRACKER_RETENTION_DAYS": {"Ref": "TrackerRetentionDays"},
        "UNANNOUNCED_AFTER_MINUTES": {"Ref": "UnannouncedAfterMinutes"},
        "ALERTS_TOPIC_ARN": {"Ref": "AlertsTopic"},
    }
    rule = props(template, "ExecutionStatusRule")
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert pattern["detail"]["stateMachineArn"] == [state_machine]
    assert set(pattern["detail"]["status"]) == {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["TriggerFunction", "Arn"]}
    perm = props(template, "ExecutionStatusRulePermission")
    assert perm["Principal"] == "events.amazonaws.com"
    assert perm["SourceArn"] == {"Fn::GetAtt": ["ExecutionStatusRule", "Arn"]}


def test_network_parameters_and_outputs(template: dict[str, Any], as_deployed: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert params["SubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"
    assert params["SecurityGroupIds"]["Type"] == "List<AWS::EC2::SecurityGroup::Id>"
    # Without a Spark cluster (the default), the tasks get exactly the parameters' groups.
    subs = props(deployed(template, {"TaskMode": "ecs"}), "PipelineStateMachine")["DefinitionSubstitutions"]
    assert subs["SubnetIds"] == {"Fn::Join": [",", {"Ref": "SubnetIds"}]}
    assert subs["SecurityGroupIds"] == {"Fn::Join": [",", {"Ref": "SecurityGroupIds"}]}
    logging = props(template, "PipelineStateMachine")["LoggingConfiguration"]
    assert logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"] == {
        "Fn::GetAtt": ["StateMachineLogGroup", "Arn"]
    }
    assert {
        "BucketName",
        "RawEventsQueueUrl",
        "StateMachineArn",
        "BatchTrackerTableName",
        "CategoryKpisTableName",
        "DailyKpisTableName",
        "AlertsTopicArn",
        "EcsClusterName",
        "ValidationLogGroupName",
        "TransformationLogGroupName",
        "StateMachineLogGroupName",
        "TriggerLogGroupName",
    } <= set(as_deployed["Outputs"])


def schedule_expression(template: dict[str, Any], minutes: str | None = None) -> str:
    """The reconcile rule's ScheduleExpression as deployed with ReconcileMinutes=minutes."""
    params = {"ReconcileMinutes": minutes} if minutes is not None else {}
    value = props(deployed(template, params), "ReconcileScheduleRule")["ScheduleExpression"]
    if isinstance(value, dict):
        text = value["Fn::Sub"]
        minutes = minutes or str(template["Parameters"]["ReconcileMinutes"]["Default"])
        value = text.replace("${ReconcileMinutes}", minutes)
    return value


def test_reconcile_schedule(template: dict[str, Any]) -> None:
    param = template["Parameters"]["ReconcileMinutes"]
    assert param["Default"] == 5 and param["MinValue"] == 1
    assert schedule_expression(template) == "rate(5 minutes)"
    assert schedule_expression(template, "1") == "rate(1 minute)"  # EventBridge's singular unit
    assert schedule_expression(template, "60") == "rate(60 minutes)"
    rule = props(template, "ReconcileScheduleRule")
    assert rule["State"] == "ENABLED" and "EventPattern" not in rule
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["TriggerFunction", "Arn"]}
    assert json.loads(target["Input"]) == {"ecomkpi": "reconcile"}
    events = pytest.importorskip("lambda_trigger.events")
    if hasattr(events, "is_reconcile_event"):
        assert events.is_reconcile_event(json.loads(target["Input"]))
    perm = props(template, "ReconcileScheduleRulePermission")
    assert perm["Principal"] == "events.amazonaws.com"
    assert perm["FunctionName"] == {"Ref": "TriggerFunction"}
    assert perm["SourceArn"] == {"Fn::GetAtt": ["ReconcileScheduleRule", "Arn"]}


def test_event_deliveries_are_retried_then_dead_lettered(template: dict[str, Any]) -> None:
    dlq = {"Fn::GetAtt": ["TriggerEventsDeadLetterQueue", "Arn"]}
    for rule, age in (("ExecutionStatusRule", 86400), ("ReconcileScheduleRule", 300)):
        (target,) = props(template, rule)["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": dlq}, rule
        # Age is the limit (185 is EventBridge's maximum number of attempts).
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": age}, rule
    # A sweep left undelivered is superseded by the next one: retried no longer than the default period.
    assert template["Parameters"]["ReconcileMinutes"]["Default"] * 60 >= 300
    for queue in ("TriggerEventsDeadLetterQueue", "TriggerAsyncDeadLetterQueue"):
        q = props(template, queue)
        assert q["SqsManagedSseEnabled"] is True and q["MessageRetentionPeriod"] == 14 * 86400, queue


def test_failed_async_invocations_are_kept(template: dict[str, Any]) -> None:
    config = props(template, "TriggerAsyncInvokeConfig")
    assert config["FunctionName"] == {"Ref": "TriggerFunction"} and config["Qualifier"] == "$LATEST"
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["TriggerAsyncDeadLetterQueue", "Arn"]
    }


def dead_letter_queues(template: dict[str, Any]) -> set[str]:
    """Every queue something sends its failures to: redrive targets, rule target DLQs, Lambda
    OnFailure destinations."""
    found: set[str] = set()
    for res in template["Resources"].values():
        p = res.get("Properties", {})
        refs = [p.get("RedrivePolicy", {}).get("deadLetterTargetArn")]
        refs += [t.get("DeadLetterConfig", {}).get("Arn") for t in p.get("Targets", [])]
        refs.append(p.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"))
        found |= {r["Fn::GetAtt"][0] for r in refs if isinstance(r, dict) and "Fn::GetAtt" in r}
    return found


def test_every_dead_letter_queue_is_alarmed(as_deployed: dict[str, Any], mode: str) -> None:
    """A message in any DLQ alerts: an alarm on the queue's visible messages, > 0, to the topic."""
    dlqs = dead_letter_queues(as_deployed)
    assert {"RawEventsDeadLetterQueue", "TriggerEventsDeadLetterQueue", "TriggerAsyncDeadLetterQueue"} <= dlqs
    assert ("WorkQueueDeadLetterQueue" in dlqs) is (mode == "worker")
    assert ("PrecheckDeadLetterQueue" in dlqs) is (mode == "worker")
    alarmed = {
        a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in (
            r["Properties"]
            for r in as_deployed["Resources"].values()
            if r["Type"] == "AWS::CloudWatch::Alarm"
        )
        if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and a["Dimensions"][0]["Name"] == "QueueName"
        and a["ComparisonOperator"] == "GreaterThanThreshold"
        and a["Threshold"] == 0
        and a["AlarmActions"] == [{"Ref": "AlertsTopic"}]
    }
    assert dlqs <= alarmed, dlqs - alarmed


# ---------------------------------------------------------------- task modes


def test_task_mode_parameter_and_conditions(template: dict[str, Any]) -> None:
    param = template["Parameters"]["TaskMode"]
    assert param["Default"] == "worker"
    # The third mode has its own tests (tests/infra/test_emr_serverless_stack.py).
    assert set(param["AllowedValues"]) == {*MODES, "emr-serverless"}
    for mode in MODES:
        conditions = condition_values(template, {"TaskMode": mode})
        assert conditions["IsWorkerMode"] is (mode == "worker")
        assert conditions["IsEcsMode"] is (mode == "ecs")


def test_mode_resources_exist_only_in_their_mode(template: dict[str, Any]) -> None:
    worker = set(deployed(template, {"TaskMode": "worker"})["Resources"])
    ecs = set(deployed(template, {"TaskMode": "ecs"})["Resources"])
    assert worker >= WORKER_RESOURCES and not WORKER_RESOURCES & ecs
    assert ecs >= ECS_RESOURCES and not ECS_RESOURCES & worker
    # Everything else is the same in both modes (the task definitions stay for one-off runs).
    assert worker - WORKER_RESOURCES == ecs - ECS_RESOURCES
    assert {"ValidationTaskDefinition", "TransformationTaskDefinition", "EcsCluster"} <= worker & ecs
    # The default is the worker mode.
    assert set(deployed(template)["Resources"]) == worker
    # The ECS state machine keeps its logical id and name.
    assert props(template, "PipelineStateMachine")["StateMachineName"] == {
        "Fn::Sub": "ecomkpi-pipeline-${EnvironmentName}"
    }
    # Different names: switching modes creates the new one before the old one is deleted.
    names = {props(template, n)["StateMachineName"]["Fn::Sub"] for n, _ in STATE_MACHINES.values()}
    assert len(names) == 2


@pytest.mark.parametrize("mode", MODES)
def test_state_machine_references_follow_the_mode(template: dict[str, Any], mode: str) -> None:
    t = deployed(template, {"TaskMode": mode})
    this, other = STATE_MACHINES[mode][0], STATE_MACHINES["ecs" if mode == "worker" else "worker"][0]
    assert t["Outputs"]["StateMachineArn"]["Value"] == {"Ref": this}
    text = json.dumps({"Resources": t["Resources"], "Outputs": t["Outputs"]})
    assert f'"{other}"' not in text
    trigger = props(t, "TriggerFunctionRole")["Policies"][0]["PolicyDocument"]["Statement"]
    (start,) = [st for st in trigger if st["Action"] == "states:StartExecution"]
    assert start["Resource"] == {"Ref": this}
    worker_outputs = {
        "WorkQueueUrl",
        "WorkQueueDeadLetterQueueUrl",
        "PrecheckQueueUrl",
        "PrecheckDeadLetterQueueUrl",
        "WorkerServiceName",
        "WorkerLogGroupName",
    }
    if mode == "worker":
        assert worker_outputs <= set(t["Outputs"])
        assert t["Outputs"]["WorkQueueUrl"]["Value"] == {"Ref": "WorkQueue"}
        assert t["Outputs"]["WorkerServiceName"]["Value"] == {"Fn::GetAtt": ["WorkerService", "Name"]}
    else:
        assert not worker_outputs & set(t["Outputs"])


def test_work_queue(template: dict[str, Any]) -> None:
    t = deployed(template, {"TaskMode": "worker"})
    queue, dlq = props(t, "WorkQueue"), props(t, "WorkQueueDeadLetterQueue")
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["WorkQueueDeadLetterQueue", "Arn"]
    }
    assert queue["RedrivePolicy"]["maxReceiveCount"] >= 2
    # A message must outlive the attempt that sent it (a worker may take it late and finds it stale).
    assert queue["MessageRetentionPeriod"] >= longest_job_timeout()
    assert dlq["MessageRetentionPeriod"] >= queue["MessageRetentionPeriod"]
    # The worker deletes on receipt: the visibility timeout only spans receive -> delete.
    assert 30 <= queue["VisibilityTimeout"] <= 300
    alarm = props(t, "WorkQueueDeadLetterAlarm")
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["WorkQueueDeadLetterQueue", "QueueName"]}
    assert alarm["AlarmActions"] == [{"Ref": "AlertsTopic"}]


def test_precheck_queue_dead_letters_a_precheck_taken_on_three_times(template: dict[str, Any]) -> None:
    """No keeper receives the precheck queue, so its receive count counts the worker's attempts."""
    t = deployed(template, {"TaskMode": "worker"})
    queue, dlq = props(t, "PrecheckQueue"), props(t, "PrecheckDeadLetterQueue")
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["PrecheckDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 3,
    }
    assert dlq["MessageRetentionPeriod"] >= queue["MessageRetentionPeriod"]
    # Longer than receive -> the worker's first hold (hosts/worker/prechecks.py holds at once).
    assert 60 <= queue["VisibilityTimeout"] <= 300
    alarm = props(t, "PrecheckDeadLetterAlarm")
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["PrecheckDeadLetterQueue", "QueueName"]}
    assert alarm["AlarmActions"] == [{"Ref": "AlertsTopic"}]
    (container,) = props(t, "WorkerTaskDefinition")["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["PRECHECK_QUEUE_URL"] == {"Ref": "PrecheckQueue"}


def test_worker_task_definition_runs_both_jobs(template: dict[str, Any]) -> None:
    t = deployed(template, {"TaskMode": "worker"})
    worker = props(t, "WorkerTaskDefinition")
    assert worker["NetworkMode"] == "awsvpc" and worker["RequiresCompatibilities"] == ["FARGATE"]
    assert worker["Cpu"] == {"Ref": "WorkerTaskCpu"} and worker["Memory"] == {"Ref": "WorkerTaskMemory"}
    assert worker["TaskRoleArn"] == {"Fn::GetAtt": ["WorkerTaskRole", "Arn"]}
    assert worker["ExecutionRoleArn"] == {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}
    assert worker["RuntimePlatform"] == props(t, "TransformationTaskDefinition")["RuntimePlatform"]
    (container,) = worker["ContainerDefinitions"]
    assert container["Command"] == ["worker"]
    assert container["Image"] == {"Ref": "ImageUri"}
    assert container.get("ReadonlyRootFilesystem", False) == any(
        c.get("ReadonlyRootFilesystem", False)
        for n in ("ValidationTaskDefinition", "TransformationTaskDefinition")
        for c in props(t, n)["ContainerDefinitions"]
    )
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    # Everything the two job containers get, sized for the worker task.
    sizing = {"TASK_MEMORY_MIB": {"Ref": "WorkerTaskMemory"}, "TASK_CPU": {"Ref": "WorkerTaskCpu"}}
    for job in ("ValidationTaskDefinition", "TransformationTaskDefinition"):
        (job_container,) = props(t, job)["ContainerDefinitions"]
        for e in job_container["Environment"]:
            assert env[e["Name"]] == sizing.get(e["Name"], e["Value"]), e["Name"]
    assert env["WORK_QUEUE_URL"] == {"Ref": "WorkQueue"}
    assert env["WORKER_MAX_BATCHES"] == {"Ref": "WorkerMaxBatches"}
    assert 0 < float(env["WORKER_MAX_HEAP_FRACTION"]) <= 1
    # Heartbeats well inside the states' HeartbeatSeconds.
    if WORKER_ASL.exists():
        tasks = asl_tasks(WORKER_ASL)
        beat = min(int(tasks[n]["HeartbeatSeconds"]) for n in ("ValidateData", "TransformData"))
        assert float(env["WORKER_HEARTBEAT_SECONDS"]) * 3 <= beat
    assert not any("SECRET" in k or "ACCESS_KEY" in k for k in env)
    logs = container["LogConfiguration"]
    assert logs["LogDriver"] == "awslogs"
    assert logs["Options"]["awslogs-group"] == {"Ref": "WorkerLogGroup"}
    assert props(t, "WorkerLogGroup")["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert props(t, "WorkerLogGroup")["LogGroupName"] == {"Fn::Sub": "/ecomkpi/${EnvironmentName}/worker"}
    # The execution role may write the worker's log group in worker mode only.
    for mode, expected in (("worker", True), ("ecs", False)):
        role = props(deployed(template, {"TaskMode": mode}), "TaskExecutionRole")
        logs_statement = next(
            st for st in role["Policies"][0]["PolicyDocument"]["Statement"] if st["Sid"] == "ContainerLogs"
        )
        assert ({"Fn::GetAtt": ["WorkerLogGroup", "Arn"]} in logs_statement["Resource"]) is expected


def test_worker_service_and_scaling_target(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert params["WorkerMinCapacity"]["Default"] == 1 and params["WorkerMinCapacity"]["MinValue"] == 0
    assert params["WorkerMaxCapacity"]["Default"] == 4
    t = deployed(template, {"TaskMode": "worker"})
    service = props(t, "WorkerService")
    assert service["Cluster"] == {"Ref": "EcsCluster"}
    assert service["TaskDefinition"] == {"Ref": "WorkerTaskDefinition"}
    assert service["LaunchType"] == "FARGATE"
    assert service["DesiredCount"] == {"Ref": "WorkerMinCapacity"}
    net = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert net == {
        "AssignPublicIp": "DISABLED",
        "Subnets": {"Ref": "SubnetIds"},
        "SecurityGroups": {"Ref": "SecurityGroupIds"},
    }
    target = props(t, "WorkerScalableTarget")
    assert target["MinCapacity"] == {"Ref": "WorkerMinCapacity"}
    assert target["MaxCapacity"] == {"Ref": "WorkerMaxCapacity"}
    assert (target["ServiceNamespace"], target["ScalableDimension"]) == ("ecs", "ecs:service:DesiredCount")
    assert target["ResourceId"] == {"Fn::Sub": "service/${EcsCluster}/${WorkerService.Name}"}
    for policy in ("WorkerScaleOutPolicy", "WorkerScaleInPolicy"):
        assert props(t, policy)["ScalingTargetId"] == {"Ref": "WorkerScalableTarget"}
        assert props(t, policy)["PolicyType"] == "StepScaling"


def alarm_value(alarm: dict[str, Any], **metrics: float | None) -> float | None:
    """The value of a metric-math alarm's expression for one period's datapoints (None = no data).

    CloudWatch's ``FILL`` and ``IF`` on scalars; the expressions here are also valid Python."""
    (expression,) = [m["Expression"] for m in alarm["Metrics"] if m.get("ReturnData")]
    ids = {m["Id"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert set(re.findall(r"\b([a-z][A-Za-z0-9_]*)\b", expression)) - {"FILL", "IF"} <= ids
    if all(v is None for v in metrics.values()):
        return None
    functions = {
        "FILL": lambda v, default: default if v is None else v,
        "IF": lambda cond, yes, no: yes if cond else no,
    }
    return eval(expression, {"__builtins__": {}, **functions}, {i: metrics.get(i) for i in ids})


def breaches(alarm: dict[str, Any], value: float | None) -> bool:
    if value is None:
        return alarm["TreatMissingData"] == "breaching"
    compare = {
        "GreaterThanThreshold": value > alarm["Threshold"],
        "LessThanOrEqualToThreshold": value <= alarm["Threshold"],
    }
    return compare[alarm["ComparisonOperator"]]


def queue_metrics(alarm: dict[str, Any]) -> dict[str, str]:
    """Metric id -> metric name of the alarm's metrics on the work queue."""
    return {
        m["Id"]: m["MetricStat"]["Metric"]["MetricName"]
        for m in alarm["Metrics"]
        if "MetricStat" in m
        and m["MetricStat"]["Metric"]["Namespace"] == "AWS/SQS"
        and m["MetricStat"]["Metric"]["Dimensions"]
        == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["WorkQueue", "QueueName"]}}]
    }


def test_scale_out_on_queue_depth_also_from_zero(template: dict[str, Any]) -> None:
    t = deployed(template, {"TaskMode": "worker"})
    alarm = props(t, "WorkerScaleOutAlarm")
    assert alarm["AlarmActions"] == [{"Ref": "WorkerScaleOutPolicy"}]
    assert queue_metrics(alarm) == {"visible": "ApproximateNumberOfMessagesVisible"}
    started = next(m for m in alarm["Metrics"] if m["Id"] == "started")["MetricStat"]["Metric"]
    assert started["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "WorkerStateMachine"}}]
    # One minute of waiting tasks is enough.
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 1
    assert all(m["MetricStat"]["Period"] == 60 for m in alarm["Metrics"] if "MetricStat" in m)
    cases = {
        # tasks wait while every worker is busy
        (2, 0, 2): True,
        # no worker runs (scaled to zero) and the queue's metrics flow
        (1, 0, None): True,
        # no worker runs, and SQS has not resumed the metrics of a queue idle for 6 hours yet
        (None, 1, None): True,
        # an idle warm worker takes the new execution's task itself
        (0, 1, 1): False,
        (0, 0, 1): False,
        (None, None, None): False,
    }
    for (visible, started_count, running), expected in cases.items():
        value = alarm_value(alarm, visible=visible, started=started_count, running=running)
        assert breaches(alarm, value) is expected, (visible, started_count, running)
    steps = props(t, "WorkerScaleOutPolicy")["StepScalingPolicyConfiguration"]
    assert steps["AdjustmentType"] == "ChangeInCapacity"
    assert all(s["ScalingAdjustment"] > 0 for s in steps["StepAdjustments"])
    # The steps cover every breaching value (> 0 above the threshold of 0).
    assert min(s["MetricIntervalLowerBound"] for s in steps["StepAdjustments"]) == 0
    assert any("MetricIntervalUpperBound" not in s for s in steps["StepAdjustments"])


def test_scale_in_only_when_the_queue_has_been_idle(template: dict[str, Any]) -> None:
    t = deployed(template, {"TaskMode": "worker"})
    alarm = props(t, "WorkerScaleInAlarm")
    assert alarm["AlarmActions"] == [{"Ref": "WorkerScaleInPolicy"}]
    assert set(queue_metrics(alarm).values()) == {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
        "NumberOfMessagesReceived",
    }
    ids = {name: i for i, name in queue_metrics(alarm).items()}
    idle = {ids["ApproximateNumberOfMessagesVisible"]: 0, ids["NumberOfMessagesReceived"]: 0}
    assert breaches(alarm, alarm_value(alarm, **idle))
    for name in ids:
        assert not breaches(alarm, alarm_value(alarm, **{**idle, ids[name]: 1})), name
    # A queue whose metrics paused (nobody polled it for 6 hours) is not "idle": it may be waking up.
    assert not breaches(alarm, alarm_value(alarm))
    # Idle for the whole window, every minute of it; and the window outlasts any running task,
    # since a worker deletes its message (so nothing counts as in flight) when it starts.
    minutes = {"Ref": "WorkerScaleInIdleMinutes"}
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == minutes
    assert all(m["MetricStat"]["Period"] == 60 for m in alarm["Metrics"] if "MetricStat" in m)
    assert template["Parameters"]["WorkerScaleInIdleMinutes"]["Default"] * 60 > longest_job_timeout()
    steps = props(t, "WorkerScaleInPolicy")["StepScalingPolicyConfiguration"]
    assert steps["AdjustmentType"] == "ExactCapacity"
    (step,) = steps["StepAdjustments"]
    assert step["ScalingAdjustment"] == {"Ref": "WorkerMinCapacity"}
    assert step["MetricIntervalUpperBound"] == 0 and "MetricIntervalLowerBound" not in step


# ---------------------------------------------------------------- scripts/deploy.sh

FAKE_AWS = """#!{python}
import json, os, sys
with open(os.environ["FAKE_AWS_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""

REQUIRED = {
    "ECOMKPI_BUCKET": "ecomkpi-data-test",
    "ECOMKPI_IMAGE_URI": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ecomkpi:abc123",
    "ECOMKPI_SUBNET_IDS": "subnet-aaa,subnet-bbb",
    "ECOMKPI_SECURITY_GROUP_IDS": "sg-ccc",
    "ECOMKPI_ARTIFACTS_BUCKET": "ecomkpi-artifacts-test",
}


# The Lambda packages deploy.sh zips (out/deploy/<package>.zip), each handler's package, and the
# files every zip ships beside its package: the one boto3 client factory (jobs/aws.py).
LAMBDA_PACKAGES = ("lambda_trigger", "kpi_api")
LAMBDA_SHARED = ("jobs/__init__.py", "jobs/aws.py")
KPI_API_STAND_IN = {
    "__init__.py": "",
    "handler.py": "def lambda_handler(event, context):\n    return {'statusCode': 200}\n",
}


@pytest.fixture
def deploy_repo(tmp_path: Path) -> Path:
    """A copy of what deploy.sh reads, so its out/ lands in tmp and a missing ASL (or a kpi_api
    package not written yet) is stood in for."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(DEPLOY, repo / "scripts" / "deploy.sh")
    shutil.copytree(ROOT / "infra", repo / "infra")
    shutil.copytree(ROOT / "lambda_trigger", repo / "lambda_trigger")
    # The whole jobs/ package, so the zips' leaving out everything but the shared files is tested.
    shutil.copytree(ROOT / "jobs", repo / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    if (ROOT / "kpi_api" / "__init__.py").exists():
        shutil.copytree(ROOT / "kpi_api", repo / "kpi_api")
    else:
        (repo / "kpi_api").mkdir()
        for name, text in KPI_API_STAND_IN.items():
            (repo / "kpi_api" / name).write_text(text)
    for package in LAMBDA_PACKAGES:
        (repo / package / "__pycache__").mkdir(exist_ok=True)
        (repo / package / "__pycache__" / "junk.cpython-311.pyc").write_bytes(b"x")
    (repo / "stepfunctions").mkdir()
    stand_in = '{"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}'
    for path in (ASL, WORKER_ASL, EMR_ASL):
        (repo / "stepfunctions" / path.name).write_text(path.read_text() if path.exists() else stand_in)
    return repo


def fake_aws(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    aws = bin_dir / "aws"
    aws.write_text(FAKE_AWS.format(python=sys.executable))
    aws.chmod(0o755)
    return bin_dir


def run_deploy(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(repo / "scripts" / "deploy.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def base_env(path: str) -> dict[str, str]:
    return {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "PYTHON": sys.executable}


def import_from_zip(unzipped: Path, module: str) -> dict[str, str]:
    """Import ``module`` in a fresh interpreter that sees only ``unzipped`` and the installed
    packages (``-S``: no site processing, so not the editable install's path to this repository),
    as the Lambda runtime sees the zip; every project module must come from the zip.
    Returns the project modules imported: name -> file."""
    script = f"""
import json, sys
sys.path[:0] = [{str(unzipped)!r}]
sys.path.append({sysconfig.get_paths()["purelib"]!r})
import {module}
project = {{"jobs", "lambda_trigger", "kpi_api", "ecomkpi", "bench"}}
print(json.dumps({{n: m.__file__ for n, m in sys.modules.items() if n.split(".")[0] in project}}))
"""
    result = subprocess.run(
        [sys.executable, "-S", "-c", script], capture_output=True, text=True, timeout=60, cwd=unzipped
    )
    assert result.returncode == 0, result.stderr
    modules: dict[str, str] = json.loads(result.stdout)
    outside = {n: f for n, f in modules.items() if not f.startswith(str(unzipped))}
    assert not outside, outside
    return modules


def test_deploy_fails_clearly_without_aws_cli(deploy_repo: Path) -> None:
    path = "/usr/bin:/bin"
    if shutil.which("aws", path=path):
        pytest.skip("an aws CLI is installed system-wide")
    result = run_deploy(deploy_repo, {**base_env(path), **REQUIRED})
    assert result.returncode != 0
    assert "aws CLI" in result.stderr


def test_deploy_names_missing_variables(deploy_repo: Path, tmp_path: Path) -> None:
    env = base_env(f"{fake_aws(tmp_path)}:/usr/bin:/bin")
    env["ECOMKPI_BUCKET"] = "x-bucket"
    result = run_deploy(deploy_repo, env)
    assert result.returncode == 2
    for var in set(REQUIRED) - {"ECOMKPI_BUCKET"}:
        assert var in result.stderr.splitlines()[0]
    assert "ECOMKPI_BUCKET" not in result.stderr.splitlines()[0]


def test_deploy_fails_clearly_without_the_worker_definition(deploy_repo: Path, tmp_path: Path) -> None:
    (deploy_repo / "stepfunctions" / WORKER_ASL.name).unlink()
    env = {**base_env(f"{fake_aws(tmp_path)}:/usr/bin:/bin"), **REQUIRED, "FAKE_AWS_LOG": str(tmp_path / "l")}
    result = run_deploy(deploy_repo, env)
    assert result.returncode != 0
    assert WORKER_ASL.name in result.stderr
    assert not (tmp_path / "l").exists() or "package" not in (tmp_path / "l").read_text()


def test_deploy_fails_clearly_without_the_kpi_api_package(deploy_repo: Path, tmp_path: Path) -> None:
    shutil.rmtree(deploy_repo / "kpi_api")
    env = {**base_env(f"{fake_aws(tmp_path)}:/usr/bin:/bin"), **REQUIRED, "FAKE_AWS_LOG": str(tmp_path / "l")}
    result = run_deploy(deploy_repo, env)
    assert result.returncode != 0
    assert "kpi_api package not found" in result.stderr
    assert not (tmp_path / "l").exists() or "package" not in (tmp_path / "l").read_text()


def test_deploy_rejects_an_unknown_task_mode(deploy_repo: Path, tmp_path: Path) -> None:
    env = {**base_env(f"{fake_aws(tmp_path)}:/usr/bin:/bin"), **REQUIRED, "ECOMKPI_TASK_MODE": "lambda"}
    result = run_deploy(deploy_repo, env)
    assert result.returncode != 0
    assert "ECOMKPI_TASK_MODE" in result.stderr


def test_deploy_packages_and_deploys(deploy_repo: Path, tmp_path: Path) -> None:
    log = tmp_path / "aws.log"
    env = {
        **base_env(f"{fake_aws(tmp_path)}:/usr/bin:/bin"),
        **REQUIRED,
        "FAKE_AWS_LOG": str(log),
        "ECOMKPI_ENV": "staging",
        "AWS_REGION": "eu-west-1",
        "ECOMKPI_TRANSFORMATION_MEMORY": "16384",
    }
    result = run_deploy(deploy_repo, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "docker build --platform linux/amd64 -f docker/Dockerfile" in result.stdout
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    package = next(c for c in calls if c[:2] == ["cloudformation", "package"])
    deploy = next(c for c in calls if c[:2] == ["cloudformation", "deploy"])
    assert package[package.index("--template-file") + 1] == str(deploy_repo / "infra" / "ecomkpi-stack.yaml")
    assert package[package.index("--s3-bucket") + 1] == "ecomkpi-artifacts-test"
    assert package[package.index("--region") + 1] == "eu-west-1"
    packaged = package[package.index("--output-template-file") + 1]
    assert deploy[deploy.index("--template-file") + 1] == packaged
    assert deploy[deploy.index("--stack-name") + 1] == "ecomkpi-staging"
    assert "CAPABILITY_IAM" in deploy
    overrides = dict(a.split("=", 1) for a in deploy[deploy.index("--parameter-overrides") + 1 :] if "=" in a)
    template_params = set(decode(str(TEMPLATE))[0]["Parameters"])
    assert set(overrides) <= template_params
    assert overrides["EnvironmentName"] == "staging"
    assert overrides["BucketName"] == "ecomkpi-data-test"
    assert overrides["SubnetIds"] == "subnet-aaa,subnet-bbb"
    assert overrides["SecurityGroupIds"] == "sg-ccc"
    assert overrides["ImageUri"] == REQUIRED["ECOMKPI_IMAGE_URI"]
    assert overrides["TransformationTaskMemory"] == "16384"
    assert overrides["TaskMode"] == "worker"
    template = load_template()
    for name, value in overrides.items():
        spec = template["Parameters"][name]
        assert value in [str(v) for v in spec.get("AllowedValues", [value])], name
        assert re.fullmatch(spec.get("AllowedPattern", ".*"), value), name
    # `package` uploads every local path the template names, both modes' definitions included: each
    # state machine's DefinitionS3Location is a file of the packaged repository.
    for name, path in STATE_MACHINES.values():
        location = (deploy_repo / "infra" / props(template, name)["DefinitionS3Location"]).resolve()
        assert location == deploy_repo / "stepfunctions" / path.name
        json.loads(location.read_text())
    # Each Lambda package's zip: the package at its root, its files and the shared client factory
    # only, no bytecode; and the handler imports from the zip alone.
    for package in LAMBDA_PACKAGES:
        zip_path = deploy_repo / "out" / "deploy" / f"{package}.zip"
        with zipfile.ZipFile(zip_path) as zf:
            names = zf.namelist()
            zf.extractall(tmp_path / "unzipped" / package)
        assert f"{package}/__init__.py" in names and f"{package}/handler.py" in names, package
        assert all(n.startswith(f"{package}/") or n in LAMBDA_SHARED for n in names), package
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")], package
        shipped = {
            str(p.relative_to(deploy_repo))
            for p in (deploy_repo / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert set(names) == shipped | set(LAMBDA_SHARED), package
        imported = import_from_zip(tmp_path / "unzipped" / package, f"{package}.handler")
        assert imported["jobs.aws"].startswith(str(tmp_path / "unzipped" / package)), imported
    # Every function's Code path is the zip of its handler's package.
    functions = [
        r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
    ]
    assert functions
    for fn in functions:
        package = fn["Handler"].split(".")[0]
        assert package in LAMBDA_PACKAGES, fn["Handler"]
        zip_path = (deploy_repo / "infra" / fn["Code"]).resolve()
        assert zip_path == deploy_repo / "out" / "deploy" / f"{package}.zip"
    assert any(c[:2] == ["cloudformation", "describe-stacks"] for c in calls)


def test_deploy_passes_the_task_mode_and_worker_settings(deploy_repo: Path, tmp_path: Path) -> None:
    log = tmp_path / "aws.log"
    env = {
        **base_env(f"{fake_aws(tmp_path)}:/usr/bin:/bin"),
        **REQUIRED,
        "FAKE_AWS_LOG": str(log),
        "ECOMKPI_TASK_MODE": "ecs",
        "ECOMKPI_WORKER_MIN_CAPACITY": "0",
        "ECOMKPI_WORKER_MAX_CAPACITY": "2",
        "ECOMKPI_WORKER_MEMORY": "16384",
    }
    result = run_deploy(deploy_repo, env)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    deploy = next(c for c in calls if c[:2] == ["cloudformation", "deploy"])
    overrides = dict(a.split("=", 1) for a in deploy[deploy.index("--parameter-overrides") + 1 :] if "=" in a)
    assert overrides["TaskMode"] == "ecs"
    assert (overrides["WorkerMinCapacity"], overrides["WorkerMaxCapacity"]) == ("0", "2")
    assert overrides["WorkerTaskMemory"] == "16384"
    assert overrides["WorkerTaskCpu"] == str(load_template()["Parameters"]["WorkerTaskCpu"]["Default"])


# ---------------------------------------------------------------- alarms to the alerts topic
def alert_alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every alarm whose action is the alerts topic (the worker's scaling alarms act on policies)."""
    return {
        name: res["Properties"]
        for name, res in template["Resources"].items()
        if res["Type"] == "AWS::CloudWatch::Alarm"
        and {"Ref": "AlertsTopic"} in res["Properties"].get("AlarmActions", [])
    }


def expected_alert_alarms(mode: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Alarm -> (namespace, metric, dimensions): what each alarm must watch in this mode."""
    state_machine = {"Ref": STATE_MACHINES[mode][0]}
    function = {"FunctionName": {"Ref": "TriggerFunction"}}

    def queue(name: str) -> dict[str, Any]:
        return {"QueueName": {"Fn::GetAtt": [name, "QueueName"]}}

    alarms = {
        "ExecutionsFailedAlarm": ("AWS/States", "ExecutionsFailed", {"StateMachineArn": state_machine}),
        "ExecutionsTimedOutAlarm": ("AWS/States", "ExecutionsTimedOut", {"StateMachineArn": state_machine}),
        "ExecutionsAbortedAlarm": ("AWS/States", "ExecutionsAborted", {"StateMachineArn": state_machine}),
        "TriggerErrorsAlarm": ("AWS/Lambda", "Errors", function),
        "TriggerThrottlesAlarm": ("AWS/Lambda", "Throttles", function),
        "ExecutionStatusRuleFailedInvocationsAlarm": (
            "AWS/Events",
            "FailedInvocations",
            {"RuleName": {"Ref": "ExecutionStatusRule"}},
        ),
        "ReconcileRuleFailedInvocationsAlarm": (
            "AWS/Events",
            "FailedInvocations",
            {"RuleName": {"Ref": "ReconcileScheduleRule"}},
        ),
        "UnrecognisedKeysAlarm": ("ecomkpi", "UnrecognisedKeys", {"Bucket": {"Ref": "BucketName"}}),
        "UnannouncedKeysAlarm": ("ecomkpi", "UnannouncedKeys", {"Bucket": {"Ref": "BucketName"}}),
        "DeadLetterQueueAlarm": (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            queue("RawEventsDeadLetterQueue"),
        ),
        "TriggerEventsDeadLetterAlarm": (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            queue("TriggerEventsDeadLetterQueue"),
        ),
        "TriggerAsyncDeadLetterAlarm": (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            queue("TriggerAsyncDeadLetterQueue"),
        ),
        "KpiApiErrorsAlarm": ("AWS/Lambda", "Errors", {"FunctionName": {"Ref": "KpiApiFunction"}}),
        # HTTP APIs publish 5xx per ApiId and Stage (the $default stage's name is "$default").
        "KpiApi5xxAlarm": (
            "AWS/ApiGateway",
            "5xx",
            {"ApiId": {"Ref": "KpiApi"}, "Stage": {"Ref": "KpiApiStage"}},
        ),
    }
    if mode == "worker":
        alarms["WorkQueueDeadLetterAlarm"] = (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            queue("WorkQueueDeadLetterQueue"),
        )
        alarms["PrecheckDeadLetterAlarm"] = (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            queue("PrecheckDeadLetterQueue"),
        )
    return alarms


def test_alert_alarms_watch_the_resources_they_are_about(as_deployed: dict[str, Any], mode: str) -> None:
    """Each alarm's metric and dimensions name the resource of this mode it is about (the state
    machine alarms follow TaskMode), and each fires on one 5-minute period with a count above 0."""
    alarms = alert_alarms(as_deployed)
    expected = expected_alert_alarms(mode)
    assert set(alarms) == set(expected)
    for name, (namespace, metric, dimensions) in expected.items():
        alarm = alarms[name]
        assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric), name
        assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == dimensions, name
        assert alarm["Period"] == 300 and alarm["EvaluationPeriods"] == 1, name
        assert alarm["Statistic"] == ("Maximum" if namespace == "AWS/SQS" else "Sum"), name
        assert breaches(alarm, 1) and not breaches(alarm, 0), name
        assert not breaches(alarm, None), name  # nothing happened is no news
    # Names carry the environment (several stacks share an account) and are unique.
    names = [a["AlarmName"]["Fn::Sub"] for a in alarms.values()]
    assert all(n.endswith("-${EnvironmentName}") for n in names)
    assert len(set(names)) == len(names)


def test_unrecognised_keys_alarm_watches_what_the_lambda_publishes(template: dict[str, Any]) -> None:
    """The Lambda's own count() call, recorded, is the metric the alarm watches (same namespace,
    name and dimensions, the dimension value being the bucket the stack passes as S3_BUCKET)."""
    unrecognised = pytest.importorskip("lambda_trigger.unrecognised")
    calls: list[dict[str, Any]] = []

    class RecordingCloudWatch:
        def put_metric_data(self, **kwargs: Any) -> None:
            calls.append(kwargs)

    unrecognised.count(RecordingCloudWatch(), "the-bucket")
    ((call,),) = [calls]
    (datum,) = call["MetricData"]
    alarm = props(template, "UnrecognisedKeysAlarm")
    assert (call["Namespace"], datum["MetricName"]) == (alarm["Namespace"], alarm["MetricName"])
    dims = {d["Name"]: d["Value"] for d in datum["Dimensions"]}
    assert dims == {"Bucket": "the-bucket"}
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {"Bucket": {"Ref": "BucketName"}}
    assert props(template, "TriggerFunction")["Environment"]["Variables"]["S3_BUCKET"] == {
        "Ref": "BucketName"
    }
    # Sum of moved keys in 5 minutes: one key is enough.
    assert alarm["Statistic"] == "Sum" and breaches(alarm, datum["Value"])


# ---------------------------------------------------------------- the KPI read API (issue #17)
# The routes kpi_api/handler.py serves; any other path is API Gateway's 404 (the function is not run).
KPI_API_ROUTES = {
    "GET /",
    "GET /kpis/daily",
    "GET /kpis/categories",
    "GET /kpis/categories/{category_id}",
    "GET /status",
    "GET /quality",
    "GET /quality/{date}",
    "GET /days",
}
JWT_PARAMS = {
    "ApiAuthorization": "JWT",
    "JwtIssuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
    "JwtAudience": "dashboard-client,cli-client",
}
# Parameters for each value of ApiAuthorization.
AUTHORIZATIONS = {"IAM": {"ApiAuthorization": "IAM"}, "JWT": JWT_PARAMS}


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {n: r.get("Properties", {}) for n, r in template["Resources"].items() if r["Type"] == kind}


def test_kpi_api_function(template: dict[str, Any], as_deployed: dict[str, Any]) -> None:
    fn = props(as_deployed, "KpiApiFunction")
    assert fn["Runtime"] == props(as_deployed, "TriggerFunction")["Runtime"] == "python3.11"
    assert fn["Handler"] == "kpi_api.handler.lambda_handler"
    assert fn["Code"] == "../out/deploy/kpi_api.zip"
    assert (fn["MemorySize"], fn["Timeout"]) == (256, 10)
    assert fn["Role"] == {"Fn::GetAtt": ["KpiApiFunctionRole", "Arn"]}
    assert fn["FunctionName"] == {"Fn::Sub": "ecomkpi-kpi-api-${EnvironmentName}"}
    assert fn["Environment"]["Variables"] == {
        "DAILY_KPIS_TABLE": {"Ref": "DailyKpisTable"},
        "CATEGORY_KPIS_TABLE": {"Ref": "CategoryKpisTable"},
        "PIPELINE_BATCH_TRACKER_TABLE": {"Ref": "BatchTrackerTable"},
        "DATA_QUALITY_TABLE": {"Ref": "DataQualityTable"},
        "S3_BUCKET": {"Ref": "BucketName"},
    }
    # Its own log group, the one Lambda writes to (/aws/lambda/<function name>), created first.
    logs = props(as_deployed, "KpiApiLogGroup")
    assert logs["LogGroupName"]["Fn::Sub"] == "/aws/lambda/" + fn["FunctionName"]["Fn::Sub"]
    assert logs["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert as_deployed["Resources"]["KpiApiFunction"]["DependsOn"] == "KpiApiLogGroup"
    # No reservation by default (0 would disable the function); a positive value is passed as is.
    param = template["Parameters"]["KpiApiReservedConcurrency"]
    assert param["Default"] == 0 and param["MinValue"] == 0
    assert "ReservedConcurrentExecutions" not in fn
    reserved = props(deployed(template, {"KpiApiReservedConcurrency": "5"}), "KpiApiFunction")
    assert reserved["ReservedConcurrentExecutions"] == {"Ref": "KpiApiReservedConcurrency"}


def test_authorisation_has_no_anonymous_value(template: dict[str, Any]) -> None:
    param = template["Parameters"]["ApiAuthorization"]
    assert param["Default"] == "IAM"
    assert set(param["AllowedValues"]) == set(AUTHORIZATIONS)


@pytest.mark.parametrize("auth", sorted(AUTHORIZATIONS))
def test_every_kpi_api_route_requires_authorisation(template: dict[str, Any], auth: str) -> None:
    """In both values of ApiAuthorization, every route of every API of the stack has an
    authorisation type other than NONE: SigV4 (AWS_IAM) or the stack's JWT authorizer."""
    for mode in MODES:
        t = deployed(template, {**AUTHORIZATIONS[auth], "TaskMode": mode})
        (api,) = of_type(t, "AWS::ApiGatewayV2::Api").values()
        assert api["ProtocolType"] == "HTTP"
        routes = of_type(t, "AWS::ApiGatewayV2::Route")
        assert sorted(r["RouteKey"] for r in routes.values()) == sorted(KPI_API_ROUTES)
        authorizers = of_type(t, "AWS::ApiGatewayV2::Authorizer")
        for name, route in routes.items():
            assert route["ApiId"] == {"Ref": "KpiApi"}, name
            assert route["Target"] == {"Fn::Sub": "integrations/${KpiApiIntegration}"}, name
            assert route.get("AuthorizationType", "NONE") != "NONE", name
            if auth == "IAM":
                assert route["AuthorizationType"] == "AWS_IAM" and "AuthorizerId" not in route, name
            else:
                assert route["AuthorizationType"] == "JWT", name
                assert route["AuthorizerId"] == {"Ref": "KpiApiJwtAuthorizer"}, name
        if auth == "IAM":
            assert authorizers == {}
            continue
        (authorizer,) = authorizers.values()
        assert authorizer["ApiId"] == {"Ref": "KpiApi"}
        assert authorizer["AuthorizerType"] == "JWT"
        assert authorizer["IdentitySource"] == ["$request.header.Authorization"]
        assert authorizer["JwtConfiguration"] == {
            "Issuer": {"Ref": "JwtIssuer"},
            "Audience": {"Fn::Split": [",", {"Ref": "JwtAudience"}]},
        }


def rule_failures(template: dict[str, Any], params: dict[str, str]) -> list[str]:
    """The AssertDescription of every rule assertion CloudFormation would fail for ``params``."""
    values = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()}
    values.update(params)

    def value(x: Any) -> Any:
        if isinstance(x, dict) and set(x) == {"Ref"}:
            return values[x["Ref"]]
        return holds(x) if isinstance(x, dict) else str(x)

    def holds(expr: Any) -> bool:
        ((fn, a),) = expr.items()
        if fn == "Fn::Equals":
            return value(a[0]) == value(a[1])
        if fn == "Fn::Not":
            return not holds(a[0])
        if fn == "Fn::And":
            return all(holds(x) for x in a)
        if fn == "Fn::Or":
            return any(holds(x) for x in a)
        raise AssertionError(f"rule function {fn} not handled here")

    failures = []
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not holds(rule["RuleCondition"]):
            continue
        failures += [a["AssertDescription"] for a in rule["Assertions"] if not holds(a["Assert"])]
    return failures


def test_jwt_without_issuer_or_audience_is_refused(template: dict[str, Any]) -> None:
    assert rule_failures(template, {}) == []  # IAM, the default, needs neither
    assert rule_failures(template, JWT_PARAMS) == []
    (no_issuer,) = rule_failures(template, {**JWT_PARAMS, "JwtIssuer": ""})
    assert "JwtIssuer" in no_issuer
    (no_audience,) = rule_failures(template, {**JWT_PARAMS, "JwtAudience": ""})
    assert "JwtAudience" in no_audience
    assert len(rule_failures(template, {"ApiAuthorization": "JWT"})) == 2
    # The issuer is an https URL (API Gateway fetches its OpenID configuration) or empty.
    pattern = template["Parameters"]["JwtIssuer"]["AllowedPattern"]
    for ok in ("", JWT_PARAMS["JwtIssuer"], "https://example.eu.auth0.com/"):
        assert re.fullmatch(pattern, ok), ok
    for bad in ("http://issuer.example.com", "issuer.example.com", "https://", "https://a b"):
        assert not re.fullmatch(pattern, bad), bad


def test_kpi_api_integration_stage_and_throttling(template: dict[str, Any]) -> None:
    integration = props(template, "KpiApiIntegration")
    assert integration["ApiId"] == {"Ref": "KpiApi"}
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["PayloadFormatVersion"] == "2.0"
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["KpiApiFunction", "Arn"]}
    assert props(template, "KpiApi")["Name"] == {"Fn::Sub": "ecomkpi-kpi-api-${EnvironmentName}"}
    (stage_name,) = of_type(template, "AWS::ApiGatewayV2::Stage")
    stage = props(template, stage_name)
    assert (stage["ApiId"], stage["StageName"], stage["AutoDeploy"]) == ({"Ref": "KpiApi"}, "$default", True)
    # Every route is throttled by the two parameters; no route overrides them.
    assert stage["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottleRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurstLimit"},
    }
    assert "RouteSettings" not in stage
    params = template["Parameters"]
    assert (params["ApiThrottleRateLimit"]["Default"], params["ApiThrottleBurstLimit"]["Default"]) == (20, 40)
    assert (
        params["ApiThrottleRateLimit"]["MinValue"] >= 1 and params["ApiThrottleBurstLimit"]["MinValue"] >= 1
    )
    # Access log: one JSON object per request, every field a $context variable.
    access = stage["AccessLogSettings"]
    assert access["DestinationArn"] == {"Fn::GetAtt": ["KpiApiAccessLogGroup", "Arn"]}
    fields = json.loads(access["Format"])
    assert {"requestId", "status", "routeKey", "sourceIp", "iamCaller", "jwtSubject"} <= set(fields)
    assert all(re.fullmatch(r"\$context\.[A-Za-z.]+", v) for v in fields.values()), fields
    logs = props(template, "KpiApiAccessLogGroup")
    assert logs["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert logs["LogGroupName"] == {"Fn::Sub": "/ecomkpi/${EnvironmentName}/kpi-api-access"}


def test_kpi_api_permission_and_outputs(as_deployed: dict[str, Any]) -> None:
    perm = props(as_deployed, "KpiApiInvokePermission")
    assert perm["FunctionName"] == {"Ref": "KpiApiFunction"}
    assert (perm["Action"], perm["Principal"]) == ("lambda:InvokeFunction", "apigateway.amazonaws.com")
    assert "${KpiApi}/" in perm["SourceArn"]["Fn::Sub"]  # this API (what it allows: test_infra_policies)
    # The only permission API Gateway has on any function of the stack.
    api_permissions = [
        n
        for n, p in of_type(as_deployed, "AWS::Lambda::Permission").items()
        if "apigateway" in p["Principal"]
    ]
    assert api_permissions == ["KpiApiInvokePermission"]
    outputs = as_deployed["Outputs"]
    assert outputs["KpiApiEndpoint"]["Value"] == {"Fn::GetAtt": ["KpiApi", "ApiEndpoint"]}
    assert outputs["KpiApiFunctionName"]["Value"] == {"Ref": "KpiApiFunction"}
    # The ARN a reader's execute-api:Invoke names is the one the function trusts.
    assert outputs["KpiApiInvokeArn"]["Value"] == perm["SourceArn"]
    assert outputs["KpiApiLogGroupName"]["Value"] == {"Ref": "KpiApiLogGroup"}
    assert outputs["KpiApiAccessLogGroupName"]["Value"] == {"Ref": "KpiApiAccessLogGroup"}


# ---- the kpi_api package as the stack deploys it (skipped until it exists)
KPI_API = ROOT / "kpi_api"
# What the python3.11 Lambda runtime provides besides the standard library.
LAMBDA_RUNTIME_PACKAGES = {"boto3", "botocore"}


def lambda_modules(package: str) -> dict[str, tuple[ast.Module, str]]:
    """The project modules a Lambda's handler imports, transitively (its package's, and the shared
    files beside it): name -> (syntax tree, the package its relative imports start from)."""
    if not (ROOT / package / "handler.py").exists():
        pytest.skip(f"{package}/handler.py not written yet")
    shipped = {package} | {
        name.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for name in LAMBDA_SHARED
    }
    found: dict[str, tuple[ast.Module, str]] = {}
    todo = [f"{package}.handler", package]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        base = ROOT.joinpath(*name.split("."))
        if base.with_suffix(".py").exists():
            path, parent = base.with_suffix(".py"), name.rsplit(".", 1)[0]
        elif (base / "__init__.py").exists():
            path, parent = base / "__init__.py", name
        else:
            continue  # a name imported from a module, not a module
        tree = ast.parse(path.read_text())
        found[name] = (tree, parent)
        for imported in imports(tree, parent):
            parts = imported.split(".")
            prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
            if parts[0] == package:
                todo += prefixes[1:]
            else:
                todo += [p for p in prefixes if p in shipped]
    return found


def kpi_api_modules() -> dict[str, tuple[ast.Module, str]]:
    return lambda_modules("kpi_api")


def imports(tree: ast.Module, package: str) -> set[str]:
    """Absolute names a module imports at run time (``if TYPE_CHECKING:`` blocks left out); for
    ``from x import y`` both ``x`` and ``x.y`` (y may be a module)."""
    names: set[str] = set()
    type_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for n in ast.walk(child)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    return names


def _shipped(name: str, shared: set[str]) -> bool:
    """``name`` is a shared module, or a name defined in one (``from jobs import aws`` names
    ``jobs.aws``; ``from jobs import config`` names a module the zip does not have)."""
    if name in shared:
        return True
    parent = name.rsplit(".", 1)[0]
    base = ROOT.joinpath(*name.split("."))
    return parent in shared and not base.with_suffix(".py").exists() and not base.is_dir()


@pytest.mark.parametrize("package", LAMBDA_PACKAGES)
def test_lambda_needs_nothing_the_zip_does_not_ship(package: str) -> None:
    """deploy.sh ships each Lambda's package with jobs/aws.py (and the docstring-only
    jobs/__init__.py) beside it: what the handler imports, at run time, is the standard library,
    boto3 / botocore (in the Lambda runtime), its own package or those shared files. Anything else
    would be an ImportError in AWS (and the rest of jobs/ or ecomkpi/ would bring pyspark with it).
    Imports under ``if TYPE_CHECKING:`` (the typed clients) are not run and do not count."""
    modules = lambda_modules(package)
    shared = {name.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for name in LAMBDA_SHARED}
    allowed = set(sys.stdlib_module_names) | LAMBDA_RUNTIME_PACKAGES | {package, "__future__"}
    outside = {
        (module, name)
        for module, (tree, parent) in modules.items()
        for name in imports(tree, parent)
        if name.split(".")[0] not in allowed and not _shipped(name, shared)
    }
    assert not outside, outside
    assert "jobs.aws" in modules  # the handler builds its clients with the shared factory
    (handler,) = [
        node
        for node in modules[f"{package}.handler"][0].body
        if isinstance(node, ast.FunctionDef) and node.name == "lambda_handler"
    ]
    assert len(handler.args.args) == 2  # (event, context)


def test_kpi_api_reads_the_variables_the_stack_sets(template: dict[str, Any]) -> None:
    """Every variable name the code reads from the environment is one the function gets (or one
    of Lambda's / the SDK's own AWS_*), and every variable the stack sets is read."""
    modules = kpi_api_modules()
    read: set[str] = set()
    for tree, _ in modules.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = ast.unparse(node.func)
                if func in {"os.getenv", "os.environ.get", "environ.get", "env.get"}:
                    read.add(str(node.args[0].value))
            elif (
                isinstance(node, ast.Subscript)
                and ast.unparse(node.value) in {"os.environ", "environ", "env"}
                and isinstance(node.slice, ast.Constant)
            ):
                read.add(str(node.slice.value))
    stack = set(props(template, "KpiApiFunction")["Environment"]["Variables"])
    assert stack <= read, stack - read
    assert all(name.startswith("AWS_") for name in read - stack), read - stack


# ---------------------------------------------------------------- Spark on an existing cluster
# SparkMaster (empty by default: Spark local in each task) and what a client-mode driver in the task
# needs: docs/scale-out.md. The checks are properties of every job task definition the deployment
# makes, in both modes, rather than the template's lines.
JOBS = ROOT / "jobs"
HOSTS = ROOT / "hosts"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
SPARK_SETTINGS = {
    "SPARK_MASTER": "SparkMaster",
    "SPARK_EXECUTOR_JARS": "SparkExecutorJars",
    "SPARK_EXTRA_CONF": "SparkExtraConf",
}
DRIVER_PORTS = ("SPARK_DRIVER_PORT", "SPARK_DRIVER_BLOCK_MANAGER_PORT")
SPARK_CLUSTER = {  # a deployment whose jobs use a standalone cluster's executors
    "SparkMaster": "spark://10.0.1.5:7077",
    "SparkExecutorJars": "image",
    "SparkExtraConf": "spark.cores.max=8 spark.executor.memory=6g",
    "SparkClusterSecurityGroupId": "sg-0123456789abcdef0",
    "VpcId": "vpc-0123456789abcdef0",
}


def job_containers(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The (one) container of every task definition in ``t``, by task definition."""
    out = {}
    for name, r in t["Resources"].items():
        if r["Type"] == "AWS::ECS::TaskDefinition":
            (out[name],) = r["Properties"]["ContainerDefinitions"]
    return out


def environment(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container["Environment"]}


def evaluate(value: Any, refs: dict[str, Any]) -> Any:
    """Ref / Fn::Join / Fn::Split with ``refs`` (a List parameter is a list)."""
    if isinstance(value, list):
        return [evaluate(v, refs) for v in value]
    if not isinstance(value, dict):
        return value
    ((fn, arg),) = value.items()
    if fn == "Ref":
        return refs[arg]
    if fn == "Fn::Join":
        return arg[0].join(evaluate(arg[1], refs))
    if fn == "Fn::Split":
        return evaluate(arg[1], refs).split(arg[0])
    raise AssertionError(f"{fn} not handled here")


def test_every_job_task_gets_the_spark_settings_from_the_parameters(
    template: dict[str, Any], mode: str
) -> None:
    t = deployed(template, {"TaskMode": mode})
    containers = job_containers(t)
    expected = {"ValidationTaskDefinition", "TransformationTaskDefinition"}
    assert set(containers) == expected | ({"WorkerTaskDefinition"} if mode == "worker" else set())
    ports = set()
    for name, container in containers.items():
        env = environment(container)
        for variable, parameter in SPARK_SETTINGS.items():
            assert env[variable] == {"Ref": parameter}, (name, variable)
        ports.add(tuple(env[v] for v in DRIVER_PORTS))
    (fixed,) = ports  # the same fixed ports in every task, so one security group rule fits all
    assert all(p.isdigit() for p in fixed) and fixed[0] != fixed[1]
    # Always set, never conditional: moto's deploy (tests/infra/test_infra_moto.py) and a plain reading of
    # the task definition both see the same list; an empty value means local (jobs/config.py).
    for name, container in job_containers(template).items():
        for entry in container["Environment"]:
            assert set(entry) == {"Name", "Value"} and "Fn::If" not in json.dumps(entry), (name, entry)


def test_the_code_reads_every_variable_the_stack_sets_on_a_job_task(template: dict[str, Any]) -> None:
    """No dead (or misspelt) variable: each name is read by the jobs, the worker host or the image's entrypoint."""
    python = "\n".join(p.read_text() for d in (JOBS, HOSTS) for p in d.rglob("*.py"))
    shell = ENTRYPOINT.read_text()
    names = {
        n
        for mode in MODES
        for c in job_containers(deployed(template, {"TaskMode": mode})).values()
        for n in environment(c)
    }
    assert set(SPARK_SETTINGS) | set(DRIVER_PORTS) <= names
    unread = {n for n in names if f'"{n}"' not in python and not re.search(rf"\$\{{?{n}\b", shell)}
    assert not unread


def spark_env(template: dict[str, Any], params: dict[str, str]) -> dict[str, str]:
    """The Spark variables a job task gets for ``params`` (defaults for the others)."""
    values = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()} | params
    env = environment(job_containers(template)["TransformationTaskDefinition"])
    return {
        k: values[v["Ref"]] if isinstance(v, dict) else v for k, v in env.items() if k.startswith("SPARK_")
    }


def test_the_defaults_keep_spark_local_and_a_cluster_master_makes_a_reachable_driver(
    template: dict[str, Any],
) -> None:
    from jobs.config import PipelineConfig
    from jobs.spark_session import session_conf

    jars = ["/opt/ecomkpi/jars/delta-spark.jar", "/opt/ecomkpi/jars/hadoop-aws.jar"]
    local = PipelineConfig.from_env(spark_env(template, {}))
    assert local.spark_master == "local[*]"  # the entrypoint makes it local[N] (N = the task's vCPUs)
    conf = session_conf(local, jars, driver_host="10.0.1.9")
    assert not {
        "spark.jars",
        "spark.executor.extraClassPath",
        "spark.driver.host",
        "spark.driver.port",
    } & set(conf)

    cluster = PipelineConfig.from_env(spark_env(template, SPARK_CLUSTER))
    conf = session_conf(cluster, jars, driver_host="10.0.1.9")
    assert conf["spark.master"] == SPARK_CLUSTER["SparkMaster"]
    assert conf["spark.executor.extraClassPath"] == "/opt/ecomkpi/jars/*" and "spark.jars" not in conf
    assert conf["spark.cores.max"] == "8"
    sg = props(deployed(template, SPARK_CLUSTER), "SparkDriverSecurityGroup")
    opened = {(r["FromPort"], r["ToPort"]) for r in sg["SecurityGroupIngress"]}
    driver_ports = {int(conf["spark.driver.port"]), int(conf["spark.driver.blockManager.port"])}
    assert opened == {(p, p) for p in driver_ports}
    # Every value the parameters allow is one the jobs accept.
    for jars_mode in template["Parameters"]["SparkExecutorJars"]["AllowedValues"]:
        PipelineConfig.from_env(spark_env(template, {**SPARK_CLUSTER, "SparkExecutorJars": jars_mode}))


def test_spark_master_parameter(template: dict[str, Any]) -> None:
    param = template["Parameters"]["SparkMaster"]
    assert param["Default"] == ""
    for ok in ("", "spark://10.0.1.5:7077", "spark://m1:7077,m2:7077", "k8s://https://api.example.com:443"):
        assert re.fullmatch(param["AllowedPattern"], ok), ok
    # local[N] is the entrypoint's choice (from the task's vCPUs); YARN and Mesos are not supported.
    for bad in ("local[2]", "yarn", "spark://", "spark://a b", "mesos://m:5050"):
        assert not re.fullmatch(param["AllowedPattern"], bad), bad
    assert template["Parameters"]["SparkExecutorJars"]["Default"] == "auto"


def test_driver_security_group_only_with_a_cluster_and_only_the_driver_ports(
    template: dict[str, Any], mode: str
) -> None:
    refs = {"SecurityGroupIds": ["sg-task"], "SparkDriverSecurityGroup": "sg-driver"}

    def task_groups(t: dict[str, Any]) -> list[str]:
        """The security groups every job task of the mode runs with."""
        if mode == "ecs":
            subs = props(t, "PipelineStateMachine")["DefinitionSubstitutions"]
            return evaluate(subs["SecurityGroupIds"], refs).split(",")
        return evaluate(
            props(t, "WorkerService")["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"], refs
        )

    for params in ({}, {"SparkMaster": SPARK_CLUSTER["SparkMaster"]}):
        t = deployed(template, {"TaskMode": mode, **params})
        assert "SparkDriverSecurityGroup" not in t["Resources"]
        assert "SparkDriverSecurityGroupId" not in t["Outputs"]
        assert task_groups(t) == ["sg-task"]

    t = deployed(template, {"TaskMode": mode, **SPARK_CLUSTER})
    assert task_groups(t) == ["sg-task", "sg-driver"]
    assert t["Outputs"]["SparkDriverSecurityGroupId"]["Value"] == {"Ref": "SparkDriverSecurityGroup"}
    sg = props(t, "SparkDriverSecurityGroup")
    assert sg["VpcId"] == {"Ref": "VpcId"}
    env = environment(job_containers(t)["TransformationTaskDefinition"])
    driver_ports = {int(env[v]) for v in DRIVER_PORTS}
    cluster = {"Ref": "SparkClusterSecurityGroupId"}
    # In: from the cluster's group only, on the driver's two ports only.
    for rule in sg["SecurityGroupIngress"]:
        assert rule["SourceSecurityGroupId"] == cluster and rule["IpProtocol"] == "tcp"
        assert rule["FromPort"] == rule["ToPort"] and rule["FromPort"] in driver_ports
        assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule) and rule["Description"]
    assert {r["FromPort"] for r in sg["SecurityGroupIngress"]} == driver_ports
    # Out: to the cluster's group only (without SecurityGroupEgress AWS would allow everything).
    assert sg["SecurityGroupEgress"]
    for rule in sg["SecurityGroupEgress"]:
        assert rule["DestinationSecurityGroupId"] == cluster and rule["IpProtocol"] == "tcp"
        assert rule["FromPort"] >= 1024 and not {"CidrIp", "CidrIpv6"} & set(rule) and rule["Description"]


def test_a_driver_security_group_needs_its_vpc_and_a_cluster_master(template: dict[str, Any]) -> None:
    assert rule_failures(template, SPARK_CLUSTER) == []
    assert (
        rule_failures(template, {"SparkMaster": SPARK_CLUSTER["SparkMaster"]}) == []
    )  # rules opened by hand
    (no_vpc,) = rule_failures(template, {**SPARK_CLUSTER, "VpcId": ""})
    assert "VpcId" in no_vpc
    (no_master,) = rule_failures(template, {**SPARK_CLUSTER, "SparkMaster": ""})
    assert "SparkMaster" in no_master
    for name in ("SparkClusterSecurityGroupId", "VpcId"):
        pattern = template["Parameters"][name]["AllowedPattern"]
        assert re.fullmatch(pattern, "") and re.fullmatch(pattern, SPARK_CLUSTER[name])
        assert not re.fullmatch(pattern, SPARK_CLUSTER[name].upper())


# ---------------------------------------------------------------- the tracker and the sweep (issue #38)
def test_tracker_table_has_the_open_days_index_and_ttl_the_trigger_uses(template: dict[str, Any]) -> None:
    """The sparse index the sweep queries and the TTL attribute finished days get are the names
    lambda_trigger/tracker.py writes (and creates locally with create_tracker_table)."""
    tracker = pytest.importorskip("lambda_trigger.tracker")
    table = props(template, "BatchTrackerTable")
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == tracker.OPEN_INDEX
    assert index["KeySchema"] == [
        {"AttributeName": tracker.SWEEP_SHARD, "KeyType": "HASH"},
        {"AttributeName": tracker.PARTITION_KEY, "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}  # the sweep needs whole items
    assert {"AttributeName": tracker.SWEEP_SHARD, "AttributeType": "S"} in table["AttributeDefinitions"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": tracker.TTL_ATTRIBUTE, "Enabled": True}


def test_unannounced_keys_alarm_watches_what_the_sweep_publishes(template: dict[str, Any]) -> None:
    unannounced = pytest.importorskip("lambda_trigger.unannounced")
    calls: list[dict[str, Any]] = []

    class RecordingCloudWatch:
        def put_metric_data(self, **kwargs: Any) -> None:
            calls.append(kwargs)

    unannounced.count(RecordingCloudWatch(), "the-bucket", 2)
    ((call,),) = [calls]
    (datum,) = call["MetricData"]
    alarm = props(template, "UnannouncedKeysAlarm")
    assert (call["Namespace"], datum["MetricName"]) == (alarm["Namespace"], alarm["MetricName"])
    assert {d["Name"]: d["Value"] for d in datum["Dimensions"]} == {"Bucket": "the-bucket"}
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {"Bucket": {"Ref": "BucketName"}}
    assert alarm["Statistic"] == "Sum" and breaches(alarm, 1.0) and not breaches(alarm, 0.0)
