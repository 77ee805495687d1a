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
import sys
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import jobs.validation.locations as loc
from jobs.batch_inputs import resolve_inputs
from jobs.config import PipelineConfig
from jobs.contract import ORDER_ITEMS
from jobs.run_log import RunLog
from jobs.s3_store import ObjectInfo, S3Store
from jobs.validation.conclude import Concluder, now
from jobs.validation.data_docs import publish_data_docs
from jobs.validation.decisions import inspect, known
from jobs.validation.engine import Engine
from jobs.validation.outcomes import (
    EXIT_BROKEN,
    FileOutcome,
    Target,
    ValidationResult,
    plan,
)
from jobs.validation.product_ids import ProductIds
from jobs.validation.reports import summary_line
from jobs.validation.spark_check import SparkCheck
from jobs.validation.structural import HeadInspection
from jobs.validation.suites import rules_fingerprint
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
    resolve,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

JOB = "validation"
_A = TypeVar("_A")
_T = TypeVar("_T")


class ValidationJob:
    """One run over one input; see the module docstring (and README "Flow per key") for the steps."""

    def __init__(
        self,
        config: PipelineConfig,
        store: S3Store,
        log: RunLog,
        spark: SparkSession | None,
        precheck: bool = False,
        after_answer: list[Callable[[], None]] | None = None,
    ) -> None:
        self.config = config
        self.precheck = precheck
        self.after_answer = after_answer
        self.store = store
        self.log = log
        self.engine = Engine(config, log, spark)
        self.product_ids = ProductIds(store, log, config.products_key, self.engine.spark)
        self.book = VerdictBook(store)
        self.rules = rules_fingerprint()  # reads every suite: a missing or malformed one breaks the run
        self.concluder = Concluder(config, store, log, self.book, self.rules, places=not precheck)
        self.spark_check = SparkCheck(store, log, self.engine, self.product_ids, self.concluder)
        self.data_docs_key: str | None = None

    @property
    def spark_used(self) -> bool:
        return self.engine.used

    def run(self) -> list[FileOutcome]:
        """Plan, resolve every key, decide what needs no Spark, then validate the rest with Spark."""
        # A wrong bucket must break the task (exit 1), not make every key look missing (exit 2).
        self.store.client.head_bucket(Bucket=self.store.bucket)
        targets = plan(self.config)
        self.log.event("plan", bucket=self.store.bucket, files=len(targets), keys=[t.key for t in targets])
        resolutions = self._resolve(targets)
        to_inspect = [(t, r.raw) for t in targets if (r := resolutions[t.rel]).kind == VALIDATE and r.raw]

        def head_check(item: tuple[Target, ObjectInfo]) -> tuple[str, HeadInspection]:
            return item[0].rel, inspect(self.store, item[0], item[1], self.config.max_file_bytes)

        inspections = dict(_each(head_check, to_inspect))
        outcomes: dict[str, FileOutcome] = {}
        pending: list[tuple[Target, ObjectInfo, HeadInspection]] = []
        for t in targets:
            r = resolutions[t.rel]
            if r.kind == VALIDATE and r.raw is not None:
                inspection = inspections[t.rel]
                if inspection.readable:
                    pending.append((t, r.raw, inspection))
                    continue
                decide = partial(self.concluder.conclude, t, r.raw, list(inspection.findings))
                outcomes[t.rel] = self._file(t, decide)
            elif not self.precheck:
                outcomes[t.rel] = self._file(t, partial(known, t, r, self.store, self.log, self.concluder))
        if pending:
            self.engine.batch_bytes = sum(raw.size for _, raw, _ in pending)
            self.engine.start_gx()
            # The products master first: the items' check uses the ids it gives.
            outcomes.update(self._check(p) for p in pending if p[0].master)
            outcomes.update(self._validate_at_once([p for p in pending if not p[0].master]))
            self._data_docs()
            self.product_ids.release()
        return [outcomes[t.rel] for t in targets if t.rel in outcomes]

    def _validate_at_once(
        self, files: list[tuple[Target, ObjectInfo, HeadInspection]]
    ) -> dict[str, FileOutcome]:
        """Check ``files`` with Spark: each dataset's files in one pass (``DatasetCheck``).

        What the files share is settled first: the session and the products master's ids. A file
        whose header Spark cannot read by name (a name repeated after normalisation, read
        positionally) and the files of a suite holding a rule ``rule_counts`` does not implement
        are checked one at a time (``SparkCheck``), as every file was before.
        """
        from jobs.validation.dataset_check import DatasetCheck
        from jobs.validation.rule_counts import UnsupportedRule

        outcomes: dict[str, FileOutcome] = {}
        by_dataset: dict[str, list[tuple[Target, ObjectInfo, HeadInspection]]] = {}
        one_by_one: list[tuple[Target, ObjectInfo, HeadInspection]] = []
        for f in files:
            header = f[2].raw_header
            readable_by_name = len(set(f[2].columns)) == len(header) and all(header)
            if f[0].dataset is None or not readable_by_name or not self.config.validation_one_pass:
                one_by_one.append(f)
            else:
                by_dataset.setdefault(f[0].dataset, []).append(f)
        for dataset, group in by_dataset.items():
            try:
                check = DatasetCheck(
                    self.store,
                    self.log,
                    self.engine,
                    self.product_ids,
                    self.concluder,
                    self.spark_check.suite_json(dataset),
                    self.spark_check.gx_lock,
                    lambda f: self._check(f)[1],
                )
            except UnsupportedRule as exc:
                self.log.event("dataset.one_by_one", dataset=dataset, files=len(group), reason=str(exc))
                one_by_one.extend(group)
                continue
            outcomes.update(check.validate(dataset, group))
        threads = min(self.config.validation_threads, len(one_by_one))
        if threads <= 1:
            outcomes.update(map(self._check, one_by_one))
            return outcomes
        # A small file's check is mostly driver-side waits between short jobs, which a second
        # file's jobs can fill; the checking threads inherit the run's job group.
        from pyspark.util import inheritable_thread_target

        inherit = inheritable_thread_target(self.engine.spark())  # the run's job group and tags
        if any(t.dataset == ORDER_ITEMS for t, _, _ in one_by_one):
            self.product_ids.lookup()  # read once, before the threads that use it
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="validate-file") as pool:
            outcomes.update(pool.map(inherit(self._check), one_by_one))
        return outcomes

    def _check(self, item: tuple[Target, ObjectInfo, HeadInspection]) -> tuple[str, FileOutcome]:
        """One readable file checked with Spark and GX: (its relative key, its outcome)."""
        t, raw, inspection = item
        return t.rel, self._file(t, partial(self.spark_check.validate, t, raw, inspection))

    def _data_docs(self) -> None:
        """Publish the run's Data Docs now, or after the worker's answer when it takes them.

        The docs are for people (the verdicts, reports and summary are the result), and rendering
        them is ~0.4-0.6 s of GX's Python: the warm worker answers first and publishes them right
        after (``after_answer``), appending their log lines to the run's log. The key is then the one
        the reports already link to; a failure is logged there as a skipped publication.
        """
        gx = self.engine.gx_built
        prefix = loc.data_docs_prefix(self.config.batch_id, self.config.run_id)
        if self.after_answer is None or gx is None or not gx.validated:
            self.data_docs_key = publish_data_docs(gx, self.store, self.log, prefix)
            return

        def publish() -> None:
            since = len(self.log.lines)
            publish_data_docs(gx, self.store, self.log, prefix)
            _save_log(self.store, self.log, since)

        self.after_answer.append(publish)
        self.data_docs_key = loc.data_docs_index(self.config.batch_id, self.config.run_id)

    def _resolve(self, targets: list[Target]) -> dict[str, Resolution]:
        master: list[str] = []  # the products master's current version, asked at most once

        def products_version() -> str:
            if not master:
                master.append(self.product_ids.current_version())
            return master[0]

        def resolved(t: Target) -> Resolution:
            return resolve(
                self.store,
                self.book,
                t.rel,
                self.rules,
                products_version if t.dataset == ORDER_ITEMS else None,
            )

        with self.log.stage("resolve") as end:
            resolutions = dict(zip([t.rel for t in targets], _each(resolved, targets), strict=True))
            end["kinds"] = {
                k: sum(r.kind == k for r in resolutions.values())
                for k in (VALIDATE, RECORDED, PASSED_EARLIER, REJECTED_EARLIER, MISSING)
            }
        return resolutions

    def _file(self, t: Target, decide: Callable[[], FileOutcome]) -> FileOutcome:
        with self.log.stage("file", file=t.key, dataset=t.dataset) as end:
            outcome = decide()
            end.update(
                file=t.key,
                verdict=outcome.verdict,
                location=outcome.location,
                reused=outcome.reused,
                report=outcome.report_key,
                result=summary_line(outcome.findings),
            )
        return outcome


