"""Ships local log lines to the emulated CloudWatch Logs, grouped as AWS would group them.

In AWS the Lambda runtime and the ECS awslogs driver do this; locally the same groups and streams
exist in the emulator, so ``aws logs tail`` against the local endpoint shows what it would in AWS.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

# PutLogEvents limits: an event's message is 1..262,144 bytes (26 bytes of overhead counted per
# event against the batch), a batch at most 10,000 events and 1,048,576 bytes.
MAX_EVENT_BYTES = 262_144 - 26
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
ATTEMPTS = 3
MAX_HELD_EVENTS = 50_000  # per stream, kept for the next flush while CloudWatch refuses them


def log_message(line: str) -> str:
    """A line CloudWatch accepts: an empty line is kept as one space, an oversized one is cut."""
    if not line:
        return " "
    data = line.encode("utf-8")
    if len(data) <= MAX_EVENT_BYTES:
        return line
    return data[: MAX_EVENT_BYTES - 3].decode("utf-8", errors="ignore") + "..."


def batches(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split events into PutLogEvents calls within the count and size limits, in order."""
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for event in events:
        cost = len(event["message"].encode("utf-8")) + EVENT_OVERHEAD
        if current and (len(current) >= MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(event)
        size += cost
    if current:
        out.append(current)
    return out


class CloudWatchSink:
    def __init__(self, logs_client: Any, batch_size: int = 200, retry_delay: float = 0.2) -> None:
        self.client = logs_client
        self.batch_size = batch_size
        self.retry_delay = retry_delay
        self.dropped = 0
        self._pending: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._known_groups: set[str] = set()
        self._known_streams: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def add(self, group: str, stream: str, line: str) -> None:
        with self._lock:
            events = self._pending.setdefault((group, stream), [])
            events.append({"timestamp": int(time.time() * 1000), "message": log_message(line)})
            full = len(events) >= self.batch_size
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for (group, stream), events in pending.items():
            for i, batch in enumerate(batches(events)):
                if not self._put(group, stream, batch):
                    rest = [e for b in batches(events)[i:] for e in b]
                    self._hold(group, stream, rest)
                    break

    def _put(self, group: str, stream: str, events: list[dict[str, Any]]) -> bool:
        for attempt in range(ATTEMPTS):
            try:
                self._ensure(group, stream)
                self.client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
                return True
            except Exception as exc:  # logs are a copy; never fail the pipeline over them
                if attempt == ATTEMPTS - 1:
                    print(
                        f"[WARN] could not ship {len(events)} log lines to {group} (kept for the next flush): {exc}"
                    )
                else:
                    time.sleep(self.retry_delay * (attempt + 1))
        return False

    def _hold(self, group: str, stream: str, events: list[dict[str, Any]]) -> None:
        """Put refused events back in front of what arrived meanwhile, within a bound."""
        with self._lock:
            queued = events + self._pending.get((group, stream), [])
            if len(queued) > MAX_HELD_EVENTS:
                self.dropped += len(queued) - MAX_HELD_EVENTS
                print(f"[WARN] dropping {len(queued) - MAX_HELD_EVENTS} old log lines of {group}/{stream}")
                queued = queued[-MAX_HELD_EVENTS:]
            self._pending[(group, stream)] = queued

    def _ensure(self, group: str, stream: str) -> None:
        if group not in self._known_groups:
            with contextlib.suppress(self.client.exceptions.ResourceAlreadyExistsException):
                self.client.create_log_group(logGroupName=group)
            self._known_groups.add(group)
        if (group, stream) not in self._known_streams:
            with contextlib.suppress(self.client.exceptions.ResourceAlreadyExistsException):
                self.client.create_log_stream(logGroupName=group, logStreamName=stream)
            self._known_streams.add((group, stream))
