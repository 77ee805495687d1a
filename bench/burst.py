"""Many small days landing at once on the local stack: total time and how many JVMs ran together.

``days`` days (manifest first, then their parts) are uploaded back to back with plain PutObject
calls to a running stack; the figure is the time from the first upload until every day's KPIs are
readable in DynamoDB and the pipeline is idle. A sampler thread counts the stack's live ``java``
processes (its descendants) every 0.2 s: the warm worker keeps it at one, the per-batch mode starts
one per task.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.common import BenchError, Stat, fresh_stack_settings
from ecomkpi.generator import GeneratorSettings, generate, iter_data_files

START = date(2025, 10, 1)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc: children of each task)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found.append(child)
                todo.append(child)
    return found


def java_processes(pid: int) -> int:
    count = 0
    for child in descendants(pid):
        try:
            if Path(f"/proc/{child}/comm").read_text().strip() == "java":
                count += 1
        except OSError:
            continue
    return count


class JvmSampler(threading.Thread):
    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak = interval, 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self.peak = max(self.peak, java_processes(os.getpid()))

    def stop(self) -> int:
        self._done.set()
        self.join(5)
        return self.peak


def run(
    days: int, orders_per_day: int, repeat: int, task_mode: str = "worker", timeout: float = 1800
) -> dict[str, Any]:
    from ecomkpi.local_stack import LocalStack

    total, peaks, runs = Stat(), [], []
    for attempt in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
            folder = Path(tmp) / "data"
            generate(folder, GeneratorSettings(days=days, orders_per_day=orders_per_day, parts=2, seed=7 + attempt,
                                               start=START, manifests=True))  # fmt: skip
            files = sorted(
                iter_data_files(folder),
                key=lambda f: (not f[0].startswith(("products/", "manifests/")), f[0]),
            )
            settings = fresh_stack_settings(Path(tmp) / "stack", task_mode=task_mode)
            with LocalStack(settings) as stack:
                if not stack.wait_worker_ready():
                    raise BenchError("the worker did not get ready")
                s3, ddb = stack.client("s3"), stack.client("dynamodb")
                sampler = JvmSampler()
                sampler.start()
                started = time.monotonic()
                for rel, path in files:
                    s3.put_object(Bucket=settings.bucket, Key=f"raw/{rel}", Body=path.read_bytes())
                batches = [(START + timedelta(days=i)).isoformat() for i in range(days)]
                deadline = started + timeout
                for batch in batches:
                    while "Item" not in ddb.get_item(
                        TableName=settings.daily_table, Key={"date_key": {"S": batch}}
                    ):
                        if time.monotonic() > deadline:
                            raise BenchError(f"KPIs of {batch} not readable after {timeout}s")
                        time.sleep(0.1)
                if not stack.wait_idle(timeout=timeout, settle=1.0):
                    raise BenchError("the pipeline did not go idle")
                seconds = time.monotonic() - started
                peak = sampler.stop()
                assert stack.executor is not None  # set while the stack runs
                statuses = [e["status"] for e in stack.executor.list_executions()]
                if set(statuses) != {"SUCCEEDED"}:
                    raise BenchError(f"executions did not all succeed: {statuses}")
            total.add(seconds)
            peaks.append(peak)
            runs.append({"seconds": seconds, "peak_jvms": peak, "executions": len(statuses)})
            print(
                f"[burst {task_mode}] {days} days x {orders_per_day} orders: {seconds:.1f}s, peak {peak} JVM(s)"
            )
    return {
        "task_mode": task_mode,
        "days": days,
        "orders_per_day": orders_per_day,
        "total_s": total.as_dict(),
        "peak_jvms": max(peaks),
        "runs": runs,
        "note": "first upload to every day's KPIs readable and the stack idle; JVMs = live java "
        "processes under the bench process (the worker, or one per task in ecs mode)",
    }
