"""The warm worker: one long-running process that serves the workflow's ValidateData and TransformData.

A per-batch Fargate task pays a JVM start, Spark's and GX's set-up and the first Delta read for
every batch, which is most of a small batch's time. The worker pays them once: it starts Spark (and
imports GX) before it takes any work, then long-polls the work queue that the workflow's
``sqs:sendMessage.waitForTaskToken`` states send to (``stepfunctions/...worker.asl.json``).

Per message (one batch at a time, except that waiting transformations share a run; see below):

1. the message is deleted and a first heartbeat sent: a token whose attempt already ended (the
   state timed out and was retried while the message waited) answers ``TaskTimedOut``, and the
   message is dropped, since the retry owns the batch now;
2. the job runs in this process with the task definition's environment plus the message's
   ``Environment`` (exactly the container overrides of the per-batch mode; only the variables the
   workflows send, ``TASK_VARIABLES``: a message that sets another one is refused), while a thread sends
   ``SendTaskHeartbeat``; if the state gives up on the token, the running Spark jobs are cancelled;
3. the answer has the shape of a stopped ECS task (``Containers[].Name/ExitCode``), so the workflow
   decides the same way in both modes: exit 0 and 2 (data rejected) are ``SendTaskSuccess``; a
   broken run is ``SendTaskFailure`` (``Worker.TaskFailed``), which the state retries.

A worker that dies stops heartbeating: the state fails with ``States.HeartbeatTimeout`` and its
retrier sends the batch again, to this worker's successor. While it works, a worker also keeps the
tasks waiting in the queue alive (``QueueKeeper``), so a backlog is never mistaken for a dead worker. The jobs are idempotent per file and
per stage, so a retried batch gives the same KPIs. After ``WORKER_MAX_BATCHES`` batches, or when the
JVM heap stays above ``WORKER_MAX_HEAP_FRACTION`` after a batch, the worker exits 0 between batches
and its supervisor (the ECS service, or ``ecomkpi up``) starts a fresh one.

Prechecks: the trigger also sends, for each part that lands before its day is complete, a message
without a task token (``{"Command": ["precheck"], "Environment": [...]}``). The worker validates that
part right away (``jobs.validation.job.run(..., precheck=True)``: verdict and staging rows recorded,
nothing placed) and answers nobody; the day's ValidateData then finds the verdict and only places
the file. A broken precheck is only logged: the day's own run validates the part again.

Coalescing: when a transformation task comes up, the worker also takes the other transformation
tasks waiting in the queue (up to ``WORKER_MAX_COALESCE``, same bucket, lake and tables) and runs
them as one transformation (``jobs.transformation.job.run(..., also=...)``): ten days landing at
once pay one plan, one set of silver and gold commits and one recompute instead of ten. Every token
is heartbeated and answered on its own. If the shared run breaks, each task is run again alone
before any is answered, so one broken batch never fails the others.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.config import ConfigError, PipelineConfig
from jobs.warmup import warm_up
from jobs.worker_status import (
    READY,
    STARTING,
    STOPPED,
    StatusFile,
    WorkerStatus,
    status_path,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from types_boto3_sqs import SQSClient
    from types_boto3_sqs.type_defs import MessageTypeDef
    from types_boto3_stepfunctions import SFNClient

    Received = tuple[str, MessageTypeDef]  # (the queue it came from, the message)

JOB = "worker"
EXIT_OK, EXIT_BROKEN, EXIT_REJECTED = 0, 1, 2
FAILED_ERROR = "Worker.TaskFailed"
# A task whose worker was stopped (SIGTERM) before answering; retried by the states' States.TaskFailed.
STOPPED_ERROR = "Worker.Stopped"
BAD_MESSAGE_ERROR = "Worker.BadMessage"
COMMANDS = ("validate", "transform")
PRECHECK = "precheck"
PRECHECK_LISTS = ("ORDERS_KEYS", "ORDER_ITEMS_KEYS")  # the key lists prechecks of one day merge
PRECHECK_GATHER_LIMIT = 100  # messages one precheck run may take
# With a precheck queue of its own, the longest the work queue is long-polled before the precheck
# queue is asked: a part that lands while the worker idles waits this long at most.
PRECHECK_POLL_SECONDS = 2
MAX_CAUSE_CHARS = 32_768
STALE_TOKEN_ERRORS = ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist")
PREPARE_AFTER_SECONDS = 1
# Log steps that bracket idle-time work: a lake noted for preparation, and nothing left to prepare
# (ecomkpi.worker_supervisor reads them: a stack whose worker still prepares is not idle yet).
PREPARE_PENDING = "lake.prepare.pending"
PREPARE_DONE = "lake.prepare.done"  # an empty queue for this long starts idle-time work (_prepare_pending)
# What differs between two transformation tasks that may share a run: the batch and its inputs.
PER_BATCH_VARIABLES = frozenset(
    {
        "BATCH_ID",
        "BATCH_GENERATION",
        "RUN_ID",
        "INPUTS_KEY",
        "PRODUCTS_KEY",
        "ORDERS_KEYS",
        "ORDER_ITEMS_KEYS",
        "RECOMPUTE_DATES",
    }
)
# The variables a work message may set: those the workflow's Task states send (stepfunctions/*.asl.json;
# a test derives them from both definitions) and the key lists of the trigger's prechecks
# (lambda_trigger/prechecks.py). The endpoint, the lake, credentials and Spark's settings come from
# the worker's own task definition only: a message that sets anything else is refused, not run.
TASK_VARIABLES = frozenset(
    {
        "S3_BUCKET",
        "PRODUCTS_KEY",
        "INPUTS_KEY",
        "BATCH_ID",
        "BATCH_GENERATION",
        "RUN_ID",
        "PIPELINE_BATCH_TRACKER_TABLE",
        "DAILY_KPIS_TABLE",
        "CATEGORY_KPIS_TABLE",
        *PRECHECK_LISTS,
    }
)

# runner(command, configs) -> exit code; several configs only for a coalesced transformation.
Runner = Callable[[str, Sequence[PipelineConfig]], int]
# prepare(config, interrupted) -> what it did: idle-time work for the next run on a lake.
Prepare = Callable[[PipelineConfig, Callable[[], bool]], Mapping[str, Any]]


def _log(step: str, level: str = "INFO", **fields: Any) -> None:
    record = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": level, "job": JOB}
    print(json.dumps({**record, "step": step, **fields}, default=str), flush=True)


def _log_traceback(command: str) -> None:
    """The traceback of a broken run as one JSON record, not raw lines: its messages name keys, which
    producers choose, and a key holding ``\n[ERROR] ...`` would otherwise forge a log line."""
    _log("task.traceback", level="ERROR", command=command, traceback=traceback.format_exc())


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class WorkerSettings:
    queue_url: str
    max_batches: int = 50
    max_heap_fraction: float = 0.85
    heartbeat_seconds: float = 30.0
    poll_seconds: int = 20
    # 0: run until stopped (an ECS service); > 0: exit after that long without work (scripts).
    idle_exit_seconds: float = 0.0
    # Transformation tasks one run may serve (1: never coalesce).
    max_coalesce: int = 10
    # Run both jobs once on a tiny batch of its own before serving (WORKER_WARM_BATCH=0: not).
    warm_batch: bool = True
    # Where the worker says whether it is ready (jobs/worker_status.py; WORKER_STATUS_FILE).
    status_file: Path | None = None
    # The trigger's prechecks (PRECHECK_QUEUE_URL): a queue of their own, which no keeper receives, so
    # its receive count counts attempts and its DLQ catches a part that crashes every worker.
    # Empty: prechecks come on the work queue.
    precheck_queue_url: str = ""

    @property
    def precheck_queue(self) -> str:
        return self.precheck_queue_url or self.queue_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if env is None else env
        queue_url = env.get("WORK_QUEUE_URL", "").strip()
        if not queue_url:
            raise ConfigError("WORK_QUEUE_URL is not set: the worker needs the work queue to poll")
        fraction = _positive(env, "WORKER_MAX_HEAP_FRACTION", 0.85)
        if fraction > 1:
            raise ConfigError(f"WORKER_MAX_HEAP_FRACTION must be at most 1, got {fraction}")
        idle = env.get("WORKER_IDLE_EXIT_SECONDS", "").strip()
        return cls(
            queue_url=queue_url,
            max_batches=int(_positive(env, "WORKER_MAX_BATCHES", 50)),
            max_heap_fraction=fraction,
            heartbeat_seconds=_positive(env, "WORKER_HEARTBEAT_SECONDS", 30.0),
            poll_seconds=min(20, int(_positive(env, "WORKER_POLL_SECONDS", 20))),
            idle_exit_seconds=float(idle) if idle else 0.0,
            max_coalesce=int(_positive(env, "WORKER_MAX_COALESCE", 10)),
            warm_batch=env.get("WORKER_WARM_BATCH", "1").strip() not in ("0", "false", "no"),
            status_file=status_path(env),
            precheck_queue_url=env.get("PRECHECK_QUEUE_URL", "").strip(),
        )


@dataclass(frozen=True)
class TaskMessage:
    """A work queue message, as the worker-mode Task states build it."""

    token: str
    command: str
    container: str
    execution: str
    state: str
    environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: str) -> TaskMessage:
        """Raise ``ValueError`` naming what is wrong (a token, if any, is in ``token_of``)."""
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("the message body is not a JSON object")
        environment = environment_of(data)  # first: a refused precheck says why, not "no TaskToken"
        token = data.get("TaskToken")
        if not isinstance(token, str) or not token:
            raise ValueError("the message has no TaskToken")
        command = data.get("Command")
        if not (isinstance(command, list) and len(command) == 1 and command[0] in COMMANDS):
            raise ValueError(f"Command must be one of {[[c] for c in COMMANDS]}, got {command!r}")
        return cls(
            token=token,
            command=command[0],
            container=str(data.get("Container") or command[0]),
            execution=str(data.get("Execution") or ""),
            state=str(data.get("State") or ""),
            environment=environment,
        )

    def shares_run_with(self, other: TaskMessage) -> bool:
        """Both are transformations of the same stack (bucket, lake, tables): one run can serve both."""

        def shared(env: Mapping[str, str]) -> dict[str, str]:
            return {k: v for k, v in env.items() if k not in PER_BATCH_VARIABLES}

        return (
            self.command == other.command == "transform"
            and self.container == other.container
            and shared(self.environment) == shared(other.environment)
        )


def environment_of(data: Mapping[str, Any]) -> dict[str, str]:
    """A message's ``Environment`` ([{Name, Value}], as in ECS container overrides) as a dict."""
    env_list = data.get("Environment", [])
    if not isinstance(env_list, list) or not all(
        isinstance(e, dict) and isinstance(e.get("Name"), str) and isinstance(e.get("Value"), str)
        for e in env_list
    ):
        raise ValueError("Environment must be a list of {Name, Value} strings")
    environment = {e["Name"]: e["Value"] for e in env_list}
    refused = sorted(set(environment) - TASK_VARIABLES)
    if refused:  # repr: a name is the sender's text, shown escaped
        raise ValueError(
            f"Environment sets {', '.join(map(repr, refused))}, which a work message may not set "
            f"(it may set {', '.join(sorted(TASK_VARIABLES))})"
        )
    return environment


