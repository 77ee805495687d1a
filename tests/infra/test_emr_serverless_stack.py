"""TaskMode emr-serverless in infra/ecomkpi-stack.yaml: what it creates, what it grants, and that its
state machine gets exactly what the rendered definition asks for (no AWS: the template as
CloudFormation resolves it for the mode, as tests/infra/test_infra_template.py reads the other two)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from ecomkpi.sfn_local import emr_serverless as emr
from ecomkpi.sfn_local.definition import placeholders
from ecomkpi.workflow_modes import EMR_DEFINITION
from tests.infra.test_infra_template import DEPLOY, TEMPLATE, deployed
from tests.support.emr_artifacts import entry_point_uri, spark_submit_parameters

EMR_RESOURCES = {"EmrApplication", "EmrJobRole", "EmrServerlessStateMachine"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    parsed, problems = decode(str(TEMPLATE))
    assert not problems and parsed is not None
    return parsed


def rendered_spark_submit_parameters(bucket: str) -> str:
    """The stack's EmrSparkSubmitParameters for a bucket (its !Sub with BucketName filled in)."""
    parsed, _ = decode(str(TEMPLATE))
    assert parsed is not None
    sub = parsed["Resources"]["EmrServerlessStateMachine"]["Properties"]["DefinitionSubstitutions"]
    return str(sub["EmrSparkSubmitParameters"]["Fn::Sub"]).replace("${BucketName}", bucket)


def test_only_the_emr_mode_creates_the_application_role_and_state_machine(template: dict[str, Any]) -> None:
    for mode in ("worker", "ecs"):
        assert not EMR_RESOURCES & set(deployed(template, {"TaskMode": mode})["Resources"]), mode
    resources = deployed(template, {"TaskMode": "emr-serverless"})["Resources"]
    assert set(resources) >= EMR_RESOURCES
    assert not {"PipelineStateMachine", "WorkerStateMachine", "WorkerService", "WorkQueue"} & set(resources)


def test_the_application_is_the_release_the_jobs_were_tested_on(template: dict[str, Any]) -> None:
    app = deployed(template, {"TaskMode": "emr-serverless"})["Resources"]["EmrApplication"]["Properties"]
    assert app["ReleaseLabel"] == "emr-spark-8.0.0" and app["Type"] == "SPARK"
    assert app["AutoStopConfiguration"]["Enabled"] is True
    assert app["AutoStopConfiguration"]["IdleTimeoutMinutes"] == {"Ref": "EmrIdleTimeoutMinutes"}
    assert "InitialCapacity" not in app  # default: no pre-initialised capacity, nothing billed idle
    warm = deployed(
        template,
        {"TaskMode": "emr-serverless", "EmrPreInitializedDrivers": "2", "EmrPreInitializedExecutors": "4"},
    )["Resources"]["EmrApplication"]["Properties"]
    assert [c["Key"] for c in warm["InitialCapacity"]] == ["Driver", "Executor"]
    assert warm["InitialCapacity"][1]["Value"]["WorkerCount"] == {"Ref": "EmrPreInitializedExecutors"}
    # The task definitions' variables for both jobs reach every driver through the application.
    env = app["RuntimeConfiguration"][0]["Properties"]
    assert {k.removeprefix("spark.emr-serverless.driverEnv.") for k in env} >= {
        "DAILY_KPIS_TABLE",
        "CATEGORY_KPIS_TABLE",
        "AWS_REGION",
    }


def statements(role: dict[str, Any], policy: str) -> list[dict[str, Any]]:
    (found,) = [p for p in role["Properties"]["Policies"] if p["PolicyName"] == policy]
    return list(found["PolicyDocument"]["Statement"])


def test_the_job_role_holds_the_task_roles_grants_and_its_own_two(template: dict[str, Any]) -> None:
    resources = deployed(template, {"TaskMode": "emr-serverless"})["Resources"]
    role = resources["EmrJobRole"]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "emr-serverless.amazonaws.com"
    }
    for policy, task_role in (
        ("validation", "ValidationTaskRole"),
        ("transformation", "TransformationTaskRole"),
    ):
        assert statements(role, policy) == statements(resources[task_role], policy), policy
    own = statements(role, "emr-job-run")
    assert [(s["Action"], s["Resource"]["Fn::Sub"].rsplit(":::", 1)[1]) for s in own] == [
        ("s3:GetObject", "${BucketName}/emr/*"),
        ("s3:PutObject", "${BucketName}/control/results/*"),
    ]


