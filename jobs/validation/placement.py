"""Putting a file where its verdict says, so that it is never lost and its fate is never ambiguous.

Order of operations for one raw version (each step idempotent, so a retry simply repeats them):
1. copy raw → validated/ or invalid/ (only that exact ETag; skipped when the copy is already there),
2. for a pass: move a stale rejection of an earlier version to ``invalid/superseded/``,
3. delete raw (only that exact ETag; never the products master, which every batch reads).
A crash at any point leaves the raw object in place, and the next run (finding the recorded
verdict) resumes; a re-upload racing the job is never copied under the old verdict nor deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from jobs.run_log import RunLog
from jobs.s3_store import ObjectInfo, S3Store
from jobs.validation.locations import (
    META_ARRIVED_MS,
    META_RAW_ETAG,
    invalid_key,
    invalid_report_key,
    superseded_key,
    validated_key,
)
from jobs.validation.reports import report_json
from jobs.validation.verdicts import PASSED, Verdict


def file_metadata(raw: ObjectInfo) -> dict[str, str]:
    """Metadata of a copy: which raw version it is and when that version arrived (epoch ms)."""
    return {META_RAW_ETAG: raw.etag, META_ARRIVED_MS: str(raw.last_modified_ms)}


def destination(rel: str, verdict: Verdict) -> str:
    return validated_key(rel) if verdict == PASSED else invalid_key(rel)


@dataclass(frozen=True)
class Placement:
    location: str  # where the validated version now is (or still is, see raw_kept)
    raw_kept: bool  # the raw object is still in raw/ (the master, or a newer upload raced the move)
    superseded: str | None = None  # where an older rejection was moved to


def place(
    store: S3Store, rel: str, raw: ObjectInfo, verdict: Verdict, *, keep_raw: bool, log: RunLog
) -> Placement:
    """Copy (and unless ``keep_raw``, then delete) one validated raw version to its stage."""
    dst = destination(rel, verdict)
    existing = store.head(dst)
    already_there = existing is not None and existing.metadata.get(META_RAW_ETAG) == raw.etag
    if not already_there and not store.copy_if_match(raw.key, dst, raw.etag, file_metadata(raw)):
        current = store.head(raw.key)
        if current is not None:  # a newer upload replaced it: leave everything to the next run
            log.event(
                "place.raw_changed",
                level="WARN",
                file=raw.key,
                validated_etag=raw.etag,
                current_etag=current.etag,
            )
            return Placement(location=raw.key, raw_kept=True)
        if store.head(dst) is None:
            raise RuntimeError(f"{raw.key} vanished before it could be copied to {dst}")
        # else: a concurrent run of the same input finished this move first
    superseded = supersede_rejection(store, rel, raw.etag, log) if verdict == PASSED else None
    raw_kept = keep_raw
    if not keep_raw and not store.delete_if_match(raw.key, raw.etag):
        current = store.head(raw.key)
        if current is not None:
            log.event(
                "place.raw_changed",
                level="WARN",
                file=raw.key,
                validated_etag=raw.etag,
                current_etag=current.etag,
            )
            raw_kept = True
    return Placement(location=dst, raw_kept=raw_kept, superseded=superseded)


def supersede_rejection(store: S3Store, rel: str, new_etag: str, log: RunLog) -> str | None:
    """Move an earlier version's rejection (file + report) out of ``invalid/<rel>``.

    Once a corrected upload passed, ``invalid/<rel>`` would contradict ``validated/<rel>``; the old
    copy and its report move to ``invalid/superseded/<rel>.<old etag>`` (kept for the record), the
    report annotated with what superseded it.
    """
    old = store.head(invalid_key(rel))
    report = store.read_json(invalid_report_key(rel))
    if old is None and report is None:
        return None
    old_etag = (old.metadata.get(META_RAW_ETAG) or old.etag) if old else str((report or {}).get("etag") or "")
    target = superseded_key(rel, old_etag)
    if old is not None:
        store.move(old.key, target)
    if report is not None:
        report = dict(report)
        report["superseded"] = {
            "by_etag": new_etag,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "note": f"a later upload of this file passed validation and is in {validated_key(rel)}",
        }
        store.put_text(f"{target}.report.json", report_json(report), "application/json; charset=utf-8")
        store.delete(invalid_report_key(rel))
    log.event("place.superseded", file=invalid_key(rel), moved_to=target)
    return target
