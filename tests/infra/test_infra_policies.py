"""Least privilege of infra/ecomkpi-stack.yaml, read from the template's IAM policies.

Every check runs on the template as each task mode deploys it (``deployed``: conditions and
``Fn::If`` resolved), so a statement that only one mode gets is checked in that mode.

* no Allow statement anywhere has a wildcard in an action (a Deny may: the bucket policy denies
  ``s3:*`` without TLS, which only narrows);
* ``Resource: "*"`` appears only with actions AWS offers no resource type for (``STAR_RESOURCE_OK``);
* each role touches only its own component's resources (``roles``), and the state machine role
  covers every service integration the mode's workflow's Task states call;
* worker mode: the worker role reaches its queue only, the state machine role runs no ECS task;
* the KPI read API: its role allows exactly the key reads (GetItem/BatchGetItem/Query on the KPI
  tables and the GSI, GetItem/BatchGetItem on the tracker) and every call kpi_api's handler makes
  for each route (recorded against tables made as the stack makes them, in the emulator); the
  function's permission admits this API's GET routes only.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient

from tests.infra.test_infra_template import KPI_API_ROUTES, MODES, STATE_MACHINES, deployed, load_template

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
    # No resource type either; allowed only under a cloudwatch:namespace condition (tested below).
    "cloudwatch:PutMetricData",
}

KPI_TABLES = {"CategoryKpisTable", "DailyKpisTable"}
# The task role of each job's task definition; the worker role is their union.
JOB_ROLES = ("ValidationTaskRole", "TransformationTaskRole")


def roles(mode: str) -> dict[str, dict[str, Any]]:
    """Each role of the mode: its trusted service, the services it may call, what it may reach."""
    state_machine = STATE_MACHINES[mode][0]
    sfn_refs = {"BucketName", "AlertsTopic", "AlertsKey", "BatchTrackerTable"}
    if mode == "ecs":
        sfn_services = {"ecs", "iam", "events", "sns", "kms", "dynamodb", "logs", "s3"}
        sfn_refs |= {
            "ValidationTaskDefinition",
            "TransformationTaskDefinition",
            "EcsCluster",
            "ValidationTaskRole",
            "TransformationTaskRole",
            "TaskExecutionRole",
        }
    else:
        sfn_services = {"sqs", "sns", "kms", "dynamodb", "logs", "s3"}
        sfn_refs |= {"WorkQueue"}
    spec: dict[str, dict[str, Any]] = {
        "TriggerFunctionRole": {
            "principal": "lambda.amazonaws.com",
            # sns, kms: the sweep's stuck-day alerts
            "services": {"dynamodb", "states", "sqs", "s3", "logs", "cloudwatch", "sns", "kms"},
            "refs": {
                "AlertsTopic",
                "AlertsKey",
                "BatchTrackerTable",
                state_machine,
                "RawEventsQueue",
                "BucketName",
                "TriggerLogGroup",
                # the execution ARNs of both modes' state machines, by name
                "EnvironmentName",
                # the OnFailure destination of its asynchronous invocations
                "TriggerAsyncDeadLetterQueue",
                # worker mode: the parts it sends the worker to precheck
                *({"PrecheckQueue"} if mode == "worker" else set()),
            },
        },
        "ValidationTaskRole": {
            "principal": "ecs-tasks.amazonaws.com",
            # sns, kms: its schema drift notices; dynamodb: its files' lines of the quality view
            "services": {"s3", "sns", "kms", "dynamodb"},
            "refs": {"BucketName", "AlertsTopic", "AlertsKey", "DataQualityTable"},
        },
        "TransformationTaskRole": {
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
        "KpiApiFunctionRole": {
            "principal": "lambda.amazonaws.com",
            "services": {"dynamodb", "logs"},
            "refs": KPI_TABLES | {"BatchTrackerTable", "KpiApiLogGroup", "DataQualityTable"},
        },
    }
    if mode == "worker":
        spec["WorkerTaskRole"] = {
            "principal": "ecs-tasks.amazonaws.com",
            "services": {"s3", "dynamodb", "sqs", "states", "ecs", "sns", "kms"},
            "refs": {
                "BucketName",
                "WorkQueue",
                "PrecheckQueue",
                "EcsCluster",
                "AlertsTopic",
                "AlertsKey",
                "DataQualityTable",
            }
            | KPI_TABLES,
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
    """(resource name, statement) of every policy document in the template, key policies included."""
    for name, res in template["Resources"].items():
        p = res.get("Properties", {})
        docs = [pol["PolicyDocument"] for pol in p.get("Policies", [])]
        for key in ("PolicyDocument", "AssumeRolePolicyDocument", "KeyPolicy"):
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


# ---------------------------------------------------------------- evaluating the policies
# The statements are resolved to concrete strings for a stand-in deployment (``PARAMS``, ``physical``)
# and evaluated the way IAM does for one identity policy: an explicit Deny wins, otherwise an Allow
# whose Action, Resource and Condition all match. Enough of IAM for these policies: glob matching of
# actions and resources, and the condition operators they use (a test fails on any other).

REGION, ACCOUNT, ENV, BUCKET = "eu-west-1", "123456789012", "prod", "ecomkpi-data-prod"
PARAMS = {"EnvironmentName": ENV, "BucketName": BUCKET, "EcrRepositoryName": "ecomkpi"}
PSEUDO_VALUES = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
}
API_ID = "a1b2c3d4e5"  # the KPI API's id in the stand-in deployment
SUB_NAME = re.compile(r"\$\{([A-Za-z0-9_:]+)(?:\.([A-Za-z0-9_]+))?\}")


def physical(template: dict[str, Any], logical: str, attribute: str | None = None) -> str:
    """What a Ref (``attribute`` None) or a GetAtt resolves to in the stand-in deployment."""
    if logical in PSEUDO_VALUES:
        return PSEUDO_VALUES[logical]
    if logical in PARAMS or logical in template["Parameters"]:
        return PARAMS.get(logical) or str(template["Parameters"][logical].get("Default", ""))
    res = template["Resources"][logical]
    kind, props = res["Type"], res.get("Properties", {})

    def name(prop: str) -> str:
        return str(concrete(template, props[prop])) if prop in props else logical

    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    by_kind = {
        "AWS::DynamoDB::Table": (name("TableName"), arn.format("dynamodb", f"table/{name('TableName')}")),
        "AWS::SQS::Queue": (
            f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name('QueueName')}",
            arn.format("sqs", name("QueueName")),
        ),
        "AWS::SNS::Topic": (arn.format("sns", name("TopicName")),) * 2,
        "AWS::StepFunctions::StateMachine": (
            arn.format("states", f"stateMachine:{name('StateMachineName')}"),
        )
        * 2,
        "AWS::Logs::LogGroup": (
            name("LogGroupName"),
            arn.format("logs", f"log-group:{name('LogGroupName')}:*"),
        ),
        "AWS::ECS::Cluster": (name("ClusterName"), arn.format("ecs", f"cluster/{name('ClusterName')}")),
        "AWS::ECS::TaskDefinition": (arn.format("ecs", f"task-definition/{name('Family')}:1"),) * 2,
        "AWS::IAM::Role": (logical, f"arn:aws:iam::{ACCOUNT}:role/{logical}"),
        "AWS::KMS::Key": (logical, arn.format("kms", f"key/{logical}")),
        "AWS::Lambda::Function": (
            name("FunctionName"),
            arn.format("lambda", f"function:{name('FunctionName')}"),
        ),
        "AWS::Events::Rule": (logical, arn.format("events", f"rule/{logical}")),
        "AWS::ApiGatewayV2::Api": (API_ID, f"arn:aws:apigateway:{REGION}::/apis/{API_ID}"),
    }
    ref, arn_value = by_kind.get(kind, (logical, arn.format("unknown", logical)))
    if attribute is None:
        return ref
    if attribute == "Arn":
        return arn_value
    if attribute in {"Name", "QueueName"}:
        return name({"Name": "StateMachineName", "QueueName": "QueueName"}[attribute])
    raise AssertionError(f"GetAtt {logical}.{attribute} not modelled here")


def concrete(template: dict[str, Any], value: Any) -> Any:
    """``value`` with every Ref / GetAtt / Sub / Join replaced by its stand-in string."""
    if isinstance(value, list):
        return [concrete(template, v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return physical(template, value["Ref"])
    if set(value) == {"Fn::GetAtt"}:
        logical, attribute = (
            value["Fn::GetAtt"]
            if isinstance(value["Fn::GetAtt"], list)
            else (value["Fn::GetAtt"].split(".", 1))
        )
        return physical(template, logical, attribute)
    if set(value) == {"Fn::Sub"}:
        text, extra = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
        return SUB_NAME.sub(
            lambda m: (
                str(concrete(template, extra[m.group(1)]))
                if m.group(1) in extra
                else physical(template, m.group(1), m.group(2))
            ),
            text,
        )
    if set(value) == {"Fn::Join"}:
        sep, parts = value["Fn::Join"]
        return sep.join(str(p) for p in concrete(template, parts))
    return {k: concrete(template, v) for k, v in value.items()}


def glob(pattern: str, text: str, case_sensitive: bool = True) -> bool:
    """IAM wildcard matching: ``*`` any run of characters (``/`` and ``:`` included), ``?`` one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, 0 if case_sensitive else re.IGNORECASE) is not None


