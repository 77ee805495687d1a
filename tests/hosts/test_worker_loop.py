"""The warm worker's protocol, without Spark: real SQS on the emulator, the rendered worker-mode
workflow on the local executor, and a runner standing in for the jobs (their own tests cover them).

What is checked is the contract with the workflow: the message carries exactly the container
environment, exit codes 0/2/1 become the same workflow outcomes as the per-batch tasks' exit codes,
a malformed message fails its state with a named error, and a stale token is dropped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from ecomkpi.sfn_local import Executor, serve
from ecomkpi.sfn_local.tasks import default_handlers
from ecomkpi.workflow_modes import WORKER_DEFINITION
from hosts.worker.loop import PREPARE_DONE, PREPARE_PENDING, Worker
from hosts.worker.messages import TaskMessage
from hosts.worker.queue import make_visible
from hosts.worker.settings import WorkerSettings
from hosts.worker.status import StatusFile, WorkerStatus
from jobs.config import ConfigError, PipelineConfig
from lambda_trigger.prechecks import Prechecks
from lambda_trigger.tracker import create_tracker_table
from tests.support.queues import next_message

ACCOUNT = "123456789012"


@dataclass
class Runner:
    """Records what each task was asked to do and answers with a scripted exit code.

    ``calls`` has one entry per batch served, ``runs`` the run ids of each call (several: coalesced);
    ``break_shared`` makes every run that serves several batches break.
    """

    exit_codes: dict[str, int]
    break_shared: bool = False
    calls: list[tuple[str, PipelineConfig]] = field(default_factory=list)
    runs: list[tuple[str, list[str]]] = field(default_factory=list)

    def __call__(self, command: str, configs: Sequence[PipelineConfig]) -> int:
        self.runs.append((command, [c.run_id for c in configs]))
        self.calls.extend((command, c) for c in configs)
        if self.break_shared and len(configs) > 1:
            raise RuntimeError("the shared run broke on purpose")
        code = self.exit_codes.get(command, 0)
        if code == 1:
            raise RuntimeError(f"{command} broke on purpose")
        return code


@dataclass
class Leaving(Runner):
    """A Runner whose validations leave ``work`` for after their answer, as run_job leaves Data Docs
    (``worker``: set once the worker exists)."""

    work: list[Callable[[], None]] = field(default_factory=list)
    worker: Worker | None = None

    def __call__(self, command: str, configs: Sequence[PipelineConfig]) -> int:
        code = super().__call__(command, configs)
        if command == "validate":
            assert self.worker is not None
            self.worker._after_answer.extend(self.work)
        return code


@dataclass
class Pipeline:
    executor: Executor
    queue_url: str
    sqs: Any
    sfn: Any
    tracker_table: str

    def start(self, name: str) -> str:
        return self.executor.start_execution(
            name,
            {
                "bucket": "shop-bucket",
                "products_key": "raw/products/products.csv",
                "inputs_key": "control/inputs/2025-07-10/g1-0123456789abcdef.json",
                "orders_count": 1,
                "order_items_count": 1,
                "batch_id": "2025-07-10",
                "generation": 1,
            },
        )

    def worker(
        self,
        runner: Any,
        heartbeat_seconds: float = 0.2,
        max_batches: int = 50,
        prepare: Any = None,
        status_file: Path | None = None,
    ) -> Worker:
        """A worker on this queue whose jobs are ``runner`` (it must never start Spark here)."""
        settings = WorkerSettings(
            queue_url=self.queue_url,
            poll_seconds=1,
            heartbeat_seconds=heartbeat_seconds,
            max_batches=max_batches,
            warm_batch=False,  # a warm-up batch would start Spark (tests/hosts/test_warmup.py covers it)
            status_file=status_file,
        )
        return Worker(
            settings,
            sqs=self.sqs,
            sfn=self.sfn,
            spark_factory=lambda: pytest.fail("the worker must not start Spark here"),
            base_env={"LAKE_PATH": "s3a://lake/x", "AWS_REGION": "us-east-1"},
            worker_id="test-worker",
            runner=runner,
            prepare=prepare,
        )

    def next_task(self, timeout: float = 60) -> Any:
        return next_message(self.sqs, self.queue_url, timeout)

    @staticmethod
    def serve_until_stopped(worker: Worker, timeout: float = 30) -> None:
        """``worker.serve()`` on a thread until something the test gave it calls ``worker.stop()``."""
        thread = threading.Thread(target=worker.serve)
        thread.start()
        thread.join(timeout)
        assert not thread.is_alive(), f"the worker still serves after {timeout} s"

    def serve(self, runner: Runner, tasks: int, prepare: Any = None) -> Worker:
        worker = self.worker(runner, prepare=prepare)
        for _ in range(tasks):
            worker.handle(self.next_task())
        return worker


@pytest.fixture
def pipeline(moto_endpoint: str, names: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    yield from make_pipeline(moto_endpoint, names, monkeypatch)


def make_pipeline(
    moto_endpoint: str, names: Any, monkeypatch: pytest.MonkeyPatch, heartbeat_scale: float = 1.0
) -> Iterator[Pipeline]:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint)
    sns = boto3.client("sns", endpoint_url=moto_endpoint)
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_endpoint)
    queue_url = sqs.create_queue(QueueName=f"work-{names.suffix}")["QueueUrl"]
    topic_arn = sns.create_topic(Name=f"alerts-{names.suffix}")["TopicArn"]
    create_tracker_table(dynamodb, names.tracker_table)
    dynamodb.put_item(
        TableName=names.tracker_table,
        Item={"BatchId": {"S": "2025-07-10"}, "triggered_generation": {"N": "1"}, "status": {"S": "RUNNING"}},
    )
    executor = Executor(
        WORKER_DEFINITION,
        default_handlers(endpoint_url=moto_endpoint),
        substitutions={
            "ValidationContainerName": "validation",
            "TransformationContainerName": "transformation",
            "AlertsTopicArn": topic_arn,
            "BatchTrackerTableName": names.tracker_table,
            "BucketName": names.bucket,
            "DailyKpisTableName": names.daily_table,
            "CategoryKpisTableName": names.category_table,
            "WorkQueueUrl": queue_url,
        },
        sleep=lambda _s: None,
        heartbeat_scale=heartbeat_scale,
    )
    with serve(executor) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", server.endpoint_url)
        yield Pipeline(executor, queue_url, sqs, boto3.client("stepfunctions"), names.tracker_table)
    executor.shutdown()


def test_both_tasks_run_on_the_worker_with_the_container_environment(pipeline: Pipeline) -> None:
    arn = pipeline.start("g1")
    runner = Runner({})
    pipeline.serve(runner, tasks=2)
    done = pipeline.executor.wait(arn, timeout=20)
    assert done["status"] == "SUCCEEDED", done
    assert [c for c, _ in runner.calls] == ["validate", "transform"]
    config = runner.calls[0][1]
    assert config.bucket == "shop-bucket"
    assert config.inputs_key == "control/inputs/2025-07-10/g1-0123456789abcdef.json"
    assert config.batch_id == "2025-07-10" and config.run_id == "g1"
    assert config.lake_path == "s3a://lake/x"  # the worker's own (task definition) environment
    assert runner.calls[1][1].daily_kpis_table.startswith("DailyKPIs-")
    output = json.loads(done["output"])
    assert output["validation"]["ExitCodes"] == [0] and output["transformation"]["ExitCodes"] == [0]


def test_after_answering_a_transformation_the_worker_prepares_its_lake_when_idle(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Idle-time work (building the lake's new table states) runs once the workflow has its answer,
    for the lake the transformation wrote; interrupted by a message, it resumes when the queue is
    empty again, and ends once complete (tests/jobs/transformation/test_job_budget.py: what it saves the next run).
    Its status file tells a supervisor whether work is left (a stack waiting for idle asks)."""
    arn = pipeline.start("prepared")
    seen: list[tuple[str, str]] = []
    worker: Worker | None = None
    status_file = StatusFile(tmp_path / "status" / "worker.json")
    statuses: list[WorkerStatus | None] = []

    def prepare(config: PipelineConfig, interrupted: Any) -> dict[str, Any]:
        status = pipeline.executor.wait(arn, timeout=10)["status"]  # answered before this runs
        seen.append((config.lake_path, status))
        statuses.append(status_file.read())
        if len(seen) == 1:
            return {"tables": [], "interrupted_before": "silver_orders"}  # as if a message came
        assert worker is not None
        worker.stop()
        return {"tables": ["silver_orders"]}

    runner = Runner({})
    worker = pipeline.worker(runner, prepare=prepare, status_file=status_file.path)
    pipeline.serve_until_stopped(worker)
    assert [c for c, _ in runner.calls] == ["validate", "transform"]
    # Not after the validation; after the transformation, then once more to finish.
    assert seen == [("s3a://lake/x", "SUCCEEDED"), ("s3a://lake/x", "SUCCEEDED")]
    steps = [json.loads(line)["step"] for line in capsys.readouterr().out.splitlines() if '"step"' in line]
    idle_work = [s for s in steps if s.startswith("lake.") or s == "task.end"]
    assert idle_work == [
        "task.end",  # the validation: nothing noted
        "task.end",
        PREPARE_PENDING,
        "lake.prepared",  # interrupted: work left
        "lake.prepared",
        PREPARE_DONE,
    ]
    # While the lake waits to be prepared the status says so; the stopped worker has nothing left.
    assert [(s.state, s.preparing) if s else None for s in statuses] == [("ready", True)] * 2
    final = status_file.read()
    assert final is not None and (final.state, final.preparing) == ("stopped", False)


