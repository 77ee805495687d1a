"""One-line log records on stdout.

Lambda ships stdout to CloudWatch Logs line by line, and the operators' runbook greps for the
``[INFO]`` / ``[WARN]`` / ``[ERROR]`` prefixes shown in docs/design.md, so a plain ``print`` with a
level prefix is the contract (the logging module would prepend its own format in the Lambda runtime).
"""

from __future__ import annotations


def log(level: str, message: str) -> None:
    """Print ``[LEVEL] message`` and flush, so lines from concurrent invocations are not lost."""
    print(f"[{level}] {message}", flush=True)


def info(message: str) -> None:
    log("INFO", message)


def warn(message: str) -> None:
    log("WARN", message)


def error(message: str) -> None:
    log("ERROR", message)
