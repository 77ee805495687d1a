"""Plays the ECS service for the warm worker: keeps one ``entrypoint.sh worker`` process alive.

The worker is a separate process (its own JVM), as it is a separate task in AWS, so killing it
mid-batch on a laptop is what a Fargate task dying is: it stops heartbeating, the workflow's state
fails with ``States.HeartbeatTimeout`` and is retried, and this supervisor has already started the
replacement that takes the retried message. A worker that exits 0 (recycled after N batches or a
full heap) is replaced the same way, as a service with a desired count of 1 would.
"""

from __future__ import annotations

import contextlib
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
from hosts.worker.status import STATUS_FILE_VARIABLE, StatusFile, WorkerStatus

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
        ``env`` ignored: the container's environment is the launcher's). Readiness comes from the
        worker's status file (hosts/worker/status.py) at the environment's WORKER_STATUS_FILE: read
        here for a process, with ``podman exec`` in a container (the task definition sets it)."""
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
        self.preparing = threading.Event()  # ... and has idle-time work left (its status says)
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

    def _status_reader(self) -> Callable[[], WorkerStatus | None]:
        """How this worker's status is read: its file, or the container's file through podman exec."""
        if self.launcher is None:
            path = self.env.get(STATUS_FILE_VARIABLE)
            return StatusFile(Path(path)).read if path else (lambda: None)
        launcher, container = self.launcher, self.container
        path = launcher.environment().get(STATUS_FILE_VARIABLE)
        if not path:
            return lambda: None

        def read() -> WorkerStatus | None:
            try:
                done = subprocess.run(
                    ["podman", "exec", container, "cat", path],
                    env=launcher.process_environment(),
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=30,
                )
            except subprocess.TimeoutExpired:
                return None
            return WorkerStatus.from_json(done.stdout) if done.returncode == 0 else None

        return read

    def _run_once(self) -> int:
        log = self.log_path.open("a", encoding="utf-8") if self.log_path else None
        argv, env = self.argv, self.env
        if self.launcher is None and self.env.get(STATUS_FILE_VARIABLE):
            StatusFile(Path(self.env[STATUS_FILE_VARIABLE])).clear()  # the last worker's "ready"
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
            self.on_output(container_output(line, name, proc.pid))

        readers = read_lines(proc, on_line)
        watch = StatusWatch(
            self._status_reader(),
            self.ready,
            self.preparing,
            lambda status: self.on_event(f"worker: ready ({ready_detail(status.warm)})"),
            alive=lambda: proc.poll() is None,
            every=1.0 if self.launcher is not None else 0.2,
        )
        watch.start()
        code = proc.wait()
        watch.join(timeout=5)
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
            # ``podman run`` outlives its container by its own clean-up; a signal sent to it now
            # would be its exit status (143), not the worker's.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
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


class StatusWatch(threading.Thread):
    """Follows a worker's status (hosts/worker/status.py) into the ``ready`` and ``preparing`` events
    while ``alive()``; ``on_ready`` is called once, when the worker first says it is ready."""

    def __init__(
        self,
        read: Callable[[], WorkerStatus | None],
        ready: threading.Event,
        preparing: threading.Event,
        on_ready: Callable[[WorkerStatus], None],
        *,
        alive: Callable[[], bool],
        every: float = 0.2,
    ) -> None:
        super().__init__(name="worker-status", daemon=True)
        self.read, self.ready, self.preparing, self.on_ready = read, ready, preparing, on_ready
        self.alive, self.every = alive, every

    def run(self) -> None:
        announced = False
        while self.alive():
            status = self.read()
            if status is not None:
                if status.preparing:
                    self.preparing.set()
                else:
                    self.preparing.clear()
                if status.ready and not announced:
                    announced = True
                    self.ready.set()
                    self.on_ready(status)
            time.sleep(self.every)


def ready_detail(warm: Mapping[str, object]) -> str:
    """What the worker's status says about its start: the session, and the warm-up batch."""
    parts = [f"Spark started in {warm.get('session_seconds', '?')} s"]
    if "batch_seconds" in warm:
        # Cut short for a task that arrived (or a stop): the step it was in, or the one it did not start.
        if warm.get("interrupted_during"):
            until = f" (cut short during {warm['interrupted_during']})"
        elif warm.get("interrupted_before"):
            until = f" (cut short before {warm['interrupted_before']})"
        else:
            until = ""
        parts.append(f"warm-up batch {warm['batch_seconds']} s{until}")
    elif warm.get("work_waiting"):
        parts.append("work was waiting: no warm-up batch")
    return ", ".join(parts)
