"""The transformation run: validated files → silver → gold → DynamoDB → processed/.

Order of the durable steps, each idempotent, so a run killed anywhere and run again ends where an
uninterrupted run would:

1. take the lake's lease lock (one writer per lake: overlapping runs queue up);
2. find the batch's files in ``validated/`` and drop the versions the lake already holds;
3. plan (read-only, pinned snapshot) and record the touched dates in the pending-dates journal;
4. commit silver: products, items, orders, the files' dropped rows (``quarantine``, only when some
   file has or had them), then ``applied_files`` (from here the files count as applied; the journal
   still names their dates);
5. recompute the journal's dates, write them to DynamoDB (what the dashboards read: first), then to
   gold, then clear the journal. When the plan only appends (a new day, as a rule), the KPIs are
   computed between 3 and 4, from the stored rows plus the plan's (the same numbers, without
   reading back what 4 wrote), and served before 4: the journal already names their dates, so a
   run that dies before its commits is run again and serves the same numbers (``_Run._serve``);
6. move the files to ``processed/``; release the lock; log and summary go to S3 in any case.

A run may serve several batches at once (``also``): the warm worker hands it every transformation
task waiting in its queue, so ten days landing together pay the fixed cost of a run (plan, three
silver commits, recompute, gold) once instead of ten times. Their files are applied together, which
ends where applying them one batch after the other would (tests/jobs/transformation/test_transformation_batches.py), and
each batch gets the run's log and summary under its own ``logs/transformation/<batch>/<run>``.

Kept whole: the durable steps and their order, the one thing the idempotence argument above is
about; the logic of each step lives in the package's other modules.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import Row, SparkSession

from jobs import aws
from jobs.batch_inputs import resolve_inputs
from jobs.config import PipelineConfig
from jobs.contract import ORDER_ITEMS, ORDERS, PRODUCTS
from jobs.local_frames import local_frame
from jobs.run_log import RunLog
from jobs.s3_store import S3Store
from jobs.spark_session import get_spark, is_short_lived
from jobs.transformation.archive import archive
from jobs.transformation.incremental import RunPlan, plan_run
from jobs.transformation.inputs import SKIP_APPLIED, InputFile, Inputs, discover_all, pending
from jobs.transformation.journal import PendingDates, control_prefix
from jobs.transformation.key_ledger import LedgerObject
from jobs.transformation.lake import (
    APPLIED_FILES,
    GOLD_CATEGORY,
    GOLD_DAILY,
    QUARANTINE,
    SCHEMAS,
    SILVER_ITEMS,
    SILVER_ORDERS,
    SILVER_PRODUCTS,
    Lake,
)
from jobs.transformation.lock import LeaseLock, LockSettings
from jobs.transformation.metrics import ScanMetrics
from jobs.transformation.quarantine_table import QuarantineTable
from jobs.transformation.recompute import recompute, write_gold
from jobs.transformation.serving import BatchWriter, rejected_files_by_day, serve
from jobs.transformation.versions import apply_plan

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_s3 import S3Client

JOB = "transformation"
LAKE_TABLES = (SILVER_PRODUCTS, SILVER_ORDERS, SILVER_ITEMS, APPLIED_FILES, GOLD_DAILY, GOLD_CATEGORY)

Checkpoint = Callable[[str], None]


@dataclass
class TransformResult:
    """What a run did; also written to ``logs/transformation/<batch>/<run>/summary.json``."""

    batch_id: str
    run_id: str
    status: str = "running"
    files_applied: list[str] = field(default_factory=list)
    files_skipped: dict[str, str] = field(default_factory=dict)
    files_parsed: list[str] = field(default_factory=list)  # applied from CSV: no staging rows found
    files_archived: list[str] = field(default_factory=list)
    files_left_in_validated: list[str] = field(default_factory=list)
    touched_dates: list[str] = field(default_factory=list)  # recomputed and served by this run
    lookups_skipped: list[str] = field(default_factory=list)  # proved empty by the key ledger
    recovered_dates: list[str] = field(default_factory=list)  # left pending by an interrupted run
    rows_read_by_table: dict[str, int] = field(default_factory=dict)
    rows_written_by_table: dict[str, int] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)
    dynamodb: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    spark_jobs: int | None = None  # Spark jobs the run started (tests hold budgets on this)
    # "<batch>/<run>" of every batch this run served, the run's own first (several: coalesced).
    batches: list[str] = field(default_factory=list)
    lock: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tune_delta(spark: SparkSession, config: PipelineConfig) -> None:
    """Session settings that cut Delta's fixed cost per operation on a small driver."""
    # Table state (the log's actions, thousands at most for these tables) is rebuilt with this many
    # tasks after every new version. Delta's default is 50; in local mode one task does it and the
    # shuffle partitions only add scheduling on the same cores (in process, 3 x 100k-item days on
    # an unprepared lake: plan, recompute and gold ~1-1.5 s less per run, bench/results/LOG.md,
    # 8edf865). A cluster keeps the shuffle partitions.
    local = (spark.sparkContext.master or "").startswith("local")
    partitions = 1 if local else config.shuffle_partitions
    spark.conf.set("spark.databricks.delta.snapshotPartitions", str(partitions))
    # Gold rows are built for exactly the replaced dates: no need for a job re-checking that.
    spark.conf.set("spark.databricks.delta.replaceWhere.constraintCheck.enabled", "false")
    # The per-commit checksum file (.crc) only lets a reader skip replaying the log since the last
    # checkpoint (at most 9 JSON files here); writing it cost ~0.2 s per commit on the emulator
    # (in process, 100k items: silver 3.5-3.6 s instead of 3.9-4.4 s, bench/results/LOG.md, 978e74e).
    spark.conf.set("spark.databricks.delta.writeChecksumFile.enabled", "false")


