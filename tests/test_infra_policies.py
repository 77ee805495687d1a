"""Least privilege of infra/ecomkpi-stack.yaml, read from the template's IAM policies.

Every check runs on the template as each task mode deploys it (``deployed``: conditions and
``Fn::If`` resolved), so a statement that only one mode gets is checked in that mode.

* no Allow statement anywhere has a wildcard in an action (a Deny may: the bucket policy denies
  ``s3:*`` without TLS, which only narrows);
* ``Resource: "*"`` appears only with actions AWS offers no resource type for (``STAR_RESOURCE_OK``);
* each role touches only its own component's resources (``roles``), and the state machine role
  covers every service integration the mode's workflow's Task states call;
* worker mode: the worker role reaches its queue only, the state machine role runs no ECS task.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_infra_template import MODES, STATE_MACHINES, deployed, load_template

# Actions whose only resource is "*" (no resource type in the Service Authorization Reference).
STAR_RESOURCE_OK = {
    "ecr:GetAuthorizationToken",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    # A task token, not an ARN, names the task these answer (the Service Authorization Reference
    # lists no resource type for them).
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
}

KPI_TABLES = {"CategoryKpisTable", "DailyKpisTable"}


def roles(mode: str) -> dict[str, dict[str, Any]]:
    """Each role of the mode: its trusted service, the services it may call, what it may reach."""
    state_machine = STATE_MACHINES[mode][0]
    sfn_refs = {"BucketName", "AlertsTopic", "BatchTrackerTable"}
    if mode == "ecs":
        sfn_services = {"ecs", "iam", "events", "sns", "dynamodb", "logs", "s3"}
        sfn_refs |= {
            "ValidationTaskDefinition",
            "TransformationTaskDefinition",
            "EcsCluster",
            "TaskRole",
            "TaskExecutionRole",
        }
    else:
        sfn_services = {"sqs", "sns", "dynamodb", "logs", "s3"}
        sfn_refs |= {"WorkQueue"}
    spec: dict[str, dict[str, Any]] = {
        "TriggerFunctionRole": {
            "principal": "lambda.amazonaws.com",
            "services": {"dynamodb", "states", "sqs", "s3", "logs"},
            "refs": {"BatchTrackerTable", state_machine, "RawEventsQueue", "BucketName", "TriggerLogGroup"},
        },
        "TaskRole": {
            "principal": "ecs-tasks.amazonaws.com",
            "services": {"s3", "dynamodb"},
            "refs": {"BucketName"} | KPI_TABLES,
        },
        "TaskExecutionRole": {
            "principal": "ecs-tasks.amazonaws.com",
            "services": {"ecr", "logs"},
            "refs": {"EcrRepositoryName", "ValidationLogGroup", "TransformationLogGroup"}
            | ({"WorkerLogGroup"} if mode == "worker" else set()),
        },
        "StateMachineRole": {"principal": "states.amazonaws.com", "services": sfn_services, "refs": sfn_refs},
    }
    if mode == "worker":
        spec["WorkerTaskRole"] = {
            "principal": "ecs-tasks.amazonaws.com",
            "services": {"s3", "dynamodb", "sqs", "states"},
            "refs": {"BucketName", "WorkQueue"} | KPI_TABLES,
        }
    return spec


PSEUDO = re.compile(r"\$\{([A-Za-z0-9_]+)(?:\.[A-Za-z0-9_]+)?\}")


@pytest.fixture(scope="module", params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def template(mode: str) -> dict[str, Any]:
    """The template as deployed with TaskMode=mode."""
    return deployed(load_template(), {"TaskMode": mode})


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def refs_in(value: Any) -> set[str]:
    """Logical ids and parameters a value refers to (Ref, GetAtt, ${...} in Sub), pseudo-params out."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref":
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                found |= set(PSEUDO.findall(text))
                if isinstance(inner, list):
                    found |= refs_in(inner[1])
            else:
                found |= refs_in(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= refs_in(inner)
    return {f for f in found if not f.startswith("AWS::")}


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(resource name, statement) of every policy document in the template."""
    for name, res in template["Resources"].items():
        p = res.get("Properties", {})
        docs = [pol["PolicyDocument"] for pol in p.get("Policies", [])]
        for key in ("PolicyDocument", "AssumeRolePolicyDocument"):
            if key in p:
                docs.append(p[key])
        for doc in docs:
            for st in as_list(doc["Statement"]):
                yield name, st


def role_statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    p = template["Resources"][role]["Properties"]
    return [st for pol in p["Policies"] for st in as_list(pol["PolicyDocument"]["Statement"])]


def role_actions(template: dict[str, Any], role: str) -> set[str]:
    return {a for st in role_statements(template, role) for a in as_list(st["Action"])}


def test_every_role_is_checked(template: dict[str, Any], mode: str) -> None:
    found = {n for n, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert found == set(roles(mode))
    assert not [
        r
        for r in template["Resources"].values()
        if r["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}
    ]
    for role in found:
        assert "ManagedPolicyArns" not in template["Resources"][role]["Properties"], role


def test_every_statement_is_resolved_in_each_mode() -> None:
    """The raw template's conditional statements resolve to plain statements (no Fn::If left)."""
    raw = load_template()
    assert "Fn::If" in json.dumps(raw["Resources"]["StateMachineRole"])
    for mode in MODES:
        assert "Fn::If" not in json.dumps(deployed(raw, {"TaskMode": mode})["Resources"])


def test_no_wildcard_actions(template: dict[str, Any]) -> None:
    offenders = [
        (name, action)
        for name, st in statements(template)
        if st["Effect"] == "Allow"
        for action in as_list(st.get("Action", [])) + as_list(st.get("NotAction", []))
        if "*" in action
    ]
    assert not offenders
    assert not [name for name, st in statements(template) if "NotAction" in st or "NotResource" in st]


def test_star_resources_only_where_aws_has_no_resource_type(template: dict[str, Any]) -> None:
    for name, st in statements(template):
        if st["Effect"] != "Allow" or "Resource" not in st:
            continue
        if "*" in as_list(st["Resource"]):
            extra = set(as_list(st["Action"])) - STAR_RESOURCE_OK
            assert not extra, f"{name}: Resource '*' for {sorted(extra)}"


def test_roles_trust_only_their_service(template: dict[str, Any], mode: str) -> None:
    for role, spec in roles(mode).items():
        doc = template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]
        (st,) = as_list(doc["Statement"])
        assert st["Principal"] == {"Service": spec["principal"]}, role
        assert st["Action"] == "sts:AssumeRole"


