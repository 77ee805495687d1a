"""Trigger: events/s the Lambda handler sustains against the emulated DynamoDB, and how many
executions 500 duplicate events from 16 threads start (must be 1), with and without a lock that
restores per-item atomicity in moto (whose conditional writes are not atomic across threads)."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import Stat, client, suffix, timed
from lambda_trigger.s3_events import s3_event

DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
ROLE_ARN = "arn:aws:iam::123456789012:role/ecomkpi-sfn"
PRODUCTS = "raw/products/products.csv"
_LOCK = threading.RLock()


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(self, *args, **kwargs)

    return wrapper


@contextlib.contextmanager
def atomic_emulator(enabled: bool) -> Iterator[None]:
    """The lock of tests/lambda_trigger/test_lambda_trigger.py: serialise moto's item writes and StartExecution."""
    if not enabled:
        yield
        return
    from moto.dynamodb.responses import DynamoHandler
    from moto.stepfunctions.responses import StepFunctionResponse

    patched: list[tuple[type, str]] = [
        *((DynamoHandler, n) for n in ("get_item", "put_item", "update_item", "delete_item")),
        (StepFunctionResponse, "start_execution"),
    ]
    saved = {(cls, name): getattr(cls, name) for cls, name in patched}
    try:
        for (cls, name), method in saved.items():
            setattr(cls, name, _serialized(method))
        yield
    finally:
        for (cls, name), method in saved.items():
            setattr(cls, name, method)


class _Env:
    """A tracker table, a bucket and a Pass state machine; env vars pointed at them."""

    def __init__(self, endpoint: str) -> None:
        from lambda_trigger.tracker import create_tracker_table

        sfx = suffix()
        self.bucket, self.table = f"bench-trg-{sfx}", f"BatchFileTracker-{sfx}"
        self.s3, self.ddb, self.sfn = (
            client("s3", endpoint),
            client("dynamodb", endpoint),
            client("stepfunctions", endpoint),
        )
        self.s3.create_bucket(Bucket=self.bucket)
        create_tracker_table(self.ddb, self.table)
        self.arn = self.sfn.create_state_machine(
            name=f"ecomkpi-{sfx}", definition=DEFINITION, roleArn=ROLE_ARN
        )["stateMachineArn"]
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": endpoint,
                "PIPELINE_BATCH_TRACKER_TABLE": self.table,
                "STEP_FUNCTION_ARN": self.arn,
            }
        )
        os.environ.pop("PRODUCTS_KEY", None)

    def executions(self) -> int:
        pages = self.sfn.get_paginator("list_executions").paginate(stateMachineArn=self.arn)
        return sum(len(p["executions"]) for p in pages)


def _quiet(fn: Callable[[], Any]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn()


def _throughput(endpoint: str, events: int) -> tuple[float, int]:
    """Seconds for ``events`` distinct-key events delivered one after another; executions started."""
    from lambda_trigger.handler import lambda_handler

    env = _Env(endpoint)
    days = max(1, events // 20)
    keys = [PRODUCTS] + [
        f"raw/{'orders' if i % 2 else 'order_items'}/2025-{1 + (i % days) // 28:02d}-{1 + (i % days) % 28:02d}/part{i}.csv"
        for i in range(events - 1)
    ]
    batch = [s3_event(env.bucket, k) for k in keys]

    def deliver() -> None:
        for e in batch:
            lambda_handler(e, None)

    _, seconds = timed(lambda: _quiet(deliver))
    return seconds, env.executions()


def _duplicates(endpoint: str, copies: int, threads: int, atomic: bool) -> int:
    from lambda_trigger.handler import lambda_handler

    env = _Env(endpoint)
    day = "2025-07-10"
    for key in (PRODUCTS, f"raw/orders/{day}/o1.csv"):
        _quiet(functools.partial(lambda_handler, s3_event(env.bucket, key), None))
    last = s3_event(env.bucket, f"raw/order_items/{day}/i1.csv")  # completes the batch
    with atomic_emulator(atomic), ThreadPoolExecutor(max_workers=threads) as pool:

        def fire() -> None:
            for f in [pool.submit(lambda_handler, last, None) for _ in range(copies)]:
                f.result()

        _quiet(fire)
    return env.executions()


def run(
    endpoint: str, repeat: int, events: int = 1000, copies: int = 500, threads: int = 16
) -> dict[str, Any]:
    rates, seconds = Stat(), Stat()
    for _ in range(repeat):
        s, started = _throughput(endpoint, events)
        seconds.add(s)
        rates.add(events / s)
        print(
            f"[trigger] {events} distinct events in {s:.2f}s ({events / s:.0f}/s), {started} executions started"
        )
    dup: dict[str, list[int]] = {"without_lock": [], "with_lock": []}
    for _ in range(repeat):
        for atomic, name in ((False, "without_lock"), (True, "with_lock")):
            n = _duplicates(endpoint, copies, threads, atomic)
            dup[name].append(n)
            print(f"[trigger] {copies} duplicates / {threads} threads, {name}: {n} execution(s)")
    return {
        "events": events,
        "events_per_s": rates.as_dict(),
        "seconds": seconds.as_dict(),
        "duplicates": copies,
        "threads": threads,
        "executions_started": dup,
        "exactly_once_with_lock": all(n == 1 for n in dup["with_lock"]),
        "exactly_once_without_lock": all(n == 1 for n in dup["without_lock"]),
        "note": "moto evaluates a ConditionExpression and applies the write in separate steps; "
        "'with_lock' serialises moto's item writes as DynamoDB itself does (tests' atomic_emulator).",
    }
