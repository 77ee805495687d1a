"""Structured run logs: one JSON line per step to stdout, and the whole log kept in S3.

stdout is what CloudWatch (via the ECS awslogs driver) and the local executor capture; the copy in
``s3://<bucket>/logs/<job>/<batch>/<run>.log`` survives the task and is what reports link to.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO


class RunLog:
    def __init__(self, job: str, batch_id: str, run_id: str, stream: TextIO | None = None) -> None:
        self.job, self.batch_id, self.run_id = job, batch_id, run_id
        self.lines: list[str] = []
        self.stream = stream or sys.stdout
        self.timings: dict[str, float] = {}

    def event(self, step: str, level: str = "INFO", **fields: Any) -> None:
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": level,
            "job": self.job,
            "batch_id": self.batch_id,
            "run_id": self.run_id,
            "step": step,
            **fields,
        }
        line = json.dumps(record, default=str, sort_keys=False)
        self.lines.append(line)
        print(line, file=self.stream, flush=True)

    @contextmanager
    def stage(self, name: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Time a stage; fields added to the yielded dict are logged with its end."""
        extra: dict[str, Any] = {}
        start = time.perf_counter()
        self.event(f"{name}.start", **fields)
        try:
            yield extra
        except BaseException as exc:
            self.event(f"{name}.error", level="ERROR", error=f"{type(exc).__name__}: {exc}")
            raise
        seconds = round(time.perf_counter() - start, 3)
        self.timings[name] = seconds
        self.event(f"{name}.end", seconds=seconds, **extra)

    def s3_key(self) -> str:
        return f"logs/{self.job}/{self.batch_id}/{self.run_id}.log"

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
