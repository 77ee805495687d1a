"""A staged version's ``_SUCCESS`` marker: what a reader may trust of the rows beside it.

Written last by :func:`jobs.staging.write_staged` (and ``write_staged_versions``): the version's
:class:`KeySummary` (its table key unique within the file, for the planner) and the names, sizes and
row count of its Parquet files. Staging expires after its lifecycle days and parts can be deleted
or rewritten by hand while the marker stays; :func:`read_marker` trusts the rows only while every
file it names is there at its size, so a reader parses the validated file instead of applying part
of a version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobs.s3_store import S3Store

SUCCESS_MARKER = "_SUCCESS"
SUMMARY_FORMAT = 1


@dataclass(frozen=True)
class KeySummary:
    """What a staged version's marker says of its table key (:data:`jobs.staging.TABLE_KEYS`): whether each value
    occurs once in the file (validation rejects a file where one does not). With the key ranges the
    planner observes as it reads the rows, that proves a new day's keys new (tests/jobs/test_key_ranges.py).
    No range here: observing one while the rows are written cost ~0.35 s per 100k rows on the
    validation's answer (bench/results/LOG.md, 50d2942), where the plan's read observes it anyway."""

    key: str
    unique: bool

    def as_json(self) -> dict[str, Any]:
        return {"summary": SUMMARY_FORMAT, "key": self.key, "unique": self.unique}

    @classmethod
    def from_marker(cls, body: bytes) -> KeySummary | None:
        """The summary in a ``_SUCCESS`` marker; None for an empty marker (an older release, or
        Spark's own) or anything this release did not write."""
        try:
            value = json.loads(body)
            if value.get("summary") != SUMMARY_FORMAT:
                return None
            return cls(str(value["key"]), value["unique"] is True)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def marker_body(summary: KeySummary | None, parts: Mapping[str, int], rows: int | None = None) -> bytes:
    """A ``_SUCCESS`` marker: the version's key summary (if its dataset has a table key), the names
    and sizes of its Parquet files and, where the writer knows it, their row count, so that a reader
    can tell rows that are gone or cut short (staging expires after its lifecycle days, a part
    deleted or replaced by hand) from rows that are all there."""
    body: dict[str, Any] = {} if summary is None else summary.as_json()
    body["parts"] = sorted(parts)
    body["sizes"] = {name: parts[name] for name in sorted(parts)}
    if rows is not None:
        body["rows"] = rows
    return json.dumps(body).encode()


def marker_files(body: bytes) -> dict[str, int | None] | None:
    """The Parquet files a marker names, with their sizes (None where it records none: a marker of
    an earlier release names its files only); None when it names no files (an older release still,
    or Spark's own empty marker)."""
    try:
        value = json.loads(body)
        parts, sizes = value.get("parts"), value.get("sizes")
    except (ValueError, TypeError, AttributeError):
        return None
    if not isinstance(parts, list):
        return None
    sizes = sizes if isinstance(sizes, dict) else {}
    return {str(p): (int(sizes[p]) if isinstance(sizes.get(p), int) else None) for p in parts}


def parquet_files(store: S3Store, prefix: str) -> dict[str, int]:
    return {o.key.rsplit("/", 1)[-1]: o.size for o in store.list(f"{prefix}/") if o.key.endswith(".parquet")}


def read_marker(
    store: S3Store, prefix: str, listed: Mapping[str, Mapping[str, int]] | None = None
) -> tuple[bool, KeySummary | None]:
    """(whether the version's rows are all staged, what its marker says of its key): one GET, and
    one listing when the marker names its files, unless ``listed`` (:func:`staged_files`) holds
    it. A marker whose files are not all there, or not of the sizes it recorded (expired, deleted,
    replaced or cut short), counts as no rows: the reader parses the validated file instead of
    applying part of it. The sizes come with the listing: the check costs no request."""
    body = store.read_if_exists(f"{prefix}/{SUCCESS_MARKER}")
    if body is None:
        return False, None
    files = marker_files(body)
    present = listed.get(prefix, {}) if listed is not None else parquet_files(store, prefix)
    if files is not None and any(
        name not in present or (size is not None and present[name] != size) for name, size in files.items()
    ):
        return False, None
    return True, KeySummary.from_marker(body)
