"""Concluding a file's verdict in this run: its reports, its recorded verdict, then its placement.

In that order (README "Placement"): a file in ``validated/`` or ``invalid/`` always has its
verdict recorded and its report written, so a crash anywhere is resumed by the next run. A precheck
(``place=False``) stops where such a crash would: reports and verdict written, the file left in raw/
for its batch's run to place.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import jobs.validation.locations as loc
from jobs.config import PipelineConfig
from jobs.run_log import RunLog
from jobs.s3_store import ObjectInfo, S3Store
from jobs.validation.drift import NOTICE_KIND, SchemaDrift, drift_of, record_first_seen
from jobs.validation.findings import Finding
from jobs.validation.locations import SCHEMAS_PREFIX
from jobs.validation.outcomes import FileOutcome, Target
from jobs.validation.placement import place
from jobs.validation.quality_ledger import QualityLedger, quality_item
from jobs.validation.reports import Report, report_json
from jobs.validation.verdicts import PASSED, REJECTED, Verdict, VerdictBook, VerdictRecord


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Concluder:
    """Writes the reports and the verdict record of the files decided in this run, and places them."""

    def __init__(
        self,
        config: PipelineConfig,
        store: S3Store,
        log: RunLog,
        book: VerdictBook,
        rules: str,
        places: bool = True,
    ) -> None:
        self.places = places  # False: a precheck, which leaves every file in raw/
        self._config = config
        self._store = store
        self._log = log
        self._book = book
        self._rules = rules
        self._forms_recorded: set[str] = set()  # drift signatures this run found in the history or added
        self._quality: QualityLedger | None = None
        if config.quality_table:
            from jobs import aws

            self._quality = QualityLedger(aws.client("dynamodb", config), config.quality_table)

    @property
    def run_id(self) -> str:
        """The run deciding: ``decided_by`` of its outcomes."""
        return self._config.run_id

    def run_report_key(self, rel: str) -> str:
        """This run's report of ``rel`` (written for every file the run decides)."""
        return loc.run_report_key(self._config.batch_id, self._config.run_id, rel)

    def conclude(
        self,
        t: Target,
        raw: ObjectInfo,
        findings: list[Finding],
        rows: int | None = None,
        notes: list[str] | None = None,
        *,
        products_version: str = "",
        columns: tuple[str, ...] = (),
        quarantine_key: str = "",
    ) -> FileOutcome:
        """Write the reports, record the verdict, then place the file (in that order: see placement).

        ``columns``: the file's header (normalised), when it was read: a header other than the
        contract's is recorded as schema drift, and a form no file had before raises one notice.
        ``quarantine_key``: where the rows its drop rules left out went (an accepted file only)."""
        batch, run = self._config.batch_id, self._config.run_id
        verdict = REJECTED if any(f.rejects for f in findings) else PASSED
        destination = loc.validated_key(t.rel) if verdict == PASSED else loc.invalid_key(t.rel)
        notes = list(notes or [])
        if t.master:
            notes.append(f"products master data: stays in {raw.key}; this version is copied to {destination}")
        drift = drift_of(t.dataset, columns) if columns else None
        if drift is not None:
            notes.append(self._drift_note(drift, raw, verdict))
        report = self.report(t, verdict, findings, location=destination, raw=raw, rows=rows, notes=notes)
        if drift is not None:
            report = replace(report, schema_drift=drift.to_dict())
        run_report = self.run_report_key(t.rel)
        self.put_report(run_report, report)
        if verdict == REJECTED:
            self.put_report(loc.invalid_report_key(t.rel), report)
        record = VerdictRecord(
            rel=t.rel,
            etag=raw.etag,
            verdict=verdict,
            dataset=t.dataset,
            report_key=run_report,
            batch_id=batch,
            run_id=run,
            decided_at=report.decided_at,
            arrived_ms=raw.last_modified_ms,
            rows=rows,
            rules=self._rules,
            findings=[f.to_dict() for f in findings],
            products_version=products_version,
            schema_drift=report.schema_drift,
        )
        self._book.put(record)
        if self._quality is not None:  # the day's quality line, before the file moves (as the record)
            self._quality.put(
                quality_item(record, data_docs=loc.data_docs_index(batch, run), quarantine_key=quarantine_key)
            )
        location = raw.key
        if self.places:
            location = place(self._store, t.rel, raw, verdict, keep_raw=t.master, log=self._log).location
        return FileOutcome(
            key=t.key,
            rel=t.rel,
            dataset=t.dataset,
            verdict=verdict,
            location=location,
            report_key=loc.invalid_report_key(t.rel) if verdict == REJECTED else run_report,
            findings=findings,
            decided_by=run,
            etag=raw.etag,
            rows=rows,
        )

    def _drift_note(self, drift: SchemaDrift, raw: ObjectInfo, verdict: Verdict) -> str:
        """Record the form in the dataset's schema history; the run that adds it sends the notice."""
        seen_in = {
            "file": raw.key,
            "etag": raw.etag,
            "verdict": str(verdict),
            "batch_id": self._config.batch_id,
            "run_id": self._config.run_id,
            "at": now(),
        }
        first = False
        if drift.signature not in self._forms_recorded:  # one request per form and run, not per file
            try:
                first = record_first_seen(self._store, drift, seen_in, self._notify)
                self._forms_recorded.add(drift.signature)
            except Exception as exc:  # a courtesy: the file's verdict does not depend on it
                self._log.event("schema_drift.notice_failed", level="WARN", file=raw.key, error=str(exc))
        self._log.event("schema_drift", file=raw.key, first_seen=first, **drift.to_dict())
        # Not whether this file was the first of its form: files concluded on several threads
        # would make the same file's report differ from run to run.
        return f"{drift.describe()} (columns the contract does not know are not loaded; the dataset's forms: {SCHEMAS_PREFIX}/{drift.dataset}/)"

    def _notify(self, drift: SchemaDrift, seen_in: dict[str, object]) -> None:
        """One SNS message per new form, with attributes a subscription filter can match (kind
        schema_drift, severity info, day, dataset). Without SNS_TOPIC_ARN the history is the record."""
        topic = self._config.alerts_topic_arn
        if not topic:
            return
        from jobs import aws

        day = self._config.batch_id or "-"
        aws.client("sns", self._config).publish(
            TopicArn=topic,
            Subject=f"ecomkpi: {drift.dataset} files changed form ({len(drift.new)} new column(s))"[:100],
            Message=(
                f"{drift.describe()}.\n\nFirst seen in {seen_in['file']} (batch {day}, run "
                f"{seen_in['run_id']}, verdict {seen_in['verdict']}).\nColumns: {', '.join(drift.columns)}\n"
                "Columns the contract does not know are not loaded; a missing required column rejects the "
                f"file. Schema history: s3://{self._config.bucket}/{SCHEMAS_PREFIX}/{drift.dataset}/\n"
            ),
            MessageAttributes=aws.sns_attributes(
                kind=NOTICE_KIND, severity="info", day=day, dataset=drift.dataset
            ),
        )

    def report(
        self,
        t: Target,
        verdict: Verdict,
        findings: list[Finding],
        *,
        location: str | None,
        raw: ObjectInfo | None = None,
        rows: int | None = None,
        notes: list[str] | None = None,
    ) -> Report:
        """The report of a verdict reached in this run (``raw``: the version that was read, if any)."""
        batch, run = self._config.batch_id, self._config.run_id
        return Report(
            file=raw.key if raw else t.key,
            relative_key=t.rel,
            dataset=t.dataset,
            verdict=verdict,
            findings=findings,
            batch_id=batch,
            run_id=run,
            decided_at=now(),
            location=location,
            etag=raw.etag if raw else None,
            size_bytes=raw.size if raw else None,
            arrived_ms=raw.last_modified_ms if raw else None,
            rows=rows,
            notes=list(notes or []),
            links={
                "run_report": loc.run_report_key(batch, run, t.rel),
                "log": loc.run_log_key(batch, run),
                "summary": loc.summary_key(batch, run),
                "data_docs": loc.data_docs_index(batch, run),
                "suite": f"expectations/{t.dataset}.json" if t.dataset else None,
            },
        )

    def put_report(self, key: str, report: Report) -> None:
        self._store.put_text(key, report_json(report.to_dict()), "application/json; charset=utf-8")
