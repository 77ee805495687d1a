"""One pass over a run's readable files of one dataset: read, shape, rules, staging rows, verdicts.

A day in many small parts paid a fixed cost per file: its own read, its own GX run (every rule its
own Spark jobs), its own staging write. Here the files that share a header are read as one frame
with the source file as a column, and one aggregation per (file, scan partition) counts each file's
rows, ragged and undecodable rows and the rows breaking each rule of the suite
(:mod:`jobs.validation.rule_counts`); uniqueness is counted per (file, value). Each file still gets
its own verdict, report and findings: a file that breaks a rule is handed to GX alone (its rows
filtered from the cached frame) for the counts and samples of its report and its Data Docs page, a
passing file needs nothing more. The passing files' rows are written as staging rows with one
write, each version under its own prefix (:func:`jobs.staging.write_staged_versions`). Then each
file's verdict is concluded (reports, verdict record, placement), several at a time.

The Spark jobs of a run therefore grow with the distinct headers and the failing files, not with
the files (tests/jobs/transformation/test_job_budget.py). A group whose read fails on an over-long value or row is checked
again one file per pass, so its other files keep the one pass's verdicts (rows a drop rule can leave
out are still left out, not the file rejected); a file whose own read fails is checked by GX alone
(:class:`jobs.validation.spark_check.SparkCheck`), which names the file and the rule.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import jobs.validation.quarantine as quarantine
from jobs.contract import ORDER_ITEMS
from jobs.run_log import RunLog
from jobs.s3_store import ObjectInfo, S3Store
from jobs.validation.actions import DROP, SuiteActions
from jobs.validation.conclude import Concluder
from jobs.validation.engine import Engine
from jobs.validation.findings import Finding
from jobs.validation.outcomes import FileOutcome, Target
from jobs.validation.product_ids import ProductIds
from jobs.validation.rule_counts import FileCounts, RuleCounts
from jobs.validation.structural import HeadInspection

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

File = tuple[Target, ObjectInfo, HeadInspection]

FILE = "__ecomkpi_file"  # the row's source file, as Spark names it (``_metadata.file_path``)
PART = "__ecomkpi_partition"  # the row's scan partition
REC = "__ecomkpi_record"  # the row's position within its scan partition (0-based)
DROPPED = "__ecomkpi_dropped"  # a span's rows that break a drop rule (jobs.validation.actions)
_RECORD_BITS = (1 << 33) - 1  # monotonically_increasing_id's record bits (jobs.staging)
CONCLUDING_THREADS = 8  # concluding is S3 requests only: reports, verdict record, copy, delete


@dataclass
class _Group:
    """Files of one dataset with one header, read as one frame."""

    header: tuple[str, ...]
    files: list[File]
    frame: DataFrame | None = None
    absent: frozenset[str] = frozenset()
    columns: tuple[str, ...] = ()  # what GX sees: the frame's columns without the bookkeeping

    def __hash__(self) -> int:
        return id(self)


@dataclass
class _Checked:
    """What the pass found about one file."""

    file: File
    name: str  # its FILE value
    rows: int
    findings: list[Finding]
    group: _Group
    # (scan partition, rows of this file there, its first record there), in partition order
    spans: list[tuple[int, int, int]]
    dropped: int = 0  # its rows that break a drop rule (left out of staging when it is accepted)
    quarantine_key: str = ""  # where those rows went (accepted files only)


class DatasetCheck:
    """Checks a run's readable files of one dataset in one pass; see the module docstring."""

    def __init__(
        self,
        store: S3Store,
        log: RunLog,
        engine: Engine,
        product_ids: ProductIds,
        concluder: Concluder,
        suite_json: dict[str, Any],
        gx_lock: threading.Lock,
        one_by_one: Callable[[File], FileOutcome],
    ) -> None:
        self._store = store
        self._log = log
        self._engine = engine
        self._product_ids = product_ids
        self._concluder = concluder
        self._suite_json = suite_json
        self._rules = RuleCounts(suite_json)  # UnsupportedRule: the caller checks file by file
        self._actions = SuiteActions.of(suite_json)
        self._gx_lock = gx_lock
        self._one_by_one = one_by_one

    def validate(self, dataset: str, files: Sequence[File]) -> dict[str, FileOutcome]:
        """Every file's outcome by its relative key."""
        groups: dict[tuple[str, ...], _Group] = {}
        for f in files:
            groups.setdefault(f[2].raw_header, _Group(f[2].raw_header, [])).files.append(f)
        outcomes: dict[str, FileOutcome] = {}
        checked: list[_Checked] = []
        singles: list[_Group] = []  # a failed group's files, each read on its own
        try:
            for group in groups.values():
                found = self._check_group(dataset, group)
                if found is not None:
                    checked.extend(found)
                    continue
                # The read failed on one of its files: the others must not pay for it.
                if group.frame is not None:
                    group.frame.unpersist()
                for f in group.files:
                    alone = _Group(group.header, [f])
                    singles.append(alone)
                    one = self._check_group(dataset, alone) if len(group.files) > 1 else None
                    if one is None:  # this file's own read fails: GX alone names file and rule
                        outcomes[f[0].rel] = self._one_by_one(f)
                    else:
                        checked.extend(one)
            passing = [c for c in checked if not any(f.rejects for f in c.findings)]
            if passing:
                self._stage(dataset, passing)
                self._quarantine(passing)
            outcomes.update(self._conclude(dataset, checked))
        finally:
            for group in [*groups.values(), *singles]:
                if group.frame is not None:
                    group.frame.unpersist()
        return outcomes

    def _check_group(self, dataset: str, group: _Group) -> list[_Checked] | None:
        """One aggregation over the group's files; GX for the files that break a rule."""
        from pyspark.sql import functions as F

        from jobs.validation.reading import (
            CORRUPT_RECORD,
            ragged_rows,
            shape_findings,
            undecodable_rows,
            unreadable,
        )

        started = time.perf_counter()
        columns = group.files[0][2].columns
        frame = self._frame(dataset, group).cache()
        group.frame = frame
        drops = self._drops(group)
        aggregates = [
            F.count(F.lit(1)).alias("rows"),
            F.min(REC).alias("first"),
            F.count(F.when(ragged_rows(), 1)).alias("ragged"),
            F.count(F.when(undecodable_rows(columns), 1)).alias("undecodable"),
            *self._rules.aggregations(group.columns),
            F.count(F.when(drops, 1) if drops is not None else F.lit(None)).alias(DROPPED),
        ]
        try:
            per_span = frame.groupBy(FILE, PART).agg(*aggregates).collect()
        except Exception as exc:
            if unreadable(exc) is None:
                raise
            self._log.event(
                "dataset.one_by_one", dataset=dataset, files=len(group.files), reason=str(exc)[:200]
            )
            return None
        duplicates = self._duplicates(frame, group.columns)
        names = self._names(group.files, {str(r[FILE]) for r in per_span})
        found = []
        for f in group.files:
            t = f[0]
            name = names[t.rel]
            spans = sorted((r for r in per_span if r[FILE] == name), key=lambda r: int(r[PART]))
            rows = sum(int(r["rows"]) for r in spans)
            ragged = sum(int(r["ragged"]) for r in spans)
            undecodable = sum(int(r["undecodable"]) for r in spans)
            dropped = sum(int(r[DROPPED]) for r in spans)
            own = frame.where(F.col(FILE) == name)
            findings = list(shape_findings(own, columns, ragged, undecodable))
            if not findings:  # misaligned rows would only make the suite's results noise
                failing, considered = self._rules.summed_counts(spans)
                for index, count in duplicates.get(name, {}).items():
                    failing[index] = count
                counts = FileCounts(rows=rows, failing=failing, considered=considered)
                failed = self._rules.failed(counts, group.columns)
                if failed:
                    findings = self._gx_findings(dataset, own.drop(FILE, PART, REC, CORRUPT_RECORD), f, group)
                    if not findings:  # GX passed what the counts failed: only time lost, but say so
                        self._log.event(
                            "rules.disagree",
                            level="WARN",
                            file=t.key,
                            rules=[r.index for r in failed],
                        )
                    findings = self._actions.apply(findings, rows, dropped)
            found.append(
                _Checked(
                    file=f,
                    name=name,
                    rows=rows,
                    findings=findings,
                    group=group,
                    spans=[(int(r[PART]), int(r["rows"]), int(r["first"])) for r in spans],
                    dropped=dropped,
                )
            )
        self._log.event(
            "dataset.spark",
            dataset=dataset,
            files=len(group.files),
            rows=sum(c.rows for c in found),
            failing_files=sum(bool(c.findings) for c in found),
            seconds=round(time.perf_counter() - started, 3),
        )
        return found

    def _frame(self, dataset: str, group: _Group) -> DataFrame:
        """The group's files read as one frame, normalised, with the check columns (as
        ``SparkCheck._checked_frame``) and each row's file, scan partition and record."""
        from pyspark.sql import functions as F

        from jobs.normalize import normalize_columns
        from jobs.validation.checks import add_check_columns, with_columns_present
        from jobs.validation.reading import CORRUPT_RECORD, read_csv
        from jobs.validation.suites import required_columns, source_columns

        uris = [self._store.uri(raw.key) for _, raw, _ in group.files]
        read = read_csv(self._engine.spark(), uris, group.header)
        frame = normalize_columns(read.select("*", F.col("_metadata.file_path").alias(FILE)))
        frame = frame.select(
            "*",
            F.spark_partition_id().alias(PART),
            F.monotonically_increasing_id().bitwiseAND(F.lit(_RECORD_BITS)).alias(REC),
        )
        required = required_columns(self._suite_json)
        missing = frozenset(c for c in required if c not in frame.columns)
        frame, absent_optional = with_columns_present(
            frame, [c for c in source_columns(self._suite_json) if c not in required]
        )
        ids = self._product_ids.lookup() if dataset == ORDER_ITEMS else None
        checked = add_check_columns(dataset, frame, ids)
        group.absent = missing | absent_optional
        group.columns = tuple(c for c in checked.columns if c not in (FILE, PART, REC, CORRUPT_RECORD))
        return checked

    def _duplicates(self, frame: DataFrame, columns: tuple[str, ...]) -> dict[str, dict[int, int]]:
        """Per file, per uniqueness rule: the rows whose value occurs more than once in that file
        (GX's unexpected count: every occurrence, nulls left out)."""
        from pyspark.sql import functions as F

        out: dict[str, dict[int, int]] = defaultdict(dict)
        for rule in self._rules.unique_rules:
            column = rule.column
            if column is None or column not in columns:
                continue
            value = F.col(f"`{column}`")
            repeated = (
                frame.where(value.isNotNull())
                .groupBy(FILE, value)
                .agg(F.count(F.lit(1)).alias("n"))
                .where(F.col("n") > 1)
                .groupBy(FILE)
                .agg(F.sum("n").alias("n"))
                .collect()
            )
            for r in repeated:
                out[str(r[FILE])][rule.index] = int(r["n"])
        return out

    def _names(self, files: Sequence[File], seen: set[str]) -> dict[str, str]:
        """Each file's FILE value: Spark's path of it, matched exactly or after URL decoding (an
        empty file has no rows, so it may be in ``seen`` under neither)."""
        from urllib.parse import unquote

        decoded = {unquote(s): s for s in seen}
        out = {}
        for t, raw, _ in files:
            uri = self._store.uri(raw.key)
            out[t.rel] = uri if uri in seen else decoded.get(uri, decoded.get(unquote(uri), uri))
        return out

    def _gx_findings(self, dataset: str, own: DataFrame, f: File, group: _Group) -> list[Finding]:
        """GX's own validation of one failing file: its report's counts, samples and Data Docs page."""
        from jobs.validation.reports import findings_from_suite_result

        t, _, inspection = f
        with self._gx_lock:
            result = self._engine.gx().validate(dataset, own, t.rel)
        return findings_from_suite_result(result, inspection.columns, group.absent)

    def _stage(self, dataset: str, passing: list[_Checked]) -> None:
        """The passing files' rows as staging rows, one write for the dataset (before any verdict
        is recorded: a file whose verdict says passed always has them)."""
        from functools import reduce

        from jobs.staging import FileVersion, stage_files_rows, write_staged_versions
        from jobs.validation.suites import rejects_repeated_keys

        versions = {
            c.name: FileVersion(
                rel=c.file[0].rel, raw_etag=c.file[1].etag, arrived_ms=c.file[1].last_modified_ms
            )
            for c in passing
        }
        order = list(versions.values())
        frames = []
        for group in {id(c.group): c.group for c in passing}.values():
            mine = [c for c in passing if c.group is group]
            assert group.frame is not None
            drops = self._drops(group)
            # A dropped row keeps its place: the rows after it keep their row numbers.
            kept = group.frame if drops is None else group.frame.where(~drops)
            own = {c.name: versions[c.name] for c in mine}
            frames.append(stage_files_rows(kept, FILE, own, _row_number(mine), order))
        staged = reduce(lambda a, b: a.unionByName(b), frames)
        unique = rejects_repeated_keys(dataset, self._suite_json)
        with self._log.stage("staging", dataset=dataset, files=len(order)) as s:
            summary = write_staged_versions(staged, order, self._store, unique_key=unique)
            if summary is not None:
                s.update(key_summary=summary.as_json())

    def _drops(self, group: _Group) -> Column | None:
        """Whether a row of ``group`` breaks a drop rule (None: the suite drops nothing here)."""
        return self._rules.any_failing(self._actions.drop_indexes, group.columns)

    def _quarantine(self, passing: list[_Checked]) -> None:
        """The dropped rows of the accepted files, as CSVs under invalid/rows/ (one Spark job for
        all of them, bounded by the drop threshold); the CSVs of accepted versions that dropped
        nothing are removed (jobs.validation.quarantine)."""
        from pyspark.sql import functions as F

        clean = [c.file[0].rel for c in passing if not c.dropped]
        if clean:
            quarantine.clear(self._store, clean)
        lossy = [c for c in passing if c.dropped]
        if not lossy:
            return
        for group in {c.group for c in lossy}:
            mine = [c for c in lossy if c.group is group]
            drops = self._drops(group)
            assert group.frame is not None and drops is not None
            names = {c.name: c for c in mine}
            rules = [
                F.when(self._rules.failing(r), F.lit(self._rule_name(r.index)))
                for r in self._rules.row_rules
                if r.index in self._actions.drop_indexes and r.column in group.columns
            ]
            header = [c for c in group.files[0][2].columns if c in group.frame.columns]
            rows = (
                group.frame.where(drops & F.col(FILE).isin(list(names)))
                .select(
                    F.col(FILE),
                    _row_number(mine).alias("row_number"),
                    F.concat_ws(quarantine.RULE_SEPARATOR, *rules).alias("failed_rules"),
                    *[F.col(f"`{c}`") for c in header],
                )
                .orderBy(FILE, "row_number")
                .collect()
            )
            by_file: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for row in rows:
                record = row.asDict()
                by_file[str(record.pop(FILE))].append(record)
            for name, c in names.items():
                etag = c.file[1].etag
                records = [{**r, "raw_etag": etag} for r in by_file.get(name, [])]
                c.quarantine_key = quarantine.write_rows(self._store, c.file[0].rel, header, records)

    def _rule_name(self, index: int) -> str:
        return str(self._suite_json["expectations"][index]["meta"]["rule"])

    def _conclude(self, dataset: str, checked: list[_Checked]) -> dict[str, FileOutcome]:
        """Each file's reports, verdict record and placement, several files at a time."""
        notes = [self._product_ids.note] if dataset == ORDER_ITEMS and self._product_ids.note else []
        version = self._product_ids.version if dataset == ORDER_ITEMS else ""

        def conclude(c: _Checked) -> tuple[str, FileOutcome]:
            t, raw, inspection = c.file
            findings, own_notes = c.findings, list(notes)
            if c.quarantine_key:  # accepted with rows dropped: the report says where they went
                findings = [
                    replace(f, details={**f.details, "quarantine": c.quarantine_key})
                    if f.details.get("action") == DROP
                    else f
                    for f in findings
                ]
                own_notes.append(
                    f"{c.dropped} of {c.rows} rows broke drop rules: left out of the KPIs and kept, "
                    f"with the rules they broke, in {c.quarantine_key}"
                )
            with self._log.stage("file", file=t.key, dataset=t.dataset) as end:
                outcome = self._concluder.conclude(
                    t,
                    raw,
                    findings,
                    rows=c.rows,
                    notes=own_notes,
                    products_version=version,
                    columns=inspection.columns,
                    quarantine_key=c.quarantine_key,
                )
                end.update(
                    verdict=outcome.verdict,
                    location=outcome.location,
                    report=outcome.report_key,
                    **({"dropped_rows": c.dropped} if c.quarantine_key else {}),
                )
            return t.rel, outcome

        if len(checked) <= 1:
            return dict(map(conclude, checked))
        with ThreadPoolExecutor(max_workers=CONCLUDING_THREADS, thread_name_prefix="conclude") as pool:
            return dict(pool.map(conclude, checked))


def _row_number(files: Sequence[_Checked]) -> Column:
    """A row's number in its file (1 = the first data row), from its scan partition and position
    there and the spans the aggregation found for each file."""
    from pyspark.sql import functions as F

    offsets = []  # (partition, file) -> what turns a record's position there into its row number
    for c in files:
        before = 0
        for part, span_rows, first in c.spans:
            offsets.extend([F.lit(f"{part}/{c.name}"), F.lit(before - first + 1)])
            before += span_rows
    if not offsets:
        return F.lit(None).cast("long")
    key = F.concat(F.col(PART).cast("string"), F.lit("/"), F.col(FILE))
    return (F.col(REC) + F.element_at(F.create_map(*offsets), key)).cast("long")
