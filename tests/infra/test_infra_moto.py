"""Deploy infra/ecomkpi-stack.yaml to the moto emulator and find the resources it made.

The stack is deployed once per task mode (``TaskMode`` worker and ecs, the ``stack`` fixture's
params); moto evaluates the template's conditions itself. moto's CloudFormation implements S3
buckets (name, encryption, tags only), DynamoDB, SNS topics, SQS queues, IAM roles, log groups,
Lambda functions / permissions / event source mappings, EventBridge rules, ECS clusters, services
and task definitions (family + containers only) and state machines (``DefinitionString`` only). The
test therefore transforms the template explicitly before ``create_stack`` (``moto_template``), and
tests the parts moto skips directly:

* resource types moto has no CloudFormation model for (``MOTO_SKIPPED``) are removed; their content
  is applied with boto3 after the stack exists (bucket notification/versioning/public access block/
  lifecycle, queue policies, the trigger's async invoke config, the worker's scalable target,
  scaling policies and alarms) or checked
  statically (tests/infra/test_infra_template.py, _policies.py);
* each Lambda's local ``Code`` path (what ``aws cloudformation package`` uploads) becomes an
  ``S3Bucket``/``S3Key`` of a zip of its package (lambda_trigger/, kpi_api/) uploaded to the
  emulator first;
* the KPI read API (``AWS::ApiGatewayV2::*``, no CloudFormation model in moto): the HTTP API is
  created with boto3 before the stack and its id / endpoint replace the stack's references to it
  (the Lambda permission, the outputs); integration, authorizer, routes and stage are created with
  boto3 afterwards from the template's expressions and checked (``test_kpi_api_in_the_emulator``);
* a KMS key's ``KeyPolicy`` object becomes the same document as a ``Fn::Sub`` JSON string (moto keeps
  an object as a dict and then fails every call on the key);
* each state machine's ``DefinitionS3Location`` + ``DefinitionSubstitutions`` become a
  ``DefinitionString`` built with ``Fn::Join`` from the ASL text, each ``${Name}`` replaced by the
  template's substitution expression for it (what CloudFormation does with the substitutions), so
  moto resolves the very same Ref/GetAtt/Join expressions.
"""

from __future__ import annotations

import copy
import io
import json
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from jobs.config import PipelineConfig
from tests.infra.test_infra_template import (
    JWT_PARAMS,
    KPI_API_ROUTES,
    MODES,
    STATE_MACHINES,
    WORKER_ASL,
    deployed,
    evaluate,
    load_template,
)

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"

# Types without a CloudFormation model in moto 5.2.5 (checked against moto's model map below).
MOTO_SKIPPED = {
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::Subscription",
    "AWS::CloudWatch::Alarm",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Authorizer",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::Stage",
    # TaskMode emr-serverless only, which is not deployed here (tests/infra/test_emr_serverless_stack.py).
    "AWS::EMRServerless::Application",
}
# Of those, what the rest of the stack refers to: created with boto3 before the stack (from the
# template's own properties) and named in its place, as CloudFormation would resolve it.
PRE_CREATED = {"KpiApi"}
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
SUB_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_:.]+)\}")


def asl_text(mode: str = "ecs") -> str:
    """The mode's real workflow when it exists; otherwise (ECS only) a stand-in using every
    substitution name."""
    path = STATE_MACHINES[mode][1]
    if path.exists():
        return path.read_text()
    if mode == "worker":
        pytest.skip(f"{WORKER_ASL.name} not written yet")
    net = {
        "AwsvpcConfiguration": {
            "Subnets.$": "States.StringSplit('${SubnetIds}', ',')",
            "SecurityGroups.$": "States.StringSplit('${SecurityGroupIds}', ',')",
        }
    }

    def run(task: str, container: str, nxt: str) -> dict[str, Any]:
        return {
            "Type": "Task",
            "Resource": "arn:aws:states:::ecs:runTask.sync",
            "Parameters": {
                "Cluster": "${EcsClusterArn}",
                "TaskDefinition": task,
                "LaunchType": "FARGATE",
                "NetworkConfiguration": net,
                "Overrides": {
                    "ContainerOverrides": [
                        {
                            "Name": container,
                            "Environment": [
                                {"Name": "S3_BUCKET", "Value": "${BucketName}"},
                                {"Name": "DAILY_KPIS_TABLE", "Value": "${DailyKpisTableName}"},
                                {"Name": "CATEGORY_KPIS_TABLE", "Value": "${CategoryKpisTableName}"},
                                {"Name": "BATCH_ID", "Value.$": "$.batch_id"},
                            ],
                        }
                    ]
                },
            },
            "ResultPath": None,
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Alert"}],
            "Next": nxt,
        }

    return json.dumps(
        {
            "StartAt": "Validate",
            "States": {
                "Validate": run("${ValidationTaskDefinitionArn}", "${ValidationContainerName}", "Transform"),
                "Transform": run(
                    "${TransformationTaskDefinitionArn}", "${TransformationContainerName}", "MarkDone"
                ),
                "MarkDone": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::dynamodb:updateItem",
                    "Parameters": {
                        "TableName": "${BatchTrackerTableName}",
                        "Key": {"BatchId": {"S.$": "$.batch_id"}},
                        "UpdateExpression": "SET #s = :s",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {":s": {"S": "DONE"}},
                    },
                    "End": True,
                },
                "Alert": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sns:publish",
                    "Parameters": {"TopicArn": "${AlertsTopicArn}", "Message.$": "States.JsonToString($)"},
                    "Next": "Failed",
                },
                "Failed": {"Type": "Fail"},
            },
        },
        indent=2,
    )


def definition_join(text: str, substitutions: dict[str, Any]) -> dict[str, Any]:
    """``DefinitionSubstitutions`` semantics as one ``Fn::Join`` (literal chunks + expressions)."""
    parts: list[Any] = []
    pos = 0
    for m in PLACEHOLDER.finditer(text):
        parts.append(text[pos : m.start()])
        parts.append(substitutions[m.group(1)])
        pos = m.end()
    parts.append(text[pos:])
    return {"Fn::Join": ["", [p for p in parts if p != ""]]}


