"""``ecomkpi demo``: upload data folders into the local stack and report what became of them.

The report is built from what the pipeline left behind (objects in S3, items in DynamoDB, the
executor's histories, alerts on the topic), never from what the demo expected to happen.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

from ecomkpi.generator import GeneratorSettings, generate, iter_data_files
from ecomkpi.kpi_query import format_value
from ecomkpi.local_stack import LocalStack, StackSettings
from ecomkpi.report_html import write_report_html
from ecomkpi.sfn_local.tasks import ContainerOutput
from jobs.contract import CATEGORY_KPI_COLUMNS, DAILY_KPI_COLUMNS
from jobs.keys import relative_key

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class Console:
    """Progress lines for a person; writes to the stream it was created with (not a redirected one)."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False) -> None:
        self.stream = stream or sys.__stdout__ or sys.stdout
        self.verbose = verbose
        self.start = time.monotonic()

    def line(self, text: str) -> None:
        self.stream.write(f"[{time.monotonic() - self.start:6.1f}s] {text}\n")
        self.stream.flush()

    def event(self, text: str) -> None:
        """Stack events; of the Lambda's lines only decisions and problems unless verbose."""
        lambda_noise = text.startswith("lambda: ") and not any(
            marker in text for marker in ("[WARN]", "[ERROR]", "are ready")
        )
        if self.verbose or not lambda_noise:
            self.line(text)

    def container(self, out: ContainerOutput) -> None:
        if self.verbose:
            self.line(f"{out.execution_name} {out.container_name}: {out.line}")
            return
        try:
            record = json.loads(out.line)
        except (ValueError, TypeError):
            return
        if not isinstance(record, dict):
            return
        step = str(record.get("step", ""))
        if step.endswith(".end") or record.get("level") in ("ERROR", "WARN"):
            extra = {
                k: v
                for k, v in record.items()
                if k in ("seconds", "verdict", "file", "touched_dates", "error")
            }
            self.line(
                f"{out.execution_name} {out.container_name}: {step} {json.dumps(extra, default=str) if extra else ''}"
            )


@dataclass
class DemoResult:
    exit_code: int
    out: Path
    report: dict[str, Any] = field(default_factory=dict)


