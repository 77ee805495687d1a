"""The dates whose KPIs are not yet served, kept in S3 until DynamoDB has them.

Silver, gold and DynamoDB are three commits with no transaction spanning them. Before touching
silver, a run records the dates it is about to change; the record is removed only after the
DynamoDB write. A run that dies in between leaves the record behind, and the next run (a retry or
the next batch) recomputes and serves those dates as well, even though the files that touched them
now count as applied. Written only while holding the lake lock, so plain puts are enough.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.s3_store import S3Store


@dataclass
class PendingDates:
    store: S3Store
    key: str  # <lake prefix>/_pending_dates.json

    def read(self) -> set[str]:
        value = self.store.read_json(self.key)
        return set(value.get("dates", [])) if isinstance(value, dict) else set()

    def write(self, dates: set[str], run_id: str) -> None:
        self.store.put_json(self.key, {"dates": sorted(dates), "run_id": run_id})

    def clear(self) -> None:
        self.store.delete(self.key)


def control_prefix(lake_path: str, bucket: str) -> str:
    """Key prefix in the pipeline bucket for the lock and the journal of the lake at ``lake_path``.

    A lake inside the bucket keeps them next to its tables (``lake/_lock.json``); any other lake
    (a local directory, another bucket) uses ``lake/`` of the pipeline bucket.
    """
    for scheme in ("s3a://", "s3://"):
        head = f"{scheme}{bucket}/"
        if lake_path.startswith(head) and lake_path[len(head) :].strip("/"):
            return lake_path[len(head) :].strip("/")
    return "lake"
