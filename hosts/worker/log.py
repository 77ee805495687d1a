"""The worker's log records: one JSON object per line on stdout (CloudWatch Logs, the local stack)."""

from __future__ import annotations

import json
import time
import traceback
from typing import Any

JOB = "worker"


def log(step: str, level: str = "INFO", **fields: Any) -> None:
    record = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": level, "job": JOB}
    print(json.dumps({**record, "step": step, **fields}, default=str), flush=True)


def log_traceback(command: str) -> None:
    """The traceback of a broken run as one JSON record, not raw lines: its messages name keys, which
    producers choose, and a key holding ``\\n[ERROR] ...`` would otherwise forge a log line."""
    log("task.traceback", level="ERROR", command=command, traceback=traceback.format_exc())


def error_summary(exc: BaseException, lines: int = 2) -> str:
    """The exception's type and its first message lines, without a JVM stack trace.

    A Py4JJavaError's first line only names the py4j call ("An error occurred while calling
    o123.collectToPython."); the Java exception that says what went wrong is the next one.
    """
    text = [
        line.strip() for line in str(exc).splitlines() if line.strip() and not line.lstrip().startswith("at ")
    ]
    return f"{type(exc).__name__}: {' '.join(text[:lines])[:500]}"