def condition_holds(condition: dict[str, Any], context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        base, if_exists = (
            (operator[: -len("IfExists")], True) if operator.endswith("IfExists") else (operator, False)
        )
        negated = base in {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}
        for key, wanted in tests.items():
            present = {k.lower(): v for k, v in context.items()}
            if key.lower() not in present:
                if if_exists or negated:  # a negated operator holds for a key the request lacks
                    continue
                return False
            got = present[key.lower()]
            if negated:
                matcher = glob if base.endswith("Like") else (lambda w, g: w == g)
                ok = not any(matcher(w, got) for w in as_list(wanted))
            elif base in {"StringEquals", "ArnEquals"}:
                ok = any(got == w for w in as_list(wanted))
            elif base in {"StringLike", "ArnLike"}:
                ok = any(glob(w, got) for w in as_list(wanted))
            elif base == "Bool":
                ok = any(got.lower() == str(w).lower() for w in as_list(wanted))
            else:
                raise AssertionError(f"condition operator {operator} not modelled here")
            if not ok:
                return False
    return True


def allows(statements: list[dict[str, Any]], action: str, resource: str, **context: str) -> bool:
    """Whether these (concrete) identity-policy statements allow ``action`` on ``resource``."""
    allowed = False
    for st in statements:
        if not any(glob(a, action, case_sensitive=False) for a in as_list(st["Action"])):
            continue
        if not any(glob(r, resource) for r in as_list(st["Resource"])):
            continue
        if not condition_holds(st.get("Condition", {}), context):
            continue
        if st["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


def policy(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """The role's statements as deployed in the stand-in account."""
    return concrete(template, role_statements(template, role))


def obj(key: str) -> str:
    return f"arn:aws:s3:::{BUCKET}/{key}"


BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"


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


def is_account_root_delegation(template: dict[str, Any], name: str, st: dict[str, Any]) -> bool:
    """A key policy's statement giving this account's root the key: AWS's default statement, which
    lets the account administer the key and grant its use through IAM (it allows no one by itself)."""
    return (
        template["Resources"][name]["Type"] == "AWS::KMS::Key"
        and st.get("Principal") == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
        and "Condition" not in st
    )


def test_no_wildcard_actions(template: dict[str, Any]) -> None:
    offenders = [
        (name, action)
        for name, st in statements(template)
        if st["Effect"] == "Allow" and not is_account_root_delegation(template, name, st)
        for action in as_list(st.get("Action", [])) + as_list(st.get("NotAction", []))
        if "*" in action
    ]
    assert not offenders
    assert not [name for name, st in statements(template) if "NotAction" in st or "NotResource" in st]


def test_star_resources_only_where_aws_has_no_resource_type(template: dict[str, Any]) -> None:
    for name, st in statements(template):
        if st["Effect"] != "Allow" or "Resource" not in st:
            continue
        if template["Resources"][name]["Type"] == "AWS::KMS::Key":
            continue  # in a key policy, "*" is the key itself
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
    sfn = refs_in(role_statements(template, "StateMachineRole"))
    assert not trigger & KPI_TABLES
    state_machines = {name for name, _ in STATE_MACHINES.values()}
    for job in JOB_ROLES:
        task = refs_in(role_statements(template, job))
        assert "BatchTrackerTable" not in task and not task & state_machines
        assert not any(a.startswith("states:") for a in role_actions(template, job))
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
    assert refs_in(passrole["Resource"]) == {
        "ValidationTaskRole",
        "TransformationTaskRole",
        "TaskExecutionRole",
    }
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
        assert as_list(st["Resource"]) == [
            {"Fn::GetAtt": ["WorkQueue", "Arn"]},
            {"Fn::GetAtt": ["PrecheckQueue", "Arn"]},
        ]
    assert {a for st in sqs for a in as_list(st["Action"])} == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    }
    # Its own task's scale-in protection, on the cluster's tasks and nothing else of ECS.
    ecs = [st for st in statements if any(a.startswith("ecs:") for a in as_list(st["Action"]))]
    assert [as_list(st["Action"]) for st in ecs] == [["ecs:UpdateTaskProtection"]]
    assert ecs[0]["Resource"]["Fn::Sub"].endswith(":task/${EcsCluster}/*")
    # Everything else is exactly what the two jobs' roles allow (the worker runs both jobs).
    jobs = [
        st
        for st in statements
        if not any(a.split(":")[0] in {"sqs", "states", "ecs"} for a in as_list(st["Action"]))
    ]
    assert jobs == [st for role in JOB_ROLES for st in role_statements(template, role)]
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
    allow, deny = queue_policy["Statement"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"]["ArnEquals"]["aws:SourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}"
    }
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "sqs:SendMessage")
    bucket_policy = template["Resources"]["PipelineBucketPolicy"]["Properties"]["PolicyDocument"]
    assert all(s["Effect"] == "Deny" for s in bucket_policy["Statement"])


def _queue_denies(doc: dict[str, Any], queue_arn: str, **context: str) -> bool:
    """Whether the queue policy's Deny statements refuse a SendMessage with this request context
    (an identity policy elsewhere in the account may allow it; an explicit Deny still wins)."""
    denies = [st for st in as_list(doc["Statement"]) if st["Effect"] == "Deny"]
    return any(
        any(glob(a, "sqs:SendMessage", case_sensitive=False) for a in as_list(st["Action"]))
        and condition_holds(st.get("Condition", {}), context)
        and any(glob(r, queue_arn) for r in as_list(st["Resource"]))
        for st in denies
    )


