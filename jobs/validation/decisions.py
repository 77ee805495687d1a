"""The decisions that need no Spark: a fate decided earlier, a missing key, a head that disqualifies.

``inspect`` looks at a new raw version's first 64 KiB (one ranged GET); ``known`` turns a key whose
fate is already decided (a recorded verdict, a file moved by an earlier run) into its outcome;
``missing`` rejects a key that is in no stage.
"""

from __future__ import annotations

import jobs.validation.locations as loc
from jobs.run_log import RunLog
from jobs.s3_store import ObjectInfo, S3Store
from jobs.validation.conclude import Concluder
from jobs.validation.findings import Finding, structural
from jobs.validation.outcomes import FileOutcome, Target
from jobs.validation.placement import place
from jobs.validation.reports import (
    RULE_FILE_EXISTS,
    RULE_KNOWN_DATASET,
    RULE_REJECTED_EARLIER,
    findings_from_report,
)
from jobs.validation.structural import HEAD_BYTES, HeadInspection, inspect_head
from jobs.validation.verdicts import (
    PASSED,
    PASSED_EARLIER,
    RECORDED,
    REJECTED,
    REJECTED_EARLIER,
    Resolution,
    VerdictRecord,
)


def inspect(store: S3Store, t: Target, raw: ObjectInfo, max_file_bytes: int) -> HeadInspection:
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
    head = store.read_bytes(raw.key, f"bytes=0-{HEAD_BYTES - 1}") if raw.size else b""
    return inspect_head(head, raw.size, t.dataset, max_file_bytes)


def report_key_of(rel: str, record: VerdictRecord) -> str:
    """Where a recorded verdict's report is: beside the file for a rejection, else the run's."""
    return loc.invalid_report_key(rel) if record.verdict == REJECTED else record.report_key


def known(t: Target, r: Resolution, store: S3Store, log: RunLog, concluder: Concluder) -> FileOutcome:
    """A key whose fate is already decided: recorded verdict, moved earlier, or missing."""
    if r.kind == RECORDED and r.record is not None and r.raw is not None:
        return _recorded(t, r.raw, r.record, store, log)
    if r.kind in (PASSED_EARLIER, REJECTED_EARLIER):
        return _moved_earlier(t, r, store)
    return missing(t, concluder)


def _recorded(t: Target, raw: ObjectInfo, rec: VerdictRecord, store: S3Store, log: RunLog) -> FileOutcome:
    """A raw version with a recorded verdict: finish its placement (a crash may have cut it short)."""
    placed = place(store, t.rel, raw, rec.verdict, keep_raw=t.master, log=log)
    return FileOutcome(
        key=t.key,
        rel=t.rel,
        dataset=t.dataset,
        verdict=rec.verdict,
        location=placed.location,
        report_key=report_key_of(t.rel, rec),
        reused=True,
        decided_by=rec.run_id,
        etag=rec.etag,
        rows=rec.rows,
        findings=[Finding.from_dict(d) for d in rec.findings],
    )


def _moved_earlier(t: Target, r: Resolution, store: S3Store) -> FileOutcome:
    """No raw version; an earlier run moved the file: its verdict and report are reused."""
    verdict = PASSED if r.kind == PASSED_EARLIER else REJECTED
    rec = r.record
    report_key: str | None
    if rec is not None:
        findings = [Finding.from_dict(d) for d in rec.findings]
        report_key = report_key_of(t.rel, rec)
    elif verdict == REJECTED:
        report_key = loc.invalid_report_key(t.rel)
        findings = findings_from_report(store.read_json(report_key))
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


def missing(t: Target, concluder: Concluder) -> FileOutcome:
    """A key the tracker saw that is in no stage: rejected (exit 2) with a report, never skipped.

    Retrying cannot bring it back (S3 is strongly consistent), so it is a data problem for a
    person (the alert), not a broken task.
    """
    finding = structural(
        RULE_FILE_EXISTS,
        f"no object {loc.raw_key(t.rel)} (nor in validated/, processed/ "
        "or invalid/): it was deleted or renamed after it was announced",
    )
    report_key = concluder.run_report_key(t.rel)
    concluder.put_report(report_key, concluder.report(t, REJECTED, [finding], location=None))
    return FileOutcome(
        key=t.key,
        rel=t.rel,
        dataset=t.dataset,
        verdict=REJECTED,
        location=None,
        report_key=report_key,
        findings=[finding],
        decided_by=concluder.run_id,
    )