def moto_template(
    template: dict[str, Any], code_bucket: str, asls: dict[str, str], made: dict[str, str]
) -> dict[str, Any]:
    """``asls``: the definition text of each state machine (logical id -> ASL), both modes'.
    ``made``: what a Ref / GetAtt of each ``PRE_CREATED`` resource resolves to ("KpiApi",
    "KpiApi.ApiEndpoint"). Each function's local ``Code`` zip is expected in ``code_bucket`` under
    its file name."""
    t = copy.deepcopy(template)
    res = t["Resources"]
    for name in [n for n, r in res.items() if r["Type"] in MOTO_SKIPPED]:
        del res[name]
    removed = {n for n, r in template["Resources"].items() if r["Type"] in MOTO_SKIPPED}
    for r in res.values():
        deps = r.get("DependsOn")
        if deps is not None:
            deps = [deps] if isinstance(deps, str) else deps
            kept = [d for d in deps if d not in removed]
            if kept:
                r["DependsOn"] = kept
            else:
                del r["DependsOn"]
    for r in res.values():
        if r["Type"] == "AWS::Lambda::Function":
            r["Properties"]["Code"] = {"S3Bucket": code_bucket, "S3Key": Path(r["Properties"]["Code"]).name}
    for r in res.values():
        if r["Type"] == "AWS::KMS::Key":
            r["Properties"]["KeyPolicy"] = as_json_sub(r["Properties"]["KeyPolicy"])
    for name, asl in asls.items():
        sm = res[name]["Properties"]
        sm.pop("DefinitionS3Location")
        sm["DefinitionString"] = definition_join(asl, sm.pop("DefinitionSubstitutions"))
    t["Resources"], t["Outputs"] = substitute(res, made), substitute(t["Outputs"], made)
    # A reference guarded by the skipped resource's own condition (a resource of that mode, or an
    # Fn::If on it) is never evaluated in a deployment that lacks the resource: moto evaluates
    # conditions itself, and these tests deploy the modes moto can make.
    guards = {template["Resources"][n].get("Condition") for n in removed} - {None}
    left = {
        ref
        for r in t["Resources"].values()
        if r.get("Condition") not in guards
        for ref in refs_to(r, removed, guards)
    } | refs_to(t["Outputs"], removed, guards)
    assert not left, f"the stack would refer to resources moto cannot make: {left}"
    return t


def as_json_sub(document: Any) -> dict[str, str]:
    """A policy document as one ``Fn::Sub`` JSON string (CloudFormation accepts either form; moto's KMS
    model only works with a string). ``Ref`` and ``Fn::Sub`` values become ``${...}`` references."""

    def text(value: Any) -> Any:
        if isinstance(value, list):
            return [text(v) for v in value]
        if isinstance(value, dict):
            if set(value) == {"Ref"}:
                return "${" + value["Ref"] + "}"
            if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
                return value["Fn::Sub"]
            assert not any(k.startswith("Fn::") for k in value), value
            return {k: text(v) for k, v in value.items()}
        return value

    return {"Fn::Sub": json.dumps(text(document))}