def test_only_the_bucket_and_operators_may_send_to_the_raw_events_queue(template: dict[str, Any]) -> None:
    """Arrivals, withdrawals and status changes reach the trigger through this queue: a forged one
    must come from somewhere the policy names (issue #38)."""
    doc = concrete(template, template["Resources"]["RawEventsQueuePolicy"]["Properties"]["PolicyDocument"])
    queue = physical(template, "RawEventsQueue", "Arn")
    bucket_events = {"aws:SourceArn": BUCKET_ARN, "aws:SourceAccount": ACCOUNT}
    assert resource_policy_allows(doc, "s3.amazonaws.com", "sqs:SendMessage", queue, **bucket_events)
    assert not _queue_denies(doc, queue, **bucket_events)
    operator = f"arn:aws:iam::{ACCOUNT}:role/ecomkpi-operator-{ENV}"
    assert not _queue_denies(doc, queue, **{"aws:PrincipalArn": operator})
    for stranger in (
        {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/some-app"},
        {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:user/admin"},
        {"aws:SourceArn": "arn:aws:s3:::another-bucket"},
        {},
    ):
        assert _queue_denies(doc, queue, **stranger), stranger


# ---------------------------------------------------------------- what each job may do, by example
# Each request names what the job's code does with it (jobs/validation, jobs/transformation,
# jobs/s3_store.py: a HEAD is s3:GetObject; a server-side copy is s3:GetObject on the source and
# s3:PutObject on the destination). "no prefix" is the ListBucket S3 evaluates to turn a missing
# key's 403 into a 404, which every "is it there" HEAD relies on.
DAY = "2025-07-10"
RUN = f"{DAY}/20250710T101500Z-1a2b3c4d"
INPUTS = f"control/inputs/{DAY}/g1-0123456789abcdef.json"
Request = tuple[str, str, dict[str, str]]


def s3(action: str, key: str) -> Request:
    return (f"s3:{action}", obj(key), {})


def list_prefix(prefix: str | None) -> Request:
    return ("s3:ListBucket", BUCKET_ARN, {} if prefix is None else {"s3:prefix": prefix})


STAGED = "staging/v2/orders/version=0123456789abcdef0123456789abcdef"  # jobs/staging.py staging_prefix
VALIDATION_DOES: list[Request] = [
    s3("GetObject", f"raw/orders/{DAY}/orders_part1.csv"),  # ranged head read, Spark read
    s3("GetObject", "raw/products/products.csv"),
    s3("GetObject", "validated/products/products.csv"),  # the master's copy when raw/ has none
    s3("GetObject", f"processed/orders/{DAY}/orders_part1.csv"),  # HEAD: passed earlier
    s3("GetObject", f"invalid/orders/{DAY}/orders_part1.csv.report.json"),  # rejected earlier
    s3("GetObject", f"logs/validation/verdicts/orders/{DAY}/orders_part1.csv.json"),
    s3("GetObject", f"logs/validation/{RUN}.log"),  # the run log it appends to
    s3("GetObject", INPUTS),
    s3("PutObject", f"validated/orders/{DAY}/orders_part1.csv"),  # copy of a passed file
    s3("PutObject", f"invalid/order_items/{DAY}/items.csv"),  # copy of a rejected file
    s3("PutObject", f"invalid/order_items/{DAY}/items.csv.report.json"),
    s3("PutObject", f"invalid/superseded/order_items/{DAY}/items.csv.0a1b2c"),
    s3("PutObject", f"logs/validation/verdicts/orders/{DAY}/orders_part1.csv.json"),
    s3("PutObject", f"logs/validation/{RUN}/summary.json"),
    s3("PutObject", f"logs/validation/{RUN}/rejections.txt"),
    s3("PutObject", f"logs/validation/{RUN}/data_docs/index.html"),
    s3("DeleteObject", f"raw/orders/{DAY}/orders_part1.csv"),  # placed: the raw copy goes
    s3("DeleteObject", f"invalid/order_items/{DAY}/items.csv"),  # superseded rejection moves
    s3("DeleteObject", f"invalid/order_items/{DAY}/items.csv.report.json"),
    list_prefix(None),  # HeadBucket, and 404s for missing keys
    list_prefix(f"raw/orders/{DAY}/orders_part1.csv/"),  # s3a's directory probe
    list_prefix("validated/products/products.csv/"),
    # The parsed rows of a passed file (jobs/staging.py, Spark's Parquet write through s3a: an
    # overwrite deletes and lists the folder first, the committer renames = copy + delete).
    s3("PutObject", f"{STAGED}/part-00000-x.snappy.parquet"),
    s3("PutObject", f"{STAGED}/_SUCCESS"),
    s3("GetObject", f"{STAGED}/_temporary/0/task/part-00000-x.snappy.parquet"),
    s3("DeleteObject", f"{STAGED}/_temporary/0/task/part-00000-x.snappy.parquet"),
    s3("AbortMultipartUpload", f"{STAGED}/part-00000-x.snappy.parquet"),
    list_prefix(f"{STAGED}/"),
]
TRANSFORMATION_DOES: list[Request] = [
    s3("GetObject", f"validated/orders/{DAY}/orders_part1.csv"),
    s3("GetObject", "validated/products/products.csv"),
    s3("GetObject", f"processed/orders/{DAY}/orders_part1.csv"),  # HEAD: applied earlier
    s3("GetObject", f"invalid/orders/{DAY}/orders_part1.csv"),  # HEAD: rejected
    s3("GetObject", "lake/silver_orders/_delta_log/00000000000000000003.json"),
    s3("GetObject", "lake/_lock.json"),
    s3("GetObject", "lake/_pending_dates.json"),
    s3("GetObject", "lake/_key_ranges.json"),  # the key ledger
    s3("PutObject", "lake/_key_ranges.json"),
    s3("GetObject", INPUTS),
    s3("PutObject", "lake/silver_orders/order_date=2025-07-10/part-00000.snappy.parquet"),
    s3("PutObject", "lake/silver_orders/_delta_log/00000000000000000004.json"),
    s3("AbortMultipartUpload", "lake/silver_items/part-00001.snappy.parquet"),
    s3("PutObject", "lake/_lock.json"),
    s3("PutObject", f"processed/orders/{DAY}/orders_part1.csv"),  # archive copy
    s3("PutObject", f"logs/transformation/{RUN}.log"),
    s3("PutObject", f"logs/transformation/{RUN}/summary.json"),
    s3("DeleteObject", f"validated/orders/{DAY}/orders_part1.csv"),  # archived
    s3("DeleteObject", "lake/_lock.json"),  # release
    s3("DeleteObject", "lake/_pending_dates.json"),
    list_prefix(None),
    list_prefix(f"validated/orders/{DAY}/"),  # the batch's folders are swept
    list_prefix("lake/silver_orders/_delta_log/"),
    s3("GetObject", f"{STAGED}/_SUCCESS"),  # are the parsed rows there, what are their keys
    s3("GetObject", f"{STAGED}/part-00000-x.snappy.parquet"),  # the rows it applies
    list_prefix(f"{STAGED}/"),  # the clean-up after the archive
    list_prefix("staging/v2/orders/"),  # the Parquet scan: one listing of the dataset's versions
    s3("DeleteObject", f"{STAGED}/part-00000-x.snappy.parquet"),  # applied: the rows go
    list_prefix(f"invalid/orders/{DAY}/"),  # a served day's rejected files (serving.py)
    list_prefix(f"invalid/rows/orders/{DAY}/"),  # the applied files' quarantined rows
    s3("GetObject", f"invalid/rows/orders/{DAY}/orders_part1.csv"),
    s3("GetObject", "lake/_quarantine_files.json"),  # which files had quarantined rows
    s3("PutObject", "lake/_quarantine_files.json"),
    s3("PutObject", f"lake/quarantine/date={DAY}/part-00000.snappy.parquet"),
]
# Nothing either job does: the producers' area is written by producers only, the key lists by the
# trigger, processed/ is never deleted, the tracker is the Lambda's and the workflow's.
NEITHER_JOB_DOES: list[Request] = [
    s3("PutObject", f"raw/orders/{DAY}/orders_part1.csv"),
    s3("PutObject", INPUTS),
    s3("DeleteObject", INPUTS),
    s3("DeleteObject", f"processed/orders/{DAY}/orders_part1.csv"),
    s3("GetObject", "control/other/x.json"),
    s3("PutObject", "unexpected/x.csv"),
    s3("DeleteObject", "logs/validation/verdicts/x.json"),
    list_prefix("processed/"),
    list_prefix("logs/"),
    list_prefix(""),
]
# What each job must not do although the other one does.
ONLY_THE_TRANSFORMATION: list[Request] = [
    s3("GetObject", "lake/_lock.json"),
    s3("PutObject", "lake/silver_orders/_delta_log/00000000000000000004.json"),
    s3("PutObject", f"processed/orders/{DAY}/orders_part1.csv"),
    s3("DeleteObject", f"validated/orders/{DAY}/orders_part1.csv"),
    s3("PutObject", f"logs/transformation/{RUN}/summary.json"),
    list_prefix("lake/"),
]
ONLY_THE_VALIDATION: list[Request] = [
    s3("GetObject", f"raw/orders/{DAY}/orders_part1.csv"),
    s3("DeleteObject", f"raw/orders/{DAY}/orders_part1.csv"),
    s3("PutObject", f"validated/orders/{DAY}/orders_part1.csv"),
    s3("PutObject", f"invalid/order_items/{DAY}/items.csv"),
    s3("PutObject", f"logs/validation/{RUN}/summary.json"),
    list_prefix("raw/"),
]


def kpi_requests(template: dict[str, Any]) -> list[Request]:
    """The transformation's serving writes (jobs/transformation/serving.py)."""
    category = physical(template, "CategoryKpisTable", "Arn")
    daily = physical(template, "DailyKpisTable", "Arn")
    return [
        ("dynamodb:BatchWriteItem", daily, {}),
        ("dynamodb:BatchWriteItem", category, {}),
        ("dynamodb:Query", f"{category}/index/date_key-index", {}),  # stored categories of a date
    ]


def drift_notice_requests(template: dict[str, Any]) -> list[Request]:
    """Validation's requests beside the bucket (jobs/validation/conclude.py): the schema drift notice
    (a publish to the encrypted topic) and each decided file's quality line (one PutItem)."""
    key = physical(template, "AlertsKey", "Arn")
    return [
        ("sns:Publish", physical(template, "AlertsTopic"), {}),
        ("kms:GenerateDataKey", key, {}),
        ("kms:Decrypt", key, {}),
        ("dynamodb:PutItem", physical(template, "DataQualityTable", "Arn"), {}),
    ]


def tracker_requests(template: dict[str, Any]) -> list[Request]:
    tracker = physical(template, "BatchTrackerTable", "Arn")
    return [(f"dynamodb:{a}", tracker, {}) for a in ("GetItem", "UpdateItem", "PutItem", "Scan")]


def check(statements: list[dict[str, Any]], requests: list[Request], expected: bool) -> None:
    wrong = [(a, r, c) for a, r, c in requests if allows(statements, a, r, **c) is not expected]
    assert not wrong, f"{'denied' if expected else 'allowed'}: {wrong}"


def test_validation_role_allows_what_the_validation_does_and_nothing_else(template: dict[str, Any]) -> None:
    role = policy(template, "ValidationTaskRole")
    check(role, VALIDATION_DOES + drift_notice_requests(template), True)
    check(role, NEITHER_JOB_DOES + ONLY_THE_TRANSFORMATION, False)
    check(role, kpi_requests(template) + tracker_requests(template), False)


def test_transformation_role_allows_what_the_transformation_does_and_nothing_else(
    template: dict[str, Any],
) -> None:
    role = policy(template, "TransformationTaskRole")
    check(role, TRANSFORMATION_DOES + kpi_requests(template), True)
    check(role, NEITHER_JOB_DOES + ONLY_THE_VALIDATION, False)
    check(role, tracker_requests(template), False)
    # The KPI tables only: not the tracker's index-less scan, not another table.
    other = physical(template, "BatchTrackerTable", "Arn").replace("BatchFileTracker", "Other")
    check(role, [("dynamodb:BatchWriteItem", other, {})], False)


def test_worker_role_allows_what_both_jobs_do(template: dict[str, Any], mode: str) -> None:
    if mode != "worker":
        return
    role = policy(template, "WorkerTaskRole")
    check(
        role,
        VALIDATION_DOES + TRANSFORMATION_DOES + kpi_requests(template) + drift_notice_requests(template),
        True,
    )
    check(role, NEITHER_JOB_DOES + tracker_requests(template), False)


def unused_grants(statements: list[dict[str, Any]], requests: list[Request]) -> list[tuple[str, str]]:
    """Each (action, resource) an Allow statement grants that none of ``requests`` needs."""
    unused = []
    for st in statements:
        if st["Effect"] != "Allow":
            continue
        for action in as_list(st["Action"]):
            for resource in as_list(st["Resource"]):
                if not any(
                    glob(action, a, case_sensitive=False)
                    and glob(resource, r)
                    and condition_holds(st.get("Condition", {}), c)
                    for a, r, c in requests
                ):
                    unused.append((action, resource))
    return unused


def test_job_roles_grant_nothing_the_jobs_do_not_do(template: dict[str, Any], mode: str) -> None:
    """The converse of the tests above: every action on every resource a job role grants is one that
    its job's code does (each entry of the lists names where). Least privilege as a property: a grant
    the code stops needing fails here until it is removed."""
    does = {
        "ValidationTaskRole": VALIDATION_DOES + drift_notice_requests(template),
        "TransformationTaskRole": TRANSFORMATION_DOES + kpi_requests(template),
    }
    if mode == "worker":
        does["WorkerTaskRole"] = (
            VALIDATION_DOES + TRANSFORMATION_DOES + kpi_requests(template) + drift_notice_requests(template)
        )
    for role, requests in does.items():
        # The worker's own queue, task-token and protection statements: test_worker_role_reaches_only_...
        data = [
            st
            for st in policy(template, role)
            if not {a.split(":")[0] for a in as_list(st["Action"])} & {"sqs", "states", "ecs"}
        ]
        assert data, role
        assert unused_grants(data, requests) == [], role


def test_each_task_definition_runs_with_its_jobs_role(template: dict[str, Any], mode: str) -> None:
    res = template["Resources"]
    for task, role in (
        ("ValidationTaskDefinition", "ValidationTaskRole"),
        ("TransformationTaskDefinition", "TransformationTaskRole"),
        *([("WorkerTaskDefinition", "WorkerTaskRole")] if mode == "worker" else []),
    ):
        assert res[task]["Properties"]["TaskRoleArn"] == {"Fn::GetAtt": [role, "Arn"]}, task


# ---------------------------------------------------------------- what the trigger Lambda may do
def execution_arn(template: dict[str, Any], state_machine: str, name: str = "2025-07-10-g1") -> str:
    """An execution of one of the template's state machines (by its StateMachineName)."""
    raw = load_template()  # both state machines, whatever the mode
    arn = physical(raw, state_machine)
    return arn.replace(":stateMachine:", ":execution:") + f":{name}"


def trigger_does(template: dict[str, Any], mode: str) -> list[Request]:
    tracker = physical(template, "BatchTrackerTable", "Arn")
    this = STATE_MACHINES[mode][0]
    return [
        ("dynamodb:GetItem", tracker, {}),
        ("dynamodb:UpdateItem", tracker, {}),  # conditional writes: claims, generations
        ("dynamodb:Scan", tracker, {}),  # the reconcile sweep
        # the sweep's stuck-day alerts (lambda_trigger/stuck_days.py), to the encrypted topic
        ("sns:Publish", physical(template, "AlertsTopic"), {}),
        ("kms:GenerateDataKey", physical(template, "AlertsKey", "Arn"), {}),
        ("kms:Decrypt", physical(template, "AlertsKey", "Arn"), {}),
        ("states:StartExecution", physical(template, this), {}),
        # a name found taken, and the sweep's "is it still running"; both modes' names (a mode switch
        # leaves the tracker naming executions of the deleted state machine)
        *[("states:DescribeExecution", execution_arn(template, sm), {}) for sm, _ in STATE_MACHINES.values()],
        ("sqs:ReceiveMessage", physical(template, "RawEventsQueue", "Arn"), {}),
        ("sqs:DeleteMessage", physical(template, "RawEventsQueue", "Arn"), {}),
        s3("GetObject", f"raw/manifests/{DAY}.json"),
        # an unrecognised key: copied out of raw/ with a report, then deleted (lambda_trigger/unrecognised.py)
        s3("GetObject", "raw/orders/orders_2025-07-10.xlsx"),
        s3("PutObject", "invalid/unrecognised/orders/orders_2025-07-10.xlsx"),
        s3("PutObject", "invalid/unrecognised/orders/orders_2025-07-10.xlsx.report.json"),
        s3("DeleteObject", "raw/orders/orders_2025-07-10.xlsx"),
        s3("PutObject", INPUTS),  # the execution's key list, before StartExecution
        # "is it there, which upload": a listing under the key itself (lambda_trigger/s3_objects.py)
        list_prefix(f"raw/orders/{DAY}/orders_part1.csv"),
        list_prefix(f"validated/orders/{DAY}/orders_part1.csv"),
        list_prefix(f"processed/orders/{DAY}/orders_part1.csv"),
        list_prefix(f"invalid/orders/{DAY}/orders_part1.csv"),
        list_prefix("raw/"),  # the sweep's listing of files no event announced
        # the sweep reads the open days through the sparse index (lambda_trigger/tracker.py)
        ("dynamodb:Query", physical(template, "BatchTrackerTable", "Arn") + "/index/open-days", {}),
        # a raw removal is a withdrawal only without a stage copy; `ecomkpi withdraw` moves unprocessed
        # copies to invalid/withdrawn/ (lambda_trigger/withdrawal.py)
        s3("GetObject", f"validated/orders/{DAY}/orders_part1.csv"),
        s3("GetObject", f"processed/order_items/{DAY}/order_items_part1.csv"),
        s3("GetObject", f"invalid/order_items/{DAY}/part2.csv.report.json"),
        s3("DeleteObject", f"invalid/order_items/{DAY}/part2.csv"),
        s3("DeleteObject", f"validated/orders/{DAY}/orders_part1.csv"),
        s3("PutObject", f"invalid/withdrawn/order_items/{DAY}/part2.csv"),
        s3("PutObject", f"processed/manifests/{DAY}.json"),  # a manifest whose day succeeded
        ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "ecomkpi"}),
        ("logs:PutLogEvents", physical(template, "TriggerLogGroup", "Arn"), {}),
        # Lambda sends the record of a thrice-failed async invocation with the function's role
        ("sqs:SendMessage", concrete(template, async_failure_destination(template)), {}),
        # worker mode: parts sent to the warm worker to be validated as they land
        *([("sqs:SendMessage", physical(template, "PrecheckQueue", "Arn"), {})] if mode == "worker" else []),
    ]


