"""Prechecks: the warm worker validates each part as soon as it lands, not when its day completes.

A day's validation used to start with its last upload and check every part then, so the time from
the last upload to the KPIs paid the validation of all of them. With a warm worker (``TaskMode``
worker) the trigger sends the precheck queue one message per part that lands before its day is
complete (and per products master nobody waits for); the worker validates that part at once and
records its verdict without placing it (``jobs.validation.job.run(..., precheck=True)``). When the day
completes, its ValidateData finds those verdicts recorded and only places the files.

The message has no task token: nobody waits for it, and losing one costs only time (the day's own
validation checks every part it finds without a verdict). So a failure to send is logged, never
raised: the upload's event must not be redelivered, or dead-lettered, for an optimisation.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

from lambda_trigger import log

if TYPE_CHECKING:
    from types_boto3_sqs import SQSClient

COMMAND = "precheck"  # hosts.worker.messages.PRECHECK: the worker's name for this message
KEYS_VARIABLES = {"orders": "ORDERS_KEYS", "order_items": "ORDER_ITEMS_KEYS"}  # the jobs' variables


class Prechecks:
    """Sends precheck messages to the worker's precheck queue (``PRECHECK_QUEUE_URL``)."""

    def __init__(self, sqs: SQSClient, queue_url: str) -> None:
        self.sqs = sqs
        self.queue_url = queue_url

    def send(self, bucket: str, batch_id: str, products_key: str, dataset_keys: dict[str, list[str]]) -> None:
        """Ask for the keys to be checked (``dataset_keys``: ``ORDERS_KEYS`` / ``ORDER_ITEMS_KEYS`` lists)."""
        environment = {
            "S3_BUCKET": bucket,
            "BATCH_ID": batch_id,
            "RUN_ID": f"{batch_id}-p-{uuid.uuid4().hex[:10]}",
            "PRODUCTS_KEY": products_key,
            **{name: json.dumps(keys) for name, keys in dataset_keys.items()},
        }
        body = json.dumps(
            {"Command": [COMMAND], "Environment": [{"Name": k, "Value": v} for k, v in environment.items()]}
        )
        try:
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)
        except Exception as exc:  # an optimisation only: the day's validation checks the part anyway
            log.warn(f"Could not send the precheck of {dataset_keys or products_key}: {exc!r}")
            return
        log.info(f"Precheck of {dataset_keys or products_key} sent to the worker ({environment['RUN_ID']}).")
