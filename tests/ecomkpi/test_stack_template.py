"""The local stack reads its state machines' substitutions from the template (ecomkpi/stack_template.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecomkpi.sfn_local.definition import placeholders
from ecomkpi.stack_template import (
    STATE_MACHINES,
    Resolver,
    TemplateError,
    load_template,
    state_machine_substitutions,
)
from ecomkpi.workflow_modes import MODES, definition_path
from tests.support.emr_artifacts import entry_point_uri, spark_submit_parameters

NAMES: dict[str, Any] = {
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "BucketName": "shop",
    "DailyKpisTable": "DailyKPIs-t",
    "CategoryKpisTable": "CategoryKPIs-t",
    "DataQualityTable": "DataQuality-t",
    "BatchTrackerTable": "Tracker-t",
    "AlertsTopic": "arn:aws:sns:eu-west-1:123456789012:alerts",
    "WorkQueue": "http://127.0.0.1:1/queue/work",
    "PrecheckQueue": "http://127.0.0.1:1/queue/prechecks",
    "EcsCluster.Arn": "arn:aws:ecs:eu-west-1:123456789012:cluster/c",
    "ValidationTaskDefinition": "arn:aws:ecs:eu-west-1:123456789012:task-definition/v:1",
    "TransformationTaskDefinition": "arn:aws:ecs:eu-west-1:123456789012:task-definition/t:1",
    "SubnetIds": ["subnet-a", "subnet-b"],
    "SecurityGroupIds": ["sg-a"],
    "EmrApplication.ApplicationId": "00app",
    "EmrJobRole.Arn": "arn:aws:iam::123456789012:role/job",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_gets_a_value_for_every_placeholder_of_its_definition(
    template: dict[str, Any], mode: str
) -> None:
    """What the stack gives the state machine of each mode is exactly what its definition uses: a
    placeholder added to a definition without its substitution in the template fails here."""
    assert set(STATE_MACHINES) == set(MODES)
    substitutions = state_machine_substitutions(template, mode, NAMES)
    used = placeholders(json.loads(definition_path(mode).read_text()))
    assert used <= set(substitutions), sorted(used - set(substitutions))
    assert substitutions["BucketName"] == "shop"
    assert substitutions["AlertsTopicArn"] == NAMES["AlertsTopic"]


def test_the_intrinsics_resolve_as_cloudformation_would(template: dict[str, Any]) -> None:
    ecs = state_machine_substitutions(template, "ecs", NAMES)
    assert ecs["SubnetIds"] == "subnet-a,subnet-b"  # !Join of a List<> parameter
    # !If on HasSparkDriverSecurityGroup: SparkMaster's default is "", so the condition is false.
    assert ecs["SecurityGroupIds"] == "sg-a"
    assert ecs["EcsClusterArn"] == NAMES["EcsCluster.Arn"]  # !GetAtt
    emr_mode = state_machine_substitutions(template, "emr-serverless", NAMES)
    # !Sub: the same artifacts the local EMR application is given (and deploy.sh uploads).
    assert emr_mode["EmrEntryPoint"] == entry_point_uri("shop")
    assert emr_mode["EmrSparkSubmitParameters"] == spark_submit_parameters("shop")


def test_the_condition_follows_the_parameters(template: dict[str, Any]) -> None:
    """The same template with the cluster parameters set takes the other branch of the !If."""
    names = {**NAMES, "SparkMaster": "spark://m:7077", "SparkClusterSecurityGroupId": "sg-c"}
    names["SparkDriverSecurityGroup"] = "sg-driver"
    assert state_machine_substitutions(template, "ecs", names)["SecurityGroupIds"] == "sg-a,sg-driver"


def test_what_cannot_be_resolved_is_named_not_guessed(template: dict[str, Any]) -> None:
    names = {k: v for k, v in NAMES.items() if k != "WorkQueue"}
    with pytest.raises(
        TemplateError, match=r"WorkerStateMachine\.DefinitionSubstitutions\.WorkQueueUrl.*WorkQueue"
    ):
        state_machine_substitutions(template, "worker", names)
    with pytest.raises(TemplateError, match="Fn::Base64"):
        Resolver(template, NAMES).text({"Fn::Base64": "x"}, "here")
    with pytest.raises(TemplateError, match="no state machine"):
        state_machine_substitutions(template, "lambda", NAMES)
