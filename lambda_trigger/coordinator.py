"""Decisions: record an arrival or an execution end, then bring the batch to its next state.

``reconcile`` is the single place that decides whether a batch starts a generation. It is called
after every event for the batch (new, duplicate, end-of-execution, products arrival), reads the
current state and acts with conditional writes only, so any number of concurrent or repeated calls
converge on the same result: at most one execution per generation, and no upload left unprocessed.

Claim first, start second: the generation is claimed in the tracker, then StartExecution runs with
the deterministic name ``<batch>-g<generation>``. If the start fails the claim stays with
``start_confirmed = false`` and the next event for the batch (normally the SQS redelivery of the
failed message) starts the same name again. ``ExecutionAlreadyExists`` is looked at with
DescribeExecution: the same claim's earlier start (same ``triggered_at``) counts as started, so a
start that did succeed before the Lambda died is not duplicated; another claim's execution (the
tracker item was lost and numbering restarted) makes the claim skip to the next generation number.

With ``prechecks`` (a warm worker serves the stack), a part that lands without completing its day,
and a products master no day waits for, is sent to the worker to be validated at once
(``lambda_trigger/prechecks.py``).

``sweep`` is the scheduled safety net (EventBridge schedule -> the same Lambda): it finishes running
generations whose execution has ended (a lost status event), starts claims that never started,
reconciles dirty batches whose event was lost, and alerts once on a day that waits too long for its
files (``lambda_trigger/stuck_days.py``).

Kept whole: one class whose decisions all meet in ``reconcile``; the argument that concurrent
events converge needs every conditional write it makes in view.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from lambda_trigger import log, s3_errors, unannounced, unrecognised, withdrawal
from lambda_trigger.batch_ids import DEFAULT_PRODUCTS_KEY, IgnoredKey, KeyInfo, classify_key, is_batch_date
from lambda_trigger.events import ExecutionEnd, FileArrival
from lambda_trigger.inputs_object import write_inputs
from lambda_trigger.manifest import ManifestError, read_manifest
from lambda_trigger.prechecks import KEYS_VARIABLES, Prechecks
from lambda_trigger.s3_objects import lookup
from lambda_trigger.states import TERMINAL_STATUSES, ExecutionStatus, SweepOutcome
from lambda_trigger.tracker import BatchFileTracker, BatchState

if TYPE_CHECKING:
    from types_boto3_cloudwatch import CloudWatchClient
    from types_boto3_s3 import S3Client
    from types_boto3_stepfunctions import SFNClient
    from types_boto3_stepfunctions.type_defs import DescribeExecutionOutputTypeDef

    from lambda_trigger.stuck_days import StuckDays

_EXECUTION_NAME_RE = re.compile(r"(?P<batch>\d{4}-\d{2}-\d{2})-g(?P<generation>[1-9]\d*)")
# A reconcile loops only when another writer changed the item between our read and our write;
# each loop re-reads, so a handful of rounds is plenty even under heavy contention.
_MAX_ROUNDS = 8


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def execution_arn_for(state_machine_arn: str, name: str) -> str:
    """The ARN StartExecution returns for ``name`` (needed when it answers ExecutionAlreadyExists)."""
    prefix, sep, machine = state_machine_arn.partition(":stateMachine:")
    if not sep:
        return f"{state_machine_arn}:{name}"
    return f"{prefix}:execution:{machine.split(':')[0]}:{name}"


class BatchCoordinator:
    """Applies events to the tracker and starts executions. Cheap to build per invocation."""

    def __init__(
        self,
        tracker: BatchFileTracker,
        sfn_client: SFNClient,
        s3_client: S3Client,
        state_machine_arn: str,
        *,
        products_key: str = DEFAULT_PRODUCTS_KEY,
        clock: Callable[[], datetime],
        bucket: str | None = None,
        cloudwatch_client: CloudWatchClient | None = None,
        prechecks: Prechecks | None = None,
        retention_days: int | None = None,
        unannounced_after_minutes: float = unannounced.DEFAULT_AGE_MINUTES,
        raw_listing_limit: int = unannounced.DEFAULT_LISTING_LIMIT,
        stuck_days: StuckDays | None = None,
    ) -> None:
        self.tracker = tracker
        self.prechecks = prechecks
        self.sfn = sfn_client
        self.s3 = s3_client
        self.state_machine_arn = state_machine_arn
        self.products_key = products_key
        self.clock = clock
        # The pipeline's bucket (S3_BUCKET): events of any other bucket are refused, and executions
        # always name this bucket. None (tests, old deployments) trusts the event's bucket.
        self.bucket = bucket
        self.cloudwatch = cloudwatch_client
        # Finished days (and undated keys' day notes) expire this many days after they went idle
        # (DynamoDB TTL on ``expires_at``); None keeps them forever.
        self.retention_days = retention_days
        self.unannounced_after_minutes = unannounced_after_minutes
        self.raw_listing_limit = raw_listing_limit
        # Days that wait too long for their files get one alert per wait (None: no alerts).
        self.stuck_days = stuck_days

    def _now(self) -> str:
        return _iso(self.clock())

    def _arrival_day(self, arrival: FileArrival) -> date:
        """The upload's own date (``eventTime``) places undated keys, not the Lambda's clock: a
        redelivery or a backlog processed after midnight must not move a file to the next day."""
        if arrival.event_time:
            try:
                return (
                    datetime.fromisoformat(arrival.event_time.replace("Z", "+00:00")).astimezone(UTC).date()
                )
            except ValueError:
                log.warn(f"Unreadable eventTime {arrival.event_time!r} for {arrival.key}; using the clock.")
        return self.clock().date()

    def _set_aside(self, arrival: FileArrival, rule: str, reason: str) -> None:
        """A key nobody can process: out of raw/ with a report (only keys under raw/ are ours)."""
        if not unrecognised.is_movable(arrival.key):
            log.info(f"Ignoring s3://{arrival.bucket}/{arrival.key}: {reason}")
            return
        moved = unrecognised.move_unrecognised(
            self.s3,
            arrival.bucket,
            arrival.key,
            rule,
            reason,
            now=self._now(),
            event={"etag": arrival.etag, "size": arrival.size, "event_time": arrival.event_time},
        )
        if moved is not None and self.cloudwatch is not None:
            unrecognised.count(self.cloudwatch, arrival.bucket)

    # -- S3 uploads -----------------------------------------------------------------------------
    def handle_arrival(self, arrival: FileArrival) -> None:
        """Record one uploaded object and trigger whatever it makes ready."""
        if self.bucket and arrival.bucket != self.bucket:
            log.warn(f"Ignoring s3://{arrival.bucket}/{arrival.key}: not the pipeline bucket {self.bucket}.")
            return
        try:
            info = classify_key(arrival.key, today=self._arrival_day(arrival), products_key=self.products_key)
        except IgnoredKey as reason:
            self._set_aside(arrival, reason.rule, str(reason))
            return

        if info.kind == "products":
            products = self.tracker.record_products(arrival.key, arrival.bucket, self._now())
            log.info("Products master data batch updated. No Step Function trigger from this file directly.")
            self._release_waiting(sorted(products.waiting_batches))
            if self.prechecks is not None and not products.waiting_batches:
                self.prechecks.send(self.bucket or arrival.bucket, info.batch_id, arrival.key, {})
            return

        if info.kind == "manifest":
            try:
                expected = read_manifest(self.s3, arrival.bucket, arrival.key, info.batch_id)
            except ManifestError as exc:
                log.error(f"Ignoring manifest s3://{arrival.bucket}/{arrival.key}: {exc}")
                if exc.readable:  # a manifest that vanished or cannot be read stays where it is
                    self._set_aside(arrival, "manifest_format", f"the manifest is unusable: {exc}")
                return
            state = self.tracker.record_manifest(
                info.batch_id, arrival.key, expected, arrival.token, arrival.bucket, self._now(), arrival.etag
            )
            if state is not None:
                log.info(
                    f"Manifest for Daily Batch ID {info.batch_id} recorded: {len(expected)} expected keys, "
                    f"{len(state.missing_keys)} still missing."
                )
            else:
                log.info(f"Duplicate event for manifest {arrival.key}; already recorded.")
            self.reconcile(info.batch_id, state)
            return

        if not info.dated:
            log.warn(
                f"No date partition found in key {arrival.key}. Assigning current UTC date "
                f"{info.batch_id} as Daily Batch ID."
            )
        try:
            state = self.tracker.record_data_file(
                info.batch_id,
                info.kind,
                arrival.key,
                arrival.token,
                arrival.bucket,
                self._now(),
                arrival.etag,
            )
        except ClientError as exc:
            if not _is_item_too_large(exc):
                raise
            # DynamoDB's 400 KB item limit: the day cannot hold another distinct key. The file is set
            # aside with a report instead of failing (and dead-lettering) its event on every retry.
            self._set_aside(
                arrival,
                "day_key_limit",
                f"Daily Batch ID {info.batch_id} holds as many distinct keys as its tracker item can "
                "(DynamoDB's 400 KB item limit); send fewer, larger parts",
            )
            return
        if state is not None and not info.dated:
            self.tracker.remember_undated(arrival.key, info.batch_id, self._now(), self.retention_days)
        if state is None:
            log.info(f"Duplicate event for {arrival.key} ({arrival.token}); already counted.")
        elif state.triggered_generation:
            log.info(
                f"Late file {arrival.key} for Daily Batch ID {info.batch_id} (generation "
                f"{state.triggered_generation} {'running' if state.running else 'ended'}): "
                "marked dirty; a follow-up generation will include it."
            )
        else:
            log.info(f"Recorded {info.kind} file {arrival.key} for Daily Batch ID {info.batch_id}.")
        started = self.reconcile(info.batch_id, state)
        if self.prechecks is not None and state is not None and not started:
            self.prechecks.send(
                self.bucket or arrival.bucket,
                info.batch_id,
                self.products_key,
                {KEYS_VARIABLES[info.kind]: [arrival.key]},
            )

    # -- withdrawals ----------------------------------------------------------------------------
    def handle_removal(self, removal: FileArrival) -> None:
        """``s3:ObjectRemoved`` on raw/: a withdrawal only if the producer deleted an unprocessed file.

        The pipeline deletes a raw key itself once it copied it to a stage, so a stage copy made
        from the key's last counted upload means "moved, not withdrawn". A copy made from an older
        upload (the first, rejected version still in invalid/ while its re-upload was deleted) does
        not: the stage copy's raw ETag (``ecomkpi-raw-etag``) is compared with the ETag the tracker
        recorded for the key's last upload (when both are known).
        """
        if self.bucket and removal.bucket != self.bucket:
            return
        info = self._data_key(removal.key)
        if info is None:
            return
        copy = withdrawal.stage_copy(self.s3, removal.bucket, removal.key)
        if copy is not None:
            last = self.tracker.upload_etag(info.batch_id, removal.key)
            if copy.raw_etag is None or last is None or copy.raw_etag == last:
                return  # the pipeline moved it (to validated/ or invalid/), or it was processed
            log.info(
                f"{removal.key}: {copy.key} holds an older upload ({copy.raw_etag}); the deleted one "
                f"({last}) was never placed."
            )
        if withdrawal.exists(self.s3, removal.bucket, removal.key):
            log.info(f"{removal.key} was deleted and uploaded again; the new upload counts.")
            return
        self._withdraw(info.batch_id, info.kind, removal.key, "deleted from raw/ before it was processed")

    def withdraw(self, key: str, reason: str, bucket: str | None = None) -> bool:
        """The operator's withdrawal (``ecomkpi withdraw``); False when the key is no batch's data file."""
        info = self._data_key(key)
        if info is not None and not (self.bucket or bucket):
            known = self.tracker.get(info.batch_id)
            bucket = known.bucket if known else None
        bucket = self.bucket or bucket
        if info is None or not bucket:
            log.error(
                f"Cannot withdraw {key!r}: not a raw/orders or raw/order_items key of a day (or no bucket)."
            )
            return False
        if withdrawal.exists(self.s3, bucket, f"processed/{withdrawal.relative(key)}"):
            log.warn(
                f"{key} is already processed: its rows stay in the KPIs (upload a corrected file to change "
                "them); it is only taken out of the day's announced keys."
            )
        withdrawal.set_aside(self.s3, bucket, key, reason, now=self._now(), by="operator")
        self._withdraw(info.batch_id, info.kind, key, reason)
        return True

    def _data_key(self, key: str) -> KeyInfo | None:
        try:
            info = classify_key(key, today=self.clock().date(), products_key=self.products_key)
        except IgnoredKey:
            return None
        if info.kind not in ("orders", "order_items"):
            return None  # products stay
        if not info.dated:
            # An undated key's day is its upload date: the tracker noted it when the upload counted.
            day = self.tracker.undated_day(key)
            return KeyInfo(key, info.kind, day, dated=False) if day else None
        return info

    def _withdraw(self, batch_id: str, table: str, key: str, reason: str) -> None:
        state = self.tracker.withdraw(batch_id, table, key, self._now())
        if state is None:
            log.info(f"{key} is not part of Daily Batch ID {batch_id}; nothing to withdraw.")
            return
        log.warn(f"Withdrew {key} from Daily Batch ID {batch_id} ({reason}).")
        self.reconcile(batch_id, state)

    def _release_waiting(self, batch_ids: list[str]) -> None:
        """Products arrived: give every batch that waited for them its chance to start."""
        failures: list[BaseException] = []
        for batch_id in batch_ids:
            try:
                self.reconcile(batch_id)
                # Products stay present from now on, so no batch needs the entry any more (also
                # clears entries left by an invocation that died before unregistering).
                self.tracker.unregister_waiting(batch_id)
            except Exception as exc:  # keep releasing the others; the retry redoes all (idempotent)
                log.error(f"Could not release waiting batch {batch_id}: {exc!r}")
                failures.append(exc)
        if failures:
            raise failures[0]

    # -- execution ends -------------------------------------------------------------------------
    def handle_execution_end(self, end: ExecutionEnd, *, verified: bool = False) -> None:
        """Close generation n of a batch and start n+1 if uploads arrived meanwhile.

        The event is only a hint: anyone able to send to the trigger's queue could write one. The
        execution's own status, read with DescribeExecution (of this state machine, by name), is
        what ends a generation; ``verified`` when the caller just read it.
        """
        match = _EXECUTION_NAME_RE.fullmatch(end.name)
        if match is None or not is_batch_date(match.group("batch")):
            log.info(f"Ignoring status event of execution {end.name!r}: not a batch execution name.")
            return
        if not end.is_terminal:
            log.info(f"Ignoring {end.status} status event of execution {end.name}.")
            return
        if self.state_machine_arn and end.state_machine_arn and not self._is_ours(end.state_machine_arn):
            log.info(f"Ignoring status event of execution {end.name} of another state machine.")
            return
        if not verified:
            confirmed = self._described_end(end)
            if confirmed is None:
                return
            end = confirmed
        batch_id, generation = match.group("batch"), int(match.group("generation"))
        state = self.tracker.mark_ended(batch_id, generation, end.status, end.execution_arn, self._now())
        if state is None:
            log.info(
                f"Status event {end.status} of {end.name} already applied or stale; checking batch state only."
            )
        else:
            log.info(f"Generation {generation} of Daily Batch ID {batch_id} ended with status {end.status}.")
            if end.status == ExecutionStatus.SUCCEEDED and not state.dirty:
                self._archive_manifest(state, end.input.get("bucket"))
        started = self.reconcile(batch_id, state, fallback_bucket=end.input.get("bucket"))
        if not started:
            self.tracker.close_if_idle(batch_id, self._now(), self.retention_days)

    def _described_end(self, end: ExecutionEnd) -> ExecutionEnd | None:
        """The end as Step Functions reports it, or None when the execution has not ended (or is
        not this state machine's): a forged or misrouted event changes nothing."""
        arn = execution_arn_for(self.state_machine_arn, end.name)
        try:
            description = self.sfn.describe_execution(executionArn=arn)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                raise
            log.warn(
                f"Ignoring {end.status} status event of {end.name}: no such execution of this state machine."
            )
            return None
        status = str(description.get("status"))
        if status not in TERMINAL_STATUSES:
            log.warn(
                f"Ignoring {end.status} status event of {end.name}: the execution is {status} "
                "(DescribeExecution); its own end event or the sweep closes it."
            )
            return None
        if status != end.status:
            log.warn(f"Status event of {end.name} said {end.status}; DescribeExecution says {status}.")
        return _end_of(description)

    def _archive_manifest(self, state: BatchState, fallback_bucket: str | None) -> None:
        """The day ran with its manifest and owes nothing: move it to processed/manifests/.

        Every file that lands in raw/ ends in processed/ or invalid/. The tracker keeps the
        expectation, so later files of the day do not need the object. Conditional on the ETag the
        tracker read: a manifest re-uploaded meanwhile stays in raw/ for its own event.
        """
        bucket = self.bucket or state.bucket or fallback_bucket
        if not (state.manifest_key and state.manifest_etag and bucket):
            return
        destination = "processed/" + state.manifest_key.removeprefix("raw/")
        try:
            # Looked up first: moto ignores CopySourceIfMatch (S3 honours it; both checks stay).
            found = lookup(self.s3, bucket, state.manifest_key)
            if found is None:
                log.info(f"Manifest {state.manifest_key} is gone; nothing to archive.")
                return
            if found.etag != state.manifest_etag:
                log.info(f"Manifest {state.manifest_key} was uploaded again; left in raw/ for its own event.")
                return
            self.s3.copy_object(
                Bucket=bucket,
                Key=destination,
                CopySource={"Bucket": bucket, "Key": state.manifest_key},
                CopySourceIfMatch=f'"{state.manifest_etag}"',
            )
            self.s3.delete_object(Bucket=bucket, Key=state.manifest_key, IfMatch=f'"{state.manifest_etag}"')
        except ClientError as exc:
            if not (s3_errors.is_changed(exc) or s3_errors.is_missing(exc)):
                raise
            log.info(
                f"Manifest {state.manifest_key} changed or is gone; left where it is ({s3_errors.code(exc)})."
            )
            return
        log.info(f"Archived manifest {state.manifest_key} to {destination}.")

    def _is_ours(self, state_machine_arn: str) -> bool:
        """This state machine, or one of its versions/aliases (``<arn>:<qualifier>``); never a
        machine whose name merely starts with ours (``ecomkpi-pipeline-worker``)."""
        return state_machine_arn == self.state_machine_arn or (
            state_machine_arn.startswith(self.state_machine_arn + ":")
        )

    # -- the state machine ----------------------------------------------------------------------
    def reconcile(
        self, batch_id: str, state: BatchState | None = None, *, fallback_bucket: str | None = None
    ) -> bool:
        """Start the batch's next generation if it is owed and allowed; otherwise do nothing.

        True when a generation was just claimed (by this call, or a concurrent one that starts it):
        the batch's files are about to be validated by its execution.
        """
        for _ in range(_MAX_ROUNDS):
            if state is None:
                state = self.tracker.get(batch_id)
                if state is None:
                    return False
            if state.running:
                if not state.start_confirmed:
                    # Claimed but StartExecution never confirmed (it failed, or the claimer died).
                    self._start(state, fallback_bucket)
                    return True
                return False
            if not state.dirty:
                return False  # nothing arrived since the last generation was claimed
            if not state.data_complete:
                if state.missing_keys:
                    log.info(
                        f"Daily Batch ID {batch_id} waits for {len(state.missing_keys)} manifest key(s): "
                        f"{', '.join(sorted(state.missing_keys)[:5])}"
                    )
                return False
            if not state.product_file_arrived:
                products = self.tracker.register_waiting(batch_id)
                if not products.present:
                    self.tracker.mark_waiting_for_products(batch_id, self._now())
                    log.info(f"Daily Batch ID {batch_id} is complete but waits for products master data.")
                    return False
                state = self.tracker.mark_products_present(
                    batch_id, products.products_key or self.products_key, self._now()
                )
                self.tracker.unregister_waiting(batch_id)
                continue
            claimed = self.tracker.claim(state, self._now())
            if claimed is None:
                previous = state.triggered_generation
                state = self.tracker.get(batch_id)
                if state is not None and state.triggered_generation > previous:
                    return True  # another invocation claimed this generation and starts it
                continue
            log.info(
                f"All required files for Daily Batch ID {batch_id} are ready. Preparing to trigger Step Function."
            )
            log.info(
                f"Claimed generation {claimed.triggered_generation} of Daily Batch ID {batch_id} "
                f"(execution {claimed.execution_name})."
            )
            self.tracker.note_day(batch_id)
            self._start(claimed, fallback_bucket)
            return True
        log.warn(f"Daily Batch ID {batch_id}: state kept changing; leaving it to the next event.")
        return False

    def _start(self, state: BatchState, fallback_bucket: str | None, *, attempts: int = 3) -> None:
        """StartExecution for the claimed generation; idempotent through the execution name."""
        bucket = self.bucket or state.bucket or fallback_bucket
        if not bucket:
            raise RuntimeError(f"Daily Batch ID {state.batch_id}: no bucket known to start its execution")
        inputs_key = write_inputs(self.s3, bucket, state.inputs_document())
        payload = state.execution_input(bucket, inputs_key)
        name = state.execution_name
        body = json.dumps(payload)
        log.info(f"Triggering Step Function with input: {body}")
        try:
            response = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name, input=body)
            execution_arn = response["executionArn"]
            log.info(f"Started execution {name}: {execution_arn}")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                log.error(
                    f"StartExecution {name} failed: {exc}. The claim is kept; a redelivered event retries "
                    "the same execution name."
                )
                raise
            execution_arn = execution_arn_for(self.state_machine_arn, name)
            existing = self.sfn.describe_execution(executionArn=execution_arn)
            if _claimed_at(existing) != state.triggered_at:
                self._skip_taken_name(state, fallback_bucket, existing, attempts)
                return
            log.info(f"Execution {name} already exists (an earlier attempt of this claim started it).")
            self.tracker.confirm_start(state.batch_id, state.triggered_generation, execution_arn, self._now())
            if existing.get("status") in TERMINAL_STATUSES:
                self.handle_execution_end(
                    _end_of(existing), verified=True
                )  # its status event may be long gone
            return
        self.tracker.confirm_start(state.batch_id, state.triggered_generation, execution_arn, self._now())

    def _skip_taken_name(
        self,
        state: BatchState,
        fallback_bucket: str | None,
        existing: DescribeExecutionOutputTypeDef,
        attempts: int,
    ) -> None:
        log.warn(
            f"Execution name {state.execution_name} belongs to another claim (started "
            f"{existing.get('startDate')}, status {existing.get('status')}): the tracker item was "
            "replaced. Moving the claim to the next generation number."
        )
        skipped = self.tracker.skip_generation(state, self._now())
        if skipped is None:
            log.info(
                f"Daily Batch ID {state.batch_id}: the claim changed meanwhile; leaving it to its owner."
            )
            return
        if attempts <= 1:
            raise RuntimeError(f"Daily Batch ID {state.batch_id}: execution names keep being taken")
        self._start(skipped, fallback_bucket, attempts=attempts - 1)

    # -- the scheduled sweep --------------------------------------------------------------------
    def sweep(self, *, full: bool = False) -> dict[SweepOutcome, int]:
        """Bring every batch whose events were lost to where its events would have brought it.

        Reads the open days only (the tracker's sparse ``open-days`` index); ``full`` scans every
        day (once, after an upgrade from a table whose items carry no open marker). Then a bounded
        listing of raw/ feeds in the files whose event never arrived (:meth:`find_unannounced`).
        """
        counts = dict.fromkeys(SweepOutcome, 0)
        states = self.tracker.scan_batches() if full else self.tracker.open_batches()
        for state in states:
            try:
                outcome = self._sweep_one(state)
                if outcome == SweepOutcome.IDLE:
                    self.tracker.close_if_idle(state.batch_id, self._now(), self.retention_days)
                counts[outcome] += 1
                if self.stuck_days is not None and outcome in (SweepOutcome.IDLE, SweepOutcome.RECONCILED):
                    counts[SweepOutcome.STUCK] += self.stuck_days.check(state.batch_id)
            except Exception as exc:  # one broken batch must not stop the sweep of the others
                counts[SweepOutcome.FAILED] += 1
                log.error(f"Reconcile of Daily Batch ID {state.batch_id} failed: {exc!r}")
        try:
            counts[SweepOutcome.UNANNOUNCED] = self.find_unannounced()
        except Exception as exc:  # the listing is a safety net of its own; the days above are done
            counts[SweepOutcome.FAILED] += 1
            log.error(f"Listing raw/ for unannounced files failed: {exc!r}")
        if any(
            n for outcome, n in counts.items() if outcome not in (SweepOutcome.IDLE, SweepOutcome.RUNNING)
        ):
            log.info(f"Reconcile sweep: {json.dumps(counts)}")  # quiet when nothing needed repair
        return counts

    def find_unannounced(self) -> int:
        """Files in raw/ older than ``unannounced_after_minutes`` that no event told the tracker
        about (or whose last upload it never counted) are fed in as arrivals; returns how many.

        Bounded: at most ``raw_listing_limit`` keys per sweep, resumed from a cursor kept in the
        tracker, so a bucket with a large raw/ is covered over several sweeps within the Lambda's
        timeout. The count goes to ``ecomkpi/UnannouncedKeys`` (alarmed in the stack).
        """
        bucket = self.bucket
        if not bucket or self.raw_listing_limit <= 0:
            return 0
        listing = unannounced.list_raw(
            self.s3, bucket, self.tracker.raw_listing_cursor(), self.raw_listing_limit
        )
        self.tracker.set_raw_listing_cursor(listing.resume_after, self._now())
        cutoff = self.clock() - unannounced.age(self.unannounced_after_minutes)
        known = unannounced.KnownUploads(self.tracker, self.products_key, self.clock().date())
        fed = 0
        for entry in listing.entries:
            if entry.last_modified is None or entry.last_modified > cutoff or known.has(entry):
                continue
            log.warn(
                f"s3://{bucket}/{entry.key} has been in raw/ since {_iso(entry.last_modified)} and no event "
                "announced it: treating it as an arrival."
            )
            try:
                self.handle_arrival(unannounced.arrival_of(bucket, entry))
            except Exception as exc:  # the next sweep finds it again
                log.error(f"Feeding unannounced s3://{bucket}/{entry.key} failed: {exc!r}")
                continue
            fed += 1
        if self.cloudwatch is not None:
            unannounced.count(self.cloudwatch, bucket, fed)
        return fed

    def _sweep_one(self, state: BatchState) -> SweepOutcome:
        if state.running and state.start_confirmed:
            arn = state.execution_arn or execution_arn_for(self.state_machine_arn, state.execution_name)
            try:
                existing = self.sfn.describe_execution(executionArn=arn)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                    raise
                log.warn(f"Execution {state.execution_name} does not exist; its generation is run again.")
                ended = self.tracker.mark_lost(state.batch_id, state.triggered_generation, self._now())
                self.reconcile(state.batch_id, ended)
                return SweepOutcome.LOST
            if existing.get("status") not in TERMINAL_STATUSES:
                return SweepOutcome.RUNNING
            log.warn(
                f"Execution {state.execution_name} ended {existing.get('status')} but the tracker missed it."
            )
            self.handle_execution_end(_end_of(existing), verified=True)
            return SweepOutcome.FINISHED
        if state.running or state.dirty:
            self.reconcile(state.batch_id)
            return SweepOutcome.RECONCILED
        return SweepOutcome.IDLE


def _is_item_too_large(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    return error.get("Code") == "ValidationException" and "size" in str(error.get("Message", "")).lower()


def _claimed_at(description: DescribeExecutionOutputTypeDef) -> str | None:
    try:
        value = json.loads(description.get("input") or "{}")
    except ValueError:
        return None
    return value.get("triggered_at") if isinstance(value, dict) else None


def _end_of(description: DescribeExecutionOutputTypeDef) -> ExecutionEnd:
    try:
        parsed = json.loads(description.get("input") or "{}")
    except ValueError:
        parsed = {}
    return ExecutionEnd(
        name=str(description["name"]),
        status=str(description["status"]),
        execution_arn=description.get("executionArn"),
        state_machine_arn=description.get("stateMachineArn"),
        input=parsed if isinstance(parsed, dict) else {},
    )