def substitute(value: Any, made: dict[str, str]) -> Any:
    """``value`` with each Ref / GetAtt / ``${...}`` of a key of ``made`` ("Name" or
    "Name.Attribute") replaced by its literal."""
    if isinstance(value, list):
        return [substitute(v, made) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"} and value["Ref"] in made:
        return made[value["Ref"]]
    if set(value) == {"Fn::GetAtt"} and ".".join(value["Fn::GetAtt"]) in made:
        return made[".".join(value["Fn::GetAtt"])]
    if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return {"Fn::Sub": SUB_VARIABLE.sub(lambda m: made.get(m.group(1), m.group(0)), value["Fn::Sub"])}
    return {k: substitute(v, made) for k, v in value.items()}


def refs_to(value: Any, names: set[str], guards: frozenset[str] | set[str] = frozenset()) -> set[str]:
    """Which of ``names`` a value refers to (Ref, GetAtt, ``${...}``, DependsOn aside), leaving out the
    true branch of an ``Fn::If`` on one of ``guards``."""
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= refs_to(v, names, guards)
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key == "Fn::If" and inner[0] in guards:
                found |= refs_to(inner[2], names, guards)
            elif key == "Ref" and inner in names:
                found.add(inner)
            elif key == "Fn::GetAtt" and inner[0] in names:
                found.add(inner[0])
            elif key == "Fn::Sub" and isinstance(inner, str):
                found |= {m.group(1).split(".")[0] for m in SUB_VARIABLE.finditer(inner)} & names
            else:
                found |= refs_to(inner, names, guards)
    return found


# Stand-in for a package that is not written yet (the stack only needs its zip to exist).
STAND_IN_PACKAGES = {
    "kpi_api": {"__init__.py": "", "handler.py": "def lambda_handler(event, context):\n    return {}\n"}
}


def lambda_zip(package: str = "lambda_trigger") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        if (ROOT / package / "__init__.py").exists():
            for p in sorted((ROOT / package).rglob("*.py")):
                zf.write(p, str(p.relative_to(ROOT)))
        else:
            for name, text in STAND_IN_PACKAGES[package].items():
                zf.writestr(f"{package}/{name}", text)
    return buf.getvalue()


def resolve(value: Any, refs: dict[str, str], attrs: dict[str, str]) -> Any:
    """Just enough of Ref / Fn::GetAtt / Fn::Sub to apply the skipped parts with boto3."""
    if isinstance(value, list):
        return [resolve(v, refs, attrs) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return refs[value["Ref"]]
    if set(value) == {"Fn::GetAtt"}:
        return attrs[".".join(value["Fn::GetAtt"])]
    if set(value) == {"Fn::Sub"}:
        return SUB_VARIABLE.sub(lambda m: refs.get(m.group(1)) or attrs[m.group(1)], value["Fn::Sub"])
    return {k: resolve(v, refs, attrs) for k, v in value.items()}


def deploy(moto_endpoint: str, mode: str, spark_cluster: bool = False) -> dict[str, Any]:
    """Create the stack in the emulator; ``spark_cluster``: pointed at a standalone Spark cluster
    (``SparkMaster`` and the cluster's security group, made first in the same VPC)."""
    suffix = uuid.uuid4().hex[:8]
    kw = {"endpoint_url": moto_endpoint, "region_name": REGION}
    ec2 = boto3.client("ec2", **kw)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)
    ]
    sg = ec2.create_security_group(GroupName=f"ecomkpi-{suffix}", Description="tasks", VpcId=vpc)["GroupId"]

    s3 = boto3.client("s3", **kw)
    artifacts = f"ecomkpi-artifacts-{suffix}"
    s3.create_bucket(Bucket=artifacts)
    template = load_template()
    for res in template["Resources"].values():
        if res["Type"] == "AWS::Lambda::Function":
            package = res["Properties"]["Handler"].split(".")[0]
            s3.put_object(
                Bucket=artifacts, Key=Path(res["Properties"]["Code"]).name, Body=lambda_zip(package)
            )

    params = {
        "EnvironmentName": f"t{suffix}",
        "BucketName": f"ecomkpi-data-{suffix}",
        "ImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/ecomkpi:test",
        "SubnetIds": ",".join(subnets),
        "SecurityGroupIds": sg,
        "TaskMode": mode,
    }
    if mode == "worker":
        # Not the defaults, so the test sees them arrive: scale to zero, at most 3 workers.
        params.update({"WorkerMinCapacity": "0", "WorkerMaxCapacity": "3", "WorkerMaxBatches": "7"})
    else:
        # The other value of ApiAuthorization (and non-default throttling) in the other stack.
        params.update({**JWT_PARAMS, "ApiThrottleRateLimit": "5", "ApiThrottleBurstLimit": "9"})
    cluster_sg = None
    if spark_cluster:
        cluster_sg = ec2.create_security_group(
            GroupName=f"spark-cluster-{suffix}", Description="the Spark cluster's nodes", VpcId=vpc
        )["GroupId"]
        params.update(
            {
                "SparkMaster": "spark://10.42.1.10:7077",
                "SparkExecutorJars": "image",
                "SparkExtraConf": "spark.cores.max=4 spark.executor.memory=2g",
                "SparkClusterSecurityGroupId": cluster_sg,
                "VpcId": vpc,
            }
        )
    # The HTTP API moto's CloudFormation cannot make: made first, from the template's properties.
    api_props = resolve(template["Resources"]["KpiApi"]["Properties"], params, {})
    api = boto3.client("apigatewayv2", **kw).create_api(
        Name=api_props["Name"], ProtocolType=api_props["ProtocolType"], Description=api_props["Description"]
    )
    made = {"KpiApi": api["ApiId"], "KpiApi.ApiEndpoint": api["ApiEndpoint"]}
    assert set(made) >= PRE_CREATED
    asls = {
        name: asl_text(m)
        for m, (name, _) in STATE_MACHINES.items()
        if m == mode or STATE_MACHINES[m][1].exists()
    }
    body = moto_template(template, artifacts, asls, made)
    cfn = boto3.client("cloudformation", **kw)
    name = f"ecomkpi-{suffix}"
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    desc = cfn.describe_stacks(StackName=name)["Stacks"][0]
    # moto lists a resource whose Condition is false as an entry without ids: left out.
    physical = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in cfn.describe_stack_resources(StackName=name)["StackResources"]
        if "LogicalResourceId" in r
    }
    outputs = {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
    return {
        "mode": mode,
        "kw": kw,
        "name": name,
        "status": desc["StackStatus"],
        "params": params,
        "subnets": subnets,
        "sg": sg,
        "vpc": vpc,
        "cluster_sg": cluster_sg,
        "outputs": outputs,
        "physical": physical,
        "template": template,
        "deployed": deployed(template, params),
        "api": api,
    }


@pytest.fixture(scope="module", params=MODES)
def stack(moto_endpoint: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    return deploy(moto_endpoint, request.param)


@pytest.fixture(scope="module", params=MODES)
def cluster_stack(moto_endpoint: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    return deploy(moto_endpoint, request.param, spark_cluster=True)


def test_skipped_types_are_exactly_what_moto_lacks() -> None:
    from moto.cloudformation.parsing import get_model_map

    types = {r["Type"] for r in load_template()["Resources"].values()}
    assert types - set(get_model_map()) == MOTO_SKIPPED & types


def test_stack_creates_and_exports_outputs(stack: dict[str, Any]) -> None:
    assert stack["status"] == "CREATE_COMPLETE"
    expected = set(stack["deployed"]["Outputs"])
    assert expected == set(stack["outputs"]), expected ^ set(stack["outputs"])
    assert stack["outputs"]["BucketName"] == stack["params"]["BucketName"]
    assert stack["outputs"]["TaskMode"] == stack["mode"]
    deployable = {n for n, r in stack["deployed"]["Resources"].items() if r["Type"] not in MOTO_SKIPPED}
    # What the mode creates, and nothing of the other mode (moto evaluated the conditions).
    assert deployable == set(stack["physical"]), deployable ^ set(stack["physical"])


def test_tables_have_design_keys(stack: dict[str, Any]) -> None:
    ddb = boto3.client("dynamodb", **stack["kw"])
    env = stack["params"]["EnvironmentName"]
    want = {
        "BatchTrackerTableName": (
            f"BatchFileTracker-{env}",
            [("BatchId", "HASH")],
            {"BatchId": "S", "sweep_shard": "S"},  # the open-days index's key
        ),
        "CategoryKpisTableName": (
            f"CategoryKPIs-{env}",
            [("category_id", "HASH"), ("date_key", "RANGE")],
            {"category_id": "S", "date_key": "S"},
        ),
        "DailyKpisTableName": (f"DailyKPIs-{env}", [("date_key", "HASH")], {"date_key": "S"}),
    }
    for output, (table, keys, types) in want.items():
        assert stack["outputs"][output] == table
        t = ddb.describe_table(TableName=table)["Table"]
        assert [(k["AttributeName"], k["KeyType"]) for k in t["KeySchema"]] == keys
        assert {a["AttributeName"]: a["AttributeType"] for a in t["AttributeDefinitions"]} == types
        assert t["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_topic_queue_and_dead_letter_queue(stack: dict[str, Any]) -> None:
    sns = boto3.client("sns", **stack["kw"])
    topic = stack["outputs"]["AlertsTopicArn"]
    assert topic.endswith(f":ecommerce-pipeline-alerts-{stack['params']['EnvironmentName']}")
    assert topic in {t["TopicArn"] for t in sns.list_topics()["Topics"]}
    # Encrypted with the stack's own key (rotating, and named by its alias), not aws/sns.
    key = sns.get_topic_attributes(TopicArn=topic)["Attributes"]["KmsMasterKeyId"]
    assert key == stack["outputs"]["AlertsKeyArn"]
    kms = boto3.client("kms", **stack["kw"])
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyManager"] == "CUSTOMER"
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is True
    key_policy = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    admin, publishers = key_policy["Statement"]
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert publishers["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases(KeyId=key)["Aliases"]}
    assert f"alias/ecomkpi-alerts-{stack['params']['EnvironmentName']}" in aliases

    sqs = boto3.client("sqs", **stack["kw"])
    attrs = sqs.get_queue_attributes(QueueUrl=stack["outputs"]["RawEventsQueueUrl"], AttributeNames=["All"])[
        "Attributes"
    ]
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=stack["outputs"]["RawEventsDeadLetterQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == 5
    assert int(attrs["VisibilityTimeout"]) >= 6 * 60


def test_bucket_encrypted_and_raw_events_reach_the_queue(stack: dict[str, Any]) -> None:
    """Encryption comes from the stack; notification etc. are applied here from the template."""
    kw, out = stack["kw"], stack["outputs"]
    s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
    lam = boto3.client("lambda", **kw)
    bucket = out["BucketName"]
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    queue_url = out["RawEventsQueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    template = stack["template"]
    refs = {**stack["params"], "AWS::Partition": "aws", "AWS::AccountId": ACCOUNT, "AWS::Region": REGION}
    refs["S3LogsExpirationDays"] = str(template["Parameters"]["S3LogsExpirationDays"]["Default"])
    refs["OperatorRoleNamePattern"] = str(template["Parameters"]["OperatorRoleNamePattern"]["Default"])
    refs["RawEventsQueue"] = queue_url
    attrs = {"RawEventsQueue.Arn": queue_arn}
    props = resolve(template["Resources"]["PipelineBucket"]["Properties"], refs, attrs)

    # The queue policy moto skipped: valid JSON naming this bucket as the only source.
    policy = resolve(
        template["Resources"]["RawEventsQueuePolicy"]["Properties"]["PolicyDocument"], refs, attrs
    )
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    assert policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] == f"arn:aws:s3:::{bucket}"

    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration=props["VersioningConfiguration"])
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
    )
    lifecycle = []
    for r in props["LifecycleConfiguration"]["Rules"]:
        api: dict[str, Any] = {
            "ID": r["Id"],
            "Status": r["Status"],
            "Filter": {"Prefix": r.get("Prefix", "")},
        }
        if "ExpirationInDays" in r:
            api["Expiration"] = {"Days": int(r["ExpirationInDays"])}
        if "NoncurrentVersionExpiration" in r:
            api["NoncurrentVersionExpiration"] = r["NoncurrentVersionExpiration"]
        if "AbortIncompleteMultipartUpload" in r:
            api["AbortIncompleteMultipartUpload"] = r["AbortIncompleteMultipartUpload"]
        lifecycle.append(api)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": lifecycle})
    notification = {
        "QueueConfigurations": [
            {
                "QueueArn": q["Queue"],
                "Events": [q["Event"]],
                "Filter": {"Key": {"FilterRules": q["Filter"]["S3Key"]["Rules"]}},
            }
            for q in props["NotificationConfiguration"]["QueueConfigurations"]
        ]
    }
    # moto would invoke the (docker-backed) Lambda for each message, S3's test event included:
    # pause the mapping before the bucket starts sending.
    for esm in lam.list_event_source_mappings(EventSourceArn=queue_arn)["EventSourceMappings"]:
        lam.update_event_source_mapping(UUID=esm["UUID"], Enabled=False)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=notification)

    s3.put_object(Bucket=bucket, Key="processed/orders/2025-07-10/orders_part1.csv", Body=b"x")
    s3.put_object(Bucket=bucket, Key="raw/orders/2025-07-10/orders_part1.csv", Body=b"order_id\n1\n")
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []
    )
    keys = [
        unquote_plus(r["s3"]["object"]["key"]) for m in got for r in json.loads(m["Body"]).get("Records", [])
    ]
    assert keys == ["raw/orders/2025-07-10/orders_part1.csv"]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_lambda_wiring(stack: dict[str, Any]) -> None:
    kw, out = stack["kw"], stack["outputs"]
    lam = boto3.client("lambda", **kw)
    cfg = lam.get_function_configuration(FunctionName=out["TriggerFunctionName"])
    assert cfg["Runtime"] == "python3.11"
    assert cfg["Handler"] == "lambda_trigger.handler.lambda_handler"
    env = cfg["Environment"]["Variables"]
    assert env["PIPELINE_BATCH_TRACKER_TABLE"] == out["BatchTrackerTableName"]
    assert env["STEP_FUNCTION_ARN"] == out["StateMachineArn"]
    assert env["S3_BUCKET"] == out["BucketName"]
    # worker mode: the parts go to the warm worker's queue to be validated as they land
    assert env.get("PRECHECK_QUEUE_URL") == out.get("PrecheckQueueUrl")

    sqs = boto3.client("sqs", **kw)
    queue_arn = sqs.get_queue_attributes(QueueUrl=out["RawEventsQueueUrl"], AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    (esm,) = lam.list_event_source_mappings(FunctionName=out["TriggerFunctionName"])["EventSourceMappings"]
    assert esm["EventSourceArn"] == queue_arn

    events = boto3.client("events", **kw)
    rule_name = stack["physical"]["ExecutionStatusRule"].split("/")[-1]
    rule = events.describe_rule(Name=rule_name)
    pattern = json.loads(rule["EventPattern"])
    assert pattern["detail"]["stateMachineArn"] == [out["StateMachineArn"]]
    assert set(pattern["detail"]["status"]) == {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
    (target,) = events.list_targets_by_rule(Rule=rule_name)["Targets"]
    assert target["Arn"] == cfg["FunctionArn"]
    # The reconcile schedule: every 5 minutes (the default), the sweep's input, this function.
    schedule_name = stack["physical"]["ReconcileScheduleRule"].split("/")[-1]
    schedule = events.describe_rule(Name=schedule_name)
    assert schedule["ScheduleExpression"] == "rate(5 minutes)"
    (sweep,) = events.list_targets_by_rule(Rule=schedule_name)["Targets"]
    assert sweep["Arn"] == cfg["FunctionArn"]
    assert json.loads(sweep["Input"]) == {"ecomkpi": "reconcile"}
    # Both rules may invoke the function, each through a permission naming that rule.
    policy = json.loads(lam.get_policy(FunctionName=out["TriggerFunctionName"])["Policy"])
    sources = {
        s["Condition"]["ArnLike"]["AWS:SourceArn"]
        for s in policy["Statement"]
        if s.get("Principal", {}).get("Service") == "events.amazonaws.com"
    }
    assert sources == {rule["Arn"], schedule["Arn"]}


def test_cluster_and_task_definitions(stack: dict[str, Any]) -> None:
    ecs = boto3.client("ecs", **stack["kw"])
    out = stack["outputs"]
    (cluster,) = ecs.describe_clusters(clusters=[out["EcsClusterName"]])["clusters"]
    assert cluster["status"] == "ACTIVE"
    for key, container, command in (
        ("ValidationTaskDefinitionArn", "validation", ["validate"]),
        ("TransformationTaskDefinitionArn", "transformation", ["transform"]),
    ):
        td = ecs.describe_task_definition(taskDefinition=out[key])["taskDefinition"]
        (c,) = td["containerDefinitions"]
        assert c["name"] == container
        assert c["command"] == command
        assert c["image"] == stack["params"]["ImageUri"]
        env = {e["name"]: e["value"] for e in c["environment"]}
        assert env["S3_BUCKET"] == out["BucketName"]
        assert env["DAILY_KPIS_TABLE"] == out["DailyKpisTableName"]
        assert env["CATEGORY_KPIS_TABLE"] == out["CategoryKpisTableName"]
        assert env["TASK_MEMORY_MIB"].isdigit()
        assert c["logConfiguration"]["logDriver"] == "awslogs"


def test_state_machine_definition_fully_substituted(stack: dict[str, Any]) -> None:
    kw, out = stack["kw"], stack["outputs"]
    sfn = boto3.client("stepfunctions", **kw)
    described = sfn.describe_state_machine(stateMachineArn=out["StateMachineArn"])
    definition = described["definition"]
    assert not PLACEHOLDER.search(definition), PLACEHOLDER.findall(definition)
    parsed = json.loads(definition)
    assert parsed["States"]
    # The mode's state machine, and only it.
    name = STATE_MACHINES[stack["mode"]][0]
    assert out["StateMachineArn"] == stack["physical"][name]
    env = stack["params"]["EnvironmentName"]
    suffix = "worker-" if stack["mode"] == "worker" else ""
    assert described["name"] == f"ecomkpi-pipeline-{suffix}{env}"
    assert [m["name"] for m in sfn.list_state_machines()["stateMachines"] if m["name"].endswith(env)] == [
        described["name"]
    ]
    ecs = boto3.client("ecs", **kw)
    cluster_arn = ecs.describe_clusters(clusters=[out["EcsClusterName"]])["clusters"][0]["clusterArn"]
    used = set(PLACEHOLDER.findall(asl_text(stack["mode"])))
    assert used
    values = {
        "WorkQueueUrl": out.get("WorkQueueUrl", "(no work queue in ecs mode)"),
        "ValidationContainerName": "validation",
        "TransformationContainerName": "transformation",
        "EcsClusterArn": cluster_arn,
        "ValidationTaskDefinitionArn": out["ValidationTaskDefinitionArn"],
        "TransformationTaskDefinitionArn": out["TransformationTaskDefinitionArn"],
        "SubnetIds": ",".join(stack["subnets"]),
        "SecurityGroupIds": stack["sg"],
        "AlertsTopicArn": out["AlertsTopicArn"],
        "BatchTrackerTableName": out["BatchTrackerTableName"],
        "BucketName": out["BucketName"],
        "DailyKpisTableName": out["DailyKpisTableName"],
        "CategoryKpisTableName": out["CategoryKpisTableName"],
    }
    assert used <= set(values)
    for name in used:
        assert values[name] in definition, name
    log_groups = boto3.client("logs", **kw).describe_log_groups(logGroupNamePrefix="/")["logGroups"]
    names = {g["logGroupName"] for g in log_groups}
    for key in ("TriggerLogGroupName", "ValidationLogGroupName", "TransformationLogGroupName"):
        assert out[key] in names


def test_worker_service_and_work_queue(stack: dict[str, Any]) -> None:
    kw, out, params = stack["kw"], stack["outputs"], stack["params"]
    ecs, sqs = boto3.client("ecs", **kw), boto3.client("sqs", **kw)
    env = params["EnvironmentName"]
    services = ecs.list_services(cluster=out["EcsClusterName"])["serviceArns"]
    queues = sqs.list_queues(QueueNamePrefix="ecomkpi-work-").get("QueueUrls", [])
    if stack["mode"] == "ecs":
        assert services == []
        assert not [q for q in queues if q.endswith(env)]
        return
    (service,) = ecs.describe_services(cluster=out["EcsClusterName"], services=[out["WorkerServiceName"]])[
        "services"
    ]
    assert service["serviceArn"] in services
    assert service["desiredCount"] == int(params["WorkerMinCapacity"])
    td = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    (container,) = td["containerDefinitions"]
    assert container["command"] == ["worker"]
    assert container["image"] == params["ImageUri"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["WORK_QUEUE_URL"] == out["WorkQueueUrl"]
    assert environment["PRECHECK_QUEUE_URL"] == out["PrecheckQueueUrl"]
    assert environment["WORKER_MAX_BATCHES"] == params["WorkerMaxBatches"]
    assert environment["S3_BUCKET"] == out["BucketName"]
    assert environment["DAILY_KPIS_TABLE"] == out["DailyKpisTableName"]
    assert environment["CATEGORY_KPIS_TABLE"] == out["CategoryKpisTableName"]
    assert container["logConfiguration"]["options"]["awslogs-group"] == out["WorkerLogGroupName"]
    assert out["WorkerLogGroupName"] == f"/ecomkpi/{env}/worker"

    attrs = sqs.get_queue_attributes(QueueUrl=out["WorkQueueUrl"], AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=out["WorkQueueDeadLetterQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"] == dlq_arn
    assert int(attrs["MessageRetentionPeriod"]) >= 3600
    assert [q.rsplit("/", 1)[1] for q in queues if q.endswith(f"work-{env}")] == [f"ecomkpi-work-{env}"]
    assert out["WorkQueueUrl"].endswith(f"/ecomkpi-work-{env}")


# ---------------------------------------------------------------- Spark on an existing cluster
def job_task_definitions(stack: dict[str, Any]) -> list[dict[str, Any]]:
    ecs, out = boto3.client("ecs", **stack["kw"]), stack["outputs"]
    keys = ["ValidationTaskDefinitionArn", "TransformationTaskDefinitionArn"]
    keys += ["WorkerTaskDefinitionArn"] if stack["mode"] == "worker" else []
    return [ecs.describe_task_definition(taskDefinition=out[k])["taskDefinition"] for k in keys]


def job_config(task_definition: dict[str, Any]) -> PipelineConfig:
    """What the jobs in that task read from the environment the stack gave it."""
    (container,) = task_definition["containerDefinitions"]
    return PipelineConfig.from_env({e["name"]: e.get("value", "") for e in container["environment"]})


def test_without_a_cluster_every_job_runs_spark_in_its_task(stack: dict[str, Any]) -> None:
    for td in job_task_definitions(stack):
        config = job_config(td)
        assert (config.spark_master, config.executor_jars, config.extra_spark_conf) == (
            "local[*]",
            "auto",
            (),
        )
    assert "SparkDriverSecurityGroupId" not in stack["outputs"]


def test_a_cluster_master_reaches_every_job_task_and_opens_only_the_driver_ports(
    cluster_stack: dict[str, Any],
) -> None:
    kw, out, params = cluster_stack["kw"], cluster_stack["outputs"], cluster_stack["params"]
    assert cluster_stack["status"] == "CREATE_COMPLETE"
    configs = [job_config(td) for td in job_task_definitions(cluster_stack)]
    assert len(configs) == (3 if cluster_stack["mode"] == "worker" else 2)
    for config in configs:
        assert config.spark_master == params["SparkMaster"] and config.executor_jars == "image"
        assert dict(config.extra_spark_conf) == {"spark.cores.max": "4", "spark.executor.memory": "2g"}
    (driver_ports,) = {(c.driver_port, c.driver_block_manager_port) for c in configs}

    driver_sg, cluster_sg = out["SparkDriverSecurityGroupId"], cluster_stack["cluster_sg"]
    (group,) = boto3.client("ec2", **kw).describe_security_groups(GroupIds=[driver_sg])["SecurityGroups"]
    assert group["VpcId"] == cluster_stack["vpc"]
    opened = {
        (
            p["IpProtocol"],
            p["FromPort"],
            p["ToPort"],
            tuple(g["GroupId"] for g in p.get("UserIdGroupPairs", [])),
            tuple(r["CidrIp"] for r in p.get("IpRanges", [])),
        )
        for p in group["IpPermissions"]
    }
    assert opened == {("tcp", port, port, (cluster_sg,), ()) for port in driver_ports}
    # (moto's model ignores SecurityGroupEgress: the egress rules are checked in test_infra_template.)

    # Every job task runs in it besides SecurityGroupIds.
    if cluster_stack["mode"] == "ecs":
        definition = boto3.client("stepfunctions", **kw).describe_state_machine(
            stateMachineArn=out["StateMachineArn"]
        )["definition"]
        for task in ("ValidateData", "TransformData"):
            network = json.loads(definition)["States"][task]["Parameters"]["NetworkConfiguration"]
            assert network["AwsvpcConfiguration"]["SecurityGroups.$"] == (
                f"States.StringSplit('{cluster_stack['sg']},{driver_sg}', ',')"
            )
    else:
        # moto's ECS service keeps no network configuration: the template's expression, resolved
        # with what the emulator made.
        service = cluster_stack["deployed"]["Resources"]["WorkerService"]["Properties"]
        groups = service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
        refs = {"SecurityGroupIds": [cluster_stack["sg"]], "SparkDriverSecurityGroup": driver_sg}
        assert evaluate(groups, refs) == [cluster_stack["sg"], driver_sg]


def test_worker_scaling_targets_the_service(stack: dict[str, Any]) -> None:
    """The scaling resources moto's CloudFormation skips, applied with boto3 from the template's own
    expressions: the target names the service the stack made, its bounds are the parameters, and the
    alarms watch this stack's queue and state machine and drive the two policies."""
    if stack["mode"] != "worker":
        assert not {"WorkerScalableTarget", "WorkerScaleOutAlarm"} & set(stack["deployed"]["Resources"])
        return
    kw, out, params, physical = stack["kw"], stack["outputs"], stack["params"], stack["physical"]
    res = stack["deployed"]["Resources"]
    sqs = boto3.client("sqs", **kw)
    queue_arn = sqs.get_queue_attributes(QueueUrl=out["WorkQueueUrl"], AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    defaults = {k: str(v.get("Default", "")) for k, v in stack["template"]["Parameters"].items()}
    refs = {
        **defaults,
        **params,
        "AWS::Partition": "aws",
        "AWS::AccountId": ACCOUNT,
        "AWS::Region": REGION,
        "EcsCluster": out["EcsClusterName"],
        "WorkQueue": out["WorkQueueUrl"],
        "WorkerStateMachine": out["StateMachineArn"],
    }
    attrs = {
        "WorkerService.Name": out["WorkerServiceName"],
        "WorkQueue.QueueName": queue_arn.rsplit(":", 1)[1],
        "WorkQueue.Arn": queue_arn,
    }
    scaling = boto3.client("application-autoscaling", **kw)
    target = resolve(res["WorkerScalableTarget"]["Properties"], refs, attrs)
    scaling.register_scalable_target(
        ServiceNamespace=target["ServiceNamespace"],
        ResourceId=target["ResourceId"],
        ScalableDimension=target["ScalableDimension"],
        MinCapacity=int(target["MinCapacity"]),
        MaxCapacity=int(target["MaxCapacity"]),
    )
    (registered,) = scaling.describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[target["ResourceId"]]
    )["ScalableTargets"]
    assert (registered["MinCapacity"], registered["MaxCapacity"]) == (0, 3)
    # The target is the service this stack made.
    _, cluster, service = registered["ResourceId"].split("/")
    ecs = boto3.client("ecs", **kw)
    (found,) = ecs.describe_services(cluster=cluster, services=[service])["services"]
    assert found["serviceArn"] == physical["WorkerService"]
    refs["WorkerScalableTarget"] = target["ResourceId"]

    policy_arns = {}
    for name in ("WorkerScaleOutPolicy", "WorkerScaleInPolicy"):
        policy = resolve(res[name]["Properties"], refs, attrs)
        assert policy["ScalingTargetId"] == target["ResourceId"]
        config = policy["StepScalingPolicyConfiguration"]
        for step in config["StepAdjustments"]:
            step["ScalingAdjustment"] = int(step["ScalingAdjustment"])
        policy_arns[name] = scaling.put_scaling_policy(
            PolicyName=policy["PolicyName"],
            ServiceNamespace=target["ServiceNamespace"],
            ResourceId=target["ResourceId"],
            ScalableDimension=target["ScalableDimension"],
            PolicyType=policy["PolicyType"],
            StepScalingPolicyConfiguration=config,
        )["PolicyARN"]
    policies = scaling.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=target["ResourceId"])
    scale_in = next(
        p for p in policies["ScalingPolicies"] if p["PolicyARN"] == policy_arns["WorkerScaleInPolicy"]
    )
    assert scale_in["StepScalingPolicyConfiguration"]["StepAdjustments"][0]["ScalingAdjustment"] == 0

    refs.update(policy_arns)
    cloudwatch = boto3.client("cloudwatch", **kw)
    for name in ("WorkerScaleOutAlarm", "WorkerScaleInAlarm"):
        alarm = resolve(res[name]["Properties"], refs, attrs)
        cloudwatch.put_metric_alarm(
            AlarmName=alarm["AlarmName"],
            Metrics=alarm["Metrics"],
            EvaluationPeriods=int(alarm["EvaluationPeriods"]),
            DatapointsToAlarm=int(alarm["DatapointsToAlarm"]),
            Threshold=float(alarm["Threshold"]),
            ComparisonOperator=alarm["ComparisonOperator"],
            TreatMissingData=alarm["TreatMissingData"],
            AlarmActions=alarm["AlarmActions"],
        )
        (stored,) = cloudwatch.describe_alarms(AlarmNames=[alarm["AlarmName"]])["MetricAlarms"]
        assert stored["AlarmActions"] == [policy_arns[name.replace("Alarm", "Policy")]]
        dimensions = {
            d["Name"]: d["Value"]
            for m in stored["Metrics"]
            if "MetricStat" in m
            for d in m["MetricStat"]["Metric"]["Dimensions"]
        }
        assert dimensions["QueueName"] == attrs["WorkQueue.QueueName"]
        if name == "WorkerScaleOutAlarm":
            assert dimensions["StateMachineArn"] == out["StateMachineArn"]
            assert (dimensions["ClusterName"], dimensions["ServiceName"]) == (cluster, service)


def queue_arn_of(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def test_trigger_failure_paths(stack: dict[str, Any]) -> None:
    """Both rules dead-letter into the events DLQ the stack made (its policy, applied here, names
    them); the async invoke config (applied here) sends failures to the async DLQ."""
    kw, out, res = stack["kw"], stack["outputs"], stack["deployed"]["Resources"]
    sqs, events, lam = boto3.client("sqs", **kw), boto3.client("events", **kw), boto3.client("lambda", **kw)
    events_dlq = queue_arn_of(sqs, out["TriggerEventsDeadLetterQueueUrl"])
    async_dlq = queue_arn_of(sqs, out["TriggerAsyncDeadLetterQueueUrl"])
    env = stack["params"]["EnvironmentName"]
    assert events_dlq.endswith(f":ecomkpi-trigger-events-dlq-{env}")
    assert async_dlq.endswith(f":ecomkpi-trigger-async-dlq-{env}")
    rule_arns = {}
    for rule in ("ExecutionStatusRule", "ReconcileScheduleRule"):
        name = stack["physical"][rule].split("/")[-1]
        rule_arns[f"{rule}.Arn"] = events.describe_rule(Name=name)["Arn"]
        (target,) = events.list_targets_by_rule(Rule=name)["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": events_dlq}, rule
        assert int(target["RetryPolicy"]["MaximumRetryAttempts"]) == 185, rule

    refs = {**stack["params"], "AWS::Partition": "aws", "AWS::AccountId": ACCOUNT, "AWS::Region": REGION}
    refs["TriggerEventsDeadLetterQueue"] = out["TriggerEventsDeadLetterQueueUrl"]
    refs["TriggerFunction"] = out["TriggerFunctionName"]
    attrs = {
        **rule_arns,
        "TriggerEventsDeadLetterQueue.Arn": events_dlq,
        "TriggerAsyncDeadLetterQueue.Arn": async_dlq,
    }
    policy = resolve(res["TriggerEventsDeadLetterQueuePolicy"]["Properties"], refs, attrs)
    (queue_url,) = policy["Queues"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy["PolicyDocument"])})
    stored = json.loads(
        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    )
    (st,) = stored["Statement"]
    assert st["Resource"] == events_dlq
    assert set(st["Condition"]["ArnEquals"]["aws:SourceArn"]) == set(rule_arns.values())

    config = resolve(res["TriggerAsyncInvokeConfig"]["Properties"], refs, attrs)
    lam.put_function_event_invoke_config(
        FunctionName=config["FunctionName"],
        Qualifier=config["Qualifier"],
        MaximumRetryAttempts=config["MaximumRetryAttempts"],
        MaximumEventAgeInSeconds=config["MaximumEventAgeInSeconds"],
        DestinationConfig=config["DestinationConfig"],
    )
    got = lam.get_function_event_invoke_config(FunctionName=out["TriggerFunctionName"], Qualifier="$LATEST")
    assert got["DestinationConfig"]["OnFailure"]["Destination"] == async_dlq
    assert got["MaximumRetryAttempts"] == 2


def test_alert_alarms_name_this_stacks_resources(stack: dict[str, Any]) -> None:
    """The alarms moto's CloudFormation skips, created with boto3 from the template's own
    expressions: every dimension resolves to a resource this stack made (the function, the two rules,
    the mode's state machine, the bucket, the DLQs), and every alarm notifies the stack's topic."""
    kw, out, physical = stack["kw"], stack["outputs"], stack["physical"]
    sqs, events, sfn = (
        boto3.client("sqs", **kw),
        boto3.client("events", **kw),
        boto3.client("stepfunctions", **kw),
    )
    queue_urls = {
        name: out[key]
        for name, key in (
            ("RawEventsDeadLetterQueue", "RawEventsDeadLetterQueueUrl"),
            ("TriggerEventsDeadLetterQueue", "TriggerEventsDeadLetterQueueUrl"),
            ("TriggerAsyncDeadLetterQueue", "TriggerAsyncDeadLetterQueueUrl"),
            ("WorkQueueDeadLetterQueue", "WorkQueueDeadLetterQueueUrl"),
            ("PrecheckDeadLetterQueue", "PrecheckDeadLetterQueueUrl"),
        )
        if key in out
    }
    rules = {rule: physical[rule].split("/")[-1] for rule in ("ExecutionStatusRule", "ReconcileScheduleRule")}
    refs = {
        **stack["params"],
        "AWS::Partition": "aws",
        "AWS::AccountId": ACCOUNT,
        "AWS::Region": REGION,
        "AlertsTopic": out["AlertsTopicArn"],
        "TriggerFunction": out["TriggerFunctionName"],
        STATE_MACHINES[stack["mode"]][0]: out["StateMachineArn"],
        **rules,
        "KpiApiFunction": out["KpiApiFunctionName"],
        "KpiApi": stack["api"]["ApiId"],
        "KpiApiStage": "$default",  # the Ref of an HTTP API stage: its name
    }
    attrs = {f"{q}.QueueName": url.rsplit("/", 1)[1] for q, url in queue_urls.items()}
    cloudwatch = boto3.client("cloudwatch", **kw)
    alarms = {
        name: resolve(res["Properties"], refs, attrs)
        for name, res in stack["deployed"]["Resources"].items()
        if res["Type"] == "AWS::CloudWatch::Alarm" and "Namespace" in res["Properties"]
    }
    assert len(alarms) >= 13
    seen: dict[str, set[str]] = {}
    for alarm in alarms.values():
        cloudwatch.put_metric_alarm(
            AlarmName=alarm["AlarmName"],
            AlarmDescription=alarm["AlarmDescription"],
            Namespace=alarm["Namespace"],
            MetricName=alarm["MetricName"],
            Dimensions=alarm["Dimensions"],
            Statistic=alarm["Statistic"],
            Period=int(alarm["Period"]),
            EvaluationPeriods=int(alarm["EvaluationPeriods"]),
            Threshold=float(alarm["Threshold"]),
            ComparisonOperator=alarm["ComparisonOperator"],
            TreatMissingData=alarm["TreatMissingData"],
            AlarmActions=alarm["AlarmActions"],
        )
        (stored,) = cloudwatch.describe_alarms(AlarmNames=[alarm["AlarmName"]])["MetricAlarms"]
        assert stored["AlarmActions"] == [out["AlertsTopicArn"]]
        assert stored["AlarmName"].endswith(f"-{stack['params']['EnvironmentName']}")
        for d in stored["Dimensions"]:
            seen.setdefault(d["Name"], set()).add(d["Value"])
    # Each dimension value is a resource of this stack, found by its own API.
    assert seen["StateMachineArn"] == {out["StateMachineArn"]}
    assert sfn.describe_state_machine(stateMachineArn=out["StateMachineArn"])["status"] == "ACTIVE"
    assert seen["FunctionName"] == {out["TriggerFunctionName"], out["KpiApiFunctionName"]}
    for name in seen["FunctionName"]:
        boto3.client("lambda", **kw).get_function(FunctionName=name)
    assert seen["ApiId"] == {stack["api"]["ApiId"]}
    assert (
        boto3.client("apigatewayv2", **kw)
        .get_api(ApiId=stack["api"]["ApiId"])["Name"]
        .endswith(f"-{stack['params']['EnvironmentName']}")
    )
    assert seen["Stage"] == {"$default"}
    assert seen["RuleName"] == set(rules.values())
    for name in seen["RuleName"]:
        (target,) = events.list_targets_by_rule(Rule=name)["Targets"]
        assert target["Arn"].endswith(f":function:{out['TriggerFunctionName']}")
    assert seen["Bucket"] == {out["BucketName"]}
    assert seen["QueueName"] == set(attrs.values())
    for name in seen["QueueName"]:  # exists; the URL's host is the emulator's
        assert sqs.get_queue_url(QueueName=name)["QueueUrl"].endswith(f"/{ACCOUNT}/{name}")


def test_kpi_api_in_the_emulator(stack: dict[str, Any]) -> None:
    """The function the stack made, and the API parts moto's CloudFormation skips, created with
    boto3 from the template's own expressions: every route (IAM in the worker stack, JWT in the ecs
    one) requires authorisation and targets this stack's function; the stage throttles with the
    parameters and logs to the stack's access log group; the function trusts this API only."""
    kw, out, params, res = stack["kw"], stack["outputs"], stack["params"], stack["deployed"]["Resources"]
    apigw, lam, logs = (boto3.client(s, **kw) for s in ("apigatewayv2", "lambda", "logs"))
    api_id, jwt = stack["api"]["ApiId"], params.get("ApiAuthorization") == "JWT"
    env = params["EnvironmentName"]

    fn = lam.get_function_configuration(FunctionName=out["KpiApiFunctionName"])
    assert fn["FunctionName"] == f"ecomkpi-kpi-api-{env}"
    assert (fn["Runtime"], fn["Handler"]) == ("python3.11", "kpi_api.handler.lambda_handler")
    assert (fn["MemorySize"], fn["Timeout"]) == (256, 10)
    assert fn["Environment"]["Variables"] == {
        "DAILY_KPIS_TABLE": out["DailyKpisTableName"],
        "CATEGORY_KPIS_TABLE": out["CategoryKpisTableName"],
        "PIPELINE_BATCH_TRACKER_TABLE": out["BatchTrackerTableName"],
        "DATA_QUALITY_TABLE": out["DataQualityTableName"],
        "S3_BUCKET": out["BucketName"],
    }
    role = fn["Role"].rsplit("/", 1)[1]
    assert role == stack["physical"]["KpiApiFunctionRole"]
    groups = {g["logGroupName"]: g for g in logs.describe_log_groups(logGroupNamePrefix="/")["logGroups"]}
    assert (
        out["KpiApiLogGroupName"] == f"/aws/lambda/{fn['FunctionName']}"
        and out["KpiApiLogGroupName"] in groups
    )
    access_logs = groups[out["KpiApiAccessLogGroupName"]]

    defaults = {k: str(v.get("Default", "")) for k, v in stack["template"]["Parameters"].items()}
    refs = {
        **defaults,
        **params,
        "AWS::Partition": "aws",
        "AWS::AccountId": ACCOUNT,
        "AWS::Region": REGION,
        "KpiApi": api_id,
    }
    attrs = {"KpiApiFunction.Arn": fn["FunctionArn"], "KpiApiAccessLogGroup.Arn": access_logs["arn"]}
    integration = resolve(res["KpiApiIntegration"]["Properties"], refs, attrs)
    refs["KpiApiIntegration"] = apigw.create_integration(**integration)["IntegrationId"]
    if jwt:
        authorizer = resolve(res["KpiApiJwtAuthorizer"]["Properties"], refs, attrs)
        audience = authorizer["JwtConfiguration"]["Audience"]
        authorizer["JwtConfiguration"]["Audience"] = audience["Fn::Split"][1].split(audience["Fn::Split"][0])
        refs["KpiApiJwtAuthorizer"] = apigw.create_authorizer(**authorizer)["AuthorizerId"]
    else:
        assert "KpiApiJwtAuthorizer" not in res
    for r in res.values():
        if r["Type"] == "AWS::ApiGatewayV2::Route":
            route = resolve(r["Properties"], refs, attrs)
            if "AuthorizationScopes" in route:  # JWT: a Fn::Split of JwtKpiScopes / JwtStatusScopes
                separator, text = route["AuthorizationScopes"]["Fn::Split"]
                route["AuthorizationScopes"] = text.split(separator)
            apigw.create_route(**route)
    stage = resolve(res["KpiApiStage"]["Properties"], refs, attrs)
    throttling = stage["DefaultRouteSettings"]
    throttling["ThrottlingRateLimit"] = float(throttling["ThrottlingRateLimit"])
    throttling["ThrottlingBurstLimit"] = int(throttling["ThrottlingBurstLimit"])
    apigw.create_stage(**stage)

    routes = apigw.get_routes(ApiId=api_id)["Items"]
    assert sorted(r["RouteKey"] for r in routes) == sorted(KPI_API_ROUTES)
    for route in routes:
        assert route["AuthorizationType"] == ("JWT" if jwt else "AWS_IAM"), route["RouteKey"]
        assert route.get("AuthorizerId") == refs.get("KpiApiJwtAuthorizer"), route["RouteKey"]
        # The pipeline's state (days, failures, files and their rules) vs the KPIs themselves.
        state = route["RouteKey"] in ("GET /status", "GET /quality", "GET /quality/{date}")
        scope = "JwtStatusScopes" if state else "JwtKpiScopes"
        wanted = params.get(scope, defaults[scope]).split(",") if jwt else None
        assert route.get("AuthorizationScopes") == wanted, route["RouteKey"]
        target = apigw.get_integration(ApiId=api_id, IntegrationId=route["Target"].split("/", 1)[1])
        assert target["IntegrationUri"] == fn["FunctionArn"], route["RouteKey"]
        assert (target["IntegrationType"], target["PayloadFormatVersion"]) == ("AWS_PROXY", "2.0")
    if jwt:
        found = apigw.get_authorizer(ApiId=api_id, AuthorizerId=refs["KpiApiJwtAuthorizer"])
        assert found["AuthorizerType"] == "JWT"
        assert found["JwtConfiguration"] == {
            "Issuer": params["JwtIssuer"],
            "Audience": params["JwtAudience"].split(","),
        }
    made = apigw.get_stage(ApiId=api_id, StageName="$default")
    assert made["AutoDeploy"] is True
    rate = float(params.get("ApiThrottleRateLimit", defaults["ApiThrottleRateLimit"]))
    burst = int(params.get("ApiThrottleBurstLimit", defaults["ApiThrottleBurstLimit"]))
    settings = made["DefaultRouteSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (rate, burst)
    assert made["AccessLogSettings"]["DestinationArn"] == access_logs["arn"]
    json.loads(made["AccessLogSettings"]["Format"])

    # The permission the stack made names this API's $default stage and GET, nothing wider.
    policy = json.loads(lam.get_policy(FunctionName=out["KpiApiFunctionName"])["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    source = statement["Condition"]["ArnLike"]["AWS:SourceArn"]
    assert source == f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/$default/GET/*"
    assert out["KpiApiInvokeArn"] == source
    assert out["KpiApiEndpoint"] == stack["api"]["ApiEndpoint"]
