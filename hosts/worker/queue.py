"""SQS calls of the worker that take many messages: batches of 10 (SQS's most), failures logged."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hosts.worker.log import log

if TYPE_CHECKING:
    from types_boto3_sqs import SQSClient
    from types_boto3_sqs.type_defs import MessageTypeDef

# How long a message looked at by ``waiting`` stays invisible: the caller deletes it or gives it back.
LOOK_SECONDS = 30


def _report_failed(action: str, response: Mapping[str, Any]) -> None:
    """A batch call answers 200 with per-entry failures: say which, or they pass unseen (the
    message then comes back when its visibility ends, and its work is done again: idempotent)."""
    for failed in response.get("Failed", []):
        log(
            f"sqs.{action}.failed",
            level="WARN",
            entry=failed.get("Id"),
            code=failed.get("Code"),
            error=failed.get("Message"),
        )


def hold(sqs: SQSClient, queue_url: str, receipts: Sequence[str], seconds: int) -> None:
    """Keep received messages invisible for ``seconds`` more (0: visible now)."""
    for i in range(0, len(receipts), 10):
        response = sqs.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": r, "VisibilityTimeout": seconds}
                for n, r in enumerate(receipts[i : i + 10])
            ],
        )
        _report_failed("change_visibility", response)


def make_visible(sqs: SQSClient, queue_url: str, messages: Sequence[MessageTypeDef]) -> None:
    """Give received messages back to the queue at once."""
    hold(sqs, queue_url, [m["ReceiptHandle"] for m in messages], 0)


def delete_all(sqs: SQSClient, queue_url: str, receipts: Sequence[str]) -> None:
    """Delete received messages."""
    for i in range(0, len(receipts), 10):
        response = sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(receipts[i : i + 10])],
        )
        _report_failed("delete", response)


def waiting(sqs: SQSClient, queue_url: str, enough: Callable[[], bool]) -> Iterator[MessageTypeDef]:
    """The messages waiting in ``queue_url``, each once, until there is no new one or ``enough()``.

    Each is received for LOOK_SECONDS: the caller deletes it or makes it visible again.
    """
    seen: set[str] = set()
    while not enough():
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=LOOK_SECONDS,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        make_visible(sqs, queue_url, [m for m in messages if m["MessageId"] in seen])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return
        for message in fresh:
            seen.add(message["MessageId"])
            yield message