def test_what_a_validation_leaves_for_after_its_answer_runs_once_the_queue_is_empty(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    """A validation's Data Docs (run_job's ``after_answer``) wait until the worker is idle: the
    workflow has its answer and the transformation that follows has run first; a failure there is
    logged, never an answer."""
    arn = pipeline.start("docs-later")
    seen: list[tuple[list[str], str]] = []

    def docs() -> None:
        seen.append(([c for c, _ in runner.calls], pipeline.executor.wait(arn, timeout=10)["status"]))

    def broken_docs() -> None:
        worker.stop()
        raise RuntimeError("the renderer broke")

    runner = Leaving({}, work=[docs, broken_docs])
    worker = runner.worker = pipeline.worker(runner, prepare=lambda config, interrupted: {"tables": []})
    pipeline.serve_until_stopped(worker)
    assert seen == [(["validate", "transform"], "SUCCEEDED")]
    failed = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if "after_answer.failed" in line
    ]
    assert [f["error"] for f in failed] == ["RuntimeError: the renderer broke"]


def test_idle_time_prepares_the_lake_before_rendering_what_answers_left(pipeline: Pipeline) -> None:
    """After a transformation, the lake's preparation (the next run's latency; it yields to a message)
    goes before the validations' Data Docs (for people), which render one piece per look at the queue."""
    pipeline.start("lake-first")
    order: list[str] = []

    def last_docs() -> None:
        order.append("docs 2")
        worker.stop()

    def prepare(config: PipelineConfig, interrupted: Any) -> dict[str, Any]:
        order.append("lake")
        return {"tables": ["silver_orders"]}

    runner = Leaving({}, work=[lambda: order.append("docs 1"), last_docs])
    worker = runner.worker = pipeline.worker(runner, prepare=prepare)
    pipeline.serve_until_stopped(worker)
    assert [c for c, _ in runner.calls] == ["validate", "transform"]
    assert order == ["lake", "docs 1", "docs 2"]


