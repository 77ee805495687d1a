"""Recorded verdicts and what a key given to the job currently means.

The workflow retries a failed task and later generations re-send every key of the batch, so the
job meets the same files again and again. A verdict is recorded per (relative key, raw ETag) in
``logs/validation/verdicts/<rel>.json`` BEFORE the file is moved; a later run that finds the same
ETag in raw/ only finishes the placement (no Spark, same verdict, same exit code), and a run that
finds the file already moved reads its fate from the bucket. A different ETag is a re-upload and is
validated again, and so is a raw version whose verdict was reached under other rules, and an order
items version checked against another version of the products master than the current one (its
unknown-product warning would be stale).

A verdict recorded and not yet acted on is also what a precheck leaves (``jobs.validation.job``:
the warm worker validates a part as soon as it lands, before its day is complete): the batch's
own run then only places the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from jobs.s3_store import ObjectInfo, S3Store
from jobs.validation.locations import (
    META_ARRIVED_MS,
    invalid_key,
    processed_key,
    raw_key,
    validated_key,
    verdict_key,
)


class Verdict(StrEnum):
    """A file's fate. StrEnum: the members are the strings written to records and reports."""

    PASSED = "passed"
    REJECTED = "rejected"


class Kind(StrEnum):
    """How a key resolved (Resolution.kind)."""

    VALIDATE = "validate"  # a raw version without a verdict: validate it now
    RECORDED = "recorded"  # a raw version with a recorded verdict: finish its placement only
    PASSED_EARLIER = "passed_earlier"  # no raw version; validated/ or processed/ holds it
    REJECTED_EARLIER = "rejected_earlier"  # no raw version; invalid/ holds it
    MISSING = "missing"  # nowhere in the bucket


PASSED, REJECTED = Verdict.PASSED, Verdict.REJECTED
VALIDATE, RECORDED, MISSING = Kind.VALIDATE, Kind.RECORDED, Kind.MISSING
PASSED_EARLIER, REJECTED_EARLIER = Kind.PASSED_EARLIER, Kind.REJECTED_EARLIER
NO_MASTER = "-"  # products_version of a check made while no products master could be read


@dataclass(frozen=True)
class VerdictRecord:
    """The decision about one version (ETag) of one file, and where its report is."""

    rel: str
    etag: str
    verdict: Verdict
    dataset: str | None
    report_key: str
    batch_id: str
    run_id: str
    decided_at: str
    arrived_ms: int | None = None
    rows: int | None = None
    rules: str = ""  # suites.rules_fingerprint() the verdict was reached under
    # Order items: the products master version (ETag; NO_MASTER without one) whose ids the
    # unknown-product warning used. "" for other datasets and for records written before it existed.
    products_version: str = ""
    findings: list[dict[str, Any]] = field(default_factory=list)
    schema_drift: dict[str, Any] | None = None  # jobs.validation.drift; None: the contract's header

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VerdictRecord:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["verdict"] = Verdict(known["verdict"])  # a ValueError names an unknown verdict
        return cls(**known)


class VerdictBook:
    """The recorded verdicts, one JSON object per relative key (the latest decision)."""

    def __init__(self, store: S3Store) -> None:
        self.store = store

    def get(self, rel: str) -> VerdictRecord | None:
        data = self.store.read_json(verdict_key(rel))
        if not isinstance(data, dict) or data.get("verdict") not in (PASSED, REJECTED):
            return None
        return VerdictRecord.from_dict(data)

    def put(self, record: VerdictRecord) -> None:
        self.store.put_json(verdict_key(record.rel), record.to_dict())


@dataclass(frozen=True)
class Resolution:
    """What the job must do with one key, and what it knows already."""

    kind: Kind
    raw: ObjectInfo | None = None
    record: VerdictRecord | None = None
    location: str | None = None  # where the file is, for PASSED_EARLIER / REJECTED_EARLIER


def _arrival(info: ObjectInfo) -> int:
    try:
        return int(info.metadata.get(META_ARRIVED_MS, info.last_modified_ms))
    except ValueError:
        return info.last_modified_ms


def resolve(
    store: S3Store, book: VerdictBook, rel: str, rules: str, products_version: Callable[[], str] | None = None
) -> Resolution:
    """Decide what a key means now, with a few HEAD requests and at most one small GET.

    With raw/<rel> present its version is the file's current one; its recorded verdict is reused
    only if it was reached for that ETag under the same ``rules`` (fingerprint) and, for order items,
    against the products master version ``products_version()`` names now. Without it, the file was moved by
    an earlier run: the recorded verdict says where, and when no record matches the bucket (records
    are per job, copies can be made by hand) the stage holding the NEWEST arrival wins, so an older
    passed version in validated/ does not hide a newer rejected one in invalid/.
    """
    raw = store.head(raw_key(rel))
    record = book.get(rel)
    if raw is not None:
        if record is not None and record.etag == raw.etag and record.rules == rules:
            checked_against = record.products_version
            if not checked_against or products_version is None or checked_against == products_version():
                return Resolution(RECORDED, raw=raw, record=record)
        return Resolution(VALIDATE, raw=raw, record=record)
    passed = [i for i in (store.head(processed_key(rel)), store.head(validated_key(rel))) if i is not None]
    rejected = store.head(invalid_key(rel))
    if record is not None:
        if record.verdict == PASSED and passed:
            return Resolution(PASSED_EARLIER, record=record, location=passed[0].key)
        if record.verdict == REJECTED and rejected is not None:
            return Resolution(REJECTED_EARLIER, record=record, location=rejected.key)
    if passed and (rejected is None or max(map(_arrival, passed)) >= _arrival(rejected)):
        return Resolution(PASSED_EARLIER, location=passed[0].key)
    if rejected is not None:
        return Resolution(REJECTED_EARLIER, location=rejected.key)
    return Resolution(MISSING)
