"""One-line log records on stdout.

Lambda ships stdout to CloudWatch Logs line by line, and the operators' runbook greps for the
``[INFO]`` / ``[WARN]`` / ``[ERROR]`` prefixes shown in docs/design.md, so a plain ``print`` with a
level prefix is the contract (the logging module would prepend its own format in the Lambda runtime).

Messages carry S3 keys chosen by whoever uploads: a key holding ``\\n[ERROR] ...`` would forge a
record of its own. Every control character is therefore written escaped (``\\n``, ``\\x1b``), so
one call is always exactly one line, tracebacks included.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls and the Unicode line/paragraph separators: all split or rewrite lines.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    """``text`` with every control character written as its Python escape (one visible line)."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def log(level: str, message: str) -> None:
    """Print ``[LEVEL] message`` and flush, so lines from concurrent invocations are not lost."""
    print(f"[{level}] {escape(message)}", flush=True)


def info(message: str) -> None:
    log("INFO", message)


def warn(message: str) -> None:
    log("WARN", message)


def error(message: str) -> None:
    log("ERROR", message)
