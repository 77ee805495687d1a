"""Dropped rows kept: one CSV per accepted file version that lost rows to a ``drop`` rule.

``invalid/rows/<relative key>`` holds the rows of the file's latest accepted version that broke a
drop rule (:mod:`jobs.validation.actions`): each with its row number in the file (1 = the first data
row), the rules it broke, the version's raw ETag, and its values as validation read them (trimmed,
an empty value blank). An accepted version without dropped rows removes an earlier version's CSV
(one multi-object delete per dataset and run), so the CSV always speaks of the rows the KPIs left
out. A rejected version leaves it alone: the earlier version's rows are still the ones served.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jobs.keys import (
    QUARANTINE_BOOKKEEPING,
    QUARANTINE_ROWS_PREFIX,
    QUARANTINE_RULE_SEPARATOR,
    quarantine_rows_key,
)
from jobs.s3_store import S3Store

ROWS_PREFIX = QUARANTINE_ROWS_PREFIX
BOOKKEEPING = QUARANTINE_BOOKKEEPING
RULE_SEPARATOR = QUARANTINE_RULE_SEPARATOR


quarantine_key = quarantine_rows_key


def rows_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """The CSV text: the bookkeeping columns, then the file's own columns."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*BOOKKEEPING, *columns])
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in (*BOOKKEEPING, *columns)])
    return out.getvalue()


def write_rows(store: S3Store, rel: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    key = quarantine_key(rel)
    store.put_text(key, rows_csv(columns, rows), "text/csv; charset=utf-8")
    return key


def clear(store: S3Store, rels: Sequence[str]) -> None:
    """Remove the CSVs of ``rels`` (accepted versions that dropped nothing): a missing key is fine."""
    keys = [quarantine_key(r) for r in rels]
    for i in range(0, len(keys), 1000):  # DeleteObjects takes 1,000 keys a request
        store.delete_many(keys[i : i + 1000])
