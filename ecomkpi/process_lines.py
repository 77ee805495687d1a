"""Starting a local "container" process and reading its output line by line, for both the per-task
runner (``sfn_local.tasks.RunTaskHandler``) and the worker's supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO


def start_process(argv: Sequence[str], env: Mapping[str, str], cwd: str | None) -> subprocess.Popen[str]:
    """Text pipes, no stdin, and a process group of its own (a stop or a timeout kills its JVM too)."""
    return subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )


def read_lines(proc: subprocess.Popen[str], on_line: Callable[[str, str], None]) -> list[threading.Thread]:
    """Call ``on_line(stream, line)`` for every line of stdout and stderr, from two started threads."""

    def pump(stream: IO[str], name: str) -> None:
        for raw in stream:
            on_line(name, raw.rstrip("\n"))

    readers = [
        threading.Thread(target=pump, args=(proc.stdout, "stdout"), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, "stderr"), daemon=True),
    ]
    for reader in readers:
        reader.start()
    return readers


def stop_group(proc: subprocess.Popen[str], grace_seconds: float) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace_seconds``: ECS's stop (``stopTimeout``)."""
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
