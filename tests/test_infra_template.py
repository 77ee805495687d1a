"""Static checks of infra/ecomkpi-stack.yaml and scripts/deploy.sh (no AWS, no Docker).

cfn-lint on the template as committed and, when the workflow exists, on the template with the ASL
inlined as ``Definition`` (so cfn-lint's state machine checks see it); the ASL's ``${...}``
placeholders against the template's ``DefinitionSubstitutions`` and docs/design.md's list; the
wiring the moto deploy cannot show (task sizes, log configuration, bucket settings); and the
deploy script run against a fake ``aws`` CLI.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "infra" / "ecomkpi-stack.yaml"
ASL = ROOT / "stepfunctions" / "ecommerce-pipeline-workflow.asl.json"
DESIGN = ROOT / "docs" / "design.md"
DEPLOY = ROOT / "scripts" / "deploy.sh"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    t, matches = decode(str(TEMPLATE))
    assert not matches, matches
    return json.loads(json.dumps(t))


def props(template: dict[str, Any], name: str) -> dict[str, Any]:
    return template["Resources"][name]["Properties"]


def design_substitutions() -> set[str]:
    text = DESIGN.read_text()
    section = text.split("## Step Functions definition substitutions", 1)[1].split("\n## ", 1)[0]
    return set(PLACEHOLDER.findall(section))


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CFN_LINT), str(path)], capture_output=True, text=True, timeout=300)


def test_cfn_lint_clean() -> None:
    result = lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(
    not ASL.exists(), reason="stepfunctions/ecommerce-pipeline-workflow.asl.json not written yet"
)
def test_cfn_lint_clean_with_workflow_inlined(template: dict[str, Any], tmp_path: Path) -> None:
    template = copy.deepcopy(template)
    sm = props(template, "PipelineStateMachine")
    sm.pop("DefinitionS3Location")
    sm["Definition"] = json.loads(ASL.read_text())
    path = tmp_path / "ecomkpi-stack.with-definition.json"
    path.write_text(json.dumps(template, indent=1))
    result = lint(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_substitutions_are_exactly_the_designed_names(template: dict[str, Any]) -> None:
    subs = props(template, "PipelineStateMachine")["DefinitionSubstitutions"]
    assert set(subs) == design_substitutions()
    assert props(template, "PipelineStateMachine")["DefinitionS3Location"] == (
        "../stepfunctions/ecommerce-pipeline-workflow.asl.json"
    )


@pytest.mark.skipif(
    not ASL.exists(), reason="stepfunctions/ecommerce-pipeline-workflow.asl.json not written yet"
)
def test_every_asl_placeholder_is_substituted(template: dict[str, Any]) -> None:
    text = ASL.read_text()
    subs = props(template, "PipelineStateMachine")["DefinitionSubstitutions"]
    used = set(PLACEHOLDER.findall(text))
    assert used, "the workflow uses no substitution at all"
    assert used <= set(subs), f"placeholders without a substitution: {sorted(used - set(subs))}"
    leftover = PLACEHOLDER.sub(lambda m: "X" if m.group(1) in subs else m.group(0), text)
    assert "${" not in leftover
    json.loads(leftover)


def test_container_names_match_substitutions(template: dict[str, Any]) -> None:
    subs = props(template, "PipelineStateMachine")["DefinitionSubstitutions"]
    for task, sub, command, memory, cpu, log_group in (
        (
            "ValidationTaskDefinition",
            "ValidationContainerName",
            ["validate"],
            "ValidationTaskMemory",
            "ValidationTaskCpu",
            "ValidationLogGroup",
        ),
        (
            "TransformationTaskDefinition",
            "TransformationContainerName",
            ["transform"],
            "TransformationTaskMemory",
            "TransformationTaskCpu",
            "TransformationLogGroup",
        ),
    ):
        p = props(template, task)
        assert p["NetworkMode"] == "awsvpc"
        assert p["RequiresCompatibilities"] == ["FARGATE"]
        assert p["Memory"] == {"Ref": memory} and p["Cpu"] == {"Ref": cpu}
        assert p["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
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
    (queue_cfg,) = p["NotificationConfiguration"]["QueueConfigurations"]
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


def test_lambda_and_status_rule(template: dict[str, Any]) -> None:
    fn = props(template, "TriggerFunction")
    assert fn["Runtime"] == "python3.11"
    assert fn["Handler"] == "lambda_trigger.handler.lambda_handler"
    assert fn["Environment"]["Variables"] == {
        "PIPELINE_BATCH_TRACKER_TABLE": {"Ref": "BatchTrackerTable"},
        "STEP_FUNCTION_ARN": {"Ref": "PipelineStateMachine"},
    }
    rule = props(template, "ExecutionStatusRule")
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": "PipelineStateMachine"}]
    assert set(pattern["detail"]["status"]) == {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["TriggerFunction", "Arn"]}
    perm = props(template, "ExecutionStatusRulePermission")
    assert perm["Principal"] == "events.amazonaws.com"
    assert perm["SourceArn"] == {"Fn::GetAtt": ["ExecutionStatusRule", "Arn"]}


def test_network_parameters_and_outputs(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert params["SubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"
    assert params["SecurityGroupIds"]["Type"] == "List<AWS::EC2::SecurityGroup::Id>"
    subs = props(template, "PipelineStateMachine")["DefinitionSubstitutions"]
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
    } <= set(template["Outputs"])


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


@pytest.fixture
def deploy_repo(tmp_path: Path) -> Path:
    """A copy of what deploy.sh reads, so its out/ lands in tmp and a missing ASL is stood in for."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(DEPLOY, repo / "scripts" / "deploy.sh")
    shutil.copytree(ROOT / "infra", repo / "infra")
    shutil.copytree(ROOT / "lambda_trigger", repo / "lambda_trigger")
    (repo / "lambda_trigger" / "__pycache__").mkdir(exist_ok=True)
    (repo / "lambda_trigger" / "__pycache__" / "junk.cpython-311.pyc").write_bytes(b"x")
    (repo / "stepfunctions").mkdir()
    asl = ASL.read_text() if ASL.exists() else '{"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}'
    (repo / "stepfunctions" / ASL.name).write_text(asl)
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
    # The zip the template's Code path names, with the package at its root.
    code = props(json.loads(json.dumps(decode(str(TEMPLATE))[0])), "TriggerFunction")["Code"]
    zip_path = (deploy_repo / "infra" / code).resolve()
    assert zip_path == deploy_repo / "out" / "deploy" / "lambda_trigger.zip"
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
    assert "lambda_trigger/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert any(c[:2] == ["cloudformation", "describe-stacks"] for c in calls)