def async_failure_destination(template: dict[str, Any]) -> Any:
    return template["Resources"]["TriggerAsyncInvokeConfig"]["Properties"]["DestinationConfig"]["OnFailure"][
        "Destination"
    ]


def trigger_never_does(template: dict[str, Any]) -> list[Request]:
    return [
        *kpi_requests(template),
        ("dynamodb:DeleteItem", physical(template, "BatchTrackerTable", "Arn"), {}),
        ("dynamodb:Scan", physical(template, "DailyKpisTable", "Arn"), {}),
        ("states:DescribeExecution", f"arn:aws:states:{REGION}:{ACCOUNT}:execution:another-pipeline:x", {}),
        ("states:StopExecution", execution_arn(template, "WorkerStateMachine"), {}),
        s3("PutObject", f"raw/orders/{DAY}/orders_part1.csv"),  # producers' area: read and move only
        s3("PutObject", f"invalid/orders/{DAY}/orders_part1.csv"),  # the validation's rejections
        s3("PutObject", f"validated/orders/{DAY}/orders_part1.csv"),
        s3("DeleteObject", f"processed/orders/{DAY}/orders_part1.csv"),  # processed data stays
        s3("GetObject", "validated/products/products.csv"),
        s3("DeleteObject", "invalid/unrecognised/orders/orders_2025-07-10.xlsx"),
        s3("DeleteObject", INPUTS),
        s3("GetObject", "lake/_lock.json"),
        list_prefix("lake/"),
        list_prefix(None),  # the whole bucket: it lists its own prefixes only (StringLike, issue #38)
        list_prefix(""),
        list_prefix("control/"),
        ("dynamodb:Query", physical(template, "BatchTrackerTable", "Arn"), {}),
        ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "AWS/Lambda"}),
        ("cloudwatch:PutMetricData", "*", {}),
        # EventBridge, not the function, writes the events DLQ; the raw-events queue is S3's
        ("sqs:SendMessage", physical(template, "TriggerEventsDeadLetterQueue", "Arn"), {}),
        ("sqs:SendMessage", physical(template, "RawEventsQueue", "Arn"), {}),
    ]


