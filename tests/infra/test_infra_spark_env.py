"""From the stack's parameters to the Spark session a job task starts, without AWS, Docker or a JVM.

Each job container's environment is taken from the template as deployed for given parameters
(``deployed``), run through the image's entrypoint (``docker/entrypoint.sh``, with the recording
Python stub of tests/docker/test_docker_image.py in place of the job), and what the job would then receive is
read by ``PipelineConfig.from_env`` and turned into the session's settings by ``session_conf``. So
the chain template -> entrypoint -> jobs/config.py -> jobs/spark_session.py is checked as one: the
default parameters keep Spark local and sized for the task, a cluster ``SparkMaster`` reaches the
session with the ports the driver's security group opens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobs.config import PipelineConfig
from jobs.spark_session import session_conf
from tests.docker.test_docker_image import run_entrypoint, stub  # noqa: F401 (stub: the fixture)
from tests.infra.test_infra_template import (
    SPARK_CLUSTER,
    deployed,
    environment,
    job_containers,
    load_template,
)

JARS = ["/opt/ecomkpi/jars/delta-spark_4.1_2.13-4.4.0.jar", "/opt/ecomkpi/jars/hadoop-aws-3.4.2.jar"]
COMMANDS = {"validation": "validate", "transformation": "transform", "worker": "worker"}


def task_environment(params: dict[str, str], task: str) -> tuple[list[str], dict[str, str]]:
    """The container command and environment ECS would give ``task`` (stand-ins for references to
    resources; the parameters' values, defaults for the others)."""
    template = load_template()
    t = deployed(template, params)
    values = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()} | params
    values |= {"BucketName": "ecomkpi-data-prod", "AWS::Region": "eu-west-1"}
    container = job_containers(t)[task]
    env = {}
    for name, value in environment(container).items():
        if isinstance(value, dict):
            (ref,) = value.values()
            value = values.get(ref, f"<{ref}>")
        env[name] = str(value)
    return container["Command"], env


@pytest.mark.parametrize(
    "task", ["ValidationTaskDefinition", "TransformationTaskDefinition", "WorkerTaskDefinition"]
)
def test_default_parameters_keep_spark_local_and_sized_for_the_task(task: str, stub: Path) -> None:  # noqa: F811
    command, env = task_environment({"TaskMode": "worker"}, task)
    assert env["SPARK_MASTER"] == ""  # the parameter's default, always set
    _, record = run_entrypoint(command, {**env, "SPARK_LOCAL_IP": "127.0.0.1"}, stub)
    assert record is not None
    job_env: dict[str, Any] = record["env"]
    vcpus = int(env["TASK_CPU"]) // 1024
    assert job_env["SPARK_MASTER"] == f"local[{vcpus}]"  # empty counts as unset
    assert job_env["SPARK_LOCAL_IP"] == "127.0.0.1"
    config = PipelineConfig.from_env(job_env)
    conf = session_conf(config, JARS, driver_host="10.0.1.9")
    assert conf["spark.master"] == f"local[{vcpus}]"
    assert conf["spark.sql.shuffle.partitions"] == str(max(4, vcpus * 4))
    assert not {
        "spark.driver.host",
        "spark.driver.port",
        "spark.jars",
        "spark.executor.extraClassPath",
    } & set(conf)


@pytest.mark.parametrize("task", ["TransformationTaskDefinition", "WorkerTaskDefinition"])
def test_a_cluster_master_reaches_the_session_with_the_opened_ports(task: str, stub: Path) -> None:  # noqa: F811
    params = {"TaskMode": "worker", **SPARK_CLUSTER, "SparkMaster": "spark://127.0.0.1:7077"}
    command, env = task_environment(params, task)
    _, record = run_entrypoint(command, {**env, "SPARK_LOCAL_IP": "127.0.0.1"}, stub)
    assert record is not None
    job_env: dict[str, Any] = record["env"]
    assert job_env["SPARK_MASTER"] == "spark://127.0.0.1:7077"  # kept, not local[N]
    config = PipelineConfig.from_env(job_env)
    conf = session_conf(config, JARS, driver_host="10.0.1.9")
    assert conf["spark.master"] == "spark://127.0.0.1:7077"
    assert conf["spark.executor.extraClassPath"] == "/opt/ecomkpi/jars/*"  # SparkExecutorJars image
    assert conf["spark.cores.max"] == "8" and conf["spark.executor.memory"] == "6g"
    sg = deployed(load_template(), params)["Resources"]["SparkDriverSecurityGroup"]["Properties"]
    opened = {rule["FromPort"] for rule in sg["SecurityGroupIngress"]}
    assert {int(conf["spark.driver.port"]), int(conf["spark.driver.blockManager.port"])} == opened
