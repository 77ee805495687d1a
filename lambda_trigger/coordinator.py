"""Decisions: record an arrival or an execution end, then bring the batch to its next state.

``reconcile`` is the single place that decides whether a batch starts a generation. It is called
after every event for the batch (new, duplicate, end-of-execution, products arrival), reads the
current state and acts with conditional writes only, so any number of concurrent or repeated calls
converge on the same result: at most one execution per generation, and no upload left unprocessed.

Claim first, start second: the generation is claimed in the tracker, then StartExecution runs with
the deterministic name ``<batch>-g<generation>``. If the start fails the claim stays with
``start_confirmed = false`` and the next event for the batch (normally the SQS redelivery of the
failed message) starts the same name again; ``ExecutionAlreadyExists`` counts as success, so a
start that did succeed before the Lambda died is not duplicated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from lambda_trigger import log
from lambda_trigger.batch_ids import DEFAULT_PRODUCTS_KEY, IgnoredKey, classify_key, is_batch_date
from lambda_trigger.events import ExecutionEnd, FileArrival
from lambda_trigger.manifest import ManifestError, read_manifest
from lambda_trigger.tracker import BatchFileTracker, BatchState

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
        sfn_client: Any,
        s3_client: Any,
        state_machine_arn: str,
        *,
        products_key: str = DEFAULT_PRODUCTS_KEY,
        clock: Callable[[], datetime],
    ) -> None:
        self.tracker = tracker
        self.sfn = sfn_client
        self.s3 = s3_client
        self.state_machine_arn = state_machine_arn
        self.products_key = products_key
        self.clock = clock

    def _now(self) -> str:
        return _iso(self.clock())

    # -- S3 uploads -----------------------------------------------------------------------------
    def handle_arrival(self, arrival: FileArrival) -> None:
        """Record one uploaded object and trigger whatever it makes ready."""
        try:
            info = classify_key(arrival.key, today=self.clock().date(), products_key=self.products_key)
        except IgnoredKey as reason:
            log.info(f"Ignoring s3://{arrival.bucket}/{arrival.key}: {reason}")
            return

        if info.kind == "products":
            products = self.tracker.record_products(arrival.key, arrival.bucket, self._now())
            log.info("Products master data batch updated. No Step Function trigger from this file directly.")
            self._release_waiting(sorted(products.waiting_batches))
            return

        if info.kind == "manifest":
            try:
                expected = read_manifest(self.s3, arrival.bucket, arrival.key, info.batch_id)
            except ManifestError as exc:
                log.error(f"Ignoring manifest s3://{arrival.bucket}/{arrival.key}: {exc}")
                return
            state = self.tracker.record_manifest(
                info.batch_id, arrival.key, expected, arrival.token, arrival.bucket, self._now()
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
        self.reconcile(info.batch_id, state)

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
        if (
            self.state_machine_arn
            and end.state_machine_arn
            and not end.state_machine_arn.startswith(self.state_machine_arn)
        ):
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
        self.reconcile(batch_id, state, fallback_bucket=end.input.get("bucket"))

    # -- the state machine ----------------------------------------------------------------------
    def reconcile(
        self, batch_id: str, state: BatchState | None = None, *, fallback_bucket: str | None = None
    ) -> None:
        """Start the batch's next generation if it is owed and allowed; otherwise do nothing."""
        for _ in range(_MAX_ROUNDS):
            if state is None:
                state = self.tracker.get(batch_id)
                if state is None:
                    return
            if state.running:
                if not state.start_confirmed:
                    # Claimed but StartExecution never confirmed (it failed, or the claimer died).
                    self._start(state, fallback_bucket)
                return
            if not state.dirty:
                return  # nothing arrived since the last generation was claimed
            if not state.data_complete:
                if state.missing_keys:
                    log.info(
                        f"Daily Batch ID {batch_id} waits for {len(state.missing_keys)} manifest key(s): "
                        f"{', '.join(sorted(state.missing_keys)[:5])}"
                    )
                return
            if not state.product_file_arrived:
                products = self.tracker.register_waiting(batch_id)
                if not products.present:
                    self.tracker.mark_waiting_for_products(batch_id, self._now())
                    log.info(f"Daily Batch ID {batch_id} is complete but waits for products master data.")
                    return
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
                    return  # another invocation claimed this generation and starts it
                continue
            log.info(
                f"All required files for Daily Batch ID {batch_id} are ready. Preparing to trigger Step Function."
            )
            log.info(
                f"Claimed generation {claimed.triggered_generation} of Daily Batch ID {batch_id} "
                f"(execution {claimed.execution_name})."
            )
            self._start(claimed, fallback_bucket)
            return
        log.warn(f"Daily Batch ID {batch_id}: state kept changing; leaving it to the next event.")

    def _start(self, state: BatchState, fallback_bucket: str | None) -> None:
        """StartExecution for the claimed generation; idempotent through the execution name."""
        payload = state.execution_input()
        if not payload["bucket"]:
            payload["bucket"] = fallback_bucket
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
            log.info(f"Execution {name} already exists (an earlier attempt started it).")
        self.tracker.confirm_start(state.batch_id, state.triggered_generation, execution_arn, self._now())
