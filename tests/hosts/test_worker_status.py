"""The worker's readiness signal (hosts/worker/status.py): the file a health check and the local
supervisor read instead of the worker's log lines."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ecomkpi.worker_supervisor import StatusWatch, WorkerSupervisor
from hosts.worker.status import READY, STARTING, STATUS_FILE_VARIABLE, StatusFile, WorkerStatus, main


def test_a_status_survives_its_file_and_anything_else_reads_as_none(tmp_path: Path) -> None:
    status_file = StatusFile(tmp_path / "deep" / "status.json")
    assert status_file.read() is None  # no file yet: not ready, not an error
    status = WorkerStatus(READY, 42, preparing=True, warm={"session_seconds": 9.5})
    status_file.write(status)
    assert status_file.read() == status
    assert [p.name for p in status_file.path.parent.iterdir()] == ["status.json"]  # no temp file left
    for text in ("", "{", "[]", json.dumps({"pid": 1}), json.dumps({"state": 3})):
        status_file.path.write_text(text)
        assert status_file.read() is None, text
    status_file.clear()
    status_file.clear()  # twice: nothing to remove is fine
    assert not status_file.path.exists()


def test_the_health_check_passes_only_for_a_ready_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "status.json"
    monkeypatch.delenv(STATUS_FILE_VARIABLE, raising=False)
    assert main([]) == 1
    assert f"{STATUS_FILE_VARIABLE} is not set" in capsys.readouterr().out
    monkeypatch.setenv(STATUS_FILE_VARIABLE, str(path))
    assert main([]) == 1  # the worker has not written it yet
    StatusFile(path).write(WorkerStatus(STARTING, 7))
    assert main([]) == 1
    StatusFile(path).write(WorkerStatus(READY, 7))
    assert main([]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["state"] == "ready"
    assert main([str(tmp_path / "other.json")]) == 1  # an explicit path wins


def test_the_watch_follows_the_status_and_announces_ready_once(tmp_path: Path) -> None:
    status_file = StatusFile(tmp_path / "status.json")
    ready, preparing, announced = threading.Event(), threading.Event(), []
    alive = threading.Event()
    alive.set()
    watch = StatusWatch(status_file.read, ready, preparing, announced.append, alive=alive.is_set, every=0.02)
    watch.start()
    try:
        status_file.write(WorkerStatus(STARTING, 1))
        time.sleep(0.1)
        assert not ready.is_set()
        status_file.write(WorkerStatus(READY, 1, preparing=True, warm={"session_seconds": 3}))
        assert ready.wait(2)
        _until(preparing.is_set)
        status_file.write(WorkerStatus(READY, 1, preparing=False))
        _until(lambda: not preparing.is_set())
    finally:
        alive.clear()
        watch.join(2)
    assert [s.warm for s in announced] == [{"session_seconds": 3}]


def test_the_supervisor_does_not_take_the_last_workers_ready_for_the_new_ones(tmp_path: Path) -> None:
    """A replacement worker starts on the same path: the dead one's "ready" must not speak for it."""
    path = tmp_path / "status.json"
    StatusFile(path).write(WorkerStatus(READY, 1))  # what a killed worker left behind
    worker = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from hosts.worker.status import READY, STARTING, StatusFile, WorkerStatus
        status = StatusFile(Path({str(path)!r}))
        status.write(WorkerStatus(STARTING, 2))
        time.sleep(1.0)
        status.write(WorkerStatus(READY, 2, warm={{"session_seconds": 1.0}}))
        time.sleep(60)
        """
    )
    events: list[str] = []
    root = Path(__file__).resolve().parents[2]
    supervisor = WorkerSupervisor(
        [sys.executable, "-c", worker],
        {STATUS_FILE_VARIABLE: str(path), "PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        cwd=str(root),
        on_event=events.append,
    )
    supervisor.start()
    try:
        assert supervisor.wait_started(30)
        started = time.monotonic()
        assert supervisor.ready.wait(30)
        assert time.monotonic() - started > 0.5, "ready before the new worker said so"
        assert "worker: ready (Spark started in 1.0 s)" in events
    finally:
        supervisor.stop(grace=2)


def _until(condition: object, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the watch did not follow the status"
        time.sleep(0.01)
