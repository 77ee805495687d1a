"""The S3 adapter: the few object operations the jobs need, made safe to repeat.

Moves are copy-then-delete, so a crash between the two leaves the file in both places (never in
neither); every operation tolerates having been done already, which is what makes the workflow's
retries and overlapping runs safe.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from jobs import aws
from jobs.config import PipelineConfig

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified_ms: int
    metadata: dict[str, str]


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}


class S3Store:
    """Object operations on the pipeline bucket (``S3_BUCKET``)."""

    def __init__(self, config: PipelineConfig, client: S3Client | None = None) -> None:
        self.bucket = config.require_bucket()
        self.client = client or aws.client("s3", config)

    def uri(self, key: str, scheme: str = "s3a") -> str:
        return f"{scheme}://{self.bucket}/{key}"

    def head(self, key: str) -> ObjectInfo | None:
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return ObjectInfo(
            key=key,
            size=int(r.get("ContentLength", 0)),
            etag=str(r.get("ETag", "")).strip('"'),
            last_modified_ms=int(r["LastModified"].timestamp() * 1000),
            metadata=dict(r.get("Metadata", {})),
        )

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                yield ObjectInfo(
                    key=o["Key"],
                    size=int(o.get("Size", 0)),
                    etag=str(o.get("ETag", "")).strip('"'),
                    last_modified_ms=int(o["LastModified"].timestamp() * 1000),
                    metadata={},
                )

    def read_bytes(self, key: str, byte_range: str | None = None) -> bytes:
        if byte_range:
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=byte_range)
        else:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        return response["Body"].read()

    def put_bytes(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def put_text(self, key: str, text: str, content_type: str = "text/plain; charset=utf-8") -> None:
        self.put_bytes(key, text.encode("utf-8"), content_type)

    def put_json(self, key: str, value: Any) -> None:
        self.put_text(key, json.dumps(value, indent=2, sort_keys=True, default=str), "application/json")

    def read_if_exists(self, key: str) -> bytes | None:
        try:
            return self.read_bytes(key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def read_json(self, key: str) -> Any | None:
        body = self.read_if_exists(key)
        return None if body is None else json.loads(body)

    def copy(self, src: str, dst: str, metadata: dict[str, str] | None = None) -> bool:
        """Server-side copy (in parts above ``aws.MULTIPART_COPY_THRESHOLD``: S3 copies at most 5 GiB in
        one request); False when ``src`` does not exist (already moved by an earlier try)."""
        try:
            aws.copy_object(self.client, self.bucket, src, dst, metadata=metadata)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)  # idempotent in S3

    def delete_many(self, keys: Sequence[str]) -> None:
        """One DeleteObjects request for up to 1,000 keys (missing ones are no error in S3)."""
        if not keys:
            return
        response = self.client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
        )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise RuntimeError(
                f"could not delete {len(errors)} of {len(keys)} objects, e.g. {first.get('Key')}: "
                f"{first.get('Code')} {first.get('Message')}"
            )

    def move(self, src: str, dst: str, metadata: dict[str, str] | None = None) -> bool:
        """Copy then delete. Returns False when ``src`` was already gone.

        If ``src`` is missing but ``dst`` exists, an earlier attempt finished the move: not an error.
        """
        if not self.copy(src, dst, metadata):
            return False
        self.delete(src)
        return True

    # --- conditional variants (added for the validation job) -------------------------------------
    # A producer may re-upload a key while a job is moving the previous version. Conditioning the
    # copy and the delete on the ETag the job validated means a newer upload is neither copied under
    # the old verdict nor deleted unseen: it stays in raw/ for the next run.

    def copy_if_match(self, src: str, dst: str, etag: str, metadata: dict[str, str] | None = None) -> bool:
        """Server-side copy of ``src`` only while it is still the version ``etag``.

        False when ``src`` is gone or has changed (412); any other error is raised.
        """
        try:
            aws.copy_object(self.client, self.bucket, src, dst, if_match=etag, metadata=metadata)
        except ClientError as exc:
            if _missing(exc) or _precondition_failed(exc):
                return False
            raise
        return True

    def put_if_absent(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> bool:
        """Create ``key`` only if no object has it (S3 conditional write); False when one does, or a
        concurrent conditional write of it won (409)."""
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*"
            )
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if _precondition_failed(exc) or status == 409:
                return False
            raise
        return True

    def delete_if_match(self, key: str, etag: str) -> bool:
        """Delete ``key`` only while it is the version ``etag`` (S3 conditional delete).

        False when the key has changed since (412: a newer upload, kept) or is already gone.
        """
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=f'"{etag}"')
        except ClientError as exc:
            if _missing(exc) or _precondition_failed(exc):
                return False
            raise
        return True


def _precondition_failed(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") in {"PreconditionFailed", "412"} or status == 412
