"""Taking a data file back out of its day: a producer's delete, or ``ecomkpi withdraw KEY``.

Every generation validates all the keys its day ever received, so a key that was rejected (or that
vanished) would be reported again by every later generation of the day. Withdrawing a key removes it
from the batch in the tracker (and from the manifest's expectation) and starts the next generation
when the rest is ready.

* ``s3:ObjectRemoved`` on ``raw/``: the pipeline deletes raw keys itself after copying them to
  ``validated/`` or ``invalid/``, so a removal counts as a withdrawal only when no stage holds a copy
  of the key's last counted upload (the producer deleted the file before it was processed; a copy
  of an *older* upload, e.g. its rejection in ``invalid/``, does not count) and the key was not
  uploaded again. Undated keys (``raw/<table>/<file>.csv``) are found in the day the tracker
  recorded them in.
* ``{"ecomkpi": "withdraw", "key": ..., "reason": ...}`` (what ``ecomkpi withdraw`` sends through the
  trigger's queue): the operator's way out of a day with a rejected file. Any unprocessed copy
  (``raw/``, ``validated/``, ``invalid/`` with its report) moves to ``invalid/withdrawn/`` with a report
  saying who withdrew it and why. A file already in ``processed/`` is in the KPIs; withdrawing it only
  stops it from being announced again (its rows stay: correct them with a corrected upload).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from lambda_trigger import log
from lambda_trigger.batch_ids import RAW_PREFIX
from lambda_trigger.s3_errors import is_missing
from lambda_trigger.s3_objects import lookup
from lambda_trigger.states import Verdict
from lambda_trigger.version_moves import copy_version, delete_version

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

WITHDRAWN_PREFIX = "invalid/withdrawn/"
UNPROCESSED_STAGES = ("raw", "validated", "invalid")
COPY_STAGES = ("validated", "processed", "invalid")
# The metadata validation writes on every copy it places: the ETag of the raw upload it copied.
RAW_ETAG_METADATA = "ecomkpi-raw-etag"


def relative(key: str) -> str:
    return key.removeprefix(RAW_PREFIX)


def exists(s3: S3Client, bucket: str, key: str) -> bool:
    return lookup(s3, bucket, key) is not None


@dataclass(frozen=True)
class StageCopy:
    """A copy the pipeline placed, and which raw upload it was made from (None: not recorded)."""

    key: str
    raw_etag: str | None


def stage_copy(s3: S3Client, bucket: str, key: str) -> StageCopy | None:
    """The stage key that holds a copy of ``key`` placed by the pipeline, if any.

    Validation records the raw upload's ETag in the copy's metadata (``ecomkpi-raw-etag``,
    jobs/validation/locations.py), which tells an older upload's copy from this one's.
    """
    rel = relative(key)
    for stage in COPY_STAGES:
        found = lookup(s3, bucket, f"{stage}/{rel}")
        if found is None:
            continue
        try:
            metadata = s3.head_object(Bucket=bucket, Key=found.key).get("Metadata", {})
        except ClientError as exc:
            if not is_missing(exc):
                raise
            continue  # moved on meanwhile (validated/ -> processed/): the next stage has it
        return StageCopy(found.key, metadata.get(RAW_ETAG_METADATA) or None)
    return None


def _move(s3: S3Client, bucket: str, source: str, destination: str) -> bool:
    """Move the version of ``source`` there is now; False when there is none, or when another
    upload replaced it meanwhile (then the copy, if made, is of the version looked at, and the new
    upload stays where it landed, for its own event: the copy and the delete are both conditional
    on the ETag: :mod:`lambda_trigger.version_moves`)."""
    current = lookup(s3, bucket, source)
    if current is None or not copy_version(s3, bucket, source, current.etag, destination):
        return False
    delete_version(s3, bucket, source, current.etag, destination)
    return True


def set_aside(s3: S3Client, bucket: str, key: str, reason: str, *, now: str, by: str) -> list[str]:
    """Move every unprocessed copy of ``key`` to ``invalid/withdrawn/`` and write its report."""
    rel = relative(key)
    destination = f"{WITHDRAWN_PREFIX}{rel}"
    moved = []
    for stage in UNPROCESSED_STAGES:
        source = f"{stage}/{rel}"
        if _move(s3, bucket, source, destination):
            moved.append(source)
            if stage == "invalid":
                _move(s3, bucket, f"{source}.report.json", f"{destination}.rejection.report.json")
    report = {
        "file": key,
        "verdict": Verdict.WITHDRAWN,
        "summary": f"{key} was withdrawn from its day: {reason}",
        "withdrawn_by": by,
        "moved_from": moved,
        "location": destination if moved else None,
        "decided_at": now,
    }
    s3.put_object(
        Bucket=bucket,
        Key=f"{destination}.report.json",
        Body=(json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
        ContentType="application/json; charset=utf-8",
    )
    log.info(f"Withdrew {key}: moved {moved or 'nothing (no unprocessed copy)'} to {destination}.")
    return moved
