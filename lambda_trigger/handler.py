"""Lambda entry point: ``lambda_trigger.handler.lambda_handler(event, context)``.

Environment:

* ``PIPELINE_BATCH_TRACKER_TABLE`` -- the tracker table (default ``BatchFileTracker``);
* ``STEP_FUNCTION_ARN`` -- the state machine to start (required);
* ``PRODUCTS_KEY`` -- products master key (default ``raw/products/products.csv``);
* ``S3_BUCKET`` -- the pipeline bucket; events of other buckets are refused (unset: trust events);
* ``PRECHECK_QUEUE_URL`` -- the warm worker's precheck queue: parts are sent there to be validated as
  they land (``lambda_trigger/prechecks.py``); unset (per-batch task mode): no prechecks;
* ``TRACKER_RETENTION_DAYS`` -- finished days expire from the tracker this many days after they went
  idle (DynamoDB TTL); unset or 0: kept forever;
* ``UNANNOUNCED_AFTER_MINUTES`` -- the sweep feeds in raw/ files this old that no event announced
  (default 15); ``RAW_LISTING_LIMIT`` -- raw/ keys listed per sweep (default 5000, 0: no listing);
* ``ALERTS_TOPIC_ARN`` -- the alerts topic: a day that waits ``STUCK_AFTER_MINUTES`` (default 120;
  0: never) after its last upload without running gets one alert (``lambda_trigger/stuck_days.py``);
  unset: no such alerts;
* ``AWS_ENDPOINT_URL`` -- emulator endpoint, unset in AWS;
* ``AWS_REGION`` -- set by the Lambda runtime.

Configuration is read per invocation (a few dict lookups) and clients come from the per-process
cache of :mod:`jobs.aws` (shipped in this function's zip), so the same module serves AWS and the
local emulator unchanged.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Mapping
from typing import Any

from jobs import aws
from lambda_trigger import batch_ids, log, stuck_days, unannounced
from lambda_trigger.coordinator import BatchCoordinator
from lambda_trigger.events import (
    MalformedEvent,
    execution_end,
    file_arrivals,
    is_reconcile_event,
    is_s3_event,
    is_s3_test_event,
    is_sfn_status_event,
    is_sqs_event,
    is_withdraw_event,
    parse_sqs_body,
)
from lambda_trigger.prechecks import Prechecks
from lambda_trigger.stuck_days import StuckDays
from lambda_trigger.tracker import BatchFileTracker

DEFAULT_TRACKER_TABLE = "BatchFileTracker"


def build_coordinator(env: Mapping[str, str] | None = None) -> BatchCoordinator:
    """Wire the coordinator from the environment (``env``, else the process's: a Lambda's is its
    configuration; a host of several, as the local stack is, passes each its own); fails fast when
    the state machine is not set."""
    env = os.environ if env is None else env

    def client(service: aws.ServiceName) -> Any:
        return aws.client(service, retries=aws.REQUEST_RETRIES, env=env)

    def number(name: str, default: float) -> float:
        return _number(env, name, default)

    state_machine_arn = env.get("STEP_FUNCTION_ARN", "").strip()
    if not state_machine_arn:
        raise RuntimeError("STEP_FUNCTION_ARN is not set")
    table = env.get("PIPELINE_BATCH_TRACKER_TABLE", "").strip() or DEFAULT_TRACKER_TABLE
    precheck_queue = env.get("PRECHECK_QUEUE_URL", "").strip()
    tracker = BatchFileTracker(client("dynamodb"), table)
    topic = env.get("ALERTS_TOPIC_ARN", "").strip()
    stuck_after = number("STUCK_AFTER_MINUTES", stuck_days.DEFAULT_AFTER_MINUTES)
    return BatchCoordinator(
        tracker,
        client("stepfunctions"),
        client("s3"),
        state_machine_arn,
        products_key=env.get("PRODUCTS_KEY", "").strip() or batch_ids.DEFAULT_PRODUCTS_KEY,
        clock=batch_ids.utc_now,
        bucket=env.get("S3_BUCKET", "").strip() or None,
        cloudwatch_client=client("cloudwatch"),
        prechecks=Prechecks(client("sqs"), precheck_queue) if precheck_queue else None,
        retention_days=int(number("TRACKER_RETENTION_DAYS", 0)) or None,
        unannounced_after_minutes=number("UNANNOUNCED_AFTER_MINUTES", unannounced.DEFAULT_AGE_MINUTES),
        raw_listing_limit=int(number("RAW_LISTING_LIMIT", unannounced.DEFAULT_LISTING_LIMIT)),
        stuck_days=StuckDays(tracker, client("sns"), topic, batch_ids.utc_now, stuck_after)
        if topic and stuck_after > 0
        else None,
    )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    """A non-negative number from the environment; a wrong value fails the invocation loudly."""
    text = env.get(name, "").strip()
    if not text:
        return default
    value = float(text)
    if value < 0:
        raise RuntimeError(f"{name} must not be negative: {text!r}")
    return value


def _process(event: dict[str, Any], coordinator: BatchCoordinator) -> None:
    """Handle one non-SQS event: an S3 notification, an S3 test event or an SFN status change."""
    if is_reconcile_event(event):
        coordinator.sweep(full=event.get("full") is True)
        return
    if is_withdraw_event(event):
        _withdraw(event, coordinator)
        return
    if is_s3_test_event(event):
        log.info("Ignoring s3:TestEvent.")
        return
    if is_sfn_status_event(event):
        coordinator.handle_execution_end(execution_end(event))
        return
    if is_s3_event(event):
        arrivals = file_arrivals(event)
        removals = file_arrivals(event, "ObjectRemoved")
        skipped = len(event["Records"]) - len(arrivals) - len(removals)
        if skipped:
            log.info(f"Ignoring {skipped} S3 record(s) that are neither ObjectCreated nor ObjectRemoved.")
        failures: list[Exception] = []
        for record, handle in [
            *((a, coordinator.handle_arrival) for a in arrivals),
            *((r, coordinator.handle_removal) for r in removals),
        ]:
            try:
                handle(record)
            except Exception as exc:  # finish the other records; the retry is idempotent
                log.error(f"Failed to process {record.event_name} s3://{record.bucket}/{record.key}: {exc!r}")
                failures.append(exc)
        if failures:
            raise failures[0]
        return
    raise MalformedEvent(f"unsupported event with keys {sorted(event)[:10]}")


def _withdraw(event: dict[str, Any], coordinator: BatchCoordinator) -> None:
    key, reason = event.get("key"), event.get("reason") or "withdrawn by an operator"
    if not isinstance(key, str) or not isinstance(reason, str):
        raise MalformedEvent("a withdraw event needs a string 'key' (and optionally 'reason')")
    bucket = event.get("bucket") if isinstance(event.get("bucket"), str) else None
    coordinator.withdraw(key, reason, bucket)


def _process_sqs(event: dict[str, Any], coordinator: BatchCoordinator) -> dict[str, Any]:
    """One SQS batch: report only the failed messages so SQS redelivers (then dead-letters) them."""
    failures = []
    for record in event["Records"]:
        message_id = record.get("messageId", "")
        try:
            _process(parse_sqs_body(record.get("body", "")), coordinator)
        except Exception as exc:
            log.error(f"SQS message {message_id} failed: {exc!r}\n{traceback.format_exc()}")
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Entry point. SQS invocations return a partial batch response; others raise on failure."""
    del context
    return handle(event, os.environ)


def handle(event: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """One invocation configured by ``env`` (what the Lambda's environment would hold)."""
    coordinator = build_coordinator(env)
    if is_sqs_event(event):
        return _process_sqs(event, coordinator)
    if is_reconcile_event(event):
        return {"status": "ok", "reconcile": coordinator.sweep(full=event.get("full") is True)}
    if is_withdraw_event(event):
        _withdraw(event, coordinator)
        return {"status": "ok"}
    if not is_s3_event(event) and not is_sfn_status_event(event) and not is_s3_test_event(event):
        log.warn(f"Ignoring unsupported event with keys {sorted(event)[:10]}")
        return {"status": "ignored"}
    _process(event, coordinator)
    return {"status": "ok"}
