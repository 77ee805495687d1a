"""Optional per-day manifests: the exact set of keys a batch must have before it may run.

Without a manifest a day is ready as soon as one orders file and one order_items file (and the
products master data) are present, which is right for producers that upload one file per table.
A producer that uploads a day in several parts uploads ``raw/manifests/YYYY-MM-DD.json`` *first*;
the batch then waits for every listed key. Accepted formats (both may be combined)::

    {"batch_id": "2025-07-10",
     "expected_keys": ["raw/orders/2025-07-10/orders_part1.csv", "order_items/2025-07-10/items.csv"]}

    {"batch_id": "2025-07-10",
     "orders": ["orders_part1.csv", "orders_part2.csv"],      # relative to raw/orders/2025-07-10/
     "order_items": ["raw/order_items/2025-07-10/items.csv"]} # or absolute

``expected_keys`` entries are absolute (``raw/...``) or relative to ``raw/``; ``orders`` /
``order_items`` entries are absolute, relative to ``raw/`` (``orders/...``) or bare file names in the
day's folder. ``batch_id`` is optional but must match the file name when present. The products key
may be listed and is ignored (products are always required).
"""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from lambda_trigger.batch_ids import DATA_TABLES, DataTable, IgnoredKey, classify_key
from lambda_trigger.s3_errors import is_missing

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

MAX_MANIFEST_BYTES = 1_000_000


class ManifestError(ValueError):
    """The manifest is unusable; it is logged and ignored (retrying would not fix it).

    ``readable`` is False when there was nothing to read (the object is gone): such a manifest
    cannot be moved aside; a readable but wrong one is moved to ``invalid/unrecognised/``.
    """

    def __init__(self, message: str, *, readable: bool = True) -> None:
        super().__init__(message)
        self.readable = readable


def _absolute(entry: object, table: str | None, batch_id: str) -> str:
    if not isinstance(entry, str) or not entry.strip():
        raise ManifestError(f"manifest entry {entry!r} is not a key")
    entry = entry.strip()
    if entry.startswith("raw/"):
        return entry
    if table is None or entry.startswith(f"{table}/"):
        return f"raw/{entry}"
    return f"raw/{table}/{batch_id}/{entry}"


def parse_manifest(raw: bytes, batch_id: str) -> frozenset[str]:
    """Return the data keys (orders and order_items) the manifest of ``batch_id`` requires."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"manifest is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ManifestError("manifest must be a JSON object")
    if "batch_id" in doc and doc["batch_id"] != batch_id:
        raise ManifestError(
            f"manifest batch_id {doc['batch_id']!r} does not match its file name ({batch_id})"
        )
    entries: list[tuple[object, DataTable | None]] = []
    for field, table in (("expected_keys", None), *((t, t) for t in DATA_TABLES)):
        values = doc.get(field, [])
        if not isinstance(values, list):
            raise ManifestError(f"manifest field {field!r} must be a list")
        entries.extend((value, table) for value in values)
    keys: set[str] = set()
    for entry, table in entries:
        key = _absolute(entry, table, batch_id)
        try:
            info = classify_key(key, today=date.fromisoformat(batch_id))
        except IgnoredKey as exc:
            raise ManifestError(f"manifest key {key!r} is not a valid batch key: {exc}") from exc
        if info.kind == "products":
            continue
        if info.kind not in DATA_TABLES or info.batch_id != batch_id or not info.dated:
            raise ManifestError(f"manifest key {key!r} is not in the {batch_id} folders")
        keys.add(key)
    if not keys:
        raise ManifestError("manifest lists no orders/order_items keys")
    return frozenset(keys)


def read_manifest(s3_client: S3Client, bucket: str, key: str, batch_id: str) -> frozenset[str]:
    """Fetch and parse a manifest. Transient S3 errors propagate (the event is retried)."""
    try:
        response = s3_client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_missing(exc):
            raise ManifestError(f"manifest s3://{bucket}/{key} no longer exists", readable=False) from exc
        raise
    body = response["Body"].read(MAX_MANIFEST_BYTES + 1)
    if len(body) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    return parse_manifest(body, batch_id)