# What the next run reads first, in that order: the plan's lookups, then the recompute, then gold.
WARM_TABLES = (SILVER_ORDERS, SILVER_ITEMS, SILVER_PRODUCTS, GOLD_DAILY, GOLD_CATEGORY)


def warm_lake(
    config: PipelineConfig, spark: SparkSession, interrupted: Callable[[], bool] = lambda: False
) -> dict[str, Any]:
    """Build the lake's current table states for the next run (a warm worker, between tasks).

    Every run's commits give the tables new versions, whose state Delta rebuilds on first read:
    ~1.5 s of the next run's plan and ~1.5 s of its gold stage at 100k items a day (bench/results/LOG.md,
    8edf865). Building them while idle takes them out of the next batch's latency; ``interrupted``
    is asked before each table and, from a second thread, every 0.2 s during one: when it holds, the
    table's Spark jobs are cancelled (read-only work: the next build starts it again), so a task that
    arrives waits a fraction of a second, not a table's build (up to ~1 s seen).
    """
    from jobs.spark_jobs import cancelled_when

    started = time.perf_counter()
    tune_delta(spark, config)
    lake = Lake(spark, config.lake_path)
    outcome: dict[str, Any] = {"lake": config.lake_path, "tables": []}
    with cancelled_when(spark, "lake-prepare", interrupted) as watch:
        for table in WARM_TABLES:
            if watch.fired.is_set() or interrupted():
                outcome["interrupted_before"] = table
                break
            try:
                warmed = lake.warm(table)
            except Exception:
                if not watch.fired.is_set():
                    raise
                outcome.update(interrupted_before=table, cancelled=True)
                break
            if warmed:
                outcome["tables"].append(table)
    outcome["seconds"] = round(time.perf_counter() - started, 3)
    return outcome


def batch_bytes(store: S3Store, configs: Sequence[PipelineConfig]) -> int:
    """Bytes of the batches' files as validation left them (validated/; a file already applied or
    missing counts 0): what a JVM started for this run will read, known before it starts. One
    listing per folder, not a request per file: a day may have hundreds of parts."""
    from jobs.keys import VALIDATED, relative_key, stage_key

    wanted = {
        stage_key(VALIDATED, relative_key(k))
        for c in configs
        for k in (c.products_key, *c.orders_keys, *c.order_items_keys)
    }
    folders = sorted({key.rsplit("/", 1)[0] + "/" for key in wanted})
    return sum(info.size for folder in folders for info in store.list(folder) if info.key in wanted)


