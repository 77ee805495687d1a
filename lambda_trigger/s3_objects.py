"""Is a key there, and which upload is it: answered by a listing under the key itself.

A HEAD of a missing key answers 404 only to a caller allowed to list the bucket *without* a
prefix; the trigger's role may list only its own prefixes (``s3:ListBucket`` with ``StringLike``
on ``s3:prefix``, infra/ecomkpi-stack.yaml), so S3 would answer 403 and a redelivered event would
fail instead of finding its work done. A ``ListObjectsV2`` with ``Prefix=<key>`` is allowed by
that grant, answers "absent" as an empty page, and carries the ETag and the upload time. The key
itself sorts before every longer key it prefixes (``x.csv`` < ``x.csv.report.json``), so one
entry settles it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str  # without the quotes
    last_modified: datetime | None
    size: int | None


def lookup(s3: S3Client, bucket: str, key: str) -> ObjectInfo | None:
    """The current object under ``key``, or None when there is none."""
    page = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    for entry in page.get("Contents", []):
        if entry.get("Key") == key:
            return ObjectInfo(
                key=key,
                etag=str(entry.get("ETag", "")).strip('"'),
                last_modified=entry.get("LastModified"),
                size=entry.get("Size"),
            )
    return None
