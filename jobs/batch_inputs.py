"""The key list a generation was started with, read from S3 (``INPUTS_KEY``).

The trigger writes ``control/inputs/<batch>/g<n>-<digest>.json`` (lambda_trigger/inputs_object.py)
and the workflow passes only its key, so a day with hundreds of parts fits Step Functions' 256 KB
payloads and ECS's 8 KiB container overrides. ``ORDERS_KEYS`` / ``ORDER_ITEMS_KEYS`` stay for
people who run a job by hand (``spark-submit``); setting both ways at once is an error, because one
of the two lists would be silently ignored.
"""

from __future__ import annotations

from typing import Any

from jobs.config import ConfigError, PipelineConfig
from jobs.s3_store import S3Store

SUPPORTED_VERSION = 1


def _keys(document: dict[str, Any], field: str, where: str) -> tuple[str, ...]:
    value = document.get(field, [])
    if not isinstance(value, list) or not all(isinstance(k, str) and k.strip() for k in value):
        raise ConfigError(f"{where}: {field!r} must be a list of keys")
    return tuple(dict.fromkeys(k.strip() for k in value))


def parse_inputs(document: Any, config: PipelineConfig, where: str) -> PipelineConfig:
    """The configuration with the document's keys; the document must belong to this batch."""
    if not isinstance(document, dict):
        raise ConfigError(f"{where} is not a JSON object")
    version = document.get("version")
    if version != SUPPORTED_VERSION:
        raise ConfigError(f"{where} has version {version!r}; this job reads version {SUPPORTED_VERSION}")
    batch_id = document.get("batch_id")
    if config.batch_id not in ("adhoc", batch_id):
        raise ConfigError(
            f"{where} lists keys of batch {batch_id!r}, but this run is batch {config.batch_id!r}"
        )
    products_key = document.get("products_key") or config.products_key
    if not isinstance(products_key, str):
        raise ConfigError(f"{where}: 'products_key' must be a key")
    return config.with_(
        batch_id=str(batch_id or config.batch_id),
        products_key=products_key,
        orders_keys=_keys(document, "orders_keys", where),
        order_items_keys=_keys(document, "order_items_keys", where),
    )


def resolve_inputs(config: PipelineConfig, store: S3Store) -> PipelineConfig:
    """Load ``config.inputs_key`` into the key lists (unchanged when no inputs object is set)."""
    if not config.inputs_key:
        return config
    if config.orders_keys or config.order_items_keys:
        raise ConfigError("set either INPUTS_KEY or ORDERS_KEYS/ORDER_ITEMS_KEYS, not both")
    where = f"INPUTS_KEY s3://{store.bucket}/{config.inputs_key}"
    try:
        document = store.read_json(config.inputs_key)
    except ValueError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}") from exc
    if document is None:
        raise ConfigError(f"{where} does not exist")
    return parse_inputs(document, config, where)
