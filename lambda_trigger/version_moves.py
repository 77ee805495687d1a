"""Moving one upload of a key: the copy and the delete both conditional on that upload's ETag.

A producer may upload a key again while the trigger moves it (an unrecognised key to
``invalid/unrecognised/``, a withdrawn one to ``invalid/withdrawn/``). Copying and deleting only
the version that was looked at keeps the new upload where it landed, for its own event, instead of
moving a version nobody looked at or deleting one nobody saw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from jobs import aws
from lambda_trigger import log
from lambda_trigger.s3_errors import code, is_changed, is_missing

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


def copy_version(s3: S3Client, bucket: str, key: str, etag: str, destination: str) -> bool:
    """Copy the upload ``etag`` of ``key`` (in parts when large: S3 copies at most 5 GiB at once);
    False, logged, when the key changed or is gone meanwhile."""
    try:
        aws.copy_object(s3, bucket, key, destination, if_match=etag)
    except ClientError as exc:
        if is_missing(exc) or is_changed(exc):
            log.info(
                f"s3://{bucket}/{key} changed or is gone while moving it ({code(exc)}); left for its own event."
            )
            return False
        raise
    return True


def delete_version(s3: S3Client, bucket: str, key: str, etag: str, destination: str) -> bool:
    """Delete the upload ``etag`` of ``key`` once copied to ``destination``; False, logged, when
    another upload replaced it meanwhile (that one stays)."""
    try:
        s3.delete_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')
    except ClientError as exc:
        if not (is_missing(exc) or is_changed(exc)):
            raise
        log.warn(
            f"s3://{bucket}/{key} was uploaded again while it moved to {destination}: the new upload stays "
            f"for its own event ({code(exc)})."
        )
        return False
    return True
