"""Moving applied files from ``validated/`` to ``processed/``, only after the KPIs are committed.

The move is conditioned on the validated copy's ETag: if the producer re-uploaded the key and
validation replaced the copy while this run was busy, the newer version stays in ``validated/`` for
the next run instead of being archived unread. The products master is copied, never moved: every
batch reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from jobs.keys import PROCESSED, stage_key
from jobs.s3_store import S3Store
from jobs.staging import delete_staged
from jobs.transformation.inputs import InputFile, is_products


@dataclass
class ArchiveResult:
    moved: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # changed under us: a newer version waits
    staging_objects_deleted: int = 0


def archive(store: S3Store, files: Iterable[InputFile]) -> ArchiveResult:
    """Archive every applied version, then drop its staging rows (silver holds them now)."""
    result = ArchiveResult()
    for f in files:
        _archive_one(store, f, result)
        result.staging_objects_deleted += delete_staged(store, f.staging_prefix)
    return result


def _archive_one(store: S3Store, f: InputFile, result: ArchiveResult) -> None:
    dst = stage_key(PROCESSED, f.rel)
    if not store.copy_if_match(f.key, dst, f.object_etag):
        result.left.append(f.rel)
        return
    if is_products(f):
        result.copied.append(f.rel)
    elif store.delete_if_match(f.key, f.object_etag):
        result.moved.append(f.rel)
    else:
        result.left.append(f.rel)