def precheck_environment(body: str) -> dict[str, str] | None:
    """The environment of a precheck message; None for any other message (tasks, unreadable ones)."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("TaskToken") or data.get("Command") != [PRECHECK]:
        return None
    try:
        return environment_of(data)
    except ValueError:
        return None


def _key_list(environment: Mapping[str, str], name: str) -> list[str]:
    """A precheck's ``ORDERS_KEYS`` / ``ORDER_ITEMS_KEYS``; [] when unreadable (the run's config,
    built from the lead message, names the problem; a gathered message's keys are then dropped)."""
    try:
        keys = json.loads(environment.get(name) or "[]")
    except json.JSONDecodeError:
        return []
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def token_of(body: str) -> str | None:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        return None
    token = data.get("TaskToken") if isinstance(data, dict) else None
    return token if isinstance(token, str) and token else None


def run_job(
    command: str,
    configs: Sequence[PipelineConfig],
    spark: SparkSession,
    after_answer: list[Callable[[], None]] | None = None,
) -> int:
    """Run one job in this process on the warm session; the exit code a container would have.

    ``after_answer``: where a validation task or a precheck leaves the work that may follow its
    answer (its Data Docs), which the worker runs once it is idle. A precheck has nobody waiting
    for its answer, but the day's task queued behind it does wait for it to end.
    """
    config, *others = configs
    if command == PRECHECK:
        from jobs.validation.job import run as validate

        return validate(config, spark, precheck=True, after_answer=after_answer).exit_code
    if command == "validate":
        from jobs.validation.job import run as validate

        if others:
            raise ValueError("validation tasks are not coalesced")
        return validate(config, spark, after_answer=after_answer).exit_code
    from jobs.transformation.job import run as transform

    transform(config, spark, also=others)
    return EXIT_OK