S3_THREADS = 8  # a file's resolution or head check is a few S3 requests; many parts wait on them together


def _each(work: Callable[[_A], _T], items: Sequence[_A]) -> list[_T]:
    """``work`` of every item, in order, several at a time (S3 round trips, no Spark)."""
    if len(items) <= 1:
        return [work(i) for i in items]
    with ThreadPoolExecutor(max_workers=S3_THREADS, thread_name_prefix="s3-lookups") as pool:
        return list(pool.map(work, items))


def _save_log(store: S3Store, log: RunLog, since: int = 0) -> None:
    """Append this attempt's log lines (from ``since``) to the run's log (a retried task keeps the
    same run id)."""
    key = log.s3_key()
    previous = store.read_bytes(key) if store.exists(key) else b""
    text = "".join(f"{line}\n" for line in log.lines[since:])
    store.put_bytes(key, previous + text.encode("utf-8"), "text/plain; charset=utf-8")


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
        decided_by = f.get("decided_by")
        if decided_by and decided_by != summary.get("run_id") and summary.get("batch_id"):
            # a precheck (the part was validated as it landed) or an earlier generation decided it
            lines.append(
                f"    decided by run {decided_by}: {loc.run_prefix(summary['batch_id'], decided_by)}/"
            )
    if len(rejected) > MAX_ALERT_FILES:
        lines.append(f"... and {len(rejected) - MAX_ALERT_FILES} more (see summary.json)")
    return "\n".join(lines) + "\n"


def run(
    config: PipelineConfig,
    spark: SparkSession | None = None,
    precheck: bool = False,
    after_answer: list[Callable[[], None]] | None = None,
) -> ValidationResult:
    """Validate every key of ``config``; the verdicts decide ``result.exit_code`` (0 or 2).

    Raises when the task itself breaks (S3, Spark, a missing suite): the caller's exit code 1.
    ``spark``: a session to use (tests share one); otherwise one is created only if needed.
    ``precheck``: record verdicts of new raw versions only, place nothing (see the module docstring);
    ``result.files`` then holds the files it decided. ``after_answer``: a caller that answers for
    the run (the warm worker) takes the work that may follow its answer (the Data Docs) here and
    runs it after answering.
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
        "started_at": now(),
        "log": log.s3_key(),
        "mode": "precheck" if precheck else "batch",
        "exit_code": EXIT_BROKEN,
    }
    failed = True
    try:
        with log.stage(JOB, batch_id=config.batch_id) as end:
            job = ValidationJob(config, store, log, spark, precheck=precheck, after_answer=after_answer)
            files = job.run()
            spark_jobs = job.engine.spark_jobs()
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
        summary["finished_at"] = now()
        if job is not None:
            job.engine.close()
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