def settings_of_lock(config: PipelineConfig) -> LockSettings:
    """The lake lock's settings: the configuration's lease and wait, else the lock's defaults."""
    defaults = LockSettings()
    return LockSettings(
        ttl_seconds=config.lock_ttl_seconds or defaults.ttl_seconds,
        wait_seconds=config.lock_wait_seconds or defaults.wait_seconds,
    )


@dataclass
class _Applied:
    """What one snapshot of ``applied_files`` says: rel -> (raw ETag, applied_at) of the latest."""

    snapshot: tuple[str, int]  # (Delta table id, version)
    latest: dict[str, tuple[str, datetime]]

    def add(self, rows: Sequence[tuple[Any, ...]], newest: bool = False) -> None:
        """``newest``: rows of the commit that made this version, later than any other row (their
        clock is UTC; rows read back through Spark are in local time: never compared)."""
        for rel, etag, applied_at in rows:
            if newest or rel not in self.latest or applied_at >= self.latest[rel][1]:
                self.latest[rel] = (etag, applied_at)


# Lake table path -> the last snapshot of its applied_files this process read or wrote. A warm
# worker's runs find it current (their own commits advance it), so discovery costs one listing of
# the log instead of a Spark read of every small file the table holds (~0.8 s per run at 100k items,
# bench/results/LOG.md, d9f764f). A snapshot is immutable: a cache of the table's current (table id,
# version) is exactly the table; another writer's commit, or a table deleted and created again,
# makes them differ, and the table is read again.
_APPLIED_SEEN: dict[str, _Applied] = {}
_APPLIED_SEEN_MAX = 16  # lakes remembered (tests use many; a worker uses one)


def _read_applied(lake: Lake, rels: list[str]) -> dict[str, str]:
    """rel → raw ETag of the version the lake holds (the latest applied one)."""
    if not rels or not lake.exists(APPLIED_FILES):
        return {}
    path, snapshot = lake.path(APPLIED_FILES), lake.current_snapshot(APPLIED_FILES)
    known = _APPLIED_SEEN.get(path)
    if snapshot is None or known is None or known.snapshot != snapshot:
        version = snapshot[1] if snapshot is not None else None
        rows = lake.read(APPLIED_FILES, version).select("rel", "raw_etag", "applied_at").collect()
        known = _Applied(snapshot or ("", -1), {})
        known.add([tuple(r) for r in rows])
        _APPLIED_SEEN.pop(path, None)
        if snapshot is not None:
            _APPLIED_SEEN[path] = known
        while len(_APPLIED_SEEN) > _APPLIED_SEEN_MAX:
            _APPLIED_SEEN.pop(next(iter(_APPLIED_SEEN)))
    return {rel: known.latest[rel][0] for rel in rels if rel in known.latest}


def _remember_applied(lake: Lake, rows: Sequence[tuple[Any, ...]]) -> None:
    """Our own commit of ``rows`` just made the table's latest snapshot: advance the cache when it
    held the version before, of the same table (or start it when the commit created the table)."""
    path, snapshot = lake.path(APPLIED_FILES), lake.current_snapshot(APPLIED_FILES, refresh=False)
    if snapshot is None:
        return
    table_id, version = snapshot
    known = _APPLIED_SEEN.get(path)
    if version == 0:  # we created the table: these rows are all of it
        known = _APPLIED_SEEN[path] = _Applied((table_id, -1), {})
    if known is not None and known.snapshot == (table_id, version - 1):
        known.add([(r[0], r[2], r[6]) for r in rows], newest=True)
        known.snapshot = snapshot


def _applied_rows(files: list[InputFile], run_id: str) -> list[tuple[str, str, str, str, int, str, datetime]]:
    now = datetime.now(UTC).replace(tzinfo=None)
    return [(f.rel, f.dataset, f.raw_etag, f.object_etag, f.arrived_ms, run_id, now) for f in files]