def test_trigger_role_allows_what_the_lambda_does_and_nothing_else(
    template: dict[str, Any], mode: str
) -> None:
    role = policy(template, "TriggerFunctionRole")
    check(role, trigger_does(template, mode), True)
    check(role, trigger_never_does(template), False)


def test_trigger_may_describe_executions_of_this_stacks_state_machines_only(template: dict[str, Any]) -> None:
    """The DescribeExecution resources are built from names, not references (the other mode's state
    machine does not exist); they must be exactly the two StateMachineName values."""
    (st,) = [
        s
        for s in policy(template, "TriggerFunctionRole")
        if "states:DescribeExecution" in as_list(s["Action"])
    ]
    raw = load_template()
    expected = {
        physical(raw, sm).replace(":stateMachine:", ":execution:") + ":*"
        for sm in [*(sm for sm, _ in STATE_MACHINES.values()), "EmrServerlessStateMachine"]
    }
    assert set(as_list(st["Resource"])) == expected


def test_metrics_only_in_the_pipelines_namespace(template: dict[str, Any]) -> None:
    for name, st in statements(template):
        if "cloudwatch:PutMetricData" in as_list(st.get("Action", [])):
            assert st["Condition"] == {"StringEquals": {"cloudwatch:namespace": "ecomkpi"}}, name


