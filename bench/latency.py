"""End-to-end latency on the local stack: last PutObject of a batch → its KPIs readable in DynamoDB.

Stages come from the local Step Functions executor's history (TaskStateEntered / TaskStateExited of
ValidateData and TransformData), the execution's start date (the trigger's StartExecution) and the
transformation's own summary.json (``serve`` stage seconds). Each task runs as the workflow runs it: in worker mode on the stack's
warm worker (ready before the first upload, as in a running ``ecomkpi up``), in ecs mode as
docker/entrypoint.sh in a subprocess (a fresh JVM per task, included in the task's time).

Upload pattern (``upload``): ``burst`` puts a day's files back to back, so in worker mode the
prechecks of the earlier parts are still running when the last part lands (the worst case);
``spaced`` waits until the stack is idle before the last part, as when a producer's parts arrive
minutes apart, so the earlier parts were prechecked and the figure pays the last part's validation;
idle includes the worker's idle-time work (the lake preparation after each transformation, a few
seconds), which such a producer's pauses always leave time for.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import BenchError, Stat, files_of, fresh_stack_settings
from ecomkpi.generator import GeneratorSettings, generate

START = date(2025, 9, 1)


def _history_times(stack: Any, batch: str) -> tuple[dict[str, float], str]:
    """The times of the batch's last execution (start, stop, each task entered/exited) and its status."""
    execs = [e for e in stack.executor.list_executions() if e["name"].startswith(batch)]
    if not execs:
        raise BenchError(f"no execution for batch {batch}")
    ex = sorted(execs, key=lambda e: e["startDate"])[-1]
    times: dict[str, float] = {"started": ex["startDate"].timestamp()}
    if ex.get("stopDate"):
        times["stopped"] = ex["stopDate"].timestamp()
    for e in stack.executor.get_execution_history(ex["executionArn"]):
        name = e.details.get("name") or e.state
        if e.type in ("TaskStateEntered", "TaskStateExited") and name in ("ValidateData", "TransformData"):
            times.setdefault(f"{name}.{e.type.removeprefix('TaskState').lower()}", e.timestamp.timestamp())
    return times, str(ex["status"])


def _serve_seconds(s3: Any, bucket: str, batch: str) -> float | None:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"logs/transformation/{batch}/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith("summary.json"))
    if not keys:
        return None
    summary = json.loads(s3.get_object(Bucket=bucket, Key=keys[-1])["Body"].read())
    seconds = summary.get("stage_seconds", {}).get("serve")
    return float(seconds) if seconds is not None else None


def task_stages(s3: Any, bucket: str, job: str, batch: str, entered: float | None) -> dict[str, float]:
    """Seconds per stage of the job's latest run log (``logs/<job>/<batch>/<run>.log``).

    Repeated stages (validation's one ``file`` per file) are summed. ``process_start`` is from the
    state entering to the job's first log line: the process, the interpreter and the imports.
    """
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"logs/{job}/{batch}/")
    logs = [o for o in listed.get("Contents", []) if o["Key"].endswith(".log")]
    if not logs:
        return {}
    latest = max(logs, key=lambda o: o["LastModified"])["Key"]
    stages: dict[str, float] = {}
    first: float | None = None
    for line in s3.get_object(Bucket=bucket, Key=latest)["Body"].read().decode().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if first is None and record.get("ts"):
            first = datetime.fromisoformat(record["ts"]).timestamp()
        step = str(record.get("step", ""))
        if step.endswith(".end") and isinstance(record.get("seconds"), int | float):
            name = step.removesuffix(".end")
            stages[name] = stages.get(name, 0.0) + float(record["seconds"])
    if first is not None and entered is not None:
        stages = {"process_start": first - entered, **stages}
    return stages


