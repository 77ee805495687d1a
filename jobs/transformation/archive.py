"""Moving applied files from ``validated/`` to ``processed/``, only after the KPIs are committed.

The move is conditioned on the validated copy's ETag: if the producer re-uploaded the key and
validation replaced the copy while this run was busy, the newer version stays in ``validated/`` for
the next run instead of being archived unread. The products master is copied, never moved: every
batch reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
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


ARCHIVE_THREADS = 8  # a file's move is a few S3 requests; a day in many parts waits on them together


def archive(store: S3Store, files: Iterable[InputFile]) -> ArchiveResult:
    """Archive every applied version, then drop its staging rows (silver holds them now); several
    files at a time. The lists keep the order of ``files``."""
    result = ArchiveResult()
    todo = list(files)

    def one(f: InputFile) -> tuple[ArchiveResult, int]:
        own = ArchiveResult()
        _archive_one(store, f, own)
        return own, delete_staged(store, f.staging_prefix)

    if len(todo) > 1:
        with ThreadPoolExecutor(max_workers=ARCHIVE_THREADS, thread_name_prefix="archive") as pool:
            done = list(pool.map(one, todo))
    else:
        done = [one(f) for f in todo]
    for own, deleted in done:
        result.moved += own.moved
        result.copied += own.copied
        result.left += own.left
        result.staging_objects_deleted += deleted
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