class _Run:
    """One run's state; methods are the stages, in order."""

    def __init__(
        self,
        config: PipelineConfig,
        spark: SparkSession | None,
        dynamodb: DynamoDBClient | None,
        s3: S3Client | None,
        lock_settings: LockSettings | None,
        checkpoint: Checkpoint | None,
        also: Sequence[PipelineConfig] = (),
    ) -> None:
        self.config = config
        self.configs = [config, *also]
        self.log = RunLog(JOB, config.batch_id, config.run_id)
        self.result = TransformResult(
            batch_id=config.batch_id,
            run_id=config.run_id,
            batches=[f"{c.batch_id}/{c.run_id}" for c in self.configs],
        )
        self.store = S3Store(config, client=s3)
        self.dynamodb = dynamodb or aws.client("dynamodb", config)
        self.prefix = control_prefix(config.lake_path, self.store.bucket)
        self.journal = PendingDates(self.store, f"{self.prefix}/_pending_dates.json")
        self.ledger = LedgerObject(self.store, f"{self.prefix}/_key_ranges.json", config.lake_path)
        self.lock = LeaseLock(
            self.store.client,
            self.store.bucket,
            f"{self.prefix}/_lock.json",
            holder=f"{config.batch_id}/{config.run_id}",
            settings=lock_settings or settings_of_lock(config),
        )
        self._spark = spark
        self.lake: Lake | None = None
        self.checkpoint = checkpoint or (lambda _stage: None)
        self.metrics: ScanMetrics | None = None

    def execute(self) -> TransformResult:
        try:
            # Spark starts before the lock is taken: a queued run should not hold the lake for that.
            spark = self._spark
            if spark is None:
                size = batch_bytes(self.store, self.configs)
                short = is_short_lived(self.config, size)
                with self.log.stage("spark.session", batch_bytes=size, short_lived_jvm=short):
                    spark = get_spark(self.config, "ecomkpi-transformation", size)
            with self.log.stage("lock") as s:
                self.lock.acquire()
                s.update(waited_seconds=self.lock.waited_seconds, took_over=self.lock.took_over)
            self.result.lock = {
                "key": self.lock.key,
                "waited_seconds": self.lock.waited_seconds,
                "took_over": self.lock.took_over,
            }
            try:
                self._locked(spark)
            finally:
                self.lock.release()
            self.result.status = "ok"
        except BaseException as exc:
            self.result.status = "failed"
            self.result.error = f"{type(exc).__name__}: {exc}"
            self.log.event("failed", level="ERROR", error=self.result.error, traceback=traceback.format_exc())
            raise
        finally:
            self._finish()
        return self.result

    def _locked(self, spark: SparkSession) -> None:
        config, result = self.config, self.result
        tune_delta(spark, config)
        self.metrics = ScanMetrics(spark, group=f"ecomkpi-{JOB}-{config.run_id}")
        lake = Lake(spark, config.lake_path, config.run_id)
        self.lake = lake

        with self.log.stage("discover") as s:
            inputs: Inputs = discover_all(self.configs, self.store)
            applied = _read_applied(lake, [f.rel for f in inputs.files])
            to_apply, done = pending(inputs.files, applied)
            recovered = self.journal.read()
            result.files_skipped = {**inputs.skipped, **{f.rel: SKIP_APPLIED for f in done}}
            result.recovered_dates = sorted(recovered)
            result.files_parsed = [f.rel for f in to_apply if not f.staged]
            s.update(
                to_apply=[f.rel for f in to_apply],
                parsed=result.files_parsed,
                skipped=result.files_skipped,
                recovered_dates=sorted(recovered),
            )

        dates = set(recovered).union(*(c.recompute_dates for c in self.configs))
        served = False
        kpis: tuple[list[Row], list[Row]] | None = None
        if to_apply:
            plan = self._plan(
                spark, lake, to_apply, replaced=any(f.rel in applied for f in to_apply) or bool(recovered)
            )
            dates |= plan.dates
            if plan.additive and dates:
                # The KPIs of the state the commits will leave, served before them (see _serve).
                kpis = self._recompute(lake, dates, plan)
                self._serve(dates, *kpis)
                served = True
            self._commit_silver(spark, lake, to_apply, plan)
        result.touched_dates = sorted(dates)

        if dates:
            daily, category = kpis if kpis is not None else self._recompute(lake, dates, None)
            if not served:
                self._serve(dates, daily, category)
            # Gold after serving: both are derived from silver (the journal keeps the dates until
            # both are written, so a crash between them is recomputed), and the dashboards read
            # DynamoDB, so the KPIs are visible without waiting for two Delta commits.
            with self.log.stage("gold") as s:
                self.lock.ensure_held()
                commits = write_gold(lake, sorted(dates), daily, category)
                s.update(commits=[c.as_dict() for c in commits])
            self.checkpoint("gold")
            self.journal.clear()
            self.checkpoint("journal_cleared")

        with self.log.stage("archive") as s:
            archived = archive(self.store, [*to_apply, *done])
            result.files_archived = archived.moved + archived.copied
            result.files_left_in_validated = archived.left
            s.update(
                moved=archived.moved,
                copied=archived.copied,
                left=archived.left,
                staging_objects_deleted=archived.staging_objects_deleted,
            )

    def _serve(self, dates: set[str], daily: list[Row], category: list[Row]) -> None:
        """Write the dates' KPIs to DynamoDB (what the dashboards read).

        An appending plan's KPIs are served before its silver commits: they are exactly the KPIs of
        the state those commits leave (computed from the stored rows plus the plan's), and the
        dashboards see a new day ~2 s sooner (bench/results/LOG.md, 8edf865). The journal already names
        the dates, so a run that dies before its commits is retried (same files, same plan, same
        KPIs served again), and any later run recomputes the journal's dates from silver: DynamoDB
        may briefly lead the lake, never disagree with it once runs succeed. Any other plan (it
        deletes, moves or re-flags stored rows) is served after its commits, from silver.
        """
        config, result = self.config, self.result
        with self.log.stage("serve") as s:
            self.lock.ensure_held()
            served = serve(
                self.dynamodb,
                config.daily_kpis_table,
                config.category_kpis_table,
                dates,
                [r.asDict() for r in daily],
                [r.asDict() for r in category],
                run_id=config.run_id,
                updated_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                writer=BatchWriter(self.dynamodb),
                rejected_files=rejected_files_by_day(self.store, dates),
            )
            result.dynamodb = {k: v for k, v in asdict(served).items() if isinstance(v, int)}
            s.update(**result.dynamodb, deleted_categories=served.deleted_categories)
        self.checkpoint("serving")

    def _recompute(self, lake: Lake, dates: set[str], plan: RunPlan | None) -> tuple[list[Row], list[Row]]:
        """KPIs of ``dates``: from the stored rows plus an additive ``plan``'s (before its commits),
        or from silver as committed."""
        source = "stored rows + plan" if plan is not None else "silver"
        with self.log.stage("recompute", dates=sorted(dates), source=source) as s:
            if plan is None:
                daily, category = recompute(lake, sorted(dates))
            else:
                daily, category = recompute(lake, sorted(dates), plan.arriving(), plan.products)
            s.update(daily_rows=len(daily), category_rows=len(category))
        return daily, category

    def _plan(self, spark: SparkSession, lake: Lake, files: list[InputFile], replaced: bool) -> RunPlan:
        """Plan ``files`` and add the dates they touch to the journal (before anything is written)."""
        sources = {
            ds: [f.source(self.store) for f in files if f.dataset == ds]
            for ds in (PRODUCTS, ORDERS, ORDER_ITEMS)
        }
        with self.log.stage("plan", files=[f.rel for f in files], look_for_replaced_rows=replaced) as s:
            ledger = self.ledger.read(lake)
            plan: RunPlan = plan_run(
                spark, lake, sources, self.config.run_id, old_rows=replaced, ledger=ledger
            )
            s.update(
                dates=sorted(plan.dates),
                product_dates=sorted(plan.product_dates),
                actions={p.table: p.counts for p in (plan.items, plan.orders) if p is not None},
                additive=plan.additive,
                key_ledger_complete=ledger.complete,
                lookups_skipped=plan.lookups_skipped,
            )
        self.result.lookups_skipped = list(plan.lookups_skipped)
        self.journal.write(plan.dates | self.journal.read(), self.config.run_id)
        # Before the first silver commit: the ledger must hold every key silver may store (key_ledger).
        widened = ledger.widened(plan.key_ranges)
        if widened != ledger:
            self.ledger.write(widened)
        return plan

    def _commit_silver(self, spark: SparkSession, lake: Lake, files: list[InputFile], plan: RunPlan) -> None:
        """Commit the plan to silver, then record ``files`` as applied."""
        with self.log.stage("silver") as s:
            if plan.products is not None:
                self.lock.ensure_held()
                lake.overwrite(SILVER_PRODUCTS, plan.products)
                self.checkpoint("silver_products")
            for table_plan in (plan.items, plan.orders):
                if table_plan is not None and not table_plan.empty:
                    self.lock.ensure_held()
                    apply_plan(lake, table_plan)
                    self.checkpoint(table_plan.table)
            # Before applied_files: a crash after it would leave the versions' dropped rows unrecorded.
            self.lock.ensure_held()
            if QuarantineTable(self.store, self.prefix, self.log).apply(
                spark, lake, files, self.config.run_id
            ):
                self.checkpoint(QUARANTINE)
            self.lock.ensure_held()
            rows = _applied_rows(files, self.config.run_id)
            lake.append(
                APPLIED_FILES,
                # One small file per run: a process without the cache reads them all.
                local_frame(spark, rows, SCHEMAS[APPLIED_FILES]).coalesce(1),
            )
            _remember_applied(lake, rows)
            self.checkpoint(APPLIED_FILES)
            s.update(commits=[c.as_dict() for c in lake.commits])
        self.result.files_applied = [f.rel for f in files]

    def _finish(self) -> None:
        result = self.result
        result.stage_seconds = dict(self.log.timings)
        lake = self.lake
        if lake is not None:
            result.commits = [c.as_dict() for c in lake.commits]
            for c in lake.commits:
                result.rows_written_by_table[c.table] = (
                    result.rows_written_by_table.get(c.table, 0) + c.rows_written
                )
        if self.metrics is not None:
            try:
                result.spark_jobs = self.metrics.job_count()
                result.rows_read_by_table = self.metrics.rows_by_table(LAKE_TABLES)
            except Exception as exc:  # metrics are diagnostics: never fail a run over them
                self.log.event("metrics.unavailable", level="WARN", error=str(exc))
            self.metrics.stop()
        self.log.event("summary", **result.as_dict())
        try:
            # Each batch's alert and audit trail point at its own run's paths (BuildAlert).
            for batch in self.configs:
                where = f"logs/{JOB}/{batch.batch_id}/{batch.run_id}"
                self.store.put_text(f"{where}.log", self.log.text())
                self.store.put_json(f"{where}/summary.json", result.as_dict())
        except Exception as exc:  # the log in S3 is best effort; stdout has everything
            print(f"could not write the run log to S3: {exc}", file=sys.stderr)