def test_roles_stay_within_their_component(template: dict[str, Any], mode: str) -> None:
    for role, spec in roles(mode).items():
        actions = role_actions(template, role)
        services = {a.split(":", 1)[0] for a in actions}
        assert services <= spec["services"], f"{role}: {sorted(services - spec['services'])}"
        refs = refs_in(role_statements(template, role))
        assert refs <= spec["refs"], f"{role} reaches {sorted(refs - spec['refs'])}"


def test_cross_component_isolation(template: dict[str, Any], mode: str) -> None:
    trigger = refs_in(role_statements(template, "TriggerFunctionRole"))
    task = refs_in(role_statements(template, "TaskRole"))
    sfn = refs_in(role_statements(template, "StateMachineRole"))
    assert not trigger & KPI_TABLES
    state_machines = {name for name, _ in STATE_MACHINES.values()}
    assert "BatchTrackerTable" not in task and not task & state_machines
    assert not any(a.startswith("states:") for a in role_actions(template, "TaskRole"))
    assert not sfn & KPI_TABLES
    if mode == "worker":
        worker = refs_in(role_statements(template, "WorkerTaskRole"))
        assert "BatchTrackerTable" not in worker and not worker & state_machines
        # It answers tasks; it can start, stop or read no execution.
        states = {a for a in role_actions(template, "WorkerTaskRole") if a.startswith("states:")}
        assert states == {"states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"}
    # The workflow reads one kind of object (the alert's list of rejected files) and writes none.
    for st in role_statements(template, "StateMachineRole"):
        actions = set(as_list(st["Action"]))
        if any(a.startswith("s3:") for a in actions):
            assert actions == {"s3:GetObject"}
            (res,) = as_list(st["Resource"])
            assert res["Fn::Sub"].endswith("${BucketName}/logs/validation/*/rejections.txt")


