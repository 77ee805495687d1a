"""Ships local log lines to the emulated CloudWatch Logs, grouped as AWS would group them.

In AWS the Lambda runtime and the ECS awslogs driver do this; locally the same groups and streams
exist in the emulator, so ``aws logs tail`` against the local endpoint shows what it would in AWS.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any


class CloudWatchSink:
    def __init__(self, logs_client: Any, batch_size: int = 200) -> None:
        self.client = logs_client
        self.batch_size = batch_size
        self._pending: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._known_groups: set[str] = set()
        self._known_streams: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def add(self, group: str, stream: str, line: str) -> None:
        with self._lock:
            events = self._pending.setdefault((group, stream), [])
            events.append({"timestamp": int(time.time() * 1000), "message": line})
            full = len(events) >= self.batch_size
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for (group, stream), events in pending.items():
            try:
                self._ensure(group, stream)
                self.client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
            except Exception as exc:  # logs are a copy; never fail the pipeline over them
                print(f"[WARN] could not ship {len(events)} log lines to {group}: {exc}")

    def _ensure(self, group: str, stream: str) -> None:
        if group not in self._known_groups:
            with contextlib.suppress(self.client.exceptions.ResourceAlreadyExistsException):
                self.client.create_log_group(logGroupName=group)
            self._known_groups.add(group)
        if (group, stream) not in self._known_streams:
            with contextlib.suppress(self.client.exceptions.ResourceAlreadyExistsException):
                self.client.create_log_stream(logGroupName=group, logStreamName=stream)
            self._known_streams.add((group, stream))