def test_the_workflow_may_start_and_track_runs_of_its_application_only(template: dict[str, Any]) -> None:
    resources = deployed(template, {"TaskMode": "emr-serverless"})["Resources"]
    (policy,) = resources["StateMachineRole"]["Properties"]["Policies"]
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert by_sid["RunEmrJobs"]["Resource"] == {"Fn::GetAtt": ["EmrApplication", "Arn"]}
    assert by_sid["TrackEmrJobs"]["Resource"] == {"Fn::Sub": "${EmrApplication.Arn}/jobruns/*"}
    assert by_sid["PassEmrJobRole"]["Condition"]["StringEquals"]["iam:PassedToService"] == (
        "emr-serverless.amazonaws.com"
    )
    assert by_sid["ReadEmrJobOutcomes"]["Resource"]["Fn::Sub"].endswith("/control/results/*")
    assert not {"RunPipelineTasks", "SendWorkerTasks"} & set(by_sid)
    # The trigger starts this mode's state machine.
    (trigger_policy,) = resources["TriggerFunctionRole"]["Properties"]["Policies"]
    start = next(s for s in trigger_policy["PolicyDocument"]["Statement"] if s.get("Sid") == "StartPipeline")
    assert start["Resource"] == {"Ref": "EmrServerlessStateMachine"}


def test_the_state_machine_substitutes_every_placeholder_of_the_rendering(template: dict[str, Any]) -> None:
    machine = deployed(template, {"TaskMode": "emr-serverless"})["Resources"]["EmrServerlessStateMachine"]
    props = machine["Properties"]
    assert (
        props["DefinitionS3Location"]
        == "../stepfunctions/ecommerce-pipeline-workflow.emr-serverless.asl.json"
    )
    needed = placeholders(json.loads(EMR_DEFINITION.read_text("utf-8")))
    assert needed <= set(props["DefinitionSubstitutions"])
    assert props["DefinitionSubstitutions"]["EmrEntryPoint"]["Fn::Sub"].replace(
        "${BucketName}", "b"
    ) == entry_point_uri("b")
    assert rendered_spark_submit_parameters("b") == spark_submit_parameters("b")
    assert len(spark_submit_parameters("b" * 63)) <= emr.MAX_SPARK_SUBMIT_PARAMETERS


def test_deploy_uploads_the_job_files_in_emr_mode(tmp_path: Path) -> None:
    """deploy.sh with a stand-in ``aws`` CLI (it records its calls) in emr-serverless mode."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "aws").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "aws").chmod(0o755)
    jars = tmp_path / "jars"
    jars.mkdir()
    for name in (
        *emr.EMR_JARS,
        "hadoop-aws-3.4.1.jar",
        "bundle-2.24.6.jar",
        "wildfly-openssl-1.1.3.Final.jar",
    ):
        (jars / name).write_bytes(b"jar")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "ECOMKPI_BUCKET": "data-bucket",
        "ECOMKPI_IMAGE_URI": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ecomkpi:1",
        "ECOMKPI_SUBNET_IDS": "subnet-1",
        "ECOMKPI_SECURITY_GROUP_IDS": "sg-1",
        "ECOMKPI_ARTIFACTS_BUCKET": "artifacts",
        "ECOMKPI_TASK_MODE": "emr-serverless",
        "ECOMKPI_EMR_JARS_DIR": str(jars),
        "HOME": str(tmp_path),
    }
    done = subprocess.run(["bash", str(DEPLOY)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    made = calls.read_text().splitlines()
    deploy = next(c for c in made if c.startswith("cloudformation deploy"))
    assert "TaskMode=emr-serverless" in deploy
    copies = [c for c in made if c.startswith("s3 cp")]
    targets = {c.split()[-1] for c in copies}
    assert targets == {
        entry_point_uri("data-bucket"),
        f"s3://data-bucket/emr/{emr.JOBS_ZIP_FILE}",
        *(f"s3://data-bucket/emr/jars/{name}" for name in emr.EMR_JARS),
    }
    # After the stack exists (it creates the bucket), before anything can start a run.
    assert made.index(deploy) < made.index(copies[0])