def test_trigger_reads_only_manifests(template: dict[str, Any], mode: str) -> None:
    for st in role_statements(template, "TriggerFunctionRole"):
        actions = set(as_list(st["Action"]))
        if any(a.startswith("s3:") for a in actions):
            assert actions == {"s3:GetObject"}
            (res,) = as_list(st["Resource"])
            assert res["Fn::Sub"].endswith("/raw/manifests/*")
        if any(a.startswith("dynamodb:") for a in actions):
            assert actions == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
        if any(a.startswith("states:") for a in actions):
            assert actions == {"states:StartExecution"}
            assert st["Resource"] == {"Ref": STATE_MACHINES[mode][0]}


@pytest.mark.parametrize("role", ["TaskRole", "WorkerTaskRole"])
def test_job_roles_are_limited_to_pipeline_prefixes(template: dict[str, Any], mode: str, role: str) -> None:
    if role not in template["Resources"]:
        assert (mode, role) == ("ecs", "WorkerTaskRole")
        return
    prefixes = {"raw", "validated", "invalid", "processed", "logs", "lake"}
    for st in role_statements(template, role):
        if any(a.split(":")[0] in {"sqs", "states"} for a in as_list(st["Action"])):
            continue  # the worker's queue and task tokens: test_worker_role_*
        actions = set(as_list(st["Action"]))
        if actions == {"s3:ListBucket"}:
            assert st["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}"}
            (cond,) = st["Condition"].values()
            allowed = set(cond["s3:prefix"])
            assert {p.rstrip("/*") for p in allowed} == prefixes
        elif any(a.startswith("s3:") for a in actions):
            got = {r["Fn::Sub"].split("${BucketName}/", 1)[1] for r in as_list(st["Resource"])}
            assert got == {f"{p}/*" for p in prefixes}
        else:
            # The tables and the category table's date index; nothing else.
            assert {r.split(".")[0] for r in refs_in(st["Resource"])} == KPI_TABLES


def test_state_machine_role_scoping(template: dict[str, Any], mode: str) -> None:
    by_action = {a: st for st in role_statements(template, "StateMachineRole") for a in as_list(st["Action"])}
    assert by_action["sns:Publish"]["Resource"] == {"Ref": "AlertsTopic"}
    assert by_action["dynamodb:UpdateItem"]["Resource"] == {"Fn::GetAtt": ["BatchTrackerTable", "Arn"]}
    if mode == "worker":
        # The Task states only send to the work queue: no ECS task, no role passed, no ECS rule.
        assert not [a for a in by_action if a.split(":")[0] in {"ecs", "iam", "events"}]
        assert by_action["sqs:SendMessage"]["Resource"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
        assert {a for a in by_action if a.startswith("sqs:")} == {"sqs:SendMessage"}
        return
    assert not [a for a in by_action if a.startswith("sqs:")]
    run = by_action["ecs:RunTask"]
    assert refs_in(run["Resource"]) == {"ValidationTaskDefinition", "TransformationTaskDefinition"}
    assert run["Condition"]["ArnEquals"]["ecs:cluster"] == {"Fn::GetAtt": ["EcsCluster", "Arn"]}
    passrole = by_action["iam:PassRole"]
    assert refs_in(passrole["Resource"]) == {"TaskRole", "TaskExecutionRole"}
    assert passrole["Condition"]["StringEquals"]["iam:PassedToService"] == "ecs-tasks.amazonaws.com"
    assert by_action["events:PutRule"]["Resource"]["Fn::Sub"].endswith(
        ":rule/StepFunctionsGetEventsForECSTaskRule"
    )
    assert by_action["ecs:DescribeTasks"]["Resource"]["Fn::Sub"].endswith(":task/${EcsCluster}/*")


def test_worker_role_reaches_only_its_queue_and_the_jobs_resources(
    template: dict[str, Any], mode: str
) -> None:
    if mode != "worker":
        assert "WorkerTaskRole" not in template["Resources"]
        return
    statements = role_statements(template, "WorkerTaskRole")
    sqs = [st for st in statements if any(a.startswith("sqs:") for a in as_list(st["Action"]))]
    assert sqs
    for st in sqs:
        assert as_list(st["Resource"]) == [{"Fn::GetAtt": ["WorkQueue", "Arn"]}]
    assert {a for st in sqs for a in as_list(st["Action"])} == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    }
    # Everything else is exactly what the two jobs' role allows (the worker runs both jobs).
    jobs = [
        st
        for st in statements
        if not any(a.split(":")[0] in {"sqs", "states"} for a in as_list(st["Action"]))
    ]
    assert jobs == role_statements(template, "TaskRole")
    # The task role is the worker's alone; the execution role is the shared one.
    worker_td = template["Resources"]["WorkerTaskDefinition"]["Properties"]
    assert worker_td["TaskRoleArn"] == {"Fn::GetAtt": ["WorkerTaskRole", "Arn"]}
    assert worker_td["ExecutionRoleArn"] == {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}


