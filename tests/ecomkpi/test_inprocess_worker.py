"""The in-process worker: ready without a warm-up batch, its lines handed on as a worker
process's, started again on the same session when its loop ends, stopped within a poll.

No task is sent, so the session is never used (a stand-in object: any use would fail); the demo's
end-to-end test (tests/ecomkpi/test_demo_e2e.py) serves real tasks with it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from ecomkpi.inprocess_worker import InProcessWorker
from ecomkpi.sfn_local.tasks import ContainerOutput


def test_ready_lines_restart_and_stop(
    moto_endpoint: str, names: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint)
    queue_url = sqs.create_queue(QueueName=f"work-{names.suffix}")["QueueUrl"]
    env = {
        "WORK_QUEUE_URL": queue_url,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ENDPOINT_URL_SFN": moto_endpoint,
        "AWS_REGION": "us-east-1",
        "WORKER_POLL_SECONDS": "1",
        "WORKER_IDLE_EXIT_SECONDS": "1",  # each loop ends after a second without work
        "WORKER_WARM_BATCH": "1",  # overridden: a warm-up batch would use the session
    }
    outputs: list[ContainerOutput] = []
    events: list[str] = []
    worker = InProcessWorker(object(), env, on_output=outputs.append, on_event=events.append)  # type: ignore[arg-type]
    worker.start()
    assert worker.ready.wait(30)
    deadline = time.monotonic() + 30
    while worker.starts < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    print("printed by the test, not by the worker")
    worker.stop(grace=5)

    assert not worker.is_alive()
    assert worker.starts >= 2 and worker.exits[:1] == [0]
    steps = [json.loads(o.line)["step"] for o in outputs]
    assert steps[:3] == ["start", "warm", "idle.exit"], steps
    warm = json.loads(outputs[1].line)
    assert warm["work_waiting"] is False and "batch_seconds" not in warm  # no warm-up batch ran
    assert {(o.container_name, o.stream) for o in outputs} == {("worker", "stdout")}
    assert "worker: ready (on this process's SparkSession)" in events
    printed = capsys.readouterr().out
    assert "printed by the test, not by the worker" in printed
    assert '"step"' not in printed  # the worker's lines went to the stack, not to stdout