def default_sample(root: Path) -> list[Path]:
    """Three days of orders, then a late orders part for the first day (a second generation).

    The first wave carries a manifest per day, so each day runs once, when all its parts are in; the
    second wave re-uploads 2025-07-10's manifest with the late pair, which makes the day's second
    generation.
    """
    first = root / "wave1"
    generate(first, GeneratorSettings(days=3, orders_per_day=300, parts=2, seed=42, manifests=True))
    late = root / "wave2"
    extra = late / "staging"
    generate(extra, GeneratorSettings(days=1, orders_per_day=40, parts=1, seed=4242))
    target = late / "orders" / "2025-07-10"
    target.mkdir(parents=True, exist_ok=True)
    items_target = late / "order_items" / "2025-07-10"
    items_target.mkdir(parents=True, exist_ok=True)
    # Renumber the late part's ids past the first wave so they are new orders, not replacements.
    _shift_ids(extra / "orders/2025-07-10/orders_part1.csv", target / "orders_part3_late.csv", ("order_id",))
    _shift_ids(
        extra / "order_items/2025-07-10/order_items_part1.csv",
        items_target / "order_items_part3_late.csv",
        ("id", "order_id", "inventory_item_id"),
    )
    for p in sorted(extra.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    extra.rmdir() if extra.exists() else None
    # The producer re-uploads the day's manifest with the late pair added (uploaded first), so the
    # second generation waits for both late files instead of starting on the first one.
    manifest = json.loads((first / "manifests" / "2025-07-10.json").read_text(encoding="utf-8"))
    manifest["expected_keys"] += [
        "raw/orders/2025-07-10/orders_part3_late.csv",
        "raw/order_items/2025-07-10/order_items_part3_late.csv",
    ]
    (late / "manifests").mkdir(parents=True, exist_ok=True)
    (late / "manifests" / "2025-07-10.json").write_text(
        json.dumps(manifest, indent=2) + "\n", encoding="utf-8"
    )
    return [first, late]


def _shift_ids(src: Path, dst: Path, columns: tuple[str, ...], offset: int = 10_000_000) -> None:
    with open(src, newline="", encoding="utf-8") as fin, open(dst, "w", newline="", encoding="utf-8") as fout:
        reader = csv.DictReader(fin)
        writer = csv.DictWriter(fout, fieldnames=reader.fieldnames or [], lineterminator="\n")
        writer.writeheader()
        for row in reader:
            for c in columns:
                row[c] = str(int(row[c]) + offset)
            writer.writerow(row)


def scan_all(ddb: Any, table: str) -> list[dict[str, Any]]:
    from kpi_api.reader import items

    return items(ddb, "scan", TableName=table)


def write_kpi_csvs(stack: LocalStack, out: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    ddb = stack.client("dynamodb")
    daily = sorted(scan_all(ddb, stack.settings.daily_table), key=lambda r: r["date_key"])
    category = sorted(
        scan_all(ddb, stack.settings.category_table), key=lambda r: (r["date_key"], r["category_id"])
    )
    (out / "kpis").mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, columns, items in (
        ("daily_kpis", DAILY_KPI_COLUMNS, daily),
        ("category_kpis", CATEGORY_KPI_COLUMNS, category),
    ):
        table = [{c: format_value(c, it.get(c)) for c in columns} for it in items]
        with open(out / "kpis" / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
            w.writeheader()
            w.writerows(table)
        rows[name] = table
    return rows["daily_kpis"], rows["category_kpis"]


def file_fates(stack: LocalStack, uploaded: list[str]) -> list[dict[str, Any]]:
    """Where each uploaded key ended, with the failed rules of rejected files."""
    s3 = stack.client("s3")
    bucket = stack.settings.bucket
    present = {
        o["Key"]
        for prefix in ("processed/", "invalid/", "validated/", "raw/")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    }
    fates = []
    for key in uploaded:
        rel = relative_key(key)
        entry: dict[str, Any] = {"key": key}
        if f"processed/{rel}" in present:
            entry["fate"] = f"processed/{rel}"
        elif f"invalid/{rel}" in present:
            entry["fate"] = f"invalid/{rel}"
            report_key = f"invalid/{rel}.report.json"
            if report_key in present:
                entry["report"] = report_key
                report = json.loads(s3.get_object(Bucket=bucket, Key=report_key)["Body"].read())
                entry["failed_rules"] = [
                    {k: f.get(k) for k in ("rule", "column", "failing_rows") if k in f}
                    for f in report.get("failures", report.get("failed_rules", []))
                ]
        elif f"validated/{rel}" in present:
            entry["fate"] = f"validated/{rel} (not yet transformed)"
        elif key.startswith("raw/manifests/"):
            entry["fate"] = key + " (manifest, read by the trigger)"
        else:
            entry["fate"] = f"{key} (not picked up)"
        fates.append(entry)
    return fates


def execution_summaries(stack: LocalStack) -> list[dict[str, Any]]:
    assert stack.executor is not None
    result = []
    for ex in sorted(stack.executor.list_executions(), key=lambda e: e["startDate"]):
        arn = ex["executionArn"]
        desc = stack.executor.describe_execution(arn)
        history = stack.executor.get_execution_history(arn)
        states = [e.details.get("name") for e in history if e.type.endswith("StateEntered")]
        retries = [
            {"state": e.state, **{k: e.details.get(k) for k in ("error", "attempt", "delaySeconds")}}
            for e in history
            if e.type == "RetryScheduled"
        ]
        data = json.loads(desc.get("input") or "{}")
        seconds = (desc["stopDate"] - desc["startDate"]).total_seconds() if desc.get("stopDate") else None
        result.append(
            {
                "name": desc["name"],
                "batch_id": data.get("batch_id"),
                "generation": data.get("generation"),
                "status": desc["status"],
                "seconds": round(seconds, 1) if seconds is not None else None,
                "stopped_at": desc.get("stopDate"),
                "states": states,
                "retries": retries,
                "error": desc.get("error"),
                "cause": (desc.get("cause") or "")[:2000] or None,
                "files": int(data.get("orders_count") or 0) + int(data.get("order_items_count") or 0),
            }
        )
    return result


def timings(
    setup_seconds: float, first_upload: datetime | None, executions: list[dict[str, Any]]
) -> dict[str, Any]:
    """Set-up (stack and warm worker) and the pipeline's part: first upload to the last execution's
    end, waits between the waves included (the figure README's Performance table quotes)."""
    ends = [e["stopped_at"] for e in executions if e.get("stopped_at")]
    pipeline = (max(ends) - first_upload).total_seconds() if ends and first_upload else None
    return {
        "setup_seconds": round(setup_seconds, 1),
        "pipeline_seconds": round(pipeline, 1) if pipeline is not None else None,
    }


def upload_folder(stack: LocalStack, folder: Path, console: Console) -> list[str]:
    s3 = stack.client("s3")
    files = list(iter_data_files(folder))
    keys = []
    for rel, path in tqdm(files, desc=f"upload {folder.name}", unit="file", file=sys.stderr, leave=False):
        key = f"raw/{rel}"
        s3.put_object(Bucket=stack.settings.bucket, Key=key, Body=path.read_bytes())
        keys.append(key)
    console.line(f"uploaded {len(keys)} files from {folder} to s3://{stack.settings.bucket}/raw/")
    return keys


WORKER_READY_TIMEOUT = 300.0  # a cold JVM on a loaded 2-core machine: ~15 s start + the warm-up batch
CATEGORY_ROWS_SHOWN = 60  # the terminal summary; the CSV and report.html have every row


def run_demo(
    data_dirs: list[Path],
    out: Path,
    settings: StackSettings | None = None,
    verbose: bool = False,
    timeout: float = 1800.0,
    worker_spark: SparkSession | None = None,
) -> DemoResult:
    """``worker_spark``: a session of this process to serve the tasks on (``LocalStack``)."""
    console = Console(verbose=verbose)
    out.mkdir(parents=True, exist_ok=True)
    if not data_dirs:
        console.line(f"no --data given: generating a sample into {out / 'sample-data'}")
        data_dirs = default_sample(out / "sample-data")
    settings = replace(settings or StackSettings(), work_dir=out / ".stack")
    if settings.lake_path is None:
        # The lake goes beside the report, where the notebooks look for it by default. The stack's
        # S3 and DynamoDB start empty each time, so a lake left by an earlier demo must go too: it
        # would count this demo's files as already applied.
        lake = (out / "lake").resolve()
        shutil.rmtree(lake, ignore_errors=True)
        settings = replace(settings, lake_path=str(lake))
    started = datetime.now(UTC)
    with LocalStack(
        settings, on_event=console.event, on_container_output=console.container, worker_spark=worker_spark
    ) as stack:
        # A stack that is up has a warm worker (what `ecomkpi up` reports as ready before anyone
        # uploads): its Spark start and warm-up batch are set-up, not part of the pipeline's time.
        console.line("waiting for the worker to warm up ...")
        if not stack.wait_worker_ready(timeout=WORKER_READY_TIMEOUT):
            console.line(f"worker not ready after {WORKER_READY_TIMEOUT:.0f}s; uploading anyway")
        setup_seconds = time.monotonic() - console.start
        uploaded: list[str] = []
        first_upload: datetime | None = None
        for folder in data_dirs:
            first_upload = first_upload or datetime.now(UTC)
            uploaded += upload_folder(stack, Path(folder), console)
            console.line("waiting for the pipeline to go idle ...")
            if not stack.wait_idle(timeout=timeout):
                console.line(f"pipeline still busy after {timeout:.0f}s; reporting what is there")
        daily, category = write_kpi_csvs(stack, out)
        executions = execution_summaries(stack)
        report = {
            "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "endpoint": stack.endpoint,
            "bucket": settings.bucket,
            "lake": settings.lake,
            "data": [str(d) for d in data_dirs],
            "files": file_fates(stack, uploaded),
            "executions": executions,
            "alerts": stack.alerts(),
            "timings": timings(setup_seconds, first_upload, executions),
            "kpis": {"daily_rows": len(daily), "category_rows": len(category)},
            "lambda": {"invocations": stack.dispatcher.invocations if stack.dispatcher else 0},
        }
    (out / "run_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    write_report_html(out, report, daily, category)
    ok = bool(executions) and all(e["status"] == "SUCCEEDED" for e in executions)
    print_summary(console, report, daily, category, out)
    return DemoResult(exit_code=0 if ok else 1, out=out, report=report)


def text_table(rows: list[dict[str, str]], columns: tuple[str, ...]) -> str:
    """Columns as wide as their longest value; keys and text left, numbers right."""
    widths = {c: max([len(c), *(len(str(r[c])) for r in rows)]) for c in columns}
    text = {c for c in columns if c.endswith("_id") or c == "date_key"}

    def cell(c: str, v: str) -> str:
        return f"{v:<{widths[c]}}" if c in text else f"{v:>{widths[c]}}"

    lines = ["  ".join(cell(c, c) for c in columns)]
    lines += ["  ".join(cell(c, str(r[c])) for c in columns) for r in rows]
    return "".join(f"  {line.rstrip()}\n" for line in lines)


def print_summary(
    console: Console,
    report: dict[str, Any],
    daily: list[dict[str, str]],
    category: list[dict[str, str]],
    out: Path,
) -> None:
    w = console.stream.write
    w("\n== executions ==\n")
    for e in report["executions"]:
        retries = f", {len(e['retries'])} retries" if e["retries"] else ""
        w(f"  {e['name']:<20} {e['status']:<10} {e['seconds'] or 0:>6.1f}s  {e['files']} files{retries}\n")
        if e["error"]:
            w(f"      error: {e['error']}\n")
    t = report.get("timings") or {}
    if t.get("pipeline_seconds") is not None:
        w(
            f"  set-up {t['setup_seconds']:.1f}s (stack and warm worker); pipeline {t['pipeline_seconds']:.1f}s"
            " (first upload -> last execution ended, waits between waves included)\n"
        )
    fates: dict[str, int] = {}
    for f in report["files"]:
        kind = "manifests" if f["key"].startswith("raw/manifests/") else f["fate"].split("/", 1)[0]
        fates[kind] = fates.get(kind, 0) + 1
    w("\n== files ==\n  " + ", ".join(f"{n} {k}" for k, n in sorted(fates.items())) + "\n")
    for f in report["files"]:
        if f["fate"].startswith("invalid/"):
            rules = "; ".join(f"{r.get('rule')} [{r.get('column')}]" for r in f.get("failed_rules", []))
            w(f"  {f['key']} -> {f['fate']}: {rules}\n")
    if report["alerts"]:
        w(f"\n== alerts ({len(report['alerts'])}) ==\n")
        for a in report["alerts"]:
            w(f"  {a['subject'] or a['message'].splitlines()[0]}\n")
    w("\n== DailyKPIs (from DynamoDB) ==\n")
    w(text_table(daily, DAILY_KPI_COLUMNS))
    w("\n== CategoryKPIs (from DynamoDB) ==\n")
    w(text_table(category[:CATEGORY_ROWS_SHOWN], CATEGORY_KPI_COLUMNS))
    if len(category) > CATEGORY_ROWS_SHOWN:
        w(f"  ... {len(category) - CATEGORY_ROWS_SHOWN} more rows in category_kpis.csv\n")
    w(f"\noutputs: {out / 'kpis'}/daily_kpis.csv, category_kpis.csv, {out / 'run_report.json'}\n")
    console.stream.flush()
