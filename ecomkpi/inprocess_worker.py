"""The warm worker as a thread of this process, serving the work queue on a SparkSession it holds.

A process that already has a warm session (a test run, a notebook) can serve the local stack with
it instead of starting a worker process: the same ``hosts.worker.loop.Worker`` loop, queue protocol,
heartbeats and answers, without a second JVM's start (~10 s) and both jobs' first-use costs paid
again in it. What only the process form gives stays there: killing a worker mid-batch (a dead
Fargate task) needs the process (``WorkerSupervisor``); a worker that recycles itself here starts
again on the same session, since the session is not its own to stop.

The worker's lines (its own log and the jobs' run logs, printed to stdout as in a container) are
taken from its thread (``ecomkpi.thread_lines``) and handed on like a worker process's lines; a
line printed by a thread a job starts itself (validation's background GX set-up) goes to this
process's stdout instead.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ecomkpi.sfn_local.tasks import ContainerOutput
from ecomkpi.thread_lines import lines_of_this_thread
from ecomkpi.worker_supervisor import StatusWatch, container_output
from hosts.worker.status import STATUS_FILE_VARIABLE, StatusFile
from jobs.aws import client

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from hosts.worker.loop import Worker


class InProcessWorker(threading.Thread):
    """``start()`` serves the queue until ``stop()``; ``ready`` is set once the worker's status says
    so (its status file, hosts/worker/status.py, in a folder of this object's own)."""

    def __init__(
        self,
        spark: SparkSession,
        env: Mapping[str, str],
        *,
        on_output: Callable[[ContainerOutput], None] | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name="in-process-worker", daemon=True)
        # The session is warm already: no warm-up batch (it would also run on the caller's session).
        self._status_dir = tempfile.TemporaryDirectory(prefix="ecomkpi-worker-status-")
        self.status_file = Path(self._status_dir.name) / "worker-status.json"
        self.env = {**env, "WORKER_WARM_BATCH": "0", STATUS_FILE_VARIABLE: str(self.status_file)}
        self.spark = spark
        self.on_output = on_output or (lambda _out: None)
        self.on_event = on_event or (lambda _text: None)
        self.starts = 0
        self.exits: list[int] = []
        self.ready = threading.Event()
        self.preparing = threading.Event()  # idle-time work left (its status says)
        self._stopping = threading.Event()
        self._worker: Worker | None = None

    def run(self) -> None:
        from hosts.worker.loop import Worker
        from hosts.worker.settings import WorkerSettings

        # One pair of clients for every start (a restarted worker is the same process here), for the
        # worker's environment, not this process's.
        sqs = client("sqs", env=self.env)
        sfn = client("stepfunctions", env=self.env)
        while not self._stopping.is_set():
            self._worker = Worker(
                WorkerSettings.from_env(self.env),
                sqs=sqs,
                sfn=sfn,
                spark_factory=lambda: self.spark,
                base_env=self.env,
                worker_id=f"in-process-{os.getpid()}-{self.starts + 1}",
            )
            if self._stopping.is_set():  # stop() came before it could stop this worker
                break
            self.starts += 1
            self.on_event(f"worker: serving in this process (start {self.starts}, on its SparkSession)")
            StatusFile(self.status_file).clear()
            serving = threading.Event()
            serving.set()
            watch = StatusWatch(
                StatusFile(self.status_file).read,
                self.ready,
                self.preparing,
                lambda _status: self.on_event("worker: ready (on this process's SparkSession)"),
                alive=serving.is_set,
            )
            watch.start()
            try:
                with lines_of_this_thread(self._line):
                    self.exits.append(self._worker.serve())
            finally:
                serving.clear()
                watch.join(timeout=5)
        self._status_dir.cleanup()

    def _line(self, line: str) -> None:
        self.on_output(container_output(line, "stdout", os.getpid()))

    def kill(self, sig: int = 0) -> None:
        raise NotImplementedError("an in-process worker cannot be killed: use the worker process")

    def stop(self, grace: float = 10.0) -> None:
        """Ends the current task, then the loop (a long poll ends within WORKER_POLL_SECONDS)."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.stop()
        if self.is_alive():
            self.join(grace + float(self.env.get("WORKER_POLL_SECONDS", "20")))
