"""What ECS's stop of a worker task does (SIGTERM, then SIGKILL after the stop timeout), and the
scale-in protection that keeps a busy worker from being chosen for it. Without Spark: real SQS on the
emulator, the worker-mode workflow on the local executor, a runner standing in for the jobs.

Before 2026-12-07 SIGTERM only set a flag: the batch ran on, ECS killed the worker after its stop
timeout, and the state waited out HeartbeatSeconds (300 s) before retrying, at every deployment and
scale-in. Now the worker fails its tasks at once with a retryable error.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hosts.worker.answers import STOPPED_ERROR
from hosts.worker.loop import Worker
from hosts.worker.main import install_stop_handler
from jobs.config import PipelineConfig
from tests.hosts.test_worker_loop import Pipeline, Runner, make_pipeline


@pytest.fixture
def pipeline(moto_endpoint: str, names: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    yield from make_pipeline(moto_endpoint, names, monkeypatch)


class Blocking(Runner):
    """A validation that runs until released (a long Spark job), the rest answered at once."""

    def __init__(self) -> None:
        super().__init__({})
        self.running = threading.Event()
        self.release = threading.Event()

    def __call__(self, command: str, configs: Sequence[PipelineConfig]) -> int:
        if command == "validate" and not self.release.is_set():
            self.running.set()
            self.release.wait(120)
        return super().__call__(command, configs)


def _events(pipeline: Pipeline, arn: str) -> list[Any]:
    return list(pipeline.executor.get_execution_history(arn))


def _wait_for(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_sigterm_fails_the_running_task_at_once_and_its_retry_runs_on_the_next_worker(
    pipeline: Pipeline,
) -> None:
    """HeartbeatSeconds stays 300 s: the retry must come from the worker's answer, not the timeout."""
    arn = pipeline.start("stopped")
    runner = Blocking()
    worker = pipeline.worker(runner, heartbeat_seconds=0.5)
    thread = threading.Thread(target=worker.serve, daemon=True)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        install_stop_handler(worker)
        thread.start()
        assert runner.running.wait(60), "the validation never started"
        os.kill(os.getpid(), signal.SIGTERM)  # what `podman stop` / ECS's StopTask sends
        waited = _wait_for(
            lambda: any(
                e.type == "TaskFailed" and (e.details or {}).get("error") == STOPPED_ERROR
                for e in _events(pipeline, arn)
            ),
            timeout=20,
            what="the stopped worker's task failing",
        )
        assert waited < 20  # not HeartbeatSeconds (300 s)
        runner.release.set()  # the cancelled job ends; the worker answers nothing more and returns
        thread.join(30)
        assert not thread.is_alive(), "the worker went on serving after SIGTERM"
    finally:
        signal.signal(signal.SIGTERM, previous)
        runner.release.set()
    # The state's retry sent the task again; a fresh worker serves it and the day completes.
    successor = pipeline.worker(Runner({}))
    successor.handle(pipeline.next_task())  # the validation's retry
    successor.handle(pipeline.next_task())  # the transformation
    done = pipeline.executor.wait(arn, timeout=120)
    assert done["status"] == "SUCCEEDED", done
    history = _events(pipeline, arn)
    assert "TaskTimedOut" not in [e.type for e in history]
    (stopped,) = [e for e in history if e.type == "TaskFailed"]
    assert "stopped (SIGTERM)" in stopped.details["cause"]
    # The stopped worker ran the validation once and never answered it: exactly one answer per token.
    assert [c for c, _ in runner.calls] == ["validate"]


def test_a_stop_while_idle_fails_nothing(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    worker = pipeline.worker(Runner({}))
    thread = threading.Thread(target=worker.serve, daemon=True)
    thread.start()
    time.sleep(0.5)
    worker.terminate()
    thread.join(20)
    assert not thread.is_alive()
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    (terminate,) = [x for x in lines if x["step"] == "terminate"]
    assert terminate["failed_tasks"] == 0 and terminate["level"] == "INFO"


class Agent(BaseHTTPRequestHandler):
    """The ECS agent's task-protection endpoint: records each PUT body; ``status`` answers it."""

    calls: list[dict[str, Any]]
    status = 200

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        type(self).calls.append({"path": self.path, **body})
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"protection": {}}')

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def agent() -> Iterator[tuple[str, type[Agent]]]:
    handler = type("RecordingAgent", (Agent,), {"calls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/task-id", handler
    server.shutdown()


def test_a_busy_worker_is_protected_from_scale_in_until_the_queue_is_empty(
    pipeline: Pipeline, agent: tuple[str, type[Agent]]
) -> None:
    uri, handler = agent
    arn = pipeline.start("protected")
    seen_while_running: list[list[dict[str, Any]]] = []

    class Watching(Runner):
        def __call__(self, command: str, configs: Sequence[PipelineConfig]) -> int:
            seen_while_running.append(list(handler.calls))
            return super().__call__(command, configs)

    worker = Worker(
        pipeline.worker(Runner({})).settings,
        sqs=pipeline.sqs,
        sfn=pipeline.sfn,
        spark_factory=lambda: pytest.fail("no Spark here"),
        base_env={"LAKE_PATH": "s3a://lake/x", "AWS_REGION": "us-east-1", "ECS_AGENT_URI": uri},
        worker_id="protected-worker",
        runner=Watching({}),
    )
    thread = threading.Thread(target=worker.serve, daemon=True)
    thread.start()
    try:
        assert pipeline.executor.wait(arn, timeout=120)["status"] == "SUCCEEDED"
        _wait_for(
            lambda: handler.calls and handler.calls[-1]["ProtectionEnabled"] is False, 20, "unprotected"
        )
    finally:
        worker.stop()
        thread.join(20)
    # Protected before the first job ran, for a bounded time; released once idle, not between the
    # two tasks of the day if the second was already waiting.
    assert seen_while_running[0] and seen_while_running[0][-1]["ProtectionEnabled"] is True
    # The first protection (a worker idle before the task arrived has unprotected itself first).
    first = next(c for c in seen_while_running[0] if c["ProtectionEnabled"])
    assert first == {
        "path": "/api/task-id/task-protection/v1/state",
        "ProtectionEnabled": True,
        "ExpiresInMinutes": 60,
    }
    assert handler.calls[-1] == {"path": "/api/task-id/task-protection/v1/state", "ProtectionEnabled": False}
    changes = [c["ProtectionEnabled"] for c in handler.calls]
    assert all(a != b for a, b in itertools.pairwise(changes)), changes  # only changes are sent


def test_protection_is_best_effort(pipeline: Pipeline, agent: tuple[str, type[Agent]]) -> None:
    """An agent that refuses (or no agent: no ECS_AGENT_URI) never stops a batch."""
    uri, handler = agent
    handler.status = 500
    arn = pipeline.start("unprotected")
    runner = Runner({})
    worker = Worker(
        pipeline.worker(runner).settings,
        sqs=pipeline.sqs,
        sfn=pipeline.sfn,
        spark_factory=lambda: pytest.fail("no Spark here"),
        base_env={"LAKE_PATH": "s3a://lake/x", "AWS_REGION": "us-east-1", "ECS_AGENT_URI": uri},
        worker_id="refused-worker",
        runner=runner,
    )
    worker.handle(pipeline.next_task())
    worker.handle(pipeline.next_task())
    assert pipeline.executor.wait(arn, timeout=120)["status"] == "SUCCEEDED"
    assert handler.calls, "the worker never asked the agent"
    plain = pipeline.worker(Runner({}))
    assert plain.protection.url == ""  # off ECS: nothing is called
