"""The lake's ``quarantine`` table: the rows drop rules left out, queryable beside silver.

Validation keeps an accepted version's dropped rows in ``invalid/rows/<rel>`` (a CSV with each row's
number, the rules it broke, the version's raw ETag and its values as read:
jobs/validation/quarantine.py). When the transformation applies that version, its rows replace the
file's earlier quarantined rows in the Delta table ``quarantine`` (partitioned by ``date``, the
file's day), as its good rows replace the earlier version's in silver: a corrected re-upload that
drops nothing removes them. One ``replaceWhere`` commit per run, only when some applied file has or
had quarantined rows.

Which files had rows is kept in ``<lake control prefix>/_quarantine_files.json`` (rel -> raw ETag),
so a run whose files never dropped a row reads one small object and starts no Spark job. It is
widened before the commit and narrowed after it: a crash in between leaves a name too many (a later
replace of nothing), never one too few.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from jobs.keys import QUARANTINE_BOOKKEEPING as BOOKKEEPING
from jobs.keys import QUARANTINE_RULE_SEPARATOR as RULE_SEPARATOR
from jobs.keys import quarantine_rows_key as quarantine_key
from jobs.local_frames import local_frame
from jobs.run_log import RunLog
from jobs.s3_store import S3Store
from jobs.transformation.lake import QUARANTINE, QUARANTINE_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.transformation.inputs import InputFile
    from jobs.transformation.lake import Commit, Lake

_DAY_FOLDER = re.compile(r"/(\d{4}-\d{2}-\d{2})/")


def file_day(rel: str, arrived_ms: int) -> date:
    """The file's day: its date folder, else the UTC day it arrived (the trigger's rule)."""
    found = _DAY_FOLDER.search(f"/{rel}")
    if found:
        return date.fromisoformat(found.group(1))
    return datetime.fromtimestamp(arrived_ms / 1000, UTC).date()


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_rows(text: str, f: InputFile, run_id: str) -> tuple[list[tuple[Any, ...]], int]:
    """The CSV's rows of ``f``'s version as table rows, and how many belonged to another version."""
    day = file_day(f.rel, f.arrived_ms)
    out, foreign = [], 0
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("raw_etag") != f.raw_etag:
            foreign += 1  # a newer version validated and not yet applied: its run brings them
            continue
        values = {k: v for k, v in row.items() if k not in BOOKKEEPING and k is not None}
        rules = [r for r in (row.get("failed_rules") or "").split(RULE_SEPARATOR) if r]
        out.append((day, f.dataset, f.rel, f.raw_etag, int(row["row_number"]), rules, values, run_id))
    return out, foreign


class QuarantineTable:
    """Applies the quarantined rows of a run's file versions to the lake (see the module)."""

    def __init__(self, store: S3Store, control_prefix: str, log: RunLog) -> None:
        self.store, self.log = store, log
        self.index_key = f"{control_prefix}/_quarantine_files.json"

    def _index(self) -> dict[str, str]:
        value = self.store.read_json(self.index_key)
        files = value.get("files") if isinstance(value, dict) else None
        return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}

    def _csv_keys(self, files: Sequence[InputFile]) -> set[str]:
        """The applied files that have a CSV now: one listing per folder, not a request per file."""
        wanted = {quarantine_key(f.rel) for f in files}
        folders = {key.rsplit("/", 1)[0] + "/" for key in wanted}
        return {o.key for folder in sorted(folders) for o in self.store.list(folder) if o.key in wanted}

    def apply(
        self, spark: SparkSession, lake: Lake, files: Sequence[InputFile], run_id: str
    ) -> Commit | None:
        if not files:
            return None
        index = self._index()
        with_csv = self._csv_keys(files)
        replaced = [f for f in files if f.rel in index or quarantine_key(f.rel) in with_csv]
        if not replaced:
            return None
        with self.log.stage("quarantine", files=len(replaced)) as s:
            rows: list[tuple[Any, ...]] = []
            kept: dict[str, str] = {}
            for f in replaced:
                key = quarantine_key(f.rel)
                if key not in with_csv:
                    continue
                mine, foreign = parse_rows(self.store.read_bytes(key).decode("utf-8"), f, run_id)
                if foreign:
                    self.log.event("quarantine.other_version", level="WARN", file=f.rel, rows=foreign)
                rows += mine
                if mine:
                    kept[f.rel] = f.raw_etag
            names = {f.rel for f in replaced}
            widened = {**index, **kept}
            if widened != index:
                self.store.put_json(self.index_key, {"files": widened})
            commit = None
            if rows or lake.exists(QUARANTINE):
                frame = local_frame(spark, rows, QUARANTINE_SCHEMA).coalesce(1)
                where = "source_file IN (" + ", ".join(sql_string(n) for n in sorted(names)) + ")"
                commit = lake.overwrite(QUARANTINE, frame, replace_where=where)
            narrowed = {rel: etag for rel, etag in widened.items() if rel not in names or rel in kept}
            if narrowed != widened:
                self.store.put_json(self.index_key, {"files": narrowed})
            s.update(rows=len(rows), files_with_rows=len(kept), commit=commit.as_dict() if commit else None)
            return commit
