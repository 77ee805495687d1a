"""Files nobody was told about: raw/ keys whose S3 event never reached the trigger.

S3 notifications are reliable but not guaranteed (a misconfigured notification, a queue purged by
hand, a message dead-lettered and dropped), and the sweep repairs only days the tracker knows. So
the sweep also lists ``raw/`` -- bounded (``raw_listing_limit`` keys per sweep, resumed from a cursor
kept in the tracker), in pages -- and feeds every key older than ``unannounced_after_minutes`` that
the tracker has no record of (or whose last counted upload has another ETag) in as an arrival,
exactly as its event would have. Keys it cannot place are moved to ``invalid/unrecognised/`` by
that same path. The count of fed keys is the ``ecomkpi/UnannouncedKeys`` metric; any non-zero
value means events are being lost, and the stack alarms on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

from lambda_trigger.batch_ids import RAW_PREFIX, IgnoredKey, classify_key
from lambda_trigger.events import FileArrival
from lambda_trigger.s3_objects import ObjectInfo
from lambda_trigger.tracker import BatchFileTracker, BatchState, upload_attribute
from lambda_trigger.unrecognised import put_count

if TYPE_CHECKING:
    from types_boto3_cloudwatch import CloudWatchClient
    from types_boto3_s3 import S3Client

METRIC_NAMESPACE = "ecomkpi"
METRIC_NAME = "UnannouncedKeys"
DEFAULT_AGE_MINUTES = 15.0  # S3 delivers notifications within seconds; a quarter hour is a lost one
DEFAULT_LISTING_LIMIT = 5_000  # keys per sweep: ~5 List requests, well inside the Lambda's 60 s
PAGE_SIZE = 1_000


def age(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


@dataclass(frozen=True)
class Listing:
    entries: list[ObjectInfo]
    resume_after: str | None  # where the next sweep continues; None: the listing reached the end


def list_raw(s3: S3Client, bucket: str, start_after: str | None, limit: int) -> Listing:
    """Up to ``limit`` keys of raw/ after ``start_after``, in key order."""
    entries: list[ObjectInfo] = []
    request: dict[str, object] = {"Bucket": bucket, "Prefix": RAW_PREFIX, "MaxKeys": min(PAGE_SIZE, limit)}
    if start_after:
        request["StartAfter"] = start_after
    while True:
        page = s3.list_objects_v2(**request)  # type: ignore[arg-type]
        for entry in page.get("Contents", []):
            entries.append(
                ObjectInfo(
                    key=entry["Key"],
                    etag=str(entry.get("ETag", "")).strip('"'),
                    last_modified=entry.get("LastModified"),
                    size=entry.get("Size"),
                )
            )
        if not page.get("IsTruncated"):
            return Listing(entries, None)
        if len(entries) >= limit:
            return Listing(entries, entries[-1].key)
        request["ContinuationToken"] = page["NextContinuationToken"]
        request["MaxKeys"] = min(PAGE_SIZE, limit - len(entries))
        request.pop("StartAfter", None)


@dataclass
class KnownUploads:
    """Does the tracker know this upload? One read per day (and per undated key) per sweep."""

    tracker: BatchFileTracker
    products_key: str
    today: date
    _days: dict[str, BatchState | None] = field(default_factory=dict)
    _etags: dict[str, dict[str, str | None] | None] = field(default_factory=dict)

    def _day(self, batch_id: str) -> BatchState | None:
        if batch_id not in self._days:
            self._days[batch_id] = self.tracker.get(batch_id)
        return self._days[batch_id]

    def _etag(self, batch_id: str, key: str) -> str | None:
        if batch_id not in self._etags:
            self._etags[batch_id] = self.tracker.upload_etags(batch_id)
        etags = self._etags[batch_id] or {}
        return etags.get(upload_attribute(key))

    def has(self, entry: ObjectInfo) -> bool:
        try:
            info = classify_key(entry.key, today=self.today, products_key=self.products_key)
        except IgnoredKey:
            return False  # no event moved it to invalid/unrecognised/: its event was lost
        if info.kind == "products":
            return True  # the master stays in raw/ by design; a lost products event is a re-upload away
        if info.kind == "manifest":
            state = self._day(info.batch_id)
            return state is not None and state.manifest_key == entry.key and state.manifest_etag == entry.etag
        batch_id = info.batch_id if info.dated else self.tracker.undated_day(entry.key)
        if batch_id is None:
            return False
        state = self._day(batch_id)
        if state is None or entry.key not in (state.orders_keys | state.order_items_keys):
            return False
        recorded = self._etag(batch_id, entry.key)
        return recorded is None or recorded == entry.etag  # None: counted before ETags were kept


def arrival_of(bucket: str, entry: ObjectInfo) -> FileArrival:
    """The ObjectCreated event the key's upload would have sent (no sequencer: its token is the
    key, ETag and upload time, so feeding it twice counts once)."""
    moment = entry.last_modified
    return FileArrival(
        bucket=bucket,
        key=entry.key,
        event_name="ObjectCreated:Unannounced",
        etag=entry.etag,
        event_time=moment.isoformat().replace("+00:00", "Z") if moment else None,
        size=entry.size,
    )


def count(cloudwatch: CloudWatchClient, bucket: str, found: int) -> None:
    """Best effort, every sweep (zero included, so the alarm has data to judge)."""
    put_count(cloudwatch, METRIC_NAME, bucket, found, "unannounced key(s)")