def run(
    config: PipelineConfig,
    spark: SparkSession | None = None,
    *,
    dynamodb: DynamoDBClient | None = None,
    s3: S3Client | None = None,
    lock_settings: LockSettings | None = None,
    checkpoint: Checkpoint | None = None,
    also: Sequence[PipelineConfig] = (),
) -> TransformResult:
    """Apply the batch's validated files and serve the touched dates; raises when the run broke.

    ``also``: further batches (same bucket and lake) whose files this run applies with the batch's.
    ``checkpoint(stage)`` is called after each durable step (``silver_products``,
    ``silver_order_items``, ``silver_orders``, ``applied_files``, ``serving``, ``gold``,
    ``journal_cleared``): tests raise there to simulate a crash at that boundary.
    """
    config.require_bucket()
    store = S3Store(config, client=s3)
    others = [resolve_inputs(c, store) for c in also]
    for other in others:
        if (other.bucket, other.lake_path) != (config.bucket, config.lake_path):
            raise ValueError(
                f"batch {other.batch_id} uses bucket {other.bucket!r} / lake {other.lake_path!r}, "
                f"not {config.bucket!r} / {config.lake_path!r}: it cannot share batch {config.batch_id}'s run"
            )
    config = resolve_inputs(config, store)
    return _Run(config, spark, dynamodb, s3, lock_settings, checkpoint, others).execute()


def main() -> int:
    """Entry point of ``python -m jobs.transformation``: 0 when the KPIs are committed, else 1."""
    try:
        result = run(PipelineConfig.from_env())
    except Exception:
        traceback.print_exc()
        return 1
    print(json.dumps({"status": result.status, "touched_dates": result.touched_dates}), flush=True)
    return 0
