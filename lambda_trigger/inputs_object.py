"""The key list of one generation, written to S3 and passed to the workflow by reference.

A day may have any number of parts. Inline in the execution input they would hit Step Functions'
256 KB payload limit, and in the ECS container overrides AWS's 8 KiB limit at about 80 parts. So
the trigger writes ``control/inputs/<batch>/g<generation>-<digest>.json`` before StartExecution and
the execution input carries only ``inputs_key`` (and counts for people reading the console); the
jobs read the list with ``INPUTS_KEY`` (jobs/batch_inputs.py reads this exact document).

The digest makes the object immutable: a retried start after more keys arrived writes a new object
instead of changing the list under an execution that already runs (validation and transformation
of one execution always see the same keys).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

INPUTS_PREFIX = "control/inputs/"
DOCUMENT_VERSION = 1


def inputs_document(
    batch_id: str, generation: int, products_key: str, orders_keys: list[str], order_items_keys: list[str]
) -> dict[str, Any]:
    return {
        "version": DOCUMENT_VERSION,
        "batch_id": batch_id,
        "generation": generation,
        "products_key": products_key,
        "orders_keys": sorted(orders_keys),
        "order_items_keys": sorted(order_items_keys),
    }


def inputs_key(document: dict[str, Any], body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()[:16]
    return f"{INPUTS_PREFIX}{document['batch_id']}/g{document['generation']}-{digest}.json"


def write_inputs(s3: S3Client, bucket: str, document: dict[str, Any]) -> str:
    """Store the document (idempotent: same keys, same object) and return its key."""
    body = (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    key = inputs_key(document, body)
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json; charset=utf-8")
    return key
