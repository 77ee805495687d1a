"""What readers of ``/status`` and the page learn of a failure: a short cause, never the raw one.

The workflow keeps the full cause with the batch (``failure_cause`` in the tracker) and sends it in
the alert: for a broken ECS task that is the stopped task's description, with task and cluster
ARNs (the account id), private host names and IP addresses. Anyone who may read KPIs may read
``/status``; they get the cause's first sentence with those scrubbed, cut to ``MAX_CHARS``, and a
reference (the execution name) under which operators find the whole of it (alert, tracker item,
Step Functions history).
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_CHARS = 200

_SCRUBS = (
    (re.compile(r"arn:aws[a-zA-Z-]*:[^\s\"',;]*"), "<arn>"),
    (
        re.compile(r"\b[\w-]+(?:\.[\w-]+)*\.(?:amazonaws\.com|compute\.internal|internal|local)\b", re.I),
        "<host>",
    ),
    (re.compile(r"\bhttps?://[^\s\"',;]+", re.I), "<url>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"), "<ip>"),
    (re.compile(r"\b\d{12}\b"), "<account>"),
)


def short_cause(cause: Any) -> str | None:
    """A cause a reader may see: one line, no ARNs, hosts, URLs, IPs or account ids."""
    if not cause:
        return None
    text = _from_task(str(cause).strip())
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    for pattern, placeholder in _SCRUBS:
        line = pattern.sub(placeholder, line)
    return line if len(line) <= MAX_CHARS else line[: MAX_CHARS - 3].rstrip() + "..."


def _from_task(text: str) -> str:
    """A stopped task's description (JSON) said as its stop reason and its containers' exit codes."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if not isinstance(data, dict):
        return text
    containers = [c for c in data.get("Containers") or [] if isinstance(c, dict)]
    exits = ", ".join(f"{c.get('Name', 'container')} exited {c.get('ExitCode', '?')}" for c in containers)
    reason = str(data.get("StoppedReason") or data.get("errorMessage") or data.get("Error") or "")
    return "; ".join(p for p in (reason, exits) if p) or "the task failed (see the alert for its description)"
