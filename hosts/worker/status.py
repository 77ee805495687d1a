"""The warm worker's readiness, as a small JSON file that a health check and the local stack read.

ECS decides that a container is healthy by running a command in it (the task definition's
``HealthCheck``); the local stack decides when a started worker can take uploads and whether it still
has idle-time work. Both read this file, which the worker rewrites atomically at each change of state,
instead of matching its log lines (whose wording is free to change). ``python -m hosts.worker.status``
is the health check command: exit 0 once the worker is ready.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

# Unset: the worker keeps no status file (a worker in a test, a script). The stack's worker task
# definition sets it under /tmp, one of its volumes (the root file system is read-only).
STATUS_FILE_VARIABLE = "WORKER_STATUS_FILE"

STARTING = "starting"  # the JVM and the warm-up batch are being paid for
READY = "ready"  # serving the work queue
STOPPED = "stopped"  # serve() returned: recycled, idle exit or told to stop


@dataclass(frozen=True)
class WorkerStatus:
    state: str
    pid: int
    # A lake's table states wait to be built while the queue is idle (hosts/worker/loop.py _prepare_pending).
    preparing: bool = False
    # What the start cost: session_seconds, batch_seconds, the warm-up's steps (the "warm" log record).
    warm: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state == READY

    def with_changes(self, **changes: Any) -> WorkerStatus:
        return replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "warm": dict(self.warm)}, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> WorkerStatus | None:
        """``None`` for anything but a status (an empty or foreign file is "not ready", not an error)."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("state"), str):
            return None
        warm = data.get("warm")
        return cls(
            state=data["state"],
            pid=int(data.get("pid") or 0),
            preparing=bool(data.get("preparing")),
            warm=warm if isinstance(warm, dict) else {},
        )


def status_path(env: Mapping[str, str]) -> Path | None:
    value = env.get(STATUS_FILE_VARIABLE, "").strip()
    return Path(value) if value else None


class StatusFile:
    """Writes replace the file in one rename, so a reader never sees half a status."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, status: WorkerStatus) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".status-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(status.to_json())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def read(self) -> WorkerStatus | None:
        try:
            return WorkerStatus.from_json(self.path.read_text(encoding="utf-8"))
        except OSError:
            return None

    def clear(self) -> None:
        """Before a new worker starts on the same path: an old "ready" must not speak for it."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    """The health check: exit 0 when the worker is ready, 1 otherwise; prints the status."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0]) if args else status_path(os.environ)
    if path is None:
        print(f"{STATUS_FILE_VARIABLE} is not set: the worker keeps no status to check")
        return 1
    status = StatusFile(path).read()
    print(status.to_json() if status else f"no worker status at {path}")
    return 0 if status is not None and status.ready else 1


if __name__ == "__main__":
    raise SystemExit(main())
