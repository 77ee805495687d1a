"""The deployed form, run here: the pipeline's tasks as containers of the image `make image` builds
(docker/Dockerfile), configured by the stack template's task definitions (ecomkpi.container_runtime).

One day through ecs mode with both per-batch tasks in containers (S3, the lake and DynamoDB reached from
the containers), and the worker role warming both jobs in its container: the KPIs equal a from-scratch computation of the files (the reference the
process runs are held to in tests/ecomkpi/test_worker_e2e.py), the files reach processed/, and every container
ran on a read-only root file system with only the task definition's volumes writable (a job that wrote
anywhere else would have failed). Also: the image's user is not root, and a stop (`podman stop`, what
ECS does) ends the worker as ECS's stop would.

They run wherever podman can: their fixture builds the image as `make image` does (buildah's layer
cache makes an unchanged tree seconds; a build already under way, as CI starts one at once, is waited
for) and they run last in their lane, so a cold build overlaps the other tests. They skip only where
podman is not installed and cannot be.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ecomkpi.container_runtime import (
    DEFAULT_IMAGE,
    TASK_DEFINITIONS,
    ContainerTask,
    podman_environment,
    task_definition,
    unavailable_reason,
)
from ecomkpi.demo import scan_all
from ecomkpi.generator import GeneratorSettings, generate
from ecomkpi.local_stack import LocalStack
from ecomkpi.stack_template import load_template
from jobs.contract import CATEGORY_KPI_COLUMNS, DAILY_KPI_COLUMNS
from tests.ecomkpi.test_worker_e2e import rows, stack_settings, upload

# containers of the image: JVMs of their own
pytestmark = [pytest.mark.slow, pytest.mark.container]
WRITABLE = ("/tmp", "/home/ecomkpi")
BUILD_IMAGE = Path(__file__).resolve().parents[2] / "scripts" / "build_image.sh"


@pytest.fixture(scope="module")
def image() -> str:
    """The image as `make image` builds it (scripts/build_image.sh --if-possible: installs podman and
    buildah from Debian where it can, says so and exits 0 where it cannot)."""
    built = subprocess.run(
        [str(BUILD_IMAGE), "--if-possible"], capture_output=True, text=True, check=False, timeout=3600
    )
    if shutil.which("podman") is None:
        pytest.skip(f"podman is not installed and could not be: {built.stdout.strip()[-300:]}")
    if built.returncode != 0:
        pytest.fail(
            f"{BUILD_IMAGE.name} failed (exit {built.returncode}):\n{(built.stdout + built.stderr)[-4000:]}"
        )
    reason = unavailable_reason(DEFAULT_IMAGE)
    if reason:  # podman is here: a missing image is a broken set-up, not a reason to skip
        pytest.fail(f"{reason} after {BUILD_IMAGE.name} ran:\n{built.stdout[-2000:]}")
    return DEFAULT_IMAGE


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        env=podman_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_image_runs_as_uid_10001_not_root(image: str) -> None:
    config_user = podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert config_user == "10001:10001"
    ran = podman("run", "--rm", "--network", "host", "--entrypoint", "id", image)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split()[:2] == ["uid=10001(ecomkpi)", "gid=10001(ecomkpi)"], ran.stdout


def test_the_read_only_root_is_enforced_and_the_task_volumes_are_writable(image: str) -> None:
    """The control for "no writes outside the writable paths": the same flags as the tasks', one
    write that must fail and one per volume that must succeed (as the image's user)."""
    definition = task_definition(load_template(), TASK_DEFINITIONS["validation"], _local_names())
    assert definition.readonly_root and definition.writable_paths == WRITABLE
    flags = ["--read-only", "--read-only-tmpfs=false", *[x for p in WRITABLE for x in ("--volume", p)]]
    script = (
        "touch /tmp/ok /home/ecomkpi/ok && ! touch /opt/ecomkpi/no 2>/dev/null && ! touch /no 2>/dev/null"
    )
    ran = podman("run", "--rm", *flags, "--entrypoint", "sh", image, "-c", script)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def _local_names() -> dict[str, str]:
    return {
        "AWS::Region": "us-east-1",
        "BucketName": "b",
        "DailyKpisTable": "d",
        "CategoryKpisTable": "c",
        "AlertsTopic": "t",
        "DataQualityTable": "dq",
        "WorkQueue": "q",
        "PrecheckQueue": "p",
    }


def _check_day(stack: LocalStack, settings: Any, spark: Any, files: list[tuple[str, str]]) -> None:
    from jobs.oracle import kpis_from_files

    executions = stack.executor.list_executions() if stack.executor else []
    assert [e["status"] for e in executions] == ["SUCCEEDED"], executions
    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=settings.bucket, Prefix="processed/").get("Contents", [])
    processed = {o["Key"] for o in listed}
    expected = {f"processed/{rel}" for rel, _ in files}
    assert expected <= processed, expected - processed
    assert {k for k in processed - expected if not k.startswith("processed/manifests/")} == set()
    left = s3.list_objects_v2(Bucket=settings.bucket, Prefix="raw/").get("Contents", [])
    # The day's parts have left raw/ (the products master's raw copy stayed there in the 2026-12-07 run).
    assert not [
        o["Key"] for o in left if o["Key"].endswith(".csv") and not o["Key"].startswith("raw/products/")
    ]
    ddb = stack.client("dynamodb")
    daily = scan_all(ddb, settings.daily_table)
    category = scan_all(ddb, settings.category_table)
    expected_daily, expected_category = kpis_from_files(spark, files)
    assert daily and rows(daily, DAILY_KPI_COLUMNS, ("date_key",)) == rows(
        [r.asDict() for r in expected_daily.collect()], DAILY_KPI_COLUMNS, ("date_key",)
    )
    key = ("category_id", "date_key")
    assert rows(category, CATEGORY_KPI_COLUMNS, key) == rows(
        [r.asDict() for r in expected_category.collect()], CATEGORY_KPI_COLUMNS, key
    )


