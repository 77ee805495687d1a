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
generations whose execution has ended (a lost status event), starts claims that never started, and
reconciles dirty batches whose event was lost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from lambda_trigger import log, s3_errors, unrecognised, withdrawal
from lambda_trigger.batch_ids import DEFAULT_PRODUCTS_KEY, IgnoredKey, KeyInfo, classify_key, is_batch_date
from lambda_trigger.events import ExecutionEnd, FileArrival
from lambda_trigger.inputs_object import write_inputs
from lambda_trigger.manifest import ManifestError, read_manifest
from lambda_trigger.prechecks import KEYS_VARIABLES, Prechecks
from lambda_trigger.states import TERMINAL_STATUSES, ExecutionStatus, SweepOutcome
from lambda_trigger.tracker import BatchFileTracker, BatchState

if TYPE_CHECKING:
    from types_boto3_cloudwatch import CloudWatchClient
    from types_boto3_s3 import S3Client
    from types_boto3_stepfunctions import SFNClient
    from types_boto3_stepfunctions.type_defs import DescribeExecutionOutputTypeDef

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
        state = self.tracker.record_data_file(
            info.batch_id, info.kind, arrival.key, arrival.token, arrival.bucket, self._now()
        )
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
        """``s3:ObjectRemoved`` on raw/: a withdrawal only if the producer deleted an unprocessed file."""
        if self.bucket and removal.bucket != self.bucket:
            return
        info = self._data_key(removal.key)
        if info is None:
            return
        copy = withdrawal.stage_copy(self.s3, removal.bucket, removal.key)
        if copy is not None:
            return  # the pipeline moved it (to validated/ or invalid/), or it was processed
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
        if info.kind not in ("orders", "order_items") or not info.dated:
            return None  # products stay; an undated key's day is not known from the key alone
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
    def handle_execution_end(self, end: ExecutionEnd) -> None:
        """Close generation n of a batch and start n+1 if uploads arrived meanwhile."""
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
        self.reconcile(batch_id, state, fallback_bucket=end.input.get("bucket"))

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
            # HEAD first: moto ignores CopySourceIfMatch (S3 honours it; both checks stay).
            current = self.s3.head_object(Bucket=bucket, Key=state.manifest_key)["ETag"].strip('"')
            if current != state.manifest_etag:
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
                self.handle_execution_end(_end_of(existing))  # its status event may be long gone
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
    def sweep(self) -> dict[SweepOutcome, int]:
        """Bring every batch whose events were lost to where its events would have brought it."""
        counts = dict.fromkeys(SweepOutcome, 0)
        for state in self.tracker.scan_batches():
            try:
                counts[self._sweep_one(state)] += 1
            except Exception as exc:  # one broken batch must not stop the sweep of the others
                counts[SweepOutcome.FAILED] += 1
                log.error(f"Reconcile of Daily Batch ID {state.batch_id} failed: {exc!r}")
        if any(
            n for outcome, n in counts.items() if outcome not in (SweepOutcome.IDLE, SweepOutcome.RUNNING)
        ):
            log.info(f"Reconcile sweep: {json.dumps(counts)}")  # quiet when nothing needed repair
        return counts

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
            self.handle_execution_end(_end_of(existing))
            return SweepOutcome.FINISHED
        if state.running or state.dirty:
            self.reconcile(state.batch_id)
            return SweepOutcome.RECONCILED
        return SweepOutcome.IDLE


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