def error_summary(exc: BaseException, lines: int = 2) -> str:
    """The exception's type and its first message lines, without a JVM stack trace.

    A Py4JJavaError's first line only names the py4j call ("An error occurred while calling
    o123.collectToPython."); the Java exception that says what went wrong is the next one.
    """
    text = [
        line.strip() for line in str(exc).splitlines() if line.strip() and not line.lstrip().startswith("at ")
    ]
    return f"{type(exc).__name__}: {' '.join(text[:lines])[:500]}"


def prepare_lake(
    config: PipelineConfig, spark: SparkSession, interrupted: Callable[[], bool]
) -> Mapping[str, Any]:
    """Build the lake's new table states while idle (jobs.transformation.job.warm_lake)."""
    from jobs.transformation.job import warm_lake

    return warm_lake(config, spark, interrupted)


def task_description(message: TaskMessage, worker_id: str, exit_code: int, reason: str) -> dict[str, Any]:
    """What the workflow reads: the shape of a stopped ECS task with one container."""
    task_arn = f"worker/{worker_id}/{uuid.uuid4().hex}"
    return {
        "TaskArn": task_arn,
        "Containers": [
            {"Name": message.container, "ExitCode": exit_code, "LastStatus": "STOPPED", "TaskArn": task_arn}
        ],
        "LastStatus": "STOPPED",
        "StopCode": "EssentialContainerExited",
        "StoppedReason": reason,
        "Worker": worker_id,
    }


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return (response or {}).get("Error", {}).get("Code", "") if isinstance(response, dict) else ""


def make_visible(sqs: SQSClient, queue_url: str, messages: Sequence[MessageTypeDef]) -> None:
    """Give received messages back to the queue at once."""
    hold(sqs, queue_url, [m["ReceiptHandle"] for m in messages], 0)