def test_trigger_grants_match_the_lambdas_own_prefixes_and_metric(
    template: dict[str, Any], mode: str
) -> None:
    """The prefixes and the metric the Lambda's code uses (when that code exists) are the ones granted."""
    unrecognised = pytest.importorskip("lambda_trigger.unrecognised")
    inputs = pytest.importorskip("lambda_trigger.inputs_object")
    role = policy(template, "TriggerFunctionRole")
    moved = unrecognised.destination_of("raw/orders/x.xlsx")
    assert moved.startswith(unrecognised.UNRECOGNISED_PREFIX)
    check(role, [s3("PutObject", moved), s3("PutObject", f"{moved}.report.json")], True)
    check(role, [s3("PutObject", f"{inputs.INPUTS_PREFIX}{DAY}/g1-0123456789abcdef.json")], True)
    namespace = {"cloudwatch:namespace": unrecognised.METRIC_NAMESPACE}
    check(role, [("cloudwatch:PutMetricData", "*", namespace)], True)


def resource_policy_allows(
    doc: dict[str, Any], principal: str, action: str, resource: str, **context: str
) -> bool:
    """A resource policy's decision for a request by ``principal`` (a service or an IAM ARN)."""
    kind = "Service" if principal.endswith(".amazonaws.com") else "AWS"
    statements = [
        st
        for st in as_list(doc["Statement"])
        if st.get("Principal") == "*" or principal in as_list(st.get("Principal", {}).get(kind, []))
    ]
    return allows(statements, action, resource, **context)


def test_only_this_stacks_rules_may_dead_letter_into_the_events_dlq(template: dict[str, Any]) -> None:
    doc = concrete(template, template["Resources"]["TriggerEventsDeadLetterQueuePolicy"]["Properties"])
    assert doc["Queues"] == [physical(template, "TriggerEventsDeadLetterQueue")]
    queue = physical(template, "TriggerEventsDeadLetterQueue", "Arn")
    policy_doc = doc["PolicyDocument"]
    for rule in ("ExecutionStatusRule", "ReconcileScheduleRule"):
        source = physical(template, rule, "Arn")
        assert resource_policy_allows(
            policy_doc, "events.amazonaws.com", "sqs:SendMessage", queue, **{"aws:SourceArn": source}
        )
        # and each rule's targets name this very queue as their DLQ
        targets = concrete(template, template["Resources"][rule]["Properties"]["Targets"])
        assert [t["DeadLetterConfig"]["Arn"] for t in targets] == [queue]
    other_rule = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/another-rule"
    assert not resource_policy_allows(
        policy_doc, "events.amazonaws.com", "sqs:SendMessage", queue, **{"aws:SourceArn": other_rule}
    )
    assert not resource_policy_allows(policy_doc, "events.amazonaws.com", "sqs:SendMessage", queue)
    assert not resource_policy_allows(
        policy_doc, "events.amazonaws.com", "sqs:ReceiveMessage", queue, **{"aws:SourceArn": other_rule}
    )
    assert not resource_policy_allows(policy_doc, "s3.amazonaws.com", "sqs:SendMessage", queue)


# ---------------------------------------------------------------- the encrypted alerts topic
def topic_key(template: dict[str, Any]) -> str:
    """The key the alerts topic is encrypted with (as deployed)."""
    return concrete(template, template["Resources"]["AlertsTopic"]["Properties"]["KmsMasterKeyId"])


