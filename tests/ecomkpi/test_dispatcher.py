"""The local Lambda dispatcher: SQS messages reach the handler, and busy() tells work from idling.

``ecomkpi demo`` waits for busy() to stay false before the next wave; an idle long poll that counted
as work kept it true forever once (the demo hung after its first wave).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import boto3
import pytest

from ecomkpi.dispatcher import Dispatcher


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def dispatcher_parts(moto_endpoint):
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"raw-events-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs, url, arn


def test_busy_while_a_message_is_handled_and_idle_while_only_polling(dispatcher_parts):
    sqs, url, arn = dispatcher_parts
    release = threading.Event()
    seen: list[dict[str, Any]] = []

    def handler(event: dict, _context: Any) -> dict:
        seen.append(event)
        release.wait(10)
        return {"batchItemFailures": []}

    d = Dispatcher(sqs, url, arn, on_event=lambda _line: None, handler=handler)
    d.start()
    try:
        # Idle: the thread long-polls an empty queue; busy() must be false at every sample.
        time.sleep(1.5)
        assert not any(d.busy() for _ in range(20))

        sqs.send_message(QueueUrl=url, MessageBody='{"Records": []}')
        assert wait_until(lambda: bool(seen))
        assert d.busy()  # received, being handled, not yet deleted
        release.set()
        assert wait_until(lambda: not d.busy())
        assert seen[0]["Records"][0]["eventSourceARN"] == arn

        # A direct invocation (the EventBridge path) counts until it is handled.
        release.clear()
        d.submit({"source": "aws.states"})
        assert d.busy()
        release.set()
        assert wait_until(lambda: not d.busy())
        assert seen[-1] == {"source": "aws.states"}
    finally:
        release.set()
        d.stop()
    assert not d.is_alive()