def _report_failed(action: str, response: Mapping[str, Any]) -> None:
    """A batch call answers 200 with per-entry failures: say which, or they pass unseen (the
    message then comes back when its visibility ends, and its work is done again: idempotent)."""
    for failed in response.get("Failed", []):
        _log(
            f"sqs.{action}.failed",
            level="WARN",
            entry=failed.get("Id"),
            code=failed.get("Code"),
            error=failed.get("Message"),
        )


def hold(sqs: SQSClient, queue_url: str, receipts: Sequence[str], seconds: int) -> None:
    """Keep received messages invisible for ``seconds`` more (0: visible now); 10 per call, SQS's most."""
    for i in range(0, len(receipts), 10):
        response = sqs.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": r, "VisibilityTimeout": seconds}
                for n, r in enumerate(receipts[i : i + 10])
            ],
        )
        _report_failed("change_visibility", response)


def delete_all(sqs: SQSClient, queue_url: str, receipts: Sequence[str]) -> None:
    """Delete received messages, 10 per call."""
    for i in range(0, len(receipts), 10):
        response = sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(receipts[i : i + 10])],
        )
        _report_failed("delete", response)


@dataclass
class _PrecheckDay:
    """The prechecks of one day taken together: one run with their key lists merged."""

    key: tuple[str | None, str | None]  # (bucket, day)
    lead: Mapping[str, str]
    lists: dict[str, list[str]] = field(default_factory=dict)
    receipts: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, environment: Mapping[str, str]) -> _PrecheckDay:
        return cls((environment.get("S3_BUCKET"), environment.get("BATCH_ID")), environment)

    def add(self, environment: Mapping[str, str], receipt: str) -> None:
        self.receipts.append(receipt)
        for name in PRECHECK_LISTS:
            keys = self.lists.setdefault(name, [])
            keys += [k for k in _key_list(environment, name) if k not in keys]

    def environment(self) -> dict[str, str]:
        """The first message's environment with every message's key lists."""
        merged = dict(self.lead)
        merged.update({name: json.dumps(keys) for name, keys in self.lists.items() if keys})
        return merged


class QueueKeeper:
    """Heartbeats the tasks still waiting in the work queue while this worker is busy.

    The heartbeat clock of a task starts when the workflow sends it, so a task queued behind other
    batches (ten days landing at once on one worker) would time out without ever having run. While
    any worker lives, it keeps them alive: it receives the waiting messages for a moment, beats
    each token, and makes them visible again at once, so another worker (scaling out) can still
    take them. A message whose attempt already ended is deleted: its retry has a message of its own.
    """

    def __init__(
        self, sqs: SQSClient, sfn: SFNClient, queue_url: str, hold_seconds: int = 30, limit: int = 100
    ) -> None:
        self.sqs, self.sfn, self.queue_url = sqs, sfn, queue_url
        self.hold_seconds, self.limit = hold_seconds, limit

    def keep(self) -> int:
        """One pass; returns how many waiting tasks were kept alive."""
        held: dict[str, MessageTypeDef] = {}
        while len(held) < self.limit:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=self.hold_seconds,
                WaitTimeSeconds=0,
            ).get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in held]
            held.update((m["MessageId"], m) for m in messages)
            if not fresh:
                break
        kept, release = 0, []
        for message in held.values():
            token = token_of(message.get("Body", ""))
            try:
                if token:
                    self.sfn.send_task_heartbeat(taskToken=token)
                    kept += 1
                release.append(message)
            except Exception as exc:
                if _error_code(exc) in STALE_TOKEN_ERRORS:
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                else:
                    release.append(message)
        make_visible(self.sqs, self.queue_url, release)
        return kept