def test_every_publisher_may_use_the_topics_key(template: dict[str, Any]) -> None:
    """Publishing to an encrypted topic needs the key too: every role allowed to publish to the
    topic may GenerateDataKey and Decrypt with the topic's key; no other role may use it."""
    topic = physical(template, "AlertsTopic")
    key = topic_key(template)
    assert key == physical(template, "AlertsKey", "Arn")
    roles_ = [n for n, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    publishers = [role for role in roles_ if allows(policy(template, role), "sns:Publish", topic)]
    # The workflow's alerts; the roles that run validation, for its schema drift notices; the
    # trigger, for its sweep's stuck-day alerts.
    validators = {"ValidationTaskRole", "WorkerTaskRole", "EmrJobRole"}
    assert set(publishers) == {"StateMachineRole", "TriggerFunctionRole"} | (validators & set(roles_))
    use = [("kms:GenerateDataKey", key, {}), ("kms:Decrypt", key, {})]
    for role in roles_:
        check(policy(template, role), use, role in publishers)
    other_key = key.replace("AlertsKey", "another-key")
    check(
        policy(template, "StateMachineRole"),
        [("kms:Decrypt", other_key, {}), ("kms:Encrypt", key, {})],
        False,
    )


def test_key_policy_lets_alarms_and_rules_of_this_account_publish(template: dict[str, Any]) -> None:
    props = template["Resources"]["AlertsKey"]["Properties"]
    assert props["EnableKeyRotation"] is True
    doc = concrete(template, props["KeyPolicy"])
    mine = {"aws:SourceAccount": ACCOUNT}
    for service in ("cloudwatch.amazonaws.com", "events.amazonaws.com"):
        for action in ("kms:GenerateDataKey", "kms:Decrypt"):
            assert resource_policy_allows(doc, service, action, "*", **mine), (service, action)
            assert not resource_policy_allows(
                doc, service, action, "*", **{"aws:SourceAccount": "999999999999"}
            )
            assert not resource_policy_allows(doc, service, action, "*")
        for action in ("kms:Encrypt", "kms:ReEncryptFrom", "kms:CreateGrant", "kms:PutKeyPolicy"):
            assert not resource_policy_allows(doc, service, action, "*", **mine), (service, action)
    for service in ("sns.amazonaws.com", "states.amazonaws.com", "lambda.amazonaws.com"):
        assert not resource_policy_allows(doc, service, "kms:Decrypt", "*", **mine), service
    # The account administers it and delegates its use to IAM policies: no lock-out, and the state
    # machine role's IAM grant takes effect.
    root = f"arn:aws:iam::{ACCOUNT}:root"
    for action in ("kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:Decrypt", "kms:GenerateDataKey"):
        assert resource_policy_allows(doc, root, action, "*"), action
    assert not resource_policy_allows(doc, "arn:aws:iam::999999999999:root", "kms:Decrypt", "*")


def test_inline_policies_fit_iams_size_limit(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """IAM refuses a role whose inline policies exceed 10,240 characters (whitespace aside); the
    worker role, the union of both jobs' statements, is the largest. Measured with the longest
    bucket and environment names the parameters allow."""
    monkeypatch.setitem(PARAMS, "BucketName", "b" * 63)
    monkeypatch.setitem(PARAMS, "EnvironmentName", "e" * 16)
    for role, res in template["Resources"].items():
        if res["Type"] == "AWS::IAM::Role":
            documents = [pol["PolicyDocument"] for pol in concrete(template, res["Properties"]["Policies"])]
            size = sum(len(json.dumps(d, separators=(",", ":"))) for d in documents)
            assert size < 10_240 * 0.8, (role, size)  # and room to grow


# ---------------------------------------------------------------- the KPI read API (issue #17)
def kpi_api_tables(template: dict[str, Any]) -> tuple[str, str, str, str]:
    """ARNs of DailyKPIs, CategoryKPIs, its date_key-index and the tracker."""
    category = physical(template, "CategoryKpisTable", "Arn")
    return (
        physical(template, "DailyKpisTable", "Arn"),
        category,
        f"{category}/index/date_key-index",
        physical(template, "BatchTrackerTable", "Arn"),
    )


def test_kpi_api_role_allows_exactly_the_reads(template: dict[str, Any]) -> None:
    """GetItem/BatchGetItem/Query on the KPI tables and the GSI, GetItem/BatchGetItem on the
    tracker, its own logs; no Scan, no write, no other table, bucket, topic or key."""
    role = policy(template, "KpiApiFunctionRole")
    daily, category, index, tracker = kpi_api_tables(template)
    quality = physical(template, "DataQualityTable", "Arn")
    logs = physical(template, "KpiApiLogGroup", "Arn")
    check(
        role,
        [
            *[
                (f"dynamodb:{a}", r, {})
                for a in ("GetItem", "BatchGetItem", "Query")
                for r in (daily, category, index)
            ],
            ("dynamodb:GetItem", tracker, {}),
            ("dynamodb:BatchGetItem", tracker, {}),
            ("dynamodb:Query", quality, {}),
            ("logs:CreateLogStream", logs, {}),
            ("logs:PutLogEvents", logs, {}),
        ],
        True,
    )
    writes = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems", "PartiQLUpdate")
    other_env = daily.replace(f"-{ENV}", "-staging")
    check(
        role,
        [
            *[("dynamodb:Scan", r, {}) for r in (daily, category, index, tracker)],
            *[(f"dynamodb:{a}", r, {}) for a in writes for r in (daily, category, tracker, quality)],
            ("dynamodb:Scan", quality, {}),
            ("dynamodb:Query", tracker, {}),  # the tracker is read by key only
            ("dynamodb:Query", f"{category}/index/another-index", {}),
            ("dynamodb:GetItem", other_env, {}),  # another environment's table
            ("dynamodb:GetItem", daily.replace("DailyKPIs", "Other"), {}),
            ("dynamodb:DescribeTable", daily, {}),
            ("dynamodb:ExecuteStatement", daily, {}),  # PartiQL reads are not key reads
            s3("GetObject", f"logs/validation/{DAY}/run/summary.json"),  # it prints s3:// links only
            list_prefix(None),
            ("sns:Publish", physical(template, "AlertsTopic"), {}),
            ("kms:Decrypt", physical(template, "AlertsKey", "Arn"), {}),
            ("logs:PutLogEvents", physical(template, "TriggerLogGroup", "Arn"), {}),
            ("states:DescribeExecution", execution_arn(template, "WorkerStateMachine"), {}),
        ],
        False,
    )
    assert role_actions(template, "KpiApiFunctionRole") == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }


def test_only_this_apis_get_routes_may_invoke_the_kpi_api_function(template: dict[str, Any]) -> None:
    """The permission, as the function's resource policy (Lambda turns SourceArn into an ArnLike
    on aws:SourceArn), admits API Gateway calling for a route of this API and nothing else; the
    KpiApiInvokeArn output, in a reader's IAM policy, allows signed calls to every route."""
    perm = concrete(template, template["Resources"]["KpiApiInvokePermission"]["Properties"])
    function = physical(template, "KpiApiFunction", "Arn")
    assert perm["FunctionName"] == physical(template, "KpiApiFunction")
    doc = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": perm["Principal"]},
                "Action": perm["Action"],
                "Resource": function,
                "Condition": {"ArnLike": {"aws:SourceArn": perm["SourceArn"]}},
            }
        ]
    }
    base = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}"
    routes = [route.replace("{category_id}", "electronics").split(" ", 1) for route in KPI_API_ROUTES]

    def invoked_by(source: str | None, service: str = "apigateway.amazonaws.com") -> bool:
        context = {} if source is None else {"aws:SourceArn": source}
        return resource_policy_allows(doc, service, "lambda:InvokeFunction", function, **context)

    for method, path in routes:
        assert invoked_by(f"{base}/$default/{method}{path}"), path
    for source in (
        f"arn:aws:execute-api:{REGION}:{ACCOUNT}:otherapi99/$default/GET/kpis/daily",  # another API
        f"arn:aws:execute-api:{REGION}:999999999999:{API_ID}/$default/GET/kpis/daily",
        f"arn:aws:execute-api:us-east-1:{ACCOUNT}:{API_ID}/$default/GET/kpis/daily",
        f"{base}/$default/POST/kpis/daily",
        f"{base}/prod/GET/kpis/daily",  # no stage but $default
        None,
    ):
        assert not invoked_by(source), source
    assert not invoked_by(f"{base}/$default/GET/kpis/daily", "events.amazonaws.com")

    # A reader's policy on the output's ARN (ApiAuthorization IAM) reaches every route, GET only.
    reader = [
        {
            "Effect": "Allow",
            "Action": "execute-api:Invoke",
            "Resource": concrete(template, template["Outputs"]["KpiApiInvokeArn"]["Value"]),
        }
    ]
    for method, path in routes:
        assert allows(reader, "execute-api:Invoke", f"{base}/$default/{method}{path}"), path
    assert not allows(reader, "execute-api:Invoke", f"{base}/$default/DELETE/kpis/daily")
    assert not allows(reader, "execute-api:Invoke", base.replace(API_ID, "otherapi99") + "/$default/GET/")


def dynamodb_requests(operation: str, params: dict[str, Any]) -> list[Request]:
    """The IAM requests one DynamoDB API call makes (a batch call: one per table)."""

    def table(name: str) -> str:
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"

    if operation.startswith("Batch"):
        return [(f"dynamodb:{operation}", table(name), {}) for name in params["RequestItems"]]
    resource = table(params["TableName"])
    if "IndexName" in params:
        resource += f"/index/{params['IndexName']}"
    return [(f"dynamodb:{operation}", resource, {})]


# One request per route, with the parameters the API documents (kpi_api/routes.py).
KPI_API_REQUESTS = {
    "GET /": ("/", ""),
    "GET /kpis/daily": ("/kpis/daily", f"from=2025-07-09&to={DAY}"),
    "GET /kpis/categories": ("/kpis/categories", f"date={DAY}"),
    "GET /kpis/categories/{category_id}": ("/kpis/categories/electronics", f"from=2025-07-09&to={DAY}"),
    "GET /status": ("/status", ""),
    "GET /quality": ("/quality", ""),
    "GET /quality/{date}": (f"/quality/{DAY}", ""),
    "GET /days": ("/days", ""),
}


