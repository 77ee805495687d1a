"""Turn the payloads the Lambda can receive into typed values.

The function is wired in one of three ways, and the same handler serves all of them:

* S3 -> Lambda (direct notification): ``{"Records": [{"eventSource": "aws:s3", ...}]}``;
* S3 -> SQS (with a DLQ) -> Lambda, the recommended wiring: ``{"Records": [{"eventSource":
  "aws:sqs", "body": "<S3 event JSON>"}]}``; the body may also be an SNS envelope (S3 -> SNS -> SQS)
  or an EventBridge event routed through the queue;
* EventBridge "Step Functions Execution Status Change" -> Lambda, which tells the tracker that a
  generation ended;
* an EventBridge schedule -> Lambda (``{"ecomkpi": "reconcile"}``): the sweep that repairs batches
  whose events were lost.

S3 sends the object key URL-encoded with ``quote_plus`` (a space becomes ``+``), so keys are decoded
with :func:`urllib.parse.unquote_plus` here, once, and everything downstream sees the real key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from lambda_trigger.states import TERMINAL_STATUSES

SFN_SOURCE = "aws.states"
SFN_DETAIL_TYPE = "Step Functions Execution Status Change"


class MalformedEvent(ValueError):
    """The payload cannot be understood; for SQS it is reported as a batch item failure (-> DLQ)."""


@dataclass(frozen=True)
class FileArrival:
    """One ``ObjectCreated`` notification for one object.

    ``token`` identifies the *upload*, not the key: S3 may deliver the same notification twice
    (same sequencer) and that must be recognised as a duplicate, while a re-upload of the same key
    has a new sequencer and must count as a new arrival.
    """

    bucket: str
    key: str
    event_name: str
    sequencer: str | None = None
    etag: str | None = None
    version_id: str | None = None
    event_time: str | None = None
    size: int | None = None

    @property
    def token(self) -> str:
        if self.sequencer:
            return f"{self.key}|seq:{self.sequencer}"
        # Every real ObjectCreated notification has a sequencer; the fallback keeps events without
        # one (hand-made, some emulators) distinguishable: a re-upload has a new time (and version).
        return f"{self.key}|etag:{self.etag}|ver:{self.version_id}|time:{self.event_time}"


@dataclass(frozen=True)
class ExecutionEnd:
    """An EventBridge status-change event of one Step Functions execution."""

    name: str
    status: str
    execution_arn: str | None
    state_machine_arn: str | None
    input: dict[str, Any]

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def is_reconcile_event(event: dict[str, Any]) -> bool:
    """The scheduled sweep: the stack's schedule rule sends ``{"ecomkpi": "reconcile"}``; a plain
    EventBridge "Scheduled Event" is accepted too, so a rule without a constant input still works."""
    return event.get("ecomkpi") == "reconcile" or (
        event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"
    )


def is_withdraw_event(event: dict[str, Any]) -> bool:
    """``ecomkpi withdraw`` sends ``{"ecomkpi": "withdraw", "key": ..., "reason": ...}``."""
    return event.get("ecomkpi") == "withdraw"


def is_s3_test_event(event: dict[str, Any]) -> bool:
    """S3 (and moto) send ``{"Event": "s3:TestEvent", ...}`` when a notification is configured."""
    return event.get("Event") == "s3:TestEvent" and "Records" not in event


def is_sqs_event(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return bool(records) and isinstance(records, list) and records[0].get("eventSource") == "aws:sqs"


def is_s3_event(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return bool(records) and isinstance(records, list) and records[0].get("eventSource") == "aws:s3"


def is_sfn_status_event(event: dict[str, Any]) -> bool:
    return event.get("source") == SFN_SOURCE and event.get("detail-type") == SFN_DETAIL_TYPE


def parse_sqs_body(body: str) -> dict[str, Any]:
    """Decode an SQS message body into the event it carries (unwrapping an SNS envelope)."""
    try:
        payload = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"SQS body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise MalformedEvent("SQS body is not a JSON object")
    if payload.get("Type") == "Notification" and isinstance(payload.get("Message"), str):
        return parse_sqs_body(payload["Message"])
    return payload


def file_arrivals(event: dict[str, Any], kind: str = "ObjectCreated") -> list[FileArrival]:
    """The ``kind`` records (``ObjectCreated`` or ``ObjectRemoved``) of an S3 event, keys decoded."""
    arrivals = []
    for record in event.get("Records") or []:
        if record.get("eventSource") not in (None, "aws:s3"):
            raise MalformedEvent(f"unexpected record source {record.get('eventSource')!r}")
        event_name = str(record.get("eventName") or "ObjectCreated:Put")
        if not event_name.removeprefix("s3:").startswith(kind):
            continue  # restores, tagging, replication ...
        try:
            s3 = record["s3"]
            bucket = s3["bucket"]["name"]
            obj = s3["object"]
            key = unquote_plus(obj["key"])
        except (KeyError, TypeError) as exc:
            raise MalformedEvent(f"S3 record without bucket/key: {exc!r}") from exc
        arrivals.append(
            FileArrival(
                bucket=bucket,
                key=key,
                event_name=event_name,
                sequencer=obj.get("sequencer"),
                etag=obj.get("eTag"),
                version_id=obj.get("versionId"),
                event_time=record.get("eventTime"),
                size=obj.get("size") if isinstance(obj.get("size"), int) else None,
            )
        )
    return arrivals


def execution_end(event: dict[str, Any]) -> ExecutionEnd:
    """Parse an EventBridge "Step Functions Execution Status Change" event."""
    detail = event.get("detail")
    if not isinstance(detail, dict) or not detail.get("name") or not detail.get("status"):
        raise MalformedEvent("Step Functions status event without detail.name/status")
    raw_input = detail.get("input")
    parsed: dict[str, Any] = {}
    if isinstance(raw_input, str) and raw_input:
        try:
            value = json.loads(raw_input)
        except ValueError:
            value = None
        if isinstance(value, dict):
            parsed = value
    elif isinstance(raw_input, dict):
        parsed = raw_input
    return ExecutionEnd(
        name=str(detail["name"]),
        status=str(detail["status"]),
        execution_arn=detail.get("executionArn"),
        state_machine_arn=detail.get("stateMachineArn"),
        input=parsed,
    )