class Heartbeat(threading.Thread):
    """Beats for the tasks of one run until stopped; tells ``on_lost`` once when every state gave up
    on its token (a coalesced run goes on while any of its tasks is still waited for).

    With a ``keeper`` each beat also keeps the tasks waiting in the queue alive.
    """

    def __init__(
        self,
        sfn: SFNClient,
        tokens: Sequence[str],
        interval: float,
        on_lost: Callable[[str], None],
        keeper: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(name="worker-heartbeat", daemon=True)
        self.sfn, self.tokens, self.interval, self.on_lost = sfn, list(tokens), interval, on_lost
        self.keeper = keeper
        self.done = threading.Event()
        self.lost_tokens: set[str] = set()
        # Held while one token's beat is sent: release() waits for it, so no beat follows an answer.
        self._sending = threading.Lock()

    @property
    def lost(self) -> bool:
        return bool(self.tokens) and all(t in self.lost_tokens for t in self.tokens)

    def release(self, token: str) -> None:
        """Stop beating ``token`` (it is about to be answered); the others keep beating meanwhile.

        A run's tasks are answered one after the other: when an answer is slow (a busy emulator took
        5 s), the tasks not answered yet must not miss their heartbeat. A beat sent after the answer
        would find the token closed, so the token leaves the list before its answer goes out.
        """
        with self._sending:
            if token in self.tokens:
                self.tokens.remove(token)

    def abandon_all(self) -> list[str]:
        """Stop beating every task and count each as given up (its answer is not sent): the tokens."""
        with self._sending:
            tokens, self.tokens = list(self.tokens), []
            self.lost_tokens.update(tokens)
        return tokens

    def run(self) -> None:
        while not self.done.wait(self.interval):
            for token in list(self.tokens):
                with self._sending:
                    if token in self.lost_tokens or token not in self.tokens:
                        continue
                    try:
                        self.sfn.send_task_heartbeat(taskToken=token)
                        continue
                    except Exception as exc:
                        code, error = _error_code(exc), f"{type(exc).__name__}: {exc}"
                    if code in STALE_TOKEN_ERRORS:
                        self.lost_tokens.add(token)
                        if not self.lost:
                            continue
                if code in STALE_TOKEN_ERRORS:
                    self.on_lost(code)
                    return
                _log("heartbeat.error", level="WARN", error=error)
            if self.keeper is not None and not self.done.is_set():
                try:
                    self.keeper()
                except Exception as exc:
                    _log("queue.keep.error", level="WARN", error=f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)


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
            self._answer_failure(
                token,
                STOPPED_ERROR,
                f"worker {self.worker_id} was stopped (SIGTERM) before the task ended; it is retried",
            )
        _log("terminate", level="WARN" if tokens else "INFO", failed_tasks=len(tokens))
        if tokens and self._spark is not None:
            try:
                self._spark.sparkContext.cancelAllJobs()
            except Exception as exc:  # the JVM may be going down already
                _log("terminate.cancel_failed", level="WARN", error=error_summary(exc))

    def warm_up(self) -> None:
        """Pay the process's one-time costs (JVM, Spark, GX's import) before serving."""
        started = time.perf_counter()
        spark = self.spark
        spark.range(1).count()  # the first job loads the executor side of the class path
        import jobs.validation.gx_runner  # noqa: F401  (GX's import is seconds of Python)

        self._warm = {"session_seconds": round(time.perf_counter() - started, 3), "spark": spark.version}

    def _first_look(self) -> list[Received]:
        """The queue's first message, if one waits; idle, the warm-up batch runs first.

        The warm-up batch (jobs/warmup.py: both jobs once on a one-row batch of its own) pays the
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
                self._warm.update(warm_up(self.spark, _log, self.config(), self._interrupted))
                self._warm["batch_seconds"] = round(time.perf_counter() - started, 3)
        _log("warm", **self._warm, work_waiting=bool(messages))
        self._set_status(state=READY, warm={**self._warm, "work_waiting": bool(messages)})
        config = self.config()
        if config.bucket:
            self._prepare_later(config)
        return messages

    def _prepare_later(self, config: PipelineConfig) -> None:
        """Note ``config``'s lake for idle-time work before the next run on it (``_prepare_pending``)."""
        if self.prepare is not None and config.lake_path:
            self._unprepared[config.lake_path] = config
            _log(PREPARE_PENDING, lake=config.lake_path)
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
                _log("lake.prepare.failed", level=level, lake=path, error=error_summary(exc))
                del self._unprepared[path]
                continue
            _log("lake.prepared", **outcome)
            if "interrupted_before" in outcome:
                return
            del self._unprepared[path]
        _log(PREPARE_DONE)
        self._set_status(preparing=False)

    def _set_status(self, **changes: Any) -> None:
        """Tell the health check and the local supervisor (jobs/worker_status.py); a failed write
        is logged and the worker serves on (it then never reports ready: its start is what fails)."""
        self._status = self._status.with_changes(**changes)
        if self._status_file is None:
            return
        try:
            self._status_file.write(self._status)
        except OSError as exc:
            _log("status.write_failed", level="WARN", path=str(self._status_file.path), error=str(exc))

    def serve(self) -> int:
        self._set_status(state=STARTING)
        try:
            return self._serve()
        finally:
            self._set_status(state=STOPPED, preparing=False)

    def _serve(self) -> int:
        _log("start", worker=self.worker_id, queue=self.settings.queue_url, pid=os.getpid())
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
                    _log("idle.exit", batches=self.batches)
                    return EXIT_OK
                continue
            url, message = messages[0]
            self.handle(message, url)
            idle_since = time.monotonic()
            reason = self.recycle_reason()
            if reason:
                self._run_after_answer()
                _log("recycle", reason=reason, batches=self.batches)
                return EXIT_OK
        if not self._terminated:  # SIGTERM: ECS kills after its stop timeout, exit first
            self._run_after_answer()
        self.protection.set(False)
        _log("stopped", batches=self.batches)
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
        environment = precheck_environment(body)
        if environment is not None:
            self._precheck(environment, message["ReceiptHandle"], queue_url or self.settings.queue_url)
            return
        self.sqs.delete_message(QueueUrl=self.settings.queue_url, ReceiptHandle=message["ReceiptHandle"])
        try:
            task = TaskMessage.parse(body)
        except (ValueError, json.JSONDecodeError) as exc:
            self._reject(body, f"{type(exc).__name__}: {exc}")
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
            if _error_code(exc) in STALE_TOKEN_ERRORS:
                _log("task.stale", execution=task.execution, state=task.state, error=_error_code(exc))
                return False
            _log("heartbeat.error", level="WARN", error=f"{type(exc).__name__}: {exc}")
        return True

    def _gather(self, lead: TaskMessage) -> list[TaskMessage]:
        """The transformation tasks waiting in the queue that can share ``lead``'s run, taken off it.

        Other messages (validations, other stacks' tasks, unreadable ones) are made visible again at
        once for the loop (or another worker) to take in turn.
        """
        limit = self.settings.max_coalesce - 1
        found: list[TaskMessage] = []
        release: list[MessageTypeDef] = []
        for message in self._waiting(self.settings.queue_url, lambda: len(found) >= limit):
            try:
                task = TaskMessage.parse(message.get("Body", ""))
            except (ValueError, json.JSONDecodeError):
                task = None
            if task is None or len(found) >= limit or not lead.shares_run_with(task):
                release.append(message)
                continue
            self.sqs.delete_message(QueueUrl=self.settings.queue_url, ReceiptHandle=message["ReceiptHandle"])
            if self._still_waited_for(task):
                found.append(task)
        make_visible(self.sqs, self.settings.queue_url, release)
        return found

    def _waiting(self, queue_url: str, enough: Callable[[], bool]) -> Iterator[MessageTypeDef]:
        """The messages waiting in ``queue_url``, each once, until there is no new one or ``enough()``.

        Each is received for 30 s: the caller deletes it or makes it visible again (``make_visible``).
        """
        seen: set[str] = set()
        while not enough():
            messages = self.sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=30,
                WaitTimeSeconds=0,
            ).get("Messages", [])
            make_visible(self.sqs, queue_url, [m for m in messages if m["MessageId"] in seen])
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                return
            for message in fresh:
                seen.add(message["MessageId"])
                yield message

    def _reject(self, body: str, problem: str) -> None:
        _log("message.bad", level="ERROR", error=problem, body=body[:500])
        token = token_of(body)
        if token:
            self._answer_failure(token, BAD_MESSAGE_ERROR, f"the worker could not read its task: {problem}")

    def _run(self, tasks: list[TaskMessage]) -> None:
        lead = tasks[0]
        started = time.perf_counter()
        _log(
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
                    self._answer_failure(task.token, STOPPED_ERROR, f"worker {self.worker_id} was stopped")
                return
            outcomes = self._execute(tasks, beat)
            seconds = round(time.perf_counter() - started, 3)
            for task in tasks:  # beating the tasks not answered yet (Heartbeat.release)
                exit_code, error = outcomes[task.token]
                abandoned = task.token in beat.lost_tokens
                _log(
                    "task.end",
                    execution=task.execution,
                    state=task.state,
                    exit_code=exit_code,
                    seconds=seconds,
                    abandoned=abandoned,
                )
                beat.release(task.token)
                if not abandoned:
                    self._answer_task(task, exit_code, error)
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
                _log("after_answer.failed", level="WARN", error=error_summary(exc))

    def _precheck(self, environment: Mapping[str, str], receipt: str, queue_url: str) -> None:
        """Validate parts of days still being uploaded; nobody waits for the answer.

        The other prechecks waiting in the same queue join this one: one run per day, the lead's
        day first (one set of per-run costs per day, and nothing handed back to the queue, whose
        receive count then counts attempts). A day whose own ValidateData already waits in the work
        queue is dropped: that task validates every part of the day in one run anyway.

        Unlike a task's, the messages are deleted when their day's precheck is over (whatever its
        outcome; a stop gives the days not begun back to the queue): until then they stay in flight,
        held by each beat, so a worker that dies meanwhile
        leaves them to the next one, and on a precheck queue of its own a part that kills every
        worker ends in that queue's DLQ after its maxReceiveCount. The tasks waiting in the work
        queue are kept alive meanwhile, as during a task: a backlog of prechecks must not time out
        the tasks behind it.
        """
        days, validations = self._gather_prechecks(environment, receipt, queue_url)
        seconds = max(60, int(3 * self.settings.heartbeat_seconds))
        in_flight = [r for day in days for r in day.receipts]
        lock = threading.Lock()
        keeper = QueueKeeper(self.sqs, self.sfn, self.settings.queue_url)

        def keep() -> int:
            with lock:
                hold(self.sqs, queue_url, in_flight, seconds)
            return keeper.keep()

        # Held at once, for three beats: received with the queue's (or _waiting's) 30 s, the
        # messages would become visible to another worker before the first beat held them, and the
        # same parts would run twice into the same staging folder.
        hold(self.sqs, queue_url, in_flight, seconds)
        beat = Heartbeat(self.sfn, [], self.settings.heartbeat_seconds, lambda _code: None, keep)
        beat.start()
        try:
            for day in days:
                if self._stopping.is_set():  # told to stop: the days not begun go back to the queue
                    break
                try:
                    self._precheck_day(day, validations)
                finally:
                    with lock:
                        delete_all(self.sqs, queue_url, day.receipts)
                        in_flight[:] = [r for r in in_flight if r not in day.receipts]
        finally:
            beat.stop()
            hold(self.sqs, queue_url, in_flight, 0)  # not begun: visible again for any worker

    def _precheck_day(self, day: _PrecheckDay, validations: Sequence[tuple[Mapping[str, str], str]]) -> None:
        """One day's precheck run, or none when a waiting validation task covers the day.

        A waiting ValidateData of any day covers a precheck of the products master alone: every
        day's validation checks the master first."""
        started = time.perf_counter()
        environment = day.environment()
        batch = environment.get("BATCH_ID")
        covered_by = next(
            (ex for env, ex in validations if (env.get("S3_BUCKET"), env.get("BATCH_ID")) == day.key), None
        )
        if covered_by is None and not any(day.lists.values()):  # the products master alone
            covered_by = next(
                (
                    ex
                    for env, ex in validations
                    if env.get("S3_BUCKET") == day.key[0]
                    and env.get("PRODUCTS_KEY") == environment.get("PRODUCTS_KEY")
                ),
                None,
            )
        if covered_by is not None:
            _log(
                "precheck.skipped",
                batch=batch,
                messages=len(day.receipts),
                reason=f"{covered_by} waits to validate the day",
            )
            return
        keys = {k: v for k, v in environment.items() if k.endswith(("_KEY", "_KEYS"))}
        _log("precheck.start", batch=batch, messages=len(day.receipts), **keys)
        exit_code, error = self._attempt(PRECHECK, [environment])
        _log(
            "precheck.end",
            level="WARN" if exit_code == EXIT_BROKEN else "INFO",
            batch=batch,
            exit_code=exit_code,
            seconds=round(time.perf_counter() - started, 3),
            **({"error": error, "note": "the day's own validation will check the part"} if error else {}),
        )

    def _gather_prechecks(
        self, lead: Mapping[str, str], receipt: str, queue_url: str
    ) -> tuple[list[_PrecheckDay], list[tuple[Mapping[str, str], str]]]:
        """(the prechecks taken, by day, the lead's first; the validation tasks waiting, as
        (environment, execution)). Other messages of ``queue_url`` are made visible again at once."""
        days: dict[tuple[str | None, str | None], _PrecheckDay] = {}
        first = _PrecheckDay.of(lead)
        first.add(lead, receipt)
        days[first.key] = first
        taken = [1]
        validations: list[tuple[Mapping[str, str], str]] = []
        release: list[MessageTypeDef] = []
        separate = queue_url != self.settings.queue_url
        for message in self._waiting(queue_url, lambda: taken[0] >= PRECHECK_GATHER_LIMIT):
            body = message.get("Body", "")
            other = precheck_environment(body)
            if other is not None:
                day = days.setdefault(_PrecheckDay.of(other).key, _PrecheckDay.of(other))
                day.add(other, message["ReceiptHandle"])
                taken[0] += 1
                continue
            release.append(message)
            validations += self._validation_of(body)
        make_visible(self.sqs, queue_url, release)
        if separate:  # the validation tasks waiting in the work queue, given back at once
            waiting = list(self._waiting(self.settings.queue_url, lambda: False))
            make_visible(self.sqs, self.settings.queue_url, waiting)
            for message in waiting:
                validations += self._validation_of(message.get("Body", ""))
        return list(days.values()), validations

    def _validation_of(self, body: str) -> list[tuple[Mapping[str, str], str]]:
        """[(its environment, its execution)] for a validation task's message, else []."""
        try:
            task = TaskMessage.parse(body)
        except (ValueError, json.JSONDecodeError):
            return []
        if task.command != "validate":
            return []
        return [({**self.base_env, **task.environment}, task.execution or "a validation task")]

    def _attempt(self, command: str, environments: Sequence[Mapping[str, str]]) -> tuple[int, str]:
        try:
            configs = [self.config(env) for env in environments]
            return self.runner(command, configs), ""
        except Exception as exc:
            _log_traceback(command)
            return EXIT_BROKEN, f"{type(exc).__name__}: {exc}"

    def _execute(self, tasks: list[TaskMessage], beat: Heartbeat) -> dict[str, tuple[int, str]]:
        """token → (exit code, error); a broken shared run is retried task by task."""
        exit_code, error = self._attempt(tasks[0].command, [t.environment for t in tasks])
        if exit_code != EXIT_BROKEN or len(tasks) == 1 or beat.lost:
            return {t.token: (exit_code, error) for t in tasks}
        _log("coalesced.broke", level="WARN", error=error, rerun_alone=[t.execution for t in tasks])
        return {
            t.token: (exit_code, error)
            if t.token in beat.lost_tokens
            else self._attempt(t.command, [t.environment])
            for t in tasks
        }

    def _answer_task(self, task: TaskMessage, exit_code: int, error: str) -> None:
        reason = error or f"{task.command} exited {exit_code}"
        if exit_code in (EXIT_OK, EXIT_REJECTED):
            description = task_description(task, self.worker_id, exit_code, reason)
            self._answer(
                lambda: self.sfn.send_task_success(taskToken=task.token, output=json.dumps(description))
            )
        else:
            cause = f"{task.container} on worker {self.worker_id} broke (exit {exit_code}): {error}"
            self._answer_failure(task.token, FAILED_ERROR, cause)

    def _answer_failure(self, token: str, error: str, cause: str) -> None:
        self._answer(
            lambda: self.sfn.send_task_failure(taskToken=token, error=error, cause=cause[-MAX_CAUSE_CHARS:])
        )

    def _answer(self, call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as exc:
            # The state already gave up (timed out, aborted): its retry or the execution's end decides.
            level = "INFO" if _error_code(exc) in STALE_TOKEN_ERRORS else "ERROR"
            _log("answer.failed", level=level, error=f"{type(exc).__name__}: {exc}")

    def _abandon(self, code: str) -> None:
        _log("task.abandoned", level="WARN", reason=f"the state no longer waits for this task ({code})")
        if self._spark is not None:
            self._spark.sparkContext.cancelAllJobs()


class ScaleInProtection:
    """ECS task scale-in protection while the worker is busy, through the ECS agent's endpoint
    (``$ECS_AGENT_URI/task-protection/v1/state``): a scale-in or a deployment then takes an idle worker
    instead of stopping a batch. Best effort: without ``ECS_AGENT_URI`` (not on ECS) it does nothing,
    and a failed call is logged, never raised (SIGTERM handling covers a stop that comes anyway).
    Protection expires by itself after ``minutes`` (renewed when work keeps coming), so a worker that
    hangs does not stay protected for ever."""

    def __init__(self, agent_uri: str | None, minutes: int = 60, timeout: float = 2.0) -> None:
        self.url = f"{agent_uri.rstrip('/')}/task-protection/v1/state" if agent_uri else ""
        self.minutes, self.timeout = minutes, timeout
        self.enabled: bool | None = None
        self._since = 0.0

    def set(self, enabled: bool) -> None:
        if not self.url:
            return
        renew = enabled and time.monotonic() - self._since > self.minutes * 30  # half its lifetime
        if enabled == self.enabled and not renew:
            return
        import urllib.request

        body: dict[str, Any] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.minutes
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except Exception as exc:
            self.enabled = None  # unknown: the next change is sent again
            _log("protection.error", level="WARN", enabled=enabled, error=f"{type(exc).__name__}: {exc}")
            return
        self.enabled, self._since = enabled, time.monotonic()
        _log("protection", enabled=enabled)


def install_stop_handler(worker: Worker) -> None:
    """SIGTERM -> ``worker.terminate`` on a thread of its own: the handler runs in the main thread,
    which may be inside a Py4J call of the job; answering and cancelling from another thread lets
    that call end (its Spark jobs cancelled) instead of waiting for it."""
    import signal

    def on_sigterm(_signum: int, _frame: Any) -> None:
        threading.Thread(target=worker.terminate, name="worker-terminate", daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)


def heap_used_fraction(spark: SparkSession) -> float | None:
    """The driver JVM's used heap over its maximum, or None when it cannot be read.

    Read through py4j's JVM view, the only way PySpark exposes the driver's Runtime, after a full
    collection (the worker is between batches), so garbage does not count as a leak.
    """
    try:
        jvm = spark.sparkContext._jvm
        if jvm is None:  # a stopped context
            return None
        jvm.java.lang.System.gc()
        runtime = jvm.java.lang.Runtime.getRuntime()
        used: int = runtime.totalMemory() - runtime.freeMemory()  # py4j returns Java longs as int
        maximum: int = runtime.maxMemory()
        return used / maximum
    except Exception:
        return None


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.worker`` / ``ecomkpi worker``: configuration from the environment."""
    del argv
    import boto3

    from jobs.spark_session import get_spark

    try:
        settings = WorkerSettings.from_env()
        config = PipelineConfig.from_env()
    except ConfigError as exc:
        _log("config.error", level="ERROR", error=str(exc))
        return EXIT_BROKEN
    session = boto3.session.Session()
    worker = Worker(
        settings,
        sqs=session.client("sqs", region_name=config.region),
        sfn=session.client("stepfunctions", region_name=config.region),
        spark_factory=lambda: get_spark(config, app_name="ecomkpi-worker"),
    )
    install_stop_handler(worker)
    try:
        worker.warm_up()
        return worker.serve()
    except Exception:
        traceback.print_exc()
        return EXIT_BROKEN


if __name__ == "__main__":
    sys.exit(main())