def asl_task_resources(states: dict[str, Any]) -> Iterator[str]:
    for state in states.values():
        if state.get("Type") == "Task":
            yield state["Resource"]
        for branch in state.get("Branches", []):
            yield from asl_task_resources(branch["States"])
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from asl_task_resources(state[key]["States"])


INTEGRATION_ACTIONS = {
    "ecs:runTask.sync": {
        "ecs:RunTask",
        "ecs:StopTask",
        "ecs:DescribeTasks",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
    },
    "ecs:runTask": {"ecs:RunTask"},
    "sqs:sendMessage.waitForTaskToken": {"sqs:SendMessage"},
    "sqs:sendMessage": {"sqs:SendMessage"},
    "sns:publish": {"sns:Publish"},
    "dynamodb:updateItem": {"dynamodb:UpdateItem"},
    "dynamodb:getItem": {"dynamodb:GetItem"},
    "dynamodb:putItem": {"dynamodb:PutItem"},
    "aws-sdk:s3:getObject": {"s3:GetObject"},
}


def test_state_machine_role_covers_the_workflows_integrations(template: dict[str, Any], mode: str) -> None:
    name, asl = STATE_MACHINES[mode]
    if not asl.exists():
        pytest.skip(f"{asl.name} not written yet")
    assert template["Resources"][name]["Properties"]["RoleArn"] == {"Fn::GetAtt": ["StateMachineRole", "Arn"]}
    granted = role_actions(template, "StateMachineRole")
    resources = set(asl_task_resources(json.loads(asl.read_text())["States"]))
    assert resources
    for resource in resources:
        integration = resource.split(":::", 1)[1]
        assert integration in INTEGRATION_ACTIONS, f"no IAM mapping for {resource}"
        missing = INTEGRATION_ACTIONS[integration] - granted
        assert not missing, f"{resource} needs {sorted(missing)}"


def test_resource_policies(template: dict[str, Any]) -> None:
    queue_policy = template["Resources"]["RawEventsQueuePolicy"]["Properties"]["PolicyDocument"]
    (st,) = queue_policy["Statement"]
    assert st["Principal"] == {"Service": "s3.amazonaws.com"}
    assert st["Action"] == "sqs:SendMessage"
    assert st["Condition"]["ArnEquals"]["aws:SourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}"
    }
    bucket_policy = template["Resources"]["PipelineBucketPolicy"]["Properties"]["PolicyDocument"]
    assert all(s["Effect"] == "Deny" for s in bucket_policy["Statement"])
