"""Keys under ``raw/`` that belong to no batch: moved to ``invalid/unrecognised/`` with a report.

The product's promise is that every file landing in ``raw/`` ends in ``processed/`` or ``invalid/``
with a report. A key the trigger cannot place (``x.CSV``, a deeper folder, ``2025-02-30``, an
unreadable manifest) would otherwise sit in ``raw/`` forever with one log line nobody reads. So the
trigger copies it to ``invalid/unrecognised/<key without raw/>``, writes
``<that>.report.json`` naming the file and the rule it broke, deletes the raw key (the bucket is
versioned in AWS, so nothing is lost) and counts it in the ``ecomkpi/UnrecognisedKeys`` metric,
which has an alarm.

Idempotent: a redelivered event finds the raw key gone and the copy present, and only re-counts
nothing. The copy and the delete are conditional on the ETag listed first: a corrected upload that
lands while a wrong one moves is never deleted with it. A re-upload of the same wrong key is moved again (its report is rewritten).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lambda_trigger import log
from lambda_trigger.batch_ids import RAW_PREFIX
from lambda_trigger.s3_objects import lookup
from lambda_trigger.states import Verdict
from lambda_trigger.version_moves import copy_version, delete_version

if TYPE_CHECKING:
    from types_boto3_cloudwatch import CloudWatchClient
    from types_boto3_s3 import S3Client

UNRECOGNISED_PREFIX = "invalid/unrecognised/"
METRIC_NAMESPACE = "ecomkpi"
METRIC_NAME = "UnrecognisedKeys"
REPORT_VERSION = 1
LAYOUT_HINT = (
    "data files go to raw/orders/YYYY-MM-DD/<name>.csv or raw/order_items/YYYY-MM-DD/<name>.csv "
    "(or raw/<table>/<name>.csv for today's batch), products to the products key, manifests to "
    "raw/manifests/YYYY-MM-DD.json"
)


@dataclass(frozen=True)
class Moved:
    key: str
    destination: str
    report_key: str


def destination_of(key: str) -> str:
    """``raw/orders/x.CSV`` -> ``invalid/unrecognised/orders/x.CSV`` (the key keeps its path)."""
    return UNRECOGNISED_PREFIX + key.removeprefix(RAW_PREFIX)


def is_movable(key: str) -> bool:
    """Only keys under ``raw/`` are ours to move; anything else in the bucket is left alone."""
    return key.startswith(RAW_PREFIX) and not key.endswith("/")


def report(key: str, rule: str, reason: str, *, destination: str, now: str, event: dict[str, Any]) -> str:
    """The report beside the moved file: which file, which rule, why, and where files should go."""
    return (
        json.dumps(
            {
                "report_version": REPORT_VERSION,
                "file": key,
                "verdict": Verdict.UNRECOGNISED,
                "summary": f"{key} was not processed: {reason}",
                "failures": [{"rule": rule, "column": None, "message": reason}],
                "expected_layout": LAYOUT_HINT,
                "location": destination,
                "etag": event.get("etag"),
                "size_bytes": event.get("size"),
                "event_time": event.get("event_time"),
                "decided_at": now,
                "decided_by": "trigger",
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )


def move_unrecognised(
    s3: S3Client, bucket: str, key: str, rule: str, reason: str, *, now: str, event: dict[str, Any]
) -> Moved | None:
    """Move ``key`` out of ``raw/``; None when it is already gone (a redelivered event) or was
    uploaded again while it moved.

    Only the upload that was looked at moves: the copy is conditional on its ETag and so is the
    delete (as ``coordinator._archive_manifest`` does), so a corrected re-upload landing between the
    copy and the delete stays in ``raw/`` for its own event instead of being deleted unseen.
    """
    destination = destination_of(key)
    report_key = f"{destination}.report.json"
    current = lookup(s3, bucket, key)
    if current is None:
        log.info(f"s3://{bucket}/{key} is already gone (moved earlier or deleted); nothing to move.")
        return None
    if not copy_version(s3, bucket, key, current.etag, destination):
        return None
    body = report(key, rule, reason, destination=destination, now=now, event={**event, "etag": current.etag})
    s3.put_object(
        Bucket=bucket,
        Key=report_key,
        Body=body.encode("utf-8"),
        ContentType="application/json; charset=utf-8",
    )
    if not delete_version(s3, bucket, key, current.etag, destination):
        return Moved(key, destination, report_key)
    log.warn(f"Moved unrecognised s3://{bucket}/{key} to {destination} ({reason}); report {report_key}.")
    return Moved(key, destination, report_key)


def count(cloudwatch: CloudWatchClient, bucket: str, moved: int = 1) -> None:
    """Best effort: the move is what matters, a lost data point must not undo or repeat it."""
    put_count(cloudwatch, METRIC_NAME, bucket, moved, "unrecognised key(s)")


def put_count(cloudwatch: CloudWatchClient, name: str, bucket: str, value: int, what: str) -> None:
    """One ``ecomkpi/<name>`` data point per bucket; a metric outage is logged, never raised (it must
    not fail, and so re-drive, the event or sweep that counted)."""
    try:
        cloudwatch.put_metric_data(
            Namespace=METRIC_NAMESPACE,
            MetricData=[
                {
                    "MetricName": name,
                    "Dimensions": [{"Name": "Bucket", "Value": bucket}],
                    "Value": float(value),
                    "Unit": "Count",
                }
            ],
        )
    except Exception as exc:
        log.error(f"Could not count {value} {what} in {METRIC_NAMESPACE}/{name}: {exc!r}")