def test_kpi_api_role_allows_what_the_api_code_does(
    template: dict[str, Any], moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every route of the template, served by kpi_api's handler with the function's environment
    against tables made as the stack makes them (in the emulator): each answers 200, and every AWS
    call it made is a DynamoDB read the function's role allows."""
    handler = pytest.importorskip("kpi_api.handler")
    assert set(KPI_API_REQUESTS) == KPI_API_ROUTES
    monkeypatch.setitem(PARAMS, "EnvironmentName", f"api{uuid.uuid4().hex[:8]}")
    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint)
    for logical in ("DailyKpisTable", "CategoryKpisTable", "BatchTrackerTable", "DataQualityTable"):
        p = concrete(template, template["Resources"][logical]["Properties"])
        keys = ("TableName", "AttributeDefinitions", "KeySchema", "BillingMode", "GlobalSecondaryIndexes")
        ddb.create_table(**{k: p[k] for k in keys if k in p})
    env = concrete(
        template, template["Resources"]["KpiApiFunction"]["Properties"]["Environment"]["Variables"]
    )
    stored = {"run_id": {"S": "20250710T101500Z-1a2b3c4d"}, "updated_at": {"S": f"{DAY}T10:15:00Z"}}
    ddb.put_item(
        TableName=env["DAILY_KPIS_TABLE"], Item={"date_key": {"S": DAY}, "total_orders": {"N": "3"}, **stored}
    )
    ddb.put_item(
        TableName=env["CATEGORY_KPIS_TABLE"],
        Item={
            "category_id": {"S": "electronics"},
            "date_key": {"S": DAY},
            "daily_revenue": {"N": "12.5"},
            **stored,
        },
    )
    ddb.put_item(
        TableName=env["PIPELINE_BATCH_TRACKER_TABLE"],
        Item={"BatchId": {"S": DAY}, "status": {"S": "SUCCEEDED"}},
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)

    calls: list[tuple[str, str, dict[str, Any]]] = []
    make_api_call = BaseClient._make_api_call

    def recording(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        calls.append((client.meta.service_model.endpoint_prefix, operation, params))
        return make_api_call(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    for route, (path, query) in KPI_API_REQUESTS.items():
        event = {
            "version": "2.0",
            "routeKey": route,
            "rawPath": path,
            "rawQueryString": query,
            "headers": {"host": f"{API_ID}.execute-api.{REGION}.amazonaws.com"},
            "requestContext": {"http": {"method": "GET", "path": path}, "stage": "$default", "apiId": API_ID},
            "isBase64Encoded": False,
        }
        response = handler.lambda_handler(event, None)
        assert response["statusCode"] == 200, (route, response.get("body"))
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)

    assert {service for service, _, _ in calls} == {"dynamodb"}
    requests = [r for _, operation, params in calls for r in dynamodb_requests(operation, params)]
    check(policy(template, "KpiApiFunctionRole"), requests, True)
    # It read each of the three tables (so the check above covered them).
    daily, category, _, tracker = kpi_api_tables(template)
    quality = physical(template, "DataQualityTable", "Arn")
    assert {r.split("/index/")[0] for _, r, _ in requests} == {daily, category, tracker, quality}


# ---------------------------------------------------------------- s3:ListBucket, role by role (issue #38)
# Every ListBucket grant of the stack with its condition operator and prefixes. The trigger lists its
# own prefixes only (StringLike: a listing without a prefix is denied); it finds out whether a key
# is there with a listing under the key (lambda_trigger/s3_objects.py), never with a HEAD that
# needs an unprefixed grant to answer 404. The job roles keep ...IfExists: their code
# (jobs/s3_store.py, jobs/transformation/lock.py) and s3a's existence probes tell a missing key by
# HEAD's 404, which S3 returns only to a caller whose ListBucket grant holds without a prefix.
VALIDATION_LISTS = ["raw/*", "validated/*", "staging/*", "raw", "validated"]
TRANSFORMATION_LISTS = ["validated/*", "lake/*", "staging/*", "invalid/*", "validated", "lake"]


def _list_grants(template: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    found = []
    for name, res in template["Resources"].items():
        if res["Type"] != "AWS::IAM::Role":
            continue
        for st in role_statements(template, name):
            if "s3:ListBucket" in as_list(st.get("Action", [])):
                ((operator, tests),) = st["Condition"].items()
                found.append((name, operator, list(tests["s3:prefix"])))
    return found


def test_list_bucket_grants_are_the_listed_ones(template: dict[str, Any], mode: str) -> None:
    grants = _list_grants(template)
    expected = [
        ("TriggerFunctionRole", "StringLike", ["raw/*", "raw", "validated/*", "processed/*", "invalid/*"]),
        ("ValidationTaskRole", "StringLikeIfExists", VALIDATION_LISTS),
        ("TransformationTaskRole", "StringLikeIfExists", TRANSFORMATION_LISTS),
    ]
    if mode == "worker":
        expected += [
            ("WorkerTaskRole", "StringLikeIfExists", VALIDATION_LISTS),
            ("WorkerTaskRole", "StringLikeIfExists", TRANSFORMATION_LISTS),
        ]
    assert sorted(grants) == sorted(expected)


def test_list_bucket_grants_in_emr_serverless_mode_are_the_listed_ones() -> None:
    """The third task mode's job role lists what the two task roles list, nothing more."""
    grants = _list_grants(deployed(load_template(), {"TaskMode": "emr-serverless"}))
    assert sorted(grants) == sorted(
        [
            (
                "TriggerFunctionRole",
                "StringLike",
                ["raw/*", "raw", "validated/*", "processed/*", "invalid/*"],
            ),
            ("ValidationTaskRole", "StringLikeIfExists", VALIDATION_LISTS),
            ("TransformationTaskRole", "StringLikeIfExists", TRANSFORMATION_LISTS),
            ("EmrJobRole", "StringLikeIfExists", VALIDATION_LISTS),
            ("EmrJobRole", "StringLikeIfExists", TRANSFORMATION_LISTS),
        ]
    )


def test_the_trigger_cannot_list_the_bucket_without_a_prefix(template: dict[str, Any]) -> None:
    role = policy(template, "TriggerFunctionRole")
    check(role, [list_prefix(None), list_prefix(""), list_prefix("lake/"), list_prefix("logs/")], False)
    check(role, [list_prefix("raw/"), list_prefix(f"invalid/orders/{DAY}/o.csv")], True)


@pytest.mark.parametrize(
    ("queue_name", "sender", "not_sender"),
    [
        ("WorkQueue", "StateMachineRole", "TriggerFunctionRole"),
        ("PrecheckQueue", "TriggerFunctionRole", "StateMachineRole"),
    ],
)
def test_only_the_workflow_the_trigger_and_operators_may_send_work(
    template: dict[str, Any], mode: str, queue_name: str, sender: str, not_sender: str
) -> None:
    """The worker runs what a work or precheck message says: only its one sender (the workflow's
    tasks, the trigger's prechecks) and the operators may write one."""
    if mode != "worker":
        assert f"{queue_name}Policy" not in template["Resources"]
        return
    props = concrete(template, template["Resources"][f"{queue_name}Policy"]["Properties"])
    assert props["Queues"] == [physical(template, queue_name)]
    queue = physical(template, queue_name, "Arn")
    assert not _queue_denies(
        props["PolicyDocument"], queue, **{"aws:PrincipalArn": physical(template, sender, "Arn")}
    )
    operator = f"arn:aws:iam::{ACCOUNT}:role/ecomkpi-operator-{ENV}"
    assert not _queue_denies(props["PolicyDocument"], queue, **{"aws:PrincipalArn": operator})
    strangers = (
        physical(template, not_sender, "Arn"),
        f"arn:aws:iam::{ACCOUNT}:role/WorkerTaskRole",
        f"arn:aws:iam::{ACCOUNT}:user/admin",
    )
    for stranger in strangers:
        assert _queue_denies(props["PolicyDocument"], queue, **{"aws:PrincipalArn": stranger}), stranger
