"""The local stack gives its children their environments and leaves its own process's alone: it runs
where no AWS variable is set (a fresh laptop, CI), and a developer's AWS settings never reach it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import jobs.validation  # noqa: F401 (its import sets GX's analytics opt-out, before the snapshot)
from ecomkpi.local_stack import LocalStack, StackSettings, host_environment

DAY = "2025-07-10"


def _pending_days(stack: LocalStack, wait: float = 60.0) -> list[dict[str, Any]]:
    """The tracker's items once one says PENDING (the emulator may show an item mid-update)."""
    ddb = stack.client("dynamodb")
    deadline = time.monotonic() + wait
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = ddb.scan(TableName=stack.settings.tracker_table)["Items"]
        if any(item.get("status", {}).get("S") == "PENDING" for item in items):
            return items
        time.sleep(0.2)
    return items


def test_the_stack_runs_without_aws_variables_and_leaves_the_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    before = dict(os.environ)
    stack = LocalStack(StackSettings(work_dir=tmp_path, task_mode="ecs", port=0, reconcile_seconds=0))
    stack.start()
    try:
        assert dict(os.environ) == before
        # An upload reaches the in-process trigger (S3 event -> SQS -> the dispatcher -> the handler),
        # whose clients take the emulator's endpoint and credentials from the environment it is given.
        stack.client("s3").put_object(
            Bucket=stack.settings.bucket,
            Key=f"raw/orders/{DAY}/orders_part1.csv",
            Body=b"order_id,user_id,status,created_at,num_of_item\n1,1,Complete,2025-07-10 10:00:00,1\n",
        )
        items = _pending_days(stack)
        assert [item.get("status", {}).get("S") for item in items] == ["PENDING"], items  # waits for products
        assert stack.trigger_env["AWS_ENDPOINT_URL"] == stack.endpoint
        assert stack.trigger_env["STEP_FUNCTION_ARN"] == stack.executor.state_machine_arn  # type: ignore[union-attr]
    finally:
        stack.stop()
    assert dict(os.environ) == before


def test_children_inherit_no_aws_setting_of_the_developer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session token, a profile or a service endpoint of the developer's shell would point a task
    at real AWS or mix real credentials into the emulator's: the stack's own replace them."""
    monkeypatch.setenv("AWS_PROFILE", "prod")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "real-token")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.eu-west-1.amazonaws.com")
    inherited = host_environment()
    assert not [k for k in inherited if k.startswith("AWS_")]
    assert inherited["PATH"] == os.environ["PATH"]
