"""The worker's loop: take the next message, run it on the warm session, answer, and use idle time.

The protocol and its guarantees are described in the package's docstring (``hosts/worker/__init__.py``).
This module ties the parts: the warm-up before serving, the poll (tasks before prechecks), coalescing
of waiting transformations into one run, the heartbeat and answers of each run, idle-time lake
preparation and the work left for after an answer, recycling, and the stop (SIGTERM).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hosts.warmup import warm_up
from hosts.worker.answers import BAD_MESSAGE_ERROR, EXIT_BROKEN, EXIT_OK, STOPPED_ERROR, Answers
from hosts.worker.heartbeat import STALE_TOKEN_ERRORS, Heartbeat, QueueKeeper, error_code
from hosts.worker.log import error_summary, log, log_traceback
from hosts.worker.messages import Precheck, TaskMessage, Unreadable, parse
from hosts.worker.prechecks import Prechecks
from hosts.worker.protection import ScaleInProtection
from hosts.worker.queue import make_visible, waiting
from hosts.worker.runs import Prepare, Runner, heap_used_fraction, prepare_lake, run_job
from hosts.worker.settings import WorkerSettings
from hosts.worker.status import READY, STARTING, STOPPED, StatusFile, WorkerStatus
from jobs.config import PipelineConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from types_boto3_sqs import SQSClient
    from types_boto3_sqs.type_defs import MessageTypeDef
    from types_boto3_stepfunctions import SFNClient

    Received = tuple[str, MessageTypeDef]  # (the queue it came from, the message)

# With a precheck queue of its own, the longest the work queue is long-polled before the precheck
# queue is asked: a part that lands while the worker idles waits this long at most.
PRECHECK_POLL_SECONDS = 2
PREPARE_AFTER_SECONDS = 1  # an empty queue for this long starts idle-time work (_prepare_pending)
# Log steps that bracket idle-time work: a lake noted for preparation, and nothing left to prepare.
PREPARE_PENDING = "lake.prepare.pending"
PREPARE_DONE = "lake.prepare.done"


class Worker:
    """Serves the work queue with one warm SparkSession; ``serve`` returns the process exit code."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        sqs: SQSClient,
        sfn: SFNClient,
        spark_factory: Callable[[], SparkSession],
        base_env: Mapping[str, str] | None = None,
        worker_id: str | None = None,
        runner: Runner | None = None,
        prepare: Prepare | None = None,
    ) -> None:
        """``runner(command, configs) -> exit code`` defaults to the jobs on the warm session;
        ``prepare`` (run after each transformation, and once when warm) defaults to building the
        lake's table states on it when the runner is the default, else to nothing."""
        self.settings = settings
        self.sqs, self.sfn = sqs, sfn
        self.spark_factory = spark_factory
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.worker_id = worker_id or f"{os.uname().nodename}-{os.getpid()}"
        self._after_answer: list[Callable[[], None]] = []  # see run_job
        self.runner: Runner = runner or (
            lambda command, configs: run_job(command, configs, self.spark, self._after_answer)
        )
        self.prepare: Prepare | None = prepare
        if prepare is None and runner is None:
            self.prepare = lambda config, interrupted: prepare_lake(config, self.spark, interrupted)
        self.batches = 0
        self._spark: SparkSession | None = None
        self._stopping = threading.Event()
        self._warm: dict[str, Any] = {}
        self._unprepared: dict[str, PipelineConfig] = {}  # lake path -> config: see _prepare_pending
        self._beat: Heartbeat | None = None  # the run in progress (terminate fails its tasks)
        self._terminated = False
        self.protection = ScaleInProtection(self.base_env.get("ECS_AGENT_URI"))
        self._status_file = StatusFile(settings.status_file) if settings.status_file else None
        self._status = WorkerStatus(STARTING, os.getpid())
        self.answers = Answers(sfn, self.worker_id)
        self.prechecks = Prechecks(settings, sqs, sfn, self.base_env, self._attempt, self._stopping)

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            self._spark = self.spark_factory()
        return self._spark

    def config(self, task_environment: Mapping[str, str] | None = None) -> PipelineConfig:
        """The task definition's environment plus a task's (exactly a per-batch container's)."""
        return PipelineConfig.from_env({**self.base_env, **(task_environment or {})})

    def stop(self) -> None:
        """Finish the current task, then return from ``serve`` (SIGTERM from ECS)."""
        self._stopping.set()

    def terminate(self) -> None:
        """SIGTERM (ECS's stop: scale-in, a deployment, ``podman stop``): the tasks in progress fail
        at once with a retryable error, so their states retry now (on another worker) instead of
        waiting out HeartbeatSeconds after the kill that follows ECS's stop timeout; Spark's jobs are
        cancelled, and ``serve`` returns without taking anything new."""
        self._terminated = True
        self._stopping.set()
        beat = self._beat
        tokens = beat.abandon_all() if beat is not None else []
        for token in tokens:
            self.answers.failure(
                token,
                STOPPED_ERROR,
                f"worker {self.worker_id} was stopped (SIGTERM) before the task ended; it is retried",
            )
        log("terminate", level="WARN" if tokens else "INFO", failed_tasks=len(tokens))
        if tokens and self._spark is not None:
            try:
                self._spark.sparkContext.cancelAllJobs()
            except Exception as exc:  # the JVM may be going down already
                log("terminate.cancel_failed", level="WARN", error=error_summary(exc))

    def warm_up(self) -> None:
        """Pay the process's one-time costs (JVM, Spark, GX's import) before serving."""
        started = time.perf_counter()
        spark = self.spark
        spark.range(1).count()  # the first job loads the executor side of the class path
        import jobs.validation.gx_runner  # noqa: F401  (GX's import is seconds of Python)

        self._warm = {"session_seconds": round(time.perf_counter() - started, 3), "spark": spark.version}

    def _first_look(self) -> list[Received]:
        """The queue's first message, if one waits; idle, the warm-up batch runs first.

        The warm-up batch (hosts/warmup.py: both jobs once on a one-row batch of its own) pays the
        code paths' first-use costs, ~25 s on a fresh JVM, about twice what they add to a first
        real batch: worth it only while nothing waits (a stack started before its uploads), not
        when work is already queued (a demo), and it cancels the Spark job in progress when a task
        arrives (a worker that replaces a dead one, whose batch comes back with its retry) or the
        worker is told to stop. Then "warm" is logged: what a supervisor waits for as "ready".
        """
        messages: list[Received] = []
        if self.settings.warm_batch:
            messages = self._receive(0)
            if not messages:
                started = time.perf_counter()
                self._warm.update(warm_up(self.spark, log, self.config(), self._interrupted))
                self._warm["batch_seconds"] = round(time.perf_counter() - started, 3)
        log("warm", **self._warm, work_waiting=bool(messages))
        self._set_status(state=READY, warm={**self._warm, "work_waiting": bool(messages)})
        config = self.config()
        if config.bucket:
            self._prepare_later(config)
        return messages

    def _prepare_later(self, config: PipelineConfig) -> None:
        """Note ``config``'s lake for idle-time work before the next run on it (``_prepare_pending``)."""
        if self.prepare is not None and config.lake_path:
            self._unprepared[config.lake_path] = config
            log(PREPARE_PENDING, lake=config.lake_path)
            self._set_status(preparing=True)

    def _prepare_pending(self) -> None:
        """Idle-time work for the next runs on the noted lakes, while no message waits.

        A message that arrives (a task, or a precheck of the next day's first parts) goes first; the
        preparation resumes the next time the queue is empty, so it is never lost to a busy queue.
        """
        while self._unprepared and self.prepare is not None:
            path, config = next(iter(self._unprepared.items()))
            try:
                outcome = dict(self.prepare(config, self._interrupted))
            except Exception as exc:  # an optimisation: the next run builds what is missing itself
                level = "INFO" if self._stopping.is_set() else "WARN"  # stopped: Spark went first
                log("lake.prepare.failed", level=level, lake=path, error=error_summary(exc))
                del self._unprepared[path]
                continue
            log("lake.prepared", **outcome)
            if "interrupted_before" in outcome:
                return
            del self._unprepared[path]
        log(PREPARE_DONE)
        self._set_status(preparing=False)

    def _set_status(self, **changes: Any) -> None:
        """Tell the health check and the local supervisor (hosts/worker/status.py); a failed write
        is logged and the worker serves on (it then never reports ready: its start is what fails)."""
        self._status = self._status.with_changes(**changes)
        if self._status_file is None:
            return
        try:
            self._status_file.write(self._status)
        except OSError as exc:
            log("status.write_failed", level="WARN", path=str(self._status_file.path), error=str(exc))

    def serve(self) -> int:
        self._set_status(state=STARTING)
        try:
            return self._serve()
        finally:
            self._set_status(state=STOPPED, preparing=False)

    def _serve(self) -> int:
        log("start", worker=self.worker_id, queue=self.settings.queue_url, pid=os.getpid())
        pending = self._first_look()
        idle_since = time.monotonic()
        while not self._stopping.is_set():
            # With idle-time work noted, a short poll first: a task that follows the one just done
            # (the transformation after a validation) comes within it and goes first.
            idle_work = self._after_answer or self._unprepared
            wait = PREPARE_AFTER_SECONDS if idle_work else self.settings.poll_seconds
            messages, pending = pending or self._receive(wait), []
            if not messages:
                self.protection.set(False)  # idle: a scale-in may take this worker
                # The lake first: the next run's latency depends on it, and it yields to a message
                # at once. Then what answers left (Data Docs, for people), one piece per look at
                # the queue: a task that arrives waits for one rendering at most.
                if self._unprepared:
                    self._prepare_pending()
                    continue
                if self._after_answer:
                    self._run_after_answer(limit=1)
                    continue
                idle = self.settings.idle_exit_seconds
                if idle and time.monotonic() - idle_since >= idle:
                    log("idle.exit", batches=self.batches)
                    return EXIT_OK
                continue
            url, message = messages[0]
            self.handle(message, url)
            idle_since = time.monotonic()
            reason = self.recycle_reason()
            if reason:
                self._run_after_answer()
                log("recycle", reason=reason, batches=self.batches)
                return EXIT_OK
        if not self._terminated:  # SIGTERM: ECS kills after its stop timeout, exit first
            self._run_after_answer()
        self.protection.set(False)
        log("stopped", batches=self.batches)
        return EXIT_OK

    def _interrupted(self) -> bool:
        return self._stopping.is_set() or self._work_waiting()

    def _work_waiting(self) -> bool:
        """A task or a precheck waits (SQS's approximate count: a late answer costs one more ask)."""
        for url in dict.fromkeys((self.settings.queue_url, self.settings.precheck_queue)):
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            ).get("Attributes", {})
            if int(attributes.get("ApproximateNumberOfMessages", "0")) > 0:
                return True
        return False

    def _receive(self, wait: int) -> list[Received]:
        """The next message, tasks first: the work queue is long-polled (for at most
        PRECHECK_POLL_SECONDS when prechecks have a queue of their own, which is asked next)."""
        queues = [self.settings.queue_url]
        if self.settings.precheck_queue_url:
            queues.append(self.settings.precheck_queue_url)
            wait = min(wait, PRECHECK_POLL_SECONDS)
        for n, url in enumerate(queues):
            messages = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=wait if n == 0 else 0
            ).get("Messages", [])
            if messages:
                return [(url, m) for m in messages]
        return []

    def recycle_reason(self) -> str | None:
        if self.batches >= self.settings.max_batches:
            return f"served {self.batches} batches (WORKER_MAX_BATCHES={self.settings.max_batches})"
        fraction = heap_used_fraction(self._spark) if self._spark is not None else None
        if fraction is not None and fraction > self.settings.max_heap_fraction:
            return f"heap {fraction:.0%} used after a batch (WORKER_MAX_HEAP_FRACTION)"
        return None

    def handle(self, message: MessageTypeDef, queue_url: str = "") -> None:
        """``queue_url``: the queue ``message`` was received from (default: the work queue)."""
        # At most once per token: the state machine's retry, not the queue's redelivery, reruns a
        # batch whose worker died (a redelivered message would race its own retry).
        self.protection.set(True)  # busy: no scale-in until the queue is empty again
        body = message.get("Body", "")
        task = parse(body)
        if isinstance(task, Precheck):
            self.prechecks.serve(task, message["ReceiptHandle"], queue_url or self.settings.queue_url)
            return
        self.sqs.delete_message(QueueUrl=self.settings.queue_url, ReceiptHandle=message["ReceiptHandle"])
        if isinstance(task, Unreadable):
            self._reject(body, task)
            return
        if not self._still_waited_for(task):
            return
        group = [task]
        if task.command == "transform" and self.settings.max_coalesce > 1:
            group += self._gather(task)
        self.batches += len(group)
        self._run(group)

    def _still_waited_for(self, task: TaskMessage) -> bool:
        """The first heartbeat: False when the task's attempt already ended (its retry owns it)."""
        try:
            self.sfn.send_task_heartbeat(taskToken=task.token)
        except Exception as exc:
            if error_code(exc) in STALE_TOKEN_ERRORS:
                log("task.stale", execution=task.execution, state=task.state, error=error_code(exc))
                return False
            log("heartbeat.error", level="WARN", error=f"{type(exc).__name__}: {exc}")
        return True

    def _gather(self, lead: TaskMessage) -> list[TaskMessage]:
        """The transformation tasks waiting in the queue that can share ``lead``'s run, taken off it.

        Other messages (validations, other stacks' tasks, unreadable ones) are made visible again at
        once for the loop (or another worker) to take in turn.
        """
        limit = self.settings.max_coalesce - 1
        found: list[TaskMessage] = []
        release: list[MessageTypeDef] = []
        for message in waiting(self.sqs, self.settings.queue_url, lambda: len(found) >= limit):
            task = parse(message.get("Body", ""))
            if not isinstance(task, TaskMessage) or len(found) >= limit or not lead.shares_run_with(task):
                release.append(message)
                continue
            self.sqs.delete_message(QueueUrl=self.settings.queue_url, ReceiptHandle=message["ReceiptHandle"])
            if self._still_waited_for(task):
                found.append(task)
        make_visible(self.sqs, self.settings.queue_url, release)
        return found

    def _reject(self, body: str, message: Unreadable) -> None:
        log("message.bad", level="ERROR", error=message.problem, body=body[:500])
        if message.token:
            self.answers.failure(
                message.token, BAD_MESSAGE_ERROR, f"the worker could not read its task: {message.problem}"
            )

    def _run(self, tasks: list[TaskMessage]) -> None:
        lead = tasks[0]
        started = time.perf_counter()
        log(
            "task.start",
            execution=lead.execution,
            state=lead.state,
            command=lead.command,
            coalesced=[t.execution for t in tasks[1:]],
        )
        keeper = QueueKeeper(self.sqs, self.sfn, self.settings.queue_url)
        tokens = [t.token for t in tasks]
        beat = Heartbeat(self.sfn, tokens, self.settings.heartbeat_seconds, self._abandon, keeper.keep)
        beat.start()
        self._beat = beat
        try:
            if self._stopping.is_set():  # stopped between receipt and start: SIGTERM found no beat
                beat.abandon_all()
                for task in tasks:
                    self.answers.failure(task.token, STOPPED_ERROR, f"worker {self.worker_id} was stopped")
                return
            outcomes = self._execute(tasks, beat)
            seconds = round(time.perf_counter() - started, 3)
            for task in tasks:  # beating the tasks not answered yet (Heartbeat.release)
                exit_code, error = outcomes[task.token]
                abandoned = task.token in beat.lost_tokens
                log(
                    "task.end",
                    execution=task.execution,
                    state=task.state,
                    exit_code=exit_code,
                    seconds=seconds,
                    abandoned=abandoned,
                )
                beat.release(task.token)
                if not abandoned:
                    self.answers.task(task, exit_code, error)
        finally:
            self._beat = None
            beat.stop()
        if lead.command == "transform":
            self._prepare_later(self.config(lead.environment))

    def _run_after_answer(self, limit: int | None = None) -> None:
        """What a task's run left for after its answer (run_job), run when the queue is empty and
        the lake is prepared (the transformation that follows a validation goes first, nobody waits
        for this): ``limit`` pieces, or all of them (the worker stopping or recycling)."""
        done = 0
        while self._after_answer and (limit is None or done < limit):
            done += 1
            work = self._after_answer.pop(0)
            try:
                work()
            except Exception as exc:  # the answer is given: this is for people, never a verdict
                log("after_answer.failed", level="WARN", error=error_summary(exc))

    def _attempt(self, command: str, environments: Sequence[Mapping[str, str]]) -> tuple[int, str]:
        """Run a job; a broken run is (EXIT_BROKEN, its error), its traceback logged."""
        try:
            configs = [self.config(env) for env in environments]
            return self.runner(command, configs), ""
        except Exception as exc:
            log_traceback(command)
            return EXIT_BROKEN, f"{type(exc).__name__}: {exc}"

    def _execute(self, tasks: list[TaskMessage], beat: Heartbeat) -> dict[str, tuple[int, str]]:
        """token → (exit code, error); a broken shared run is retried task by task."""
        exit_code, error = self._attempt(tasks[0].command, [t.environment for t in tasks])
        if exit_code != EXIT_BROKEN or len(tasks) == 1 or beat.lost:
            return {t.token: (exit_code, error) for t in tasks}
        log("coalesced.broke", level="WARN", error=error, rerun_alone=[t.execution for t in tasks])
        return {
            t.token: (exit_code, error)
            if t.token in beat.lost_tokens
            else self._attempt(t.command, [t.environment])
            for t in tasks
        }

    def _abandon(self, code: str) -> None:
        log("task.abandoned", level="WARN", reason=f"the state no longer waits for this task ({code})")
        if self._spark is not None:
            self._spark.sparkContext.cancelAllJobs()