def test_exit_2_is_a_data_rejection_not_a_retry(pipeline: Pipeline) -> None:
    arn = pipeline.start("rejected")
    runner = Runner({"validate": 2})
    pipeline.serve(runner, tasks=2)
    done = pipeline.executor.wait(arn, timeout=20)
    assert done["status"] == "FAILED"
    assert done["error"] == "Validation.DataRejected"
    assert [c for c, _ in runner.calls] == ["validate", "transform"]  # the accepted files go on


def test_a_broken_task_is_retried_then_fails_with_the_workers_error(pipeline: Pipeline) -> None:
    arn = pipeline.start("broken")
    runner = Runner({"transform": 1})
    pipeline.serve(runner, tasks=4)  # validate, then transform and its two retries
    done = pipeline.executor.wait(arn, timeout=20)
    assert done["status"] == "FAILED"
    assert [c for c, _ in runner.calls] == ["validate", "transform", "transform", "transform"]
    assert "transform broke on purpose" in done["cause"]


def test_a_malformed_message_fails_its_state_with_a_named_error(pipeline: Pipeline) -> None:
    arn = pipeline.start("bad")
    message = pipeline.next_task()
    body = json.loads(message["Body"])
    message["Body"] = json.dumps({**body, "Command": ["format-disk"]})
    worker = pipeline.serve(Runner({}), tasks=0)
    worker.handle(message)
    deadline = time.monotonic() + 10  # the execution's thread records the answer on its own time
    failed: list[dict[str, Any]] = []
    while not failed and time.monotonic() < deadline:
        time.sleep(0.05)
        failed = [e.details for e in pipeline.executor.get_execution_history(arn) if e.type == "TaskFailed"]
    assert failed and failed[0]["error"] == "Worker.BadMessage"
    assert "Command must be one of" in failed[0]["cause"]
    pipeline.executor.stop_execution(arn)


