"""The Spark check of one file whose head was readable: read, shape, suite, staging rows, verdict.

The file is read once into a cached frame (all columns strings from the known header), normalised,
given its absent optional columns as null and the check columns; one aggregation counts rows,
ragged rows and undecodable bytes; then the dataset's suite runs with GX (skipped when the shape
already rejects: misaligned rows would only make the suite's results noise). A file that passes
leaves its parsed rows as staging Parquet before its verdict is recorded.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from jobs.contract import DATASETS, ORDER_ITEMS
from jobs.run_log import RunLog
from jobs.s3_store import ObjectInfo, S3Store
from jobs.validation.actions import SuiteActions
from jobs.validation.conclude import Concluder
from jobs.validation.engine import Engine
from jobs.validation.findings import Finding
from jobs.validation.outcomes import FileOutcome, Target
from jobs.validation.product_ids import ProductIds
from jobs.validation.structural import HeadInspection
from jobs.validation.suites import load_suite_json

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


class SparkCheck:
    """Validates files with Spark and GX; the suites are read at construction (a missing one breaks the run)."""

    def __init__(
        self,
        store: S3Store,
        log: RunLog,
        engine: Engine,
        product_ids: ProductIds,
        concluder: Concluder,
    ) -> None:
        self._store = store
        self._log = log
        self._engine = engine
        self._product_ids = product_ids
        self._concluder = concluder
        self._suite_json: dict[str, dict[str, Any]] = {d: load_suite_json(d) for d in DATASETS}
        # GX's context (its stores, the batch definitions) is not made for concurrent use: the run's
        # files may be checked on several threads (ValidationJob), their suites one at a time.
        self.gx_lock = threading.Lock()

    def suite_json(self, dataset: str) -> dict[str, Any]:
        return self._suite_json[dataset]

    def validate(self, t: Target, raw: ObjectInfo, inspection: HeadInspection) -> FileOutcome:
        """Check one file with Spark and GX, stage its rows if it passes, then conclude its verdict."""
        from jobs.validation.reading import CORRUPT_RECORD, file_shape
        from jobs.validation.reports import findings_from_suite_result

        assert t.dataset is not None  # decisions.inspect rejects files outside the dataset folders
        checked, absent = self._checked_frame(t.dataset, raw, inspection.raw_header)
        checked = checked.cache()
        notes: list[str] = []
        try:
            started = time.perf_counter()
            shape = file_shape(checked, inspection.columns)
            findings = list(shape.findings)
            read_seconds = time.perf_counter() - started
            if not findings:  # misaligned rows would only make the suite's results noise
                with self.gx_lock:
                    result = self._engine.gx().validate(t.dataset, checked.drop(CORRUPT_RECORD), t.rel)
                findings = findings_from_suite_result(result, inspection.columns, absent)
                findings = self._actions(t.dataset, checked, findings, shape.rows)
            self._log.event(
                "file.spark",
                file=raw.key,
                rows=shape.rows,
                read_seconds=round(read_seconds, 3),
                rules_seconds=round(time.perf_counter() - started - read_seconds, 3),
            )
            if t.master:
                if shape.findings or "id" in absent:
                    self._product_ids.master_malformed(raw.key, raw.etag)
                else:
                    self._product_ids.remember(checked, raw.etag)
            if t.dataset == ORDER_ITEMS and self._product_ids.note:
                notes.append(self._product_ids.note)
            if not any(f.rejects for f in findings):
                self._stage(t, raw, checked, shape.partition_rows)
        finally:
            checked.unpersist()
        # Items were checked against the master the ids came from: their verdict names its version.
        version = self._product_ids.version if t.dataset == ORDER_ITEMS else ""
        return self._concluder.conclude(
            t,
            raw,
            findings,
            rows=shape.rows,
            notes=notes,
            products_version=version,
            columns=inspection.columns,
        )

    def _actions(self, dataset: str, checked: DataFrame, findings: list[Finding], rows: int) -> list[Finding]:
        """The findings with their actions. A file checked on its own cannot drop rows: a drop rule
        that fails rejects it, for the reason the one-pass check gives when its rows to drop exceed
        the threshold, else because they could not be dropped here (jobs.validation.actions)."""
        from jobs.validation.actions import DROP
        from jobs.validation.rule_counts import RuleCounts, UnsupportedRule

        suite = self.suite_json(dataset)
        actions = SuiteActions.of(suite)
        if not any(actions.action(f) == DROP for f in findings):
            return findings
        try:
            drops = RuleCounts(suite).any_failing(actions.drop_indexes, checked.columns)
        except UnsupportedRule:
            drops = None
        dropped = checked.where(drops).count() if drops is not None else None
        if dropped is not None and not actions.too_many(rows, dropped):
            dropped = None
        return actions.apply(findings, rows, dropped)

    def _checked_frame(
        self, dataset: str, raw: ObjectInfo, header: tuple[str, ...]
    ) -> tuple[DataFrame, frozenset[str]]:
        """Read, normalise, add absent columns as null and the check columns; not cached yet."""
        from jobs.normalize import normalize_columns
        from jobs.validation.checks import add_check_columns, with_columns_present
        from jobs.validation.reading import read_csv
        from jobs.validation.suites import required_columns, source_columns

        suite = self._suite_json[dataset]
        required = required_columns(suite)
        frame = normalize_columns(read_csv(self._engine.spark(), self._store.uri(raw.key), header))
        missing = frozenset(c for c in required if c not in frame.columns)
        frame, absent_optional = with_columns_present(
            frame, [c for c in source_columns(suite) if c not in required]
        )
        ids = self._product_ids.lookup() if dataset == ORDER_ITEMS else None
        return add_check_columns(dataset, frame, ids), missing | absent_optional

    def _stage(self, t: Target, raw: ObjectInfo, checked: DataFrame, partition_rows: tuple[int, ...]) -> None:
        """Leave the parsed rows for the transformation (before the verdict is recorded and the file
        placed: a file in ``validated/`` whose verdict is recorded always has them)."""
        from jobs.staging import FileVersion, stage_rows, write_staged
        from jobs.validation.suites import rejects_repeated_keys

        version = FileVersion(rel=t.rel, raw_etag=raw.etag, arrived_ms=raw.last_modified_ms)
        unique = rejects_repeated_keys(version.dataset, self._suite_json[version.dataset])
        with self._log.stage("staging", file=raw.key, prefix=version.prefix) as s:
            rows = stage_rows(checked, version, partition_rows)
            summary = write_staged(
                rows, self._store.uri(version.prefix), self._store, dataset=version.dataset, unique_key=unique
            )
            if summary is not None:
                s.update(key_summary=summary.as_json())