def _assert_as_the_task_definition_says(argv: list[str], container: str) -> None:
    """The podman run of a task: read-only root, exactly the definition's volumes, its size, no
    --user (the image's), the template's environment (not this process's)."""
    definition = task_definition(load_template(), TASK_DEFINITIONS[container], _local_names())
    assert "--read-only" in argv and "--read-only-tmpfs=false" in argv
    volumes = [argv[i + 1] for i, a in enumerate(argv) if a == "--volume"]
    assert tuple(volumes) == WRITABLE
    assert f"--memory={definition.memory_mib}m" in argv
    assert "--user" not in argv
    env = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--env")
    assert "PYTHON" not in env and "PATH" not in env  # nothing of the host's environment
    for name in definition.environment:
        assert name in env, name
    assert argv[-1] == definition.command[-1]


def test_a_day_through_ecs_mode_with_both_tasks_in_containers(
    tmp_path: Path, spark: Any, names: Any, image: str
) -> None:
    data = tmp_path / "data"
    generate(data, GeneratorSettings(days=1, orders_per_day=30, parts=2, seed=7, products=40, manifests=True))
    settings = stack_settings(tmp_path, names, task_mode="ecs", task_runtime="container", image=image)
    with LocalStack(settings) as stack:
        files = upload(stack, data)
        assert stack.wait_idle(timeout=600, settle=3)
        assert stack.run_task is not None
        runs = stack.run_task.runs
        assert [(r.state_name, r.exit_code) for r in runs] == [("ValidateData", 0), ("TransformData", 0)]
        launchers = {c.name: c.launcher for c in stack.run_task.task_definitions.values()}
        assert all(isinstance(x, ContainerTask) for x in launchers.values()), launchers
        launched = launchers["validation"].runtime.launched  # type: ignore[union-attr]
        assert len(launched) == 2
        _assert_as_the_task_definition_says(launched[0], "validation")
        _assert_as_the_task_definition_says(launched[1], "transformation")
        _check_day(stack, settings, spark, files)


def test_the_worker_warms_both_jobs_in_its_container_and_stops_as_ecs_stops_it(
    tmp_path: Path, names: Any, image: str
) -> None:
    """The worker role in the image: as the stack starts it (the worker task definition's flags and
    environment), its warm-up batch runs both jobs' real functions in the container (the CSV checks
    and GX suites of three files, the plan, silver and gold Delta commits: hosts/warmup.py) on the
    read-only root, and a stop ends it as ECS's does. A whole day through the containerised tasks,
    S3 included, is the ecs-mode test above; the worker's day on the same code is tests/ecomkpi/test_worker_e2e.py.
    """
    settings = stack_settings(tmp_path, names, task_runtime="container", image=image)
    stack = LocalStack(settings)
    stack.start()
    try:
        worker = stack.worker
        assert worker is not None and getattr(worker, "launcher", None) is not None
        assert stack.wait_worker_ready(timeout=300), "the containerised worker never got warm"
        launched = worker.launcher.runtime.launched  # type: ignore[union-attr]
        assert len(launched) == 1
        _assert_as_the_task_definition_says(launched[0], "worker")
        warm = [
            r for r in _records((settings.work_dir / "worker.log").read_text()) if r.get("step") == "warm"
        ]
        assert len(warm) == 1, warm
        assert "error" not in warm[0] and not any(k.startswith("interrupted") for k in warm[0]), warm[0]
        stages = (
            "validation.products",
            "validation.orders",
            "validation.order_items",
            "plan",
            "silver",
            "gold",
        )
        assert warm[0]["steps"] == len(stages), warm[0]
        assert all(f"{stage}_seconds" in warm[0] for stage in stages), warm[0]
        container = worker.container
        # ECS's health check, the task definition's command run in the container: the worker is ready.
        (definition,) = load_template()["Resources"]["WorkerTaskDefinition"]["Properties"][
            "ContainerDefinitions"
        ]
        kind, *health = definition["HealthCheck"]["Command"]
        assert kind == "CMD"
        checked = podman("exec", container, *health)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert json.loads(checked.stdout)["state"] == "ready"
        # ECS's stop: SIGTERM; the idle worker exits 0 long before StopTimeout (120 s) would kill it.
        started = time.monotonic()
        worker.stop()
        stopped_in = time.monotonic() - started
        assert worker.exits == [0], worker.exits
        assert stopped_in < 60, stopped_in
        log = (settings.work_dir / "worker.log").read_text()
        steps = [record.get("step") for record in _records(log)]
        assert "terminate" in steps and "stopped" in steps
        assert podman("container", "exists", container).returncode != 0  # removed with its volumes
    finally:
        stack.stop()


def _records(log: str) -> list[dict[str, Any]]:
    """The JSON records of a supervisor's log (``[pid N] {...}`` lines; a line may carry text after
    its record, e.g. two writes of the container's stdout joined)."""
    decoder, out = json.JSONDecoder(), []
    for line in log.splitlines():
        if "] {" not in line:
            continue
        try:
            record, _ = decoder.raw_decode(line.split("] ", 1)[1])
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out
