"""The validation job: a verdict for every file of the batch, each file placed, nothing lost.

Per key (any stage prefix): resolve what it means now (``verdicts.resolve``); decide what needs no
Spark (recorded verdicts, files moved by an earlier run, missing keys, files whose first 64 KiB
already disqualify them); then read the rest with Spark, one file at a time, and run its suite with
Great Expectations. Spark and GX are only started when some file needs them, which is what keeps a
retried or repeated run cheap: with every verdict recorded it is a handful of S3 requests.

Exit codes (docs/design.md): 0 every file passed, 2 some file was rejected (deterministic, a retry
exits 2 again without Spark), 1 the task broke (raised; ``main`` turns it into 1).
"""

from __future__ import annotations

import json
import mimetypes
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.batch_inputs import resolve_inputs
from jobs.config import PipelineConfig
from jobs.contract import DATASETS, ORDER_ITEMS, PRODUCTS
from jobs.keys import relative_key
from jobs.run_log import RunLog
from jobs.s3_store import ObjectInfo, S3Store
from jobs.spark_jobs import JobGroup
from jobs.validation import locations as loc
from jobs.validation.findings import Finding, structural
from jobs.validation.outcomes import (
    EXIT_BROKEN,
    FileOutcome,
    Target,
    ValidationResult,
    plan,
)
from jobs.validation.placement import place
from jobs.validation.reports import (
    RULE_FILE_EXISTS,
    RULE_KNOWN_DATASET,
    RULE_REJECTED_EARLIER,
    build_report,
    findings_from_report,
    report_json,
    summary_line,
)
from jobs.validation.structural import HEAD_BYTES, HeadInspection, inspect_head
from jobs.validation.suites import load_suite_json, rules_fingerprint
from jobs.validation.verdicts import (
    MISSING,
    PASSED,
    PASSED_EARLIER,
    RECORDED,
    REJECTED,
    REJECTED_EARLIER,
    VALIDATE,
    Resolution,
    VerdictBook,
    VerdictRecord,
    resolve,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from jobs.validation.gx_runner import GxRunner

JOB = "validation"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ValidationJob:
    """One run over one input; see the module docstring for the flow."""

    def __init__(
        self, config: PipelineConfig, store: S3Store, log: RunLog, spark: SparkSession | None
    ) -> None:
        self.config = config
        self.store = store
        self.log = log
        self.book = VerdictBook(store)
        self._spark = spark
        self.spark_used = False
        self._gx: GxRunner | None = None
        self._gx_future: Future[GxRunner] | None = None
        self._suite_json = {d: load_suite_json(d) for d in DATASETS}
        self.rules = rules_fingerprint()
        self._product_ids: DataFrame | None = None
        self._product_ids_note: str | None = None
        self._product_ids_loaded = False
        self.data_docs_key: str | None = None
        self.jobs: JobGroup | None = None  # counts this run's Spark jobs once Spark is used

    # --- the run ---------------------------------------------------------------------------------

    def run(self) -> list[FileOutcome]:
        # A wrong bucket must break the task (exit 1), not make every key look missing (exit 2).
        self.store.client.head_bucket(Bucket=self.store.bucket)
        targets = plan(self.config)
        self.log.event("plan", bucket=self.store.bucket, files=len(targets), keys=[t.key for t in targets])
        outcomes: dict[str, FileOutcome] = {}
        pending: list[tuple[Target, ObjectInfo, HeadInspection]] = []
        with self.log.stage("resolve") as end:
            resolutions = {t.rel: resolve(self.store, self.book, t.rel, self.rules) for t in targets}
            end["kinds"] = {
                k: sum(r.kind == k for r in resolutions.values())
                for k in (VALIDATE, RECORDED, PASSED_EARLIER, REJECTED_EARLIER, MISSING)
            }
        for t in targets:
            r = resolutions[t.rel]
            if r.kind == VALIDATE and r.raw is not None:
                inspection = self._inspect(t, r.raw)
                if inspection.readable:
                    pending.append((t, r.raw, inspection))
                    continue
                outcomes[t.rel] = self._file(t, partial(self._conclude, t, r.raw, list(inspection.findings)))
            else:
                outcomes[t.rel] = self._file(t, partial(self._known, t, r))
        if pending:
            self._prepare_gx()
            for t, raw, inspection in pending:
                outcomes[t.rel] = self._file(t, partial(self._validate_with_spark, t, raw, inspection))
            self._publish_data_docs()
            if self._product_ids is not None:
                self._product_ids.unpersist()
        return [outcomes[t.rel] for t in targets]

    def _file(self, t: Target, decide: Callable[[], FileOutcome]) -> FileOutcome:
        with self.log.stage("file", file=t.key, dataset=t.dataset) as end:
            outcome: FileOutcome = decide()
            end.update(
                file=t.key,
                verdict=outcome.verdict,
                location=outcome.location,
                reused=outcome.reused,
                report=outcome.report_key,
                result=summary_line(outcome.findings),
            )
        return outcome

    # --- decisions without Spark -----------------------------------------------------------------

    def _inspect(self, t: Target, raw: ObjectInfo) -> HeadInspection:
        """The byte-level verdict from the first 64 KiB (a ranged GET), before any Spark work."""
        if t.dataset is None:
            return HeadInspection(
                findings=(
                    structural(
                        RULE_KNOWN_DATASET,
                        f"{t.rel!r} is not under a dataset folder; the job cannot tell its rules",
                    ),
                )
            )
        head = self.store.read_bytes(raw.key, f"bytes=0-{HEAD_BYTES - 1}") if raw.size else b""
        return inspect_head(head, raw.size, t.dataset, self.config.max_file_bytes)

    def _known(self, t: Target, r: Resolution) -> FileOutcome:
        """A key whose fate is already decided: recorded verdict, moved earlier, or missing."""
        if r.kind == RECORDED and r.record is not None and r.raw is not None:
            rec = r.record
            placed = place(self.store, t.rel, r.raw, rec.verdict, keep_raw=t.master, log=self.log)
            return FileOutcome(
                key=t.key,
                rel=t.rel,
                dataset=t.dataset,
                verdict=rec.verdict,
                location=placed.location,
                report_key=self._report_of(t.rel, rec),
                reused=True,
                decided_by=rec.run_id,
                etag=rec.etag,
                rows=rec.rows,
                findings=[Finding.from_dict(d) for d in rec.findings],
            )
        if r.kind in (PASSED_EARLIER, REJECTED_EARLIER):
            verdict = PASSED if r.kind == PASSED_EARLIER else REJECTED
            rec = r.record
            if rec is not None:
                findings = [Finding.from_dict(d) for d in rec.findings]
                report_key: str | None = self._report_of(t.rel, rec)
            elif verdict == REJECTED:
                report_key = loc.invalid_report_key(t.rel)
                findings = findings_from_report(self.store.read_json(report_key))
                if not findings:
                    findings = [
                        structural(
                            RULE_REJECTED_EARLIER,
                            f"{r.location} was rejected earlier and its report is missing",
                        )
                    ]
            else:
                report_key, findings = None, []
            return FileOutcome(
                key=t.key,
                rel=t.rel,
                dataset=t.dataset,
                verdict=verdict,
                location=r.location,
                report_key=report_key,
                reused=True,
                findings=findings,
                decided_by=rec.run_id if rec else None,
                etag=rec.etag if rec else None,
                rows=rec.rows if rec else None,
            )
        return self._missing(t)

    def _report_of(self, rel: str, rec: VerdictRecord) -> str:
        return loc.invalid_report_key(rel) if rec.verdict == REJECTED else rec.report_key

    def _missing(self, t: Target) -> FileOutcome:
        """A key the tracker saw that is in no stage: rejected (exit 2) with a report, never skipped.

        Retrying cannot bring it back (S3 is strongly consistent), so it is a data problem for a
        person (the alert), not a broken task.
        """
        finding = structural(
            RULE_FILE_EXISTS,
            f"no object {loc.raw_key(t.rel)} (nor in validated/, processed/ "
            "or invalid/): it was deleted or renamed after it was announced",
        )
        report_key = loc.run_report_key(self.config.batch_id, self.config.run_id, t.rel)
        self._put_report(report_key, self._report(t, REJECTED, [finding], location=None))
        return FileOutcome(
            key=t.key,
            rel=t.rel,
            dataset=t.dataset,
            verdict=REJECTED,
            location=None,
            report_key=report_key,
            findings=[finding],
            decided_by=self.config.run_id,
        )

    # --- decisions with Spark --------------------------------------------------------------------

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            from jobs.spark_session import get_spark

            with self.log.stage("spark.session"):
                self._spark = get_spark(self.config, app_name="ecomkpi-validation")
        if self.jobs is None:
            self.jobs = JobGroup(self._spark, f"ecomkpi-validation-{self.config.run_id}")
        self.spark_used = True
        return self._spark

    def _new_gx(self) -> GxRunner:
        with self.log.stage("gx.setup"):
            from jobs.validation.gx_runner import GxRunner
            from jobs.validation.suites import load_suites

            return GxRunner(load_suites(), run_name=self.config.run_id)

    def _prepare_gx(self) -> None:
        """Build the GX context in the background while Spark reads the first file.

        Importing GX and building its context is ~7 s of Python; reading a file is mostly JVM
        work the driver only waits for, so the two overlap instead of adding up.
        """
        if self._gx is None and self._gx_future is None:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gx-setup")
            self._gx_future = pool.submit(self._new_gx)
            pool.shutdown(wait=False)

    @property
    def gx(self) -> GxRunner:
        if self._gx is None:
            future, self._gx_future = self._gx_future, None
            self._gx = future.result() if future is not None else self._new_gx()
        return self._gx

    def _checked_frame(
        self, dataset: str, raw: ObjectInfo, header: tuple[str, ...]
    ) -> tuple[DataFrame, frozenset[str]]:
        """Read, normalise, add absent columns as null and the check columns; not cached yet."""
        from jobs.normalize import normalize_columns
        from jobs.validation.checks import add_check_columns, with_columns_present
        from jobs.validation.reading import read_csv
        from jobs.validation.suites import required_columns, source_columns

        suite = self._suite_json[dataset]
        required = required_columns(suite)
        frame = normalize_columns(read_csv(self.spark, self.store.uri(raw.key), header))
        missing = frozenset(c for c in required if c not in frame.columns)
        frame, absent_optional = with_columns_present(
            frame, [c for c in source_columns(suite) if c not in required]
        )
        ids = self._products_lookup() if dataset == ORDER_ITEMS else None
        return add_check_columns(dataset, frame, ids), missing | absent_optional

    def _validate_with_spark(self, t: Target, raw: ObjectInfo, inspection: HeadInspection) -> FileOutcome:
        from jobs.validation.reading import CORRUPT_RECORD, file_shape
        from jobs.validation.reports import findings_from_suite_result

        assert t.dataset is not None
        checked, absent = self._checked_frame(t.dataset, raw, inspection.raw_header)
        checked = checked.cache()
        notes: list[str] = []
        try:
            started = time.perf_counter()
            shape = file_shape(checked, inspection.columns)
            findings = list(shape.findings)
            read_seconds = time.perf_counter() - started
            if not findings:  # misaligned rows would only make the suite's results noise
                result = self.gx.validate(t.dataset, checked.drop(CORRUPT_RECORD), t.rel)
                findings = findings_from_suite_result(result, inspection.columns, absent)
            self.log.event(
                "file.spark",
                file=raw.key,
                rows=shape.rows,
                read_seconds=round(read_seconds, 3),
                rules_seconds=round(time.perf_counter() - started - read_seconds, 3),
            )
            if t.master:
                if shape.findings or "id" in absent:
                    self._product_ids_loaded = True
                    self._product_ids_note = (
                        f"products master {raw.key} is malformed: product_id was not checked against it"
                    )
                else:
                    self._remember_product_ids(checked)
            if t.dataset == ORDER_ITEMS and self._product_ids_note:
                notes.append(self._product_ids_note)
            if not any(f.rejects for f in findings):
                self._stage(t, raw, checked)
        finally:
            checked.unpersist()
        return self._conclude(t, raw, findings, rows=shape.rows, notes=notes)

    def _stage(self, t: Target, raw: ObjectInfo, checked: DataFrame) -> None:
        """Leave the parsed rows for the transformation (before the verdict is recorded and the file
        placed: a file in ``validated/`` whose verdict is recorded always has them)."""
        from jobs.staging import FileVersion, stage_rows, write_staged

        version = FileVersion(rel=t.rel, raw_etag=raw.etag, arrived_ms=raw.last_modified_ms)
        with self.log.stage("staging", file=raw.key, prefix=version.prefix):
            write_staged(stage_rows(checked, version), self.store.uri(version.prefix))

    def _remember_product_ids(self, products: DataFrame) -> None:
        from jobs.validation.checks import product_id_set

        ids = product_id_set(products).cache()
        count = ids.count()  # materialise before the products frame is unpersisted
        self._product_ids, self._product_ids_loaded = ids, True
        self.log.event("products.ids", known_products=count)

    def _products_lookup(self) -> DataFrame | None:
        """The master's product ids for the unknown-product warning; read once per run when needed.

        The products key is first in the plan, so when it was validated in this run its frame
        already provided the ids. Otherwise (its verdict was recorded earlier) the current master
        is read here: raw/ first, the validated copy when raw/ has none.
        """
        if self._product_ids_loaded:
            return self._product_ids
        self._product_ids_loaded = True
        from jobs.normalize import normalize_columns
        from jobs.validation.reading import read_csv

        rel = relative_key(self.config.products_key)
        info = self.store.head(loc.raw_key(rel)) or self.store.head(loc.validated_key(rel))
        if info is None:
            self._product_ids_note = f"products master {rel} not found: product_id was not checked against it"
            return None
        inspection = inspect_head(
            self.store.read_bytes(info.key, f"bytes=0-{HEAD_BYTES - 1}") if info.size else b"",
            info.size,
            PRODUCTS,
        )
        if not inspection.readable or "id" not in inspection.columns:
            self._product_ids_note = (
                f"products master {info.key} is unreadable: product_id was not checked against it"
            )
            return None
        self._remember_product_ids(
            normalize_columns(read_csv(self.spark, self.store.uri(info.key), inspection.raw_header))
        )
        return self._product_ids

    # --- recording and placing a verdict -----------------------------------------------------------

    def _put_report(self, key: str, report: dict[str, Any]) -> None:
        self.store.put_text(key, report_json(report), "application/json; charset=utf-8")

    def _report(
        self,
        t: Target,
        verdict: str,
        findings: list[Finding],
        *,
        location: str | None,
        raw: ObjectInfo | None = None,
        rows: int | None = None,
        notes: list[str] | None = None,
    ) -> dict[str, Any]:
        batch, run = self.config.batch_id, self.config.run_id
        return build_report(
            key=raw.key if raw else t.key,
            rel_key=t.rel,
            dataset=t.dataset,
            verdict=verdict,
            findings=findings,
            batch_id=batch,
            run_id=run,
            decided_at=_now(),
            location=location,
            etag=raw.etag if raw else None,
            size_bytes=raw.size if raw else None,
            arrived_ms=raw.last_modified_ms if raw else None,
            rows=rows,
            notes=notes,
            links={
                "run_report": loc.run_report_key(batch, run, t.rel),
                "log": loc.run_log_key(batch, run),
                "summary": loc.summary_key(batch, run),
                "data_docs": f"{loc.data_docs_prefix(batch, run)}/index.html",
                "suite": f"expectations/{t.dataset}.json" if t.dataset else None,
            },
        )

    def _conclude(
        self,
        t: Target,
        raw: ObjectInfo,
        findings: list[Finding],
        rows: int | None = None,
        notes: list[str] | None = None,
    ) -> FileOutcome:
        """Write the reports, record the verdict, then place the file (in that order: see placement)."""
        verdict = REJECTED if any(f.rejects for f in findings) else PASSED
        destination = loc.validated_key(t.rel) if verdict == PASSED else loc.invalid_key(t.rel)
        notes = list(notes or [])
        if t.master:
            notes.append(f"products master data: stays in {raw.key}; this version is copied to {destination}")
        report = self._report(t, verdict, findings, location=destination, raw=raw, rows=rows, notes=notes)
        run_report = loc.run_report_key(self.config.batch_id, self.config.run_id, t.rel)
        self._put_report(run_report, report)
        if verdict == REJECTED:
            self._put_report(loc.invalid_report_key(t.rel), report)
        self.book.put(
            VerdictRecord(
                rel=t.rel,
                etag=raw.etag,
                verdict=verdict,
                dataset=t.dataset,
                report_key=run_report,
                batch_id=self.config.batch_id,
                run_id=self.config.run_id,
                decided_at=report["decided_at"],
                arrived_ms=raw.last_modified_ms,
                rows=rows,
                rules=self.rules,
                findings=[f.to_dict() for f in findings],
            )
        )
        placed = place(self.store, t.rel, raw, verdict, keep_raw=t.master, log=self.log)
        return FileOutcome(
            key=t.key,
            rel=t.rel,
            dataset=t.dataset,
            verdict=verdict,
            location=placed.location,
            report_key=loc.invalid_report_key(t.rel) if verdict == REJECTED else run_report,
            findings=findings,
            decided_by=self.config.run_id,
            etag=raw.etag,
            rows=rows,
        )

    # --- Data Docs -----------------------------------------------------------------------------------

    def _publish_data_docs(self) -> None:
        """Build GX Data Docs for this run's validations and upload them next to the reports.

        The docs are a convenience for people; the verdicts, reports and summary are the result.
        A renderer failure is logged and does not fail the task: a retry would find every verdict
        recorded and build no docs anyway.
        """
        if self._gx is None or not self._gx.validated:
            return
        try:
            self._upload_data_docs(self._gx)
        except Exception as exc:
            self.log.event("data_docs.skipped", level="WARN", error=f"{type(exc).__name__}: {exc}")

    def _upload_data_docs(self, gx: GxRunner) -> None:
        prefix = loc.data_docs_prefix(self.config.batch_id, self.config.run_id)
        with self.log.stage("data_docs", prefix=prefix) as end, tempfile.TemporaryDirectory() as tmp:
            index = gx.build_docs(Path(tmp))
            files = [p for p in Path(tmp).rglob("*") if p.is_file()]
            for path in files:
                content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                if content_type.startswith("text/"):
                    content_type += "; charset=utf-8"
                self.store.put_bytes(
                    f"{prefix}/{path.relative_to(tmp).as_posix()}", path.read_bytes(), content_type
                )
            self.data_docs_key = f"{prefix}/{index.relative_to(tmp).as_posix()}"
            end.update(files=len(files), index=self.data_docs_key)


def _save_log(store: S3Store, log: RunLog) -> None:
    """Append this attempt's log to the run's log (a retried task keeps the same run id)."""
    key = log.s3_key()
    previous = store.read_bytes(key) if store.exists(key) else b""
    store.put_bytes(key, previous + log.text().encode("utf-8"), "text/plain; charset=utf-8")


MAX_ALERT_FILES = 20  # an SNS message is at most 256 KB; the summary JSON has every file


def rejections_text(summary: dict[str, Any]) -> str:
    """What the failure alert quotes: each rejected file, the rules it failed, where its report is.

    The workflow reads this object into the SNS message (Step Functions cannot read the task's
    stdout), so a person learns from the alert itself which file broke which rule.
    """
    if "error" in summary and not summary.get("files"):
        return f"The validation task broke before deciding: {summary['error']}\n"
    rejected = [f for f in summary.get("files", []) if f.get("verdict") == REJECTED]
    if not rejected:
        return "No file was rejected by validation.\n"
    lines = [f"{len(rejected)} file(s) rejected:"]
    for f in rejected[:MAX_ALERT_FILES]:
        lines.append(f"- {f.get('key')} -> {f.get('location')}")
        for rule in f.get("failed_rules", []):
            column = f" on column '{rule['column']}'" if rule.get("column") else ""
            rows = f" ({rule['failing_rows']} rows)" if rule.get("failing_rows") is not None else ""
            lines.append(f"    rule '{rule['rule']}'{column}{rows}")
        if f.get("report_key"):
            lines.append(f"    report: {f['report_key']}")
    if len(rejected) > MAX_ALERT_FILES:
        lines.append(f"... and {len(rejected) - MAX_ALERT_FILES} more (see summary.json)")
    return "\n".join(lines) + "\n"


def run(config: PipelineConfig, spark: SparkSession | None = None) -> ValidationResult:
    """Validate every key of ``config``; the verdicts decide ``result.exit_code`` (0 or 2).

    Raises when the task itself breaks (S3, Spark, a missing suite): the caller's exit code 1.
    ``spark``: a session to use (tests share one); otherwise one is created only if needed.
    """
    config.require_bucket()
    store = S3Store(config)
    config = resolve_inputs(config, store)
    log = RunLog(JOB, config.batch_id, config.run_id)
    job: ValidationJob | None = None
    summary_key = loc.summary_key(config.batch_id, config.run_id)
    summary: dict[str, Any] = {
        "batch_id": config.batch_id,
        "run_id": config.run_id,
        "started_at": _now(),
        "log": log.s3_key(),
        "exit_code": EXIT_BROKEN,
    }
    failed = True
    try:
        with log.stage(JOB, batch_id=config.batch_id) as end:
            job = ValidationJob(config, store, log, spark)
            files = job.run()
            spark_jobs = job.jobs.count() if job.jobs else 0
            result = ValidationResult(
                batch_id=config.batch_id,
                run_id=config.run_id,
                files=files,
                spark_used=job.spark_used,
                summary_key=summary_key,
                log_key=log.s3_key(),
                data_docs_key=job.data_docs_key,
                spark_jobs=spark_jobs,
            )
            counts = {v: sum(f.verdict == v for f in files) for v in (PASSED, REJECTED)}
            end.update(exit_code=result.exit_code, spark_used=job.spark_used, spark_jobs=spark_jobs, **counts)
        summary.update(
            exit_code=result.exit_code,
            spark_used=job.spark_used,
            spark_jobs=spark_jobs,
            counts=counts,
            data_docs=job.data_docs_key,
            files=[f.to_summary() for f in files],
        )
        failed = False
        return result
    except BaseException as exc:
        summary["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        summary["finished_at"] = _now()
        if job is not None and job.jobs is not None:
            job.jobs.close()
        if job is not None:
            summary.setdefault("spark_used", job.spark_used)
        try:
            store.put_json(summary_key, summary)
            store.put_text(
                loc.rejections_key(config.batch_id, config.run_id),
                rejections_text(summary),
                "text/plain; charset=utf-8",
            )
            _save_log(store, log)
        except Exception as exc:
            if not failed:
                raise  # the run's record is part of its result: a retry will write it
            print(
                json.dumps(
                    {
                        "level": "ERROR",
                        "job": JOB,
                        "step": "save_log",
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                ),
                file=sys.stderr,
            )


def main(argv: list[str] | None = None) -> int:
    """Container entry point: configuration from the environment, the verdict as the exit code."""
    del argv  # configured by environment variables only (the task definition's overrides)
    try:
        config = PipelineConfig.from_env()
        result = run(config)
    except Exception as exc:
        print(
            json.dumps(
                {
                    "level": "ERROR",
                    "job": JOB,
                    "step": "main",
                    "exit_code": EXIT_BROKEN,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            ),
            flush=True,
        )
        traceback.print_exc(file=sys.stderr)
        return EXIT_BROKEN
    return result.exit_code