def test_a_stale_token_is_dropped_without_running_the_job(pipeline: Pipeline) -> None:
    arn = pipeline.start("stale")
    message = pipeline.next_task()
    pipeline.executor.stop_execution(arn)  # the attempt ends while its message waits
    runner = Runner({})
    worker = pipeline.serve(runner, tasks=0)
    worker.handle(message)
    assert runner.calls == [] and worker.batches == 0


def test_the_worker_recycles_after_its_batch_budget(pipeline: Pipeline) -> None:
    arn = pipeline.start("budget")
    worker = pipeline.worker(Runner({}), max_batches=2)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(worker.serve()))
    thread.start()
    thread.join(30)
    assert result == [0] and worker.batches == 2
    assert pipeline.executor.wait(arn, timeout=10)["status"] == "SUCCEEDED"


def test_settings_and_messages_name_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="WORK_QUEUE_URL"):
        WorkerSettings.from_env({})
    with pytest.raises(ConfigError, match="WORKER_MAX_HEAP_FRACTION"):
        WorkerSettings.from_env({"WORK_QUEUE_URL": "q", "WORKER_MAX_HEAP_FRACTION": "1.5"})
    with pytest.raises(ValueError, match="TaskToken"):
        TaskMessage.parse(json.dumps({"Command": ["validate"]}))
    with pytest.raises(ValueError, match="Environment"):
        TaskMessage.parse(
            json.dumps({"TaskToken": "t", "Command": ["validate"], "Environment": [{"Name": 1}]})
        )


