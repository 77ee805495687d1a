"""Plays the ECS service for the warm worker: keeps one ``entrypoint.sh worker`` process alive.

The worker is a separate process (its own JVM), as it is a separate task in AWS, so killing it
mid-batch on a laptop is what a Fargate task dying is: it stops heartbeating, the workflow's state
fails with ``States.HeartbeatTimeout`` and is retried, and this supervisor has already started the
replacement that takes the retried message. A worker that exits 0 (recycled after N batches or a
full heap) is replaced the same way, as a service with a desired count of 1 would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ecomkpi.process_lines import read_lines, start_process
from ecomkpi.sfn_local.tasks import ContainerLauncher, ContainerOutput

STATE_OF_JOB = {"validation": "ValidateData", "transformation": "TransformData"}


def container_output(line: str, stream: str, pid: int) -> ContainerOutput:
    """A worker line as a container line: job lines name their execution (``run_id``) and job."""
    execution, job = "worker", "worker"
    try:
        record = json.loads(line)
    except (ValueError, TypeError):
        record = None
    if isinstance(record, dict):
        execution = str(record.get("run_id") or record.get("execution") or execution)
        job = str(record.get("job") or job)
    return ContainerOutput(execution, STATE_OF_JOB.get(job, "worker"), job, stream, line, f"worker/{pid}")


class WorkerSupervisor(threading.Thread):
    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        cwd: str | None = None,
        on_output: Callable[[ContainerOutput], None] | None = None,
        on_event: Callable[[str], None] | None = None,
        log_path: Path | None = None,
        restart_delay: float = 1.0,
        launcher: ContainerLauncher | None = None,
    ) -> None:
        """``launcher``: each worker is a container of the pipeline image (``argv`` its command,
        ``env`` ignored: the container's environment is the launcher's)."""
        super().__init__(name="worker-supervisor", daemon=True)
        self.argv, self.env, self.cwd = list(argv), dict(env), cwd
        self.on_output = on_output or (lambda _out: None)
        self.on_event = on_event or (lambda _text: None)
        self.log_path = log_path
        self.restart_delay = restart_delay
        self.launcher = launcher
        self.container = ""  # the current worker's container name (with a launcher)
        self.starts = 0
        self.exits: list[int] = []
        self.process: subprocess.Popen[str] | None = None
        self.ready = threading.Event()  # the current worker finished its warm-up
        self.preparing = threading.Event()  # ... and has idle-time work left (note_idle_work)
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self.process.pid if self.process and self.process.poll() is None else None

    def run(self) -> None:
        while not self._stopping.is_set():
            code = self._run_once()
            self.exits.append(code)
            if self._stopping.is_set():
                break
            self.on_event(f"worker: exited {code}; starting a new one")
            self._stopping.wait(self.restart_delay)

    def _run_once(self) -> int:
        log = self.log_path.open("a", encoding="utf-8") if self.log_path else None
        argv, env = self.argv, self.env
        if self.launcher is not None:
            name = f"ecomkpi-worker-{os.getpid()}-{self.starts + 1}-{int(time.time())}"
            argv, env = self.launcher.launch(name, self.argv, {}), self.launcher.process_environment()
            with self._lock:
                self.container = name
        try:
            proc = start_process(argv, env, self.cwd)
        except OSError as exc:
            self.on_event(f"worker: cannot start {self.argv}: {exc}")
            self._stopping.wait(self.restart_delay * 5)
            return 127
        with self._lock:
            self.process = proc
            self.starts += 1
            self.ready.clear()
            self.preparing.clear()
        self.on_event(f"worker: started (pid {proc.pid})")
        write_lock = threading.Lock()

        def on_line(name: str, line: str) -> None:
            if log:
                with write_lock:
                    log.write(f"[{proc.pid} {name}] {line}\n")
                    log.flush()
            if is_warm(line):
                self.ready.set()
                self.on_event(f"worker: ready ({ready_detail(line)})")
            note_idle_work(line, self.preparing)
            self.on_output(container_output(line, name, proc.pid))

        readers = read_lines(proc, on_line)
        code = proc.wait()
        for reader in readers:
            reader.join(timeout=5)
        if log:
            log.close()
        return code if code >= 0 else 128 - code

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the current worker process group (tests: a task dying mid-batch)."""
        with self._lock:
            proc, container = self.process, self.container
        if proc is not None and proc.poll() is None:
            if self.launcher is not None:  # the container, not the podman client that runs it
                subprocess.run(
                    ["podman", "kill", "--signal", str(int(sig)), container],
                    env=self.launcher.process_environment(),
                    capture_output=True,
                    check=False,
                    timeout=60,
                )
                return
            os.killpg(proc.pid, sig)

    def wait_started(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid is not None:
                return True
            time.sleep(0.1)
        return False

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (the worker finishes nothing new), then SIGKILL after ``grace`` seconds."""
        self._stopping.set()
        with self._lock:
            proc, container = self.process, self.container
        if proc is not None and proc.poll() is None and self.launcher is not None:
            self.launcher.stop(container)  # podman stop: SIGTERM, StopTimeout, SIGKILL
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.join(timeout=15)


def is_warm(line: str) -> bool:
    """The worker's "warm" line: it has paid its start-up costs and serves the queue now."""
    return '"step": "warm"' in line


def note_idle_work(line: str, preparing: threading.Event) -> None:
    """Follow the worker's idle-time work (jobs/worker.py PREPARE_PENDING / PREPARE_DONE) in
    ``preparing``: set while a lake waits to be prepared, cleared once nothing is left."""
    if '"step": "lake.prepare.pending"' in line:
        preparing.set()
    elif '"step": "lake.prepare.done"' in line:
        preparing.clear()


def ready_detail(line: str) -> str:
    """What the worker's "warm" line says about its start: the session, and the warm-up batch."""
    try:
        record = json.loads(line)
    except ValueError:
        return "warm"
    parts = [f"Spark started in {record.get('session_seconds', '?')} s"]
    if "batch_seconds" in record:
        # Cut short for a task that arrived (or a stop): the step it was in, or the one it did not start.
        if record.get("interrupted_during"):
            until = f" (cut short during {record['interrupted_during']})"
        elif record.get("interrupted_before"):
            until = f" (cut short before {record['interrupted_before']})"
        else:
            until = ""
        parts.append(f"warm-up batch {record['batch_seconds']} s{until}")
    elif record.get("work_waiting"):
        parts.append("work was waiting: no warm-up batch")
    return ", ".join(parts)
