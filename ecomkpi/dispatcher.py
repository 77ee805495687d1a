"""Plays the AWS Lambda service for the trigger: SQS event source mapping plus EventBridge target.

One thread delivers everything, as a Lambda with reserved concurrency 1 would: moto checks a
DynamoDB condition and applies the write in separate steps, so concurrent invocations against the
emulator could break the tracker's exactly-once guarantee in ways real DynamoDB never would (the
tracker's own tests exercise real concurrency under a lock that restores atomicity).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ecomkpi.log_sink import CloudWatchSink
from ecomkpi.thread_lines import lines_of_this_thread

LAMBDA_LOG_GROUP = "/aws/lambda/ecomkpi-trigger"


class LambdaContext:
    """The attributes of the Lambda context object the handler may read."""

    function_name = "ecomkpi-trigger"
    memory_limit_in_mb = 256

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + 60

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class Dispatcher(threading.Thread):
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        on_event: Callable[[str], None],
        log_sink: CloudWatchSink | None = None,
        handler: Callable[[dict[str, Any], Any], Any] | None = None,
    ) -> None:
        super().__init__(name="lambda-dispatcher", daemon=True)
        if handler is None:
            from lambda_trigger.handler import lambda_handler

            handler = lambda_handler
        self.handler = handler
        self.sqs, self.queue_url, self.queue_arn = sqs, queue_url, queue_arn
        self.on_event = on_event
        self.log_sink = log_sink
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stopping = threading.Event()
        self._in_flight = 0
        self._lock = threading.Lock()
        self.invocations = 0
        self.errors = 0

    def submit(self, event: dict[str, Any]) -> None:
        """Queue a direct invocation (EventBridge target)."""
        with self._lock:
            self._in_flight += 1
        self.inbox.put(event)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=10)

    def busy(self) -> bool:
        with self._lock:
            if self._in_flight:
                return True
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return any(int(attrs.get(k, 0)) for k in attrs)

    def _invoke(self, event: dict[str, Any]) -> Any:
        self.invocations += 1
        stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex[:12]}"

        def emit(line: str) -> None:
            self.on_event(f"lambda: {line}")
            if self.log_sink:
                self.log_sink.add(LAMBDA_LOG_GROUP, stream, line)

        with lines_of_this_thread(emit):
            try:
                return self.handler(event, LambdaContext())
            except Exception as exc:  # the Lambda service would log it and retry / redrive
                self.errors += 1
                print(f"[ERROR] invocation failed: {type(exc).__name__}: {exc}")
                return None

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                event = self.inbox.get_nowait()
            except queue.Empty:
                event = None
            if event is not None:
                try:
                    self._invoke(event)
                finally:
                    with self._lock:
                        self._in_flight -= 1
                continue
            # An empty long poll is not work: counting it as in flight would keep busy() true for
            # all but microseconds of every second. Received messages count as not visible in the
            # queue's attributes until they are deleted, so busy() sees them without a counter.
            self._poll_sqs()

    def _poll_sqs(self) -> None:
        msgs = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not msgs:
            return
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m.get("MD5OfBody", ""),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": self.queue_arn.split(":")[3],
                }
                for m in msgs
            ]
        }
        response = self._invoke(event)
        if response is None:
            return  # whole batch failed: messages become visible again, then go to the DLQ
        failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        done = [m for m in msgs if m["MessageId"] not in failed]
        for i in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(done[i : i + 10])
                ],
            )
