"""How the local stack turns the stack template's task definitions into containers (no container is
started here: tests/docker/test_container_pipeline.py runs them), and that the template and the image agree on
the read-only root file system and its writable volumes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ecomkpi.container_runtime import (
    TASK_DEFINITIONS,
    ContainerTask,
    PodmanRuntime,
    container_environment,
    task_definition,
)
from ecomkpi.stack_template import TemplateError, load_template, resource_environment

ROOT = Path(__file__).resolve().parents[2]
NAMES = {
    "AWS::Region": "eu-west-1",
    "BucketName": "shop",
    "DailyKpisTable": "DailyKPIs-t",
    "CategoryKpisTable": "CategoryKPIs-t",
    "AlertsTopic": "arn:aws:sns:eu-west-1:123456789012:alerts",
    "DataQualityTable": "DataQuality-t",
    "WorkQueue": "http://127.0.0.1:1/queue/work",
    "PrecheckQueue": "http://127.0.0.1:1/queue/prechecks",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_every_task_definition_has_a_read_only_root_and_the_same_two_volumes(
    template: dict[str, Any],
) -> None:
    volumes = set(
        re.search(r"^VOLUME \[(.*)\]$", (ROOT / "docker" / "Dockerfile").read_text(), re.M)
        .group(1)  # type: ignore[union-attr]
        .replace('"', "")
        .replace(" ", "")
        .split(",")
    )
    mounts = []
    for resource in TASK_DEFINITIONS.values():
        props = template["Resources"][resource]["Properties"]
        (container,) = props["ContainerDefinitions"]
        assert container["ReadonlyRootFilesystem"] is True, resource
        # Fargate task storage: volumes without a host (no EFS, no bind to the host).
        assert all(set(v) == {"Name"} for v in props["Volumes"]), props["Volumes"]
        mounts.append(
            sorted((m["SourceVolume"], m["ContainerPath"], m["ReadOnly"]) for m in container["MountPoints"])
        )
        # What the image declares as VOLUME is what Fargate fills from it (owner 10001 included).
        assert {m["ContainerPath"] for m in container["MountPoints"]} == volumes
    assert mounts[0] == mounts[1] == mounts[2]
    assert volumes == {"/tmp", "/home/ecomkpi"}


def test_a_local_process_is_told_the_stacks_resources_as_the_template_tells_its_tasks(
    template: dict[str, Any],
) -> None:
    """The process runtime's task environment (ecomkpi/local_stack.py) takes the variables naming
    the stack's resources from the task definitions: a variable the template adds reaches the local
    tasks without a second list; the container's sizing (memory, ports) does not."""
    jobs = [TASK_DEFINITIONS["validation"], TASK_DEFINITIONS["transformation"]]
    env = resource_environment(template, jobs, NAMES)
    by_ref = {
        e["Name"]: e["Value"]["Ref"]
        for r in jobs
        for e in template["Resources"][r]["Properties"]["ContainerDefinitions"][0]["Environment"]
        if isinstance(e["Value"], dict) and "Ref" in e["Value"] and e["Value"]["Ref"] in NAMES
    }
    assert env == {name: NAMES[ref] for name, ref in by_ref.items()}
    assert {"S3_BUCKET", "DAILY_KPIS_TABLE", "SNS_TOPIC_ARN", "DATA_QUALITY_TABLE"} <= set(env)
    assert not {"TASK_MEMORY_MIB", "SPARK_DRIVER_PORT", "SPARK_MASTER"} & set(env)
    worker = resource_environment(template, [TASK_DEFINITIONS["worker"]], NAMES)
    assert (worker["WORK_QUEUE_URL"], worker["PRECHECK_QUEUE_URL"]) == (
        NAMES["WorkQueue"],
        NAMES["PrecheckQueue"],
    )


def test_the_container_gets_the_template_environment_not_a_copy(template: dict[str, Any]) -> None:
    definition = task_definition(template, "TransformationTaskDefinition", NAMES)
    (container,) = template["Resources"]["TransformationTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert list(definition.environment) == [e["Name"] for e in container["Environment"]]
    assert definition.environment["S3_BUCKET"] == "shop"
    assert definition.environment["DAILY_KPIS_TABLE"] == "DailyKPIs-t"
    assert definition.environment["AWS_REGION"] == "eu-west-1"
    params = template["Parameters"]
    assert definition.environment["TASK_MEMORY_MIB"] == str(params["TransformationTaskMemory"]["Default"])
    assert definition.cpu_units == int(params["TransformationTaskCpu"]["Default"])
    assert definition.command == ("transform",)
    worker = task_definition(template, "WorkerTaskDefinition", NAMES)
    assert worker.environment["WORK_QUEUE_URL"] == NAMES["WorkQueue"] and worker.stop_timeout == 120
    with pytest.raises(TemplateError, match="WorkQueue"):
        task_definition(
            template, "WorkerTaskDefinition", {k: v for k, v in NAMES.items() if k != "WorkQueue"}
        )


def test_the_podman_run_of_a_task(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", "-XX:+UseSerialGC")
    monkeypatch.setenv("SECRET_OF_THE_HOST", "x")
    definition = task_definition(template, "ValidationTaskDefinition", NAMES)
    runtime = PodmanRuntime("localhost/ecomkpi:test")
    runtime.host_cpus = lambda: 0.5  # type: ignore[method-assign]
    task = ContainerTask(runtime, definition, {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"})
    argv = task.launch("ecomkpi-validation-1", ["validate"], {"BATCH_ID": "2025-07-10", "S3_BUCKET": "other"})
    assert argv[:4] == ["podman", "run", "--rm", "--name"]
    assert argv[-2:] == ["localhost/ecomkpi:test", "validate"]
    assert "--read-only" in argv and [argv[i + 1] for i, a in enumerate(argv) if a == "--volume"] == [
        "/tmp",
        "/home/ecomkpi",
    ]
    assert "--cpus=0.5" in argv  # no more than the machine has
    assert f"--memory={definition.memory_mib}m" in argv and "--stop-timeout=30" in argv
    env = dict(a.split("=", 1) for a, flag in zip(argv[1:], argv[:-1], strict=True) if flag == "--env")
    assert env["BATCH_ID"] == "2025-07-10" and env["S3_BUCKET"] == "other"  # overrides win, as in ECS
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"
    assert env["JAVA_TOOL_OPTIONS"] == "-XX:+UseSerialGC"
    assert "SECRET_OF_THE_HOST" not in env and "PATH" not in env
    assert env == container_environment(
        definition,
        {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"},
        {
            "BATCH_ID": "2025-07-10",
            "S3_BUCKET": "other",
        },
    )
