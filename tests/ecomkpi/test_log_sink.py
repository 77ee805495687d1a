"""Shipping lines to the emulated CloudWatch Logs: no line is lost to one bad line or one failed call."""

from __future__ import annotations

from typing import Any

import boto3

from ecomkpi.log_sink import MAX_BATCH_BYTES, CloudWatchSink, batches, log_message


def shipped(logs: Any, group: str, stream: str) -> list[str]:
    events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    return [e["message"] for e in events]


def test_empty_and_huge_lines_do_not_drop_their_batch(moto_endpoint: str, names: Any) -> None:
    logs = boto3.client("logs", endpoint_url=moto_endpoint)
    sink = CloudWatchSink(logs)
    group = f"/ecs/test-{names.suffix}"
    lines = ["first", "", "third", "x" * 300_000]
    for line in lines:
        sink.add(group, "s", line)
    sink.flush()
    got = shipped(logs, group, "s")
    assert got[:3] == ["first", " ", "third"]
    assert got[3].endswith("...") and len(got[3].encode()) <= 262_144 - 26


class FlakyLogs:
    """The real client, refusing the first ``failures`` PutLogEvents calls (a throttled API)."""

    def __init__(self, client: Any, failures: int) -> None:
        self.client, self.failures = client, failures
        self.exceptions = client.exceptions

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def put_log_events(self, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("ThrottlingException")
        return self.client.put_log_events(**kwargs)


def test_a_refused_put_is_retried_and_then_kept_for_the_next_flush(moto_endpoint: str, names: Any) -> None:
    logs = boto3.client("logs", endpoint_url=moto_endpoint)
    group = f"/ecs/flaky-{names.suffix}"
    sink = CloudWatchSink(FlakyLogs(logs, failures=4), retry_delay=0)
    sink.add(group, "s", "a")
    sink.add(group, "s", "b")
    sink.flush()  # three attempts refused: the lines are held, not lost
    sink.add(group, "s", "c")
    sink.flush()  # the fourth refused, the fifth goes through, in order
    assert shipped(logs, group, "s") == ["a", "b", "c"]
    assert sink.dropped == 0


def test_batches_respect_the_put_log_events_limits() -> None:
    events = [{"timestamp": 0, "message": log_message("y" * 200_000)} for _ in range(12)]
    split = batches(events)
    assert sum(len(b) for b in split) == 12
    assert all(sum(len(e["message"]) + 26 for e in b) <= MAX_BATCH_BYTES for b in split)
    assert len(batches([{"timestamp": 0, "message": "z"}] * 10_001)) == 2