def run(
    items: int,
    repeat: int,
    timeout: float = 900.0,
    task_mode: str = "worker",
    upload: str = "burst",
    warm_days: int = 0,
    parts: int = 1,
) -> dict[str, Any]:
    """Measure ``repeat`` days, after ``warm_days`` days served the same way and not measured.

    Warm-up days stand for the days a running ``ecomkpi up`` has already served: a fresh worker's
    first days pay its JVM's just-in-time compilation (bench/results/LOG.md, 2026-12-02), which a stack
    that has been up for a while has behind it. Both figures are worth reporting.

    ``parts``: files per dataset and day (a day of ``parts`` orders and ``parts`` items files). Each
    measured day is also computed by DuckDB from the same files (``duckdb_s``), in the same run.
    """
    from ecomkpi.local_stack import LocalStack

    stats = {k: Stat() for k in ("total", "event_to_trigger", "trigger_to_validation", "validation",
                                 "validation_to_transformation", "transformation_before_serving",
                                 "serving", "after_task_exit")}  # fmt: skip
    task_stats: dict[str, Stat] = {}
    duck = Stat()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-lat-") as tmp:
        folder = Path(tmp) / "data"
        summary = generate(
            folder,
            GeneratorSettings(
                days=warm_days + repeat,
                orders_per_day=max(10, round(items / 1.65)),
                parts=parts,
                seed=5,
                start=START,
                # Manifest first, as a producer of parts does (lambda_trigger/README.md): the day
                # starts once, with all its parts. Without one, the day starts with its first orders
                # and items parts and the rest wait for a second generation, so the first KPIs would
                # be a partial day's.
                manifests=True,
            ),
        )
        files = files_of(folder)
        settings = fresh_stack_settings(Path(tmp) / "stack", task_mode=task_mode)
        with LocalStack(settings) as stack:
            if not stack.wait_worker_ready():  # the figure is for a running stack, not its start
                raise BenchError("the worker did not get ready")
            s3, ddb = stack.client("s3"), stack.client("dynamodb")
            products = [(r, p) for r, p in files if r.startswith("products/")]
            for rel, path in products:
                s3.put_object(Bucket=settings.bucket, Key=f"raw/{rel}", Body=path.read_bytes())
            for i in range(warm_days + repeat):
                batch = (START + timedelta(days=i)).isoformat()
                measured = i >= warm_days
                day = [(r, p) for r, p in files if f"/{batch}/" in r]
                day.sort(key=lambda f: (not f[0].startswith("orders/"), f[0]))  # items last
                manifest = folder / "manifests" / f"{batch}.json"
                s3.put_object(
                    Bucket=settings.bucket, Key=f"raw/manifests/{batch}.json", Body=manifest.read_bytes()
                )
                for rel, path in day[:-1]:
                    s3.put_object(Bucket=settings.bucket, Key=f"raw/{rel}", Body=path.read_bytes())
                if upload == "spaced":
                    stack.wait_idle(timeout=timeout, settle=1.0, worker_too=True)
                body = day[-1][1].read_bytes()
                t_put = time.time()  # just before the PutObject of the last file
                s3.put_object(Bucket=settings.bucket, Key=f"raw/{day[-1][0]}", Body=body)
                deadline = time.monotonic() + timeout
                while "Item" not in ddb.get_item(
                    TableName=settings.daily_table, Key={"date_key": {"S": batch}}
                ):
                    if time.monotonic() > deadline:
                        raise BenchError(f"KPIs of {batch} not readable after {timeout}s")
                    time.sleep(0.05)
                t_kpi = time.time()
                stack.wait_idle(timeout=timeout, settle=1.0)
                h, status = _history_times(stack, batch)
                # One generation: the KPIs measured are the whole day's, not a partial day's.
                executions = stack.executor.list_executions() if stack.executor else []
                generations = len([e for e in executions if e["name"].startswith(batch)])
                serve = _serve_seconds(s3, settings.bucket, batch) or 0.0
                v_in, v_out = h.get("ValidateData.entered"), h.get("ValidateData.exited")
                t_in, t_out = h.get("TransformData.entered"), h.get("TransformData.exited")
                if v_in is None or v_out is None or t_in is None:
                    raise BenchError(f"incomplete history for {batch}: {h}")
                split = {
                    "total": t_kpi - t_put,
                    "event_to_trigger": h["started"] - t_put,
                    "trigger_to_validation": v_in - h["started"],
                    "validation": v_out - v_in,
                    "validation_to_transformation": t_in - v_out,
                    "transformation_before_serving": (t_kpi - t_in) - serve,
                    "serving": serve,
                    "after_task_exit": (t_out - t_kpi) if t_out else 0.0,
                }
                tasks = {
                    job: task_stages(s3, settings.bucket, job, batch, entered)
                    for job, entered in (("validation", v_in), ("transformation", t_in))
                }
                duck_s = _duckdb_seconds(products + day, Path(tmp) / f"duck-{batch}")
                if measured:
                    duck.add(duck_s)
                    for k, v in split.items():
                        stats[k].add(v)
                    for job, stages in tasks.items():
                        for name, seconds in stages.items():
                            task_stats.setdefault(f"{job}.{name}", Stat()).add(seconds)
                runs.append(
                    {
                        "batch": batch,
                        "status": status,
                        "warm_up": not measured,
                        "files": len(day),
                        "generations": generations,
                        "duckdb_s": duck_s,
                        **split,
                        "task_stages_s": tasks,
                    }
                )
                print(
                    f"[latency {task_mode} {upload}{'' if measured else ' warm-up'}] {batch} "
                    f"({len(day)} files, {generations} generation{'s' if generations > 1 else ''}): "
                    + ", ".join(f"{k} {v:.1f}s" for k, v in split.items())
                    + f"; duckdb {duck_s:.2f}s"
                )
                for job, stages in tasks.items():
                    print(f"[latency]   {job}: " + ", ".join(f"{k} {v:.1f}s" for k, v in stages.items()))
    return {
        "task_mode": task_mode,
        "upload": upload,
        "warm_days": warm_days,
        "parts": parts,
        "duckdb_s": duck.as_dict(),
        "order_items_per_batch": summary.order_items // max(1, warm_days + repeat),
        "stages_s": {k: s.as_dict() for k, s in stats.items()},
        "task_stages_s": {k: s.as_dict() for k, s in task_stats.items()},
        "runs": runs,
        "note": "serving = DynamoDB writes measured by the job (summary.json 'serve'); "
        "transformation_before_serving includes the task's JVM start in ecs mode; KPIs are readable as soon as "
        "the daily item is written, 'after_task_exit' is the rest of the task (archive, log upload); "
        "stages_s covers the measured days only (runs with warm_up true were served before them).",
    }


def _duckdb_seconds(files: list[tuple[str, Path]], folder: Path) -> float:
    """DuckDB's validation and KPIs over the same files (products and the day's parts), in seconds."""
    import shutil

    from bench.duckdb_baseline import compute

    for rel, path in files:
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    started = time.perf_counter()
    compute(folder)
    seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    return seconds
