"""Waiting for a message that another thread sends (an execution's task, a retry)."""

from __future__ import annotations

import time
from typing import Any


def next_message(sqs: Any, queue_url: str, timeout: float = 60) -> dict[str, Any]:
    """The next message of ``queue_url``, waiting up to ``timeout`` seconds (long polls of <= 10 s).

    An execution's thread sends its task on its own time: on a loaded machine (CI runs three test
    processes on two cores) that took over 10 s, so one long poll is not enough.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wait = max(1, min(10, round(deadline - time.monotonic())))
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=wait)
        if messages.get("Messages"):
            return messages["Messages"][0]
    raise AssertionError(f"no message arrived in {queue_url} within {timeout} s")