def test_tasks_waiting_behind_a_long_batch_are_kept_alive(
    moto_endpoint: str, names: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HeartbeatSeconds (300) scaled to 24 s; the first batch takes 27 s while the second waits.

    The margin is wide on purpose: in `make test` this test runs in the niced no-JVM lane while two
    JVM lanes load both cores, and a beat thread starved for a few seconds timed a task out (clean-
    clone CI failed on it with 3 s, a loaded rehearsal with 9 s). Forty-eight beats per heartbeat
    survive a starved lane; the batch still outlives one heartbeat, so without beats both tasks would
    time out.
    """
    for pipeline in make_pipeline(moto_endpoint, names, monkeypatch, heartbeat_scale=0.08):
        first, second = pipeline.start("slow"), pipeline.start("queued")
        runner = Runner({})

        def slow(command: str, configs: Sequence[PipelineConfig], runner: Runner = runner) -> int:
            if configs[0].run_id == "slow" and command == "validate":
                time.sleep(27)
            return runner(command, configs)

        worker = pipeline.worker(slow, heartbeat_seconds=0.5)
        thread = threading.Thread(target=worker.serve, daemon=True)
        thread.start()
        try:
            for arn in (first, second):
                assert pipeline.executor.wait(arn, timeout=120)["status"] == "SUCCEEDED"
        finally:
            worker.stop()
            thread.join(10)
        events = [e.type for arn in (first, second) for e in pipeline.executor.get_execution_history(arn)]
        assert "TaskTimedOut" not in events  # nobody waited past its heartbeat
        assert [c for c, _ in runner.calls].count("validate") == 2


def _wait_for_queued(pipeline: Pipeline, count: int, timeout: float = 20) -> None:
    """The executions' threads send their next task on their own time: wait until ``count`` wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attributes = pipeline.sqs.get_queue_attributes(
            QueueUrl=pipeline.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        if int(attributes["ApproximateNumberOfMessages"]) >= count:
            return
        time.sleep(0.05)
    pytest.fail(f"fewer than {count} tasks were queued within {timeout} s")


def _validate_three(pipeline: Pipeline, runner: Runner) -> list[str]:
    arns = [pipeline.start(name) for name in ("day1", "day2", "day3")]
    _wait_for_queued(pipeline, 3)
    pipeline.serve(runner, tasks=3)  # the three validations, one at a time
    _wait_for_queued(pipeline, 3)  # the three transformations
    return arns


def test_waiting_transformations_share_one_run_and_each_execution_gets_its_answer(
    pipeline: Pipeline,
) -> None:
    runner = Runner({})
    arns = _validate_three(pipeline, runner)
    worker = pipeline.serve(runner, tasks=1)
    for arn in arns:
        assert pipeline.executor.wait(arn, timeout=20)["status"] == "SUCCEEDED"
    assert [command for command, _ in runner.runs] == ["validate"] * 3 + ["transform"]
    assert sorted(runner.runs[-1][1]) == ["day1", "day2", "day3"]
    assert worker.batches == 3  # a coalesced run counts every batch it served (recycling budget)


def test_a_broken_shared_run_is_rerun_batch_by_batch_before_anyone_is_answered(pipeline: Pipeline) -> None:
    runner = Runner({}, break_shared=True)
    arns = _validate_three(pipeline, runner)
    pipeline.serve(runner, tasks=1)
    for arn in arns:
        done = pipeline.executor.wait(arn, timeout=20)
        assert done["status"] == "SUCCEEDED", done  # no retry: each batch alone succeeded at once
    transforms = [ids for command, ids in runner.runs if command == "transform"]
    assert len(transforms[0]) == 3 and sorted(transforms[1:]) == [["day1"], ["day2"], ["day3"]]


def test_coalescing_can_be_switched_off(pipeline: Pipeline) -> None:
    runner = Runner({})
    arns = _validate_three(pipeline, runner)
    worker = pipeline.worker(runner)
    worker.settings = WorkerSettings(
        queue_url=pipeline.queue_url, poll_seconds=1, max_coalesce=1, warm_batch=False
    )
    for _ in arns:
        message = pipeline.next_task()
        worker.handle(message)
    for arn in arns:
        assert pipeline.executor.wait(arn, timeout=20)["status"] == "SUCCEEDED"
    assert [len(ids) for command, ids in runner.runs if command == "transform"] == [1, 1, 1], runner.runs
    assert WorkerSettings.from_env({"WORK_QUEUE_URL": "q", "WORKER_MAX_COALESCE": "1"}).max_coalesce == 1


def test_only_transformations_of_the_same_stack_share_a_run() -> None:
    def task(command: str = "transform", **env: str) -> TaskMessage:
        base = {"S3_BUCKET": "b", "DAILY_KPIS_TABLE": "D", "BATCH_ID": "2025-07-10", "RUN_ID": "r1"}
        return TaskMessage("t", command, command, "e", "s", {**base, **env})

    lead = task()
    assert lead.shares_run_with(task(BATCH_ID="2025-07-11", RUN_ID="r2", INPUTS_KEY="k", PRODUCTS_KEY="p"))
    assert not lead.shares_run_with(task(DAILY_KPIS_TABLE="OtherKPIs"))
    assert not lead.shares_run_with(task(S3_BUCKET="other-bucket"))
    assert not lead.shares_run_with(task("validate"))
    assert not task("validate").shares_run_with(task("validate", RUN_ID="r2"))


def test_an_idle_worker_runs_its_warm_up_batch_before_saying_it_is_ready(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only while nothing waits: with work queued, the work goes first (tests/hosts/test_warmup.py runs
    the batch itself)."""
    batches: list[str] = []
    monkeypatch.setattr(
        "hosts.worker.loop.warm_up",
        lambda spark, log, config, work_waiting: batches.append(f"{spark}, waiting={work_waiting()}") or {},
    )
    worker = pipeline.worker(Runner({}))
    worker.settings = WorkerSettings(queue_url=pipeline.queue_url, poll_seconds=1, idle_exit_seconds=0.5)
    worker.spark_factory = lambda: "the session"  # type: ignore[assignment,return-value]
    assert worker.serve() == 0
    assert batches == ["the session, waiting=False"]  # it asks the queue between its steps
    assert '"step": "warm"' in capsys.readouterr().out

    arn = pipeline.start("queued")
    _wait_for_queued(pipeline, 1)
    runner = Runner({})
    busy = pipeline.worker(runner)
    busy.settings = WorkerSettings(queue_url=pipeline.queue_url, poll_seconds=1, max_batches=1)
    assert busy.serve() == 0
    assert batches == ["the session, waiting=False"] and [c for c, _ in runner.calls] == ["validate"]
    pipeline.executor.stop_execution(arn)


def test_the_supervisor_says_how_the_worker_got_ready() -> None:
    from ecomkpi.worker_supervisor import ready_detail

    warmed = {"session_seconds": 10.9, "batch_seconds": 24.6, "work_waiting": False}
    assert ready_detail(warmed) == "Spark started in 10.9 s, warm-up batch 24.6 s"
    busy = {"session_seconds": 11.0, "work_waiting": True}
    assert ready_detail(busy) == "Spark started in 11.0 s, work was waiting: no warm-up batch"
    cut = {"session_seconds": 9.0, "batch_seconds": 3.2, "interrupted_during": "plan"}
    assert ready_detail(cut) == "Spark started in 9.0 s, warm-up batch 3.2 s (cut short during plan)"
    assert ready_detail({}) == "Spark started in ? s"


def _send_precheck(pipeline: Pipeline, run_id_batch: str = "2025-07-10", queue_url: str = "") -> None:
    """A precheck exactly as the trigger sends it (lambda_trigger/prechecks.py), to the work queue
    unless ``queue_url`` names the precheck queue."""
    Prechecks(pipeline.sqs, queue_url or pipeline.queue_url).send(
        "shop-bucket",
        run_id_batch,
        "raw/products/products.csv",
        {"ORDERS_KEYS": [f"raw/orders/{run_id_batch}/p1.csv"]},
    )


def _queued(pipeline: Pipeline) -> int:
    attributes = pipeline.sqs.get_queue_attributes(
        QueueUrl=pipeline.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


@pytest.mark.parametrize("exit_code", [0, 2, 1])
def test_a_precheck_runs_the_validation_in_precheck_mode_and_answers_nobody(
    pipeline: Pipeline, exit_code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    _send_precheck(pipeline)
    runner = Runner({"precheck": exit_code})
    in_flight: list[int] = []

    def counting(command: str, configs: Sequence[PipelineConfig]) -> int:
        in_flight.append(_queued(pipeline))  # the message stays until the precheck is over
        return runner(command, configs)

    worker = pipeline.worker(counting)
    (message,) = pipeline.sqs.receive_message(QueueUrl=pipeline.queue_url, WaitTimeSeconds=5)["Messages"]
    worker.handle(message)  # a broken precheck (1) is logged, not raised
    assert in_flight == [1]
    assert [(c, cfg.orders_keys, cfg.bucket, cfg.batch_id) for c, cfg in runner.calls] == [
        ("precheck", ("raw/orders/2025-07-10/p1.csv",), "shop-bucket", "2025-07-10")
    ]
    assert runner.calls[0][1].run_id.startswith("2025-07-10-p-")
    assert runner.calls[0][1].lake_path == "s3a://lake/x"  # the worker's own environment underneath
    assert worker.batches == 0  # not a batch: it does not count towards recycling
    assert _queued(pipeline) == 0  # taken off the queue, whatever the outcome
    end = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"precheck.end"' in line]
    assert [(e["exit_code"], e["level"], "error" in e) for e in end] == [
        (exit_code, "WARN" if exit_code == 1 else "INFO", exit_code == 1)
    ]


def test_tasks_waiting_behind_a_long_precheck_are_kept_alive(
    moto_endpoint: str, names: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HeartbeatSeconds scaled to 24 s; a precheck takes 27 s while a batch's task waits behind it.

    24 s, not 3 s, for the reason given in the test above: a starved no-JVM lane in `make test`.
    """
    for pipeline in make_pipeline(moto_endpoint, names, monkeypatch, heartbeat_scale=0.08):
        _send_precheck(pipeline, "2025-07-09")  # another day: the waiting task does not cover it
        runner = Runner({})

        def slow(command: str, configs: Sequence[PipelineConfig], runner: Runner = runner) -> int:
            if command == "precheck":
                time.sleep(27)
            return runner(command, configs)

        worker = pipeline.worker(slow, heartbeat_seconds=0.5)
        messages = pipeline.sqs.receive_message(QueueUrl=pipeline.queue_url, WaitTimeSeconds=5)["Messages"]
        arn = pipeline.start("queued")
        _wait_for_queued(pipeline, 1)
        worker.handle(messages[0])  # the precheck, while the execution's task waits
        thread = threading.Thread(target=worker.serve, daemon=True)
        thread.start()
        try:
            assert pipeline.executor.wait(arn, timeout=120)["status"] == "SUCCEEDED"
        finally:
            worker.stop()
            thread.join(10)
        events = [e.type for e in pipeline.executor.get_execution_history(arn)]
        assert "TaskTimedOut" not in events
        assert [c for c, _ in runner.calls] == ["precheck", "validate", "transform"]


def _take_precheck(pipeline: Pipeline) -> Any:
    """The first precheck message in the queue; every other message is made visible again."""
    messages = pipeline.sqs.receive_message(
        QueueUrl=pipeline.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5
    )["Messages"]
    (lead, *_) = [m for m in messages if "TaskToken" not in json.loads(m["Body"])]
    make_visible(pipeline.sqs, pipeline.queue_url, [m for m in messages if m is not lead])
    return lead


def test_prechecks_of_one_day_waiting_together_share_a_run(pipeline: Pipeline) -> None:
    prechecks = Prechecks(pipeline.sqs, pipeline.queue_url)
    day, other = "2025-07-10", "2025-07-11"
    for batch, name, key in [
        (day, "ORDERS_KEYS", "raw/orders/2025-07-10/p1.csv"),
        (day, "ORDER_ITEMS_KEYS", "raw/order_items/2025-07-10/i1.csv"),
        (other, "ORDERS_KEYS", "raw/orders/2025-07-11/p1.csv"),
        (day, "ORDERS_KEYS", "raw/orders/2025-07-10/p2.csv"),
    ]:
        prechecks.send("shop-bucket", batch, "raw/products/products.csv", {name: [key]})
    runner = Runner({})
    pipeline.worker(runner).handle(_take_precheck(pipeline))
    # One run per day, the lead's day first; nothing is handed back to the queue (whose receive
    # count then counts attempts: a precheck queue's DLQ catches a part that crashes every worker).
    assert [(c, cfg.batch_id) for c, cfg in runner.calls] == [("precheck", day), ("precheck", other)]
    config = runner.calls[0][1]
    assert config.orders_keys == ("raw/orders/2025-07-10/p1.csv", "raw/orders/2025-07-10/p2.csv")
    assert config.order_items_keys == ("raw/order_items/2025-07-10/i1.csv",)
    assert runner.calls[1][1].orders_keys == ("raw/orders/2025-07-11/p1.csv",)
    assert _queued(pipeline) == 0


def test_a_precheck_whose_days_validation_already_waits_is_dropped(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    _send_precheck(pipeline)
    arn = pipeline.start("day1")  # the same bucket and day: its ValidateData validates every part
    _wait_for_queued(pipeline, 2)
    runner = Runner({})
    worker = pipeline.worker(runner)
    worker.handle(_take_precheck(pipeline))
    assert runner.calls == [] and _queued(pipeline) == 1
    assert '"step": "precheck.skipped"' in capsys.readouterr().out
    pipeline.serve(runner, tasks=2)
    assert pipeline.executor.wait(arn, timeout=20)["status"] == "SUCCEEDED"
    assert [c for c, _ in runner.calls] == ["validate", "transform"]


def test_a_failed_preparation_is_logged_with_the_java_cause_not_its_stack() -> None:
    from hosts.worker.log import error_summary

    class Py4JJavaError(Exception):
        pass

    java = Py4JJavaError(
        "An error occurred while calling o12.collectToPython.\n"
        ": org.apache.spark.SparkException: Job 360 cancelled because SparkContext was shut down\n"
        "\tat org.apache.spark.scheduler.DAGScheduler.stop(DAGScheduler.scala:3307)\n"
    )
    summary = error_summary(java)
    assert "SparkContext was shut down" in summary and "DAGScheduler.scala" not in summary
    assert error_summary(ValueError("no lake")) == "ValueError: no lake"


def _precheck_queue(pipeline: Pipeline, names: Any) -> str:
    return str(pipeline.sqs.create_queue(QueueName=f"prechecks-{names.suffix}")["QueueUrl"])


def test_prechecks_on_a_queue_of_their_own_are_served_after_tasks_and_never_received_by_keepers(
    pipeline: Pipeline, names: Any
) -> None:
    """While a worker is busy, its keeper receives every message waiting in the work queue once per
    beat; a precheck there would count those receives as attempts. On the precheck queue the first
    receive is the worker's own: a queue with maxReceiveCount 3 then dead-letters only a precheck
    that was taken on three times (a part that crashes every worker)."""
    precheck_url = _precheck_queue(pipeline, names)
    _send_precheck(pipeline, "2025-07-11", precheck_url)
    runner = Runner({})

    def slow(command: str, configs: Sequence[PipelineConfig]) -> int:
        if command == "validate":
            time.sleep(2)  # four beats of the keeper
        return runner(command, configs)

    worker = pipeline.worker(slow, heartbeat_seconds=0.5)
    worker.settings = replace(worker.settings, precheck_queue_url=precheck_url)
    arn = pipeline.start("busy")
    _wait_for_queued(pipeline, 1)
    url, message = worker._receive(1)[0]
    assert url == pipeline.queue_url  # tasks first, though the precheck was sent before
    worker.handle(message, url)  # the validation: the keeper beats the queue meanwhile
    (waiting,) = pipeline.sqs.receive_message(
        QueueUrl=precheck_url, AttributeNames=["ApproximateReceiveCount"], WaitTimeSeconds=1
    )["Messages"]
    assert waiting["Attributes"]["ApproximateReceiveCount"] == "1"  # this receive is the first
    make_visible(pipeline.sqs, precheck_url, [waiting])
    thread = threading.Thread(target=worker.serve, daemon=True)
    thread.start()
    try:
        assert pipeline.executor.wait(arn, timeout=60)["status"] == "SUCCEEDED"
        deadline = time.monotonic() + 30
        while "precheck" not in [c for c, _ in runner.calls] and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
        thread.join(10)
    assert [c for c, _ in runner.calls] == ["validate", "transform", "precheck"]
    attributes = pipeline.sqs.get_queue_attributes(
        QueueUrl=precheck_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def test_a_precheck_on_its_own_queue_is_dropped_when_its_days_validation_waits_in_the_work_queue(
    pipeline: Pipeline, names: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    precheck_url = _precheck_queue(pipeline, names)
    _send_precheck(pipeline, "2025-07-10", precheck_url)
    arn = pipeline.start("day1")  # the same bucket and day: its ValidateData validates every part
    _wait_for_queued(pipeline, 1)
    runner = Runner({})
    worker = pipeline.worker(runner)
    worker.settings = replace(worker.settings, precheck_queue_url=precheck_url)
    (message,) = pipeline.sqs.receive_message(QueueUrl=precheck_url, WaitTimeSeconds=1)["Messages"]
    worker.handle(message, precheck_url)
    assert runner.calls == []
    assert '"step": "precheck.skipped"' in capsys.readouterr().out
    assert _queued(pipeline) == 1  # the validation task, given back to the work queue
    pipeline.serve(runner, tasks=2)
    assert pipeline.executor.wait(arn, timeout=20)["status"] == "SUCCEEDED"


def test_a_precheck_that_kills_every_worker_is_dead_lettered_after_three_attempts(
    pipeline: Pipeline, names: Any
) -> None:
    """The precheck queue as the stack makes it (DLQ after 3 receives): three workers take the part
    on through their own receive and die before deleting it (the hold then lapses: visible again);
    the fourth finds the queue empty and the message waits in the DLQ for an operator."""
    sqs = pipeline.sqs
    dlq_url = sqs.create_queue(QueueName=f"prechecks-dlq-{names.suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    precheck_url = sqs.create_queue(
        QueueName=f"prechecks-{names.suffix}",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})},
    )["QueueUrl"]
    _send_precheck(pipeline, queue_url=precheck_url)
    worker = pipeline.worker(Runner({}))
    worker.settings = replace(worker.settings, precheck_queue_url=precheck_url)
    for _attempt in range(3):
        ((url, message),) = worker._receive(0)
        assert url == precheck_url
        make_visible(sqs, precheck_url, [message])  # the worker died: its hold lapsed
    assert worker._receive(0) == []
    (dead,) = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1)["Messages"]
    assert json.loads(dead["Body"])["Command"] == ["precheck"]
