"""The ``BatchFileTracker`` DynamoDB table: one item per daily batch plus the products item.

Every state change is ONE conditional ``UpdateItem`` on one item (DynamoDB applies it atomically),
never a read followed by an unconditional write. Readers may read (``GetItem`` or ``ALL_NEW``) to
decide what to do, but each decision is re-checked by the condition of the write that acts on it,
so concurrent Lambdas, duplicated and reordered S3 events cannot double-trigger or lose an arrival.

Date item (``BatchId`` = ``YYYY-MM-DD``):

==============================  ====  =====================================================
``orders_keys``                 SS    every orders key that arrived (ADD; never shrinks)
``order_items_keys``            SS    every order_items key that arrived
``orders_files_arrived``        BOOL  at least one orders file arrived
``order_items_files_arrived``   BOOL  at least one order_items file arrived
``product_file_arrived``        BOOL  products master data is known to be present
``products_key``                S     the products key the executions read
``u#<digest of key>``           S     digest of the key's last counted upload token (dedup),
                                      then ``|<ETag>`` of that upload when the event had one
``arrival_count``               N     number of distinct uploads counted
``withdrawn_count``             N     keys withdrawn (deleted before processing, or ``ecomkpi withdraw``)
``expected_keys``               SS    keys from the day's manifest (absent: no manifest)
``manifest_key``/``manifest_version``  S   the manifest and the upload it was read from
``manifest_etag``               S     that upload's ETag (archiving it after success is conditional on it)
``dirty``                       BOOL  uploads arrived since the last claim -> a generation is owed
``triggered_generation``        N     the last claimed generation (absent: never triggered)
``running``                     BOOL  the claimed generation has not ended yet
``start_confirmed``             BOOL  StartExecution of that generation returned (or it ended)
``step_function_triggered``     BOOL  at least one generation was claimed (design attribute)
``execution_name``/``execution_arn``/``triggered_at``  S  of the claimed generation
``ended_generation``/``last_execution_status``       of the last ended generation
``waiting_for_products``        BOOL  complete but waiting for products (informational)
``sweep_shard``                 S     ``open`` while the day is dirty or running: the key of the
                                      sparse ``open-days`` index the sweep queries (absent = idle)
``expires_at``                  N     epoch seconds: DynamoDB TTL deletes the finished day then
                                      (set when the day goes idle, removed by its next upload)
``bucket``, ``status``, ``created_at``, ``last_updated``
==============================  ====  =====================================================

Item size grows with the number of distinct keys of the day (the key, plus the key again when a
manifest lists it, plus 36 bytes), never with the number of uploads: a re-upload replaces its key's
``u#`` value instead of adding a token, so a shop that re-uploads one file every minute stays at one
entry (DynamoDB caps an item at 400 KB: about 2,500 distinct 60-character keys with a manifest). Only the latest upload of a key is remembered, so a
duplicate delivery of an *older* upload that arrives after a newer one counts again: that costs one
extra generation over the same files (idempotent), never a lost arrival.

``status`` is informational only (:class:`~lambda_trigger.states.BatchStatus`: PENDING,
WAITING_FOR_PRODUCTS, TRIGGERED, SUCCEEDED, FAILED) and is also written by the workflow itself; no
decision reads it.

Open days and retention: every write that makes a day owe or run a generation (an upload, a
withdrawal, a claim, a lost execution) also sets ``sweep_shard = open`` and removes ``expires_at``;
:meth:`BatchFileTracker.close_if_idle` removes the marker, conditional on the day being neither dirty
nor running, and sets ``expires_at`` to the retention (``TRACKER_RETENTION_DAYS``). The sweep reads
the ``open-days`` index (only items holding the marker are in it) instead of scanning every day,
and finished days leave the table after the retention. A day that comes back after it expired
starts at generation 1 again; the execution names it finds taken move it to the next free number
(``coordinator._skip_taken_name``).

Undated keys (``BatchId`` = ``undated#<key>``): ``batch_id``, the day the key's last upload was
counted in (an undated key's day is its upload date, not in the key), so a delete or a withdrawal
of the key finds its day; expires with the retention like the days.

Calendar item (``BatchId`` = ``_calendar``): ``days`` (SS), every day that claimed a generation.

Products item (``BatchId`` = ``products_master_data``): ``product_file_arrived``, ``products_key``,
``bucket``, ``arrival_count``, ``last_updated``, ``status`` = UPDATED, and ``waiting_batches`` (SS):
date batches that are complete except for products. A date batch ADDs itself to that set and the
products upload SETs ``product_file_arrived``; both are atomic on the same item and both return the
new item, so whichever comes second sees the other -- a products file that arrives last can never
miss a waiting batch (one GetItem-free update instead of a Scan over the table).

Kept whole: one class over one table; every write's condition is beside the others, and the item
layout above is the contract they keep together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from lambda_trigger.batch_ids import DEFAULT_PRODUCTS_KEY, PRODUCTS_BATCH_ID, is_batch_date
from lambda_trigger.inputs_object import inputs_document
from lambda_trigger.states import LOST, BatchStatus, ExecutionStatus

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient

PARTITION_KEY = "BatchId"
# The sparse index of open days: only items holding ``sweep_shard`` are in it, all under one value.
OPEN_INDEX = "open-days"
SWEEP_SHARD = "sweep_shard"
OPEN = "open"
TTL_ATTRIBUTE = "expires_at"
UNDATED_PREFIX = "undated#"
# The cursor of the bounded raw/ listing (``coordinator.find_unannounced``).
RAW_LISTING_ID = "_raw_listing"
# One item lists every day that ever started a generation (``days`` SS), so a dashboard can find
# the days with data by key, without a Scan (kpi_api reads it).
CALENDAR_ID = "_calendar"
_deserializer = TypeDeserializer()

TRUE = {"BOOL": True}
FALSE = {"BOOL": False}


def _s(value: str) -> dict[str, str]:
    return {"S": str(value)}  # a StrEnum member as its plain string


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _ss(values: set[str] | frozenset[str] | list[str]) -> dict[str, list[str]]:
    return {"SS": sorted(set(values))}


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def upload_attribute(key: str) -> str:
    """The top-level attribute that remembers the last counted upload of ``key``.

    Named by a digest of the key and holding a digest of the upload token: 36 bytes per key
    instead of twice the key, because every byte of the item is paid on each write (WCUs) and
    counts against the 400 KB limit.
    """
    return "u#" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def upload_digest(token: str, etag: str | None = None) -> str:
    """The ``u#`` value: a digest of the upload token, then ``|<ETag>`` when the event had one.

    The ETag tells a stage copy made from this upload from one made from an older upload of the
    same key (``coordinator.handle_removal``); a duplicate delivery has both equal, so it still
    fails ``#upload <> :token``.
    """
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]
    return f"{digest}|{etag.strip(chr(34))}" if etag else digest


def etag_of_upload(value: str | None) -> str | None:
    """The ETag part of a ``u#`` value (None for values written without one)."""
    if not value or "|" not in value:
        return None
    return value.split("|", 1)[1] or None


def expiry(now: str, retention_days: int | None) -> int | None:
    """Epoch seconds ``retention_days`` after ``now`` (ISO), or None to keep the item forever."""
    if not retention_days or retention_days <= 0:
        return None
    moment = datetime.fromisoformat(now.replace("Z", "+00:00"))
    return int(moment.timestamp()) + retention_days * 86_400


def execution_name(batch_id: str, generation: int) -> str:
    """Deterministic Step Functions execution name: the idempotency key of StartExecution."""
    return f"{batch_id}-g{generation}"


@dataclass(frozen=True)
class BatchState:
    """A snapshot of one date item, as returned by a read or by ``ReturnValues=ALL_NEW``."""

    batch_id: str
    bucket: str | None = None
    products_key: str | None = None
    orders_keys: frozenset[str] = frozenset()
    order_items_keys: frozenset[str] = frozenset()
    expected_keys: frozenset[str] | None = None
    manifest_version: str | None = None
    manifest_key: str | None = None
    manifest_etag: str | None = None
    product_file_arrived: bool = False
    orders_files_arrived: bool = False
    order_items_files_arrived: bool = False
    dirty: bool = False
    running: bool = False
    start_confirmed: bool = False
    triggered_generation: int = 0
    triggered_at: str | None = None
    execution_arn: str | None = None
    status: str | None = None
    # The last upload of a data file or manifest (the item's creation for items older than it):
    # what a stuck day has waited since (lambda_trigger/stuck_days.py), and the wait it announced.
    waiting_since: str | None = None
    stuck_alerted_for: str | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> BatchState:
        data = _plain(item)
        expected = data.get("expected_keys")
        return cls(
            batch_id=data[PARTITION_KEY],
            bucket=data.get("bucket"),
            products_key=data.get("products_key"),
            orders_keys=frozenset(data.get("orders_keys") or ()),
            order_items_keys=frozenset(data.get("order_items_keys") or ()),
            expected_keys=frozenset(expected) if expected else None,
            manifest_version=data.get("manifest_version"),
            manifest_key=data.get("manifest_key"),
            manifest_etag=data.get("manifest_etag"),
            product_file_arrived=bool(data.get("product_file_arrived", False)),
            orders_files_arrived=bool(data.get("orders_files_arrived", False)),
            order_items_files_arrived=bool(data.get("order_items_files_arrived", False)),
            dirty=bool(data.get("dirty", False)),
            running=bool(data.get("running", False)),
            start_confirmed=bool(data.get("start_confirmed", False)),
            triggered_generation=int(data.get("triggered_generation", 0)),
            triggered_at=data.get("triggered_at"),
            execution_arn=data.get("execution_arn"),
            status=data.get("status"),
            waiting_since=data.get("last_arrival_at") or data.get("created_at"),
            stuck_alerted_for=data.get("stuck_alerted_for"),
        )

    @property
    def missing_keys(self) -> frozenset[str]:
        """Manifest keys that have not arrived yet (empty without a manifest)."""
        if not self.expected_keys:
            return frozenset()
        return self.expected_keys - self.orders_keys - self.order_items_keys

    @property
    def data_complete(self) -> bool:
        """Orders and order_items present and, with a manifest, every listed key arrived.

        Monotone: arrivals only add keys, so once True it stays True for the same manifest version
        (the claim re-checks the manifest version, see :meth:`BatchFileTracker.claim`).
        """
        return self.orders_files_arrived and self.order_items_files_arrived and not self.missing_keys

    @property
    def ready(self) -> bool:
        return self.data_complete and self.product_file_arrived

    @property
    def execution_name(self) -> str:
        return execution_name(self.batch_id, self.triggered_generation)

    def inputs_document(self) -> dict[str, Any]:
        """The key list of the claimed generation (all keys known so far), written to S3."""
        return inputs_document(
            self.batch_id,
            self.triggered_generation,
            self.products_key or DEFAULT_PRODUCTS_KEY,
            list(self.orders_keys),
            list(self.order_items_keys),
        )

    def execution_input(self, bucket: str, inputs_key: str) -> dict[str, Any]:
        """The StartExecution payload: the key list by reference, counts for people reading it."""
        return {
            "batch_id": self.batch_id,
            "generation": self.triggered_generation,
            "bucket": bucket,
            "products_key": self.products_key or DEFAULT_PRODUCTS_KEY,
            "inputs_key": inputs_key,
            "orders_count": len(self.orders_keys),
            "order_items_count": len(self.order_items_keys),
            "triggered_at": self.triggered_at,
        }


@dataclass(frozen=True)
class ProductsState:
    """The products item: is master data present, and which date batches wait for it."""

    present: bool
    products_key: str | None
    waiting_batches: frozenset[str]

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ProductsState:
        data = _plain(item)
        return cls(
            present=bool(data.get("product_file_arrived", False)),
            products_key=data.get("products_key"),
            waiting_batches=frozenset(data.get("waiting_batches") or ()),
        )


def _is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class BatchFileTracker:
    """Conditional updates on the tracker table; each method is one DynamoDB request."""

    def __init__(self, dynamodb_client: DynamoDBClient, table_name: str) -> None:
        self._ddb = dynamodb_client
        self.table_name = table_name

    # -- plumbing -------------------------------------------------------------------------------
    def _update(
        self,
        batch_id: str,
        expression: str,
        values: dict[str, Any],
        *,
        condition: str | None = None,
        names: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """Run one UpdateItem returning ALL_NEW; None when the condition did not hold."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {PARTITION_KEY: _s(batch_id)},
            "UpdateExpression": expression,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }
        if condition:
            request["ConditionExpression"] = condition
        if names:
            request["ExpressionAttributeNames"] = names
        try:
            return self._ddb.update_item(**request)["Attributes"]
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return None
            raise

    def get(self, batch_id: str) -> BatchState | None:
        """Strongly consistent read (a just-written claim must be visible to the next decision)."""
        item = self._ddb.get_item(
            TableName=self.table_name, Key={PARTITION_KEY: _s(batch_id)}, ConsistentRead=True
        ).get("Item")
        return BatchState.from_item(item) if item else None

    # -- arrivals -------------------------------------------------------------------------------
    def record_data_file(
        self, batch_id: str, table: str, key: str, token: str, bucket: str, now: str, etag: str | None = None
    ) -> BatchState | None:
        """Count one orders/order_items upload and mark the batch dirty.

        Returns the new state, or None if this upload (``token``) was already counted: a duplicate
        delivery must not owe another generation.
        """
        attributes = self._update(
            batch_id,
            "ADD #keys :key, arrival_count :one "
            "SET #arrived = :true, dirty = :true, #bucket = :bucket, last_updated = :now, last_arrival_at = :now, "
            "#upload = :token, "
            "#status = if_not_exists(#status, :pending), created_at = if_not_exists(created_at, :now), "
            "#shard = :open REMOVE #ttl",
            {
                ":key": _ss([key]),
                ":token": _s(upload_digest(token, etag)),
                ":one": _n(1),
                ":true": TRUE,
                ":bucket": _s(bucket),
                ":now": _s(now),
                ":pending": _s(BatchStatus.PENDING),
                ":open": _s(OPEN),
            },
            condition="attribute_not_exists(#upload) OR #upload <> :token",
            names={
                "#upload": upload_attribute(key),
                "#keys": f"{table}_keys",
                "#arrived": f"{table}_files_arrived",
                "#status": "status",
                "#bucket": "bucket",
                "#shard": SWEEP_SHARD,
                "#ttl": TTL_ATTRIBUTE,
            },
        )
        return BatchState.from_item(attributes) if attributes is not None else None

    def withdraw(self, batch_id: str, table: str, key: str, now: str) -> BatchState | None:
        """Take ``key`` out of the batch (and out of the manifest's expectation); owe a generation.

        The next generation neither validates nor waits for the key. None when the batch never
        had it (nothing changes). A table whose last key is withdrawn no longer counts as arrived.
        """
        attributes = self._update(
            batch_id,
            "DELETE #keys :key, expected_keys :key REMOVE #upload, #ttl "
            "SET dirty = :true, last_updated = :now, withdrawn_count = if_not_exists(withdrawn_count, :zero) + :one, "
            "#shard = :open",
            {
                ":key": _ss([key]),
                ":k": _s(key),
                ":true": TRUE,
                ":now": _s(now),
                ":zero": _n(0),
                ":one": _n(1),
                ":open": _s(OPEN),
            },
            condition="contains(#keys, :k) OR contains(expected_keys, :k)",
            names={
                "#keys": f"{table}_keys",
                "#upload": upload_attribute(key),
                "#shard": SWEEP_SHARD,
                "#ttl": TTL_ATTRIBUTE,
            },
        )
        if attributes is None:
            return None
        state = BatchState.from_item(attributes)
        if not (state.orders_keys if table == "orders" else state.order_items_keys):
            emptied = self._update(
                batch_id,
                "SET #arrived = :false",
                {":false": FALSE},
                condition="attribute_not_exists(#keys)",
                names={"#arrived": f"{table}_files_arrived", "#keys": f"{table}_keys"},
            )
            state = BatchState.from_item(emptied) if emptied is not None else state
        return state

    def record_manifest(
        self,
        batch_id: str,
        manifest_key: str,
        expected: frozenset[str],
        token: str,
        bucket: str,
        now: str,
        etag: str | None = None,
    ) -> BatchState | None:
        """Store the manifest's expected keys; None if this manifest upload was already recorded.

        ``manifest_version`` changes with every upload so a claim that evaluated an older manifest
        fails its condition instead of triggering on stale expectations.
        """
        attributes = self._update(
            batch_id,
            "SET #upload = :token, expected_keys = :expected, manifest_key = :manifest_key, manifest_version = :token, "
            "manifest_etag = :etag, "
            "#bucket = :bucket, last_updated = :now, last_arrival_at = :now, "
            "#status = if_not_exists(#status, :pending), created_at = if_not_exists(created_at, :now)",
            {
                ":token": _s(upload_digest(token)),
                ":expected": _ss(expected),
                ":manifest_key": _s(manifest_key),
                ":etag": _s(etag or ""),
                ":bucket": _s(bucket),
                ":now": _s(now),
                ":pending": _s(BatchStatus.PENDING),
            },
            condition="attribute_not_exists(#upload) OR #upload <> :token",
            names={"#upload": upload_attribute(manifest_key), "#status": "status", "#bucket": "bucket"},
        )
        return BatchState.from_item(attributes) if attributes is not None else None

    def record_products(self, products_key: str, bucket: str, now: str) -> ProductsState:
        """Mark products master data present and return the batches waiting for it.

        Unconditional on purpose: a duplicate products event only re-reads ``waiting_batches``,
        which is exactly what a retry after a crash needs.
        """
        attributes = self._update(
            PRODUCTS_BATCH_ID,
            "SET product_file_arrived = :true, products_key = :key, #bucket = :bucket, "
            "last_updated = :now, #status = :updated ADD arrival_count :one",
            {
                ":true": TRUE,
                ":key": _s(products_key),
                ":bucket": _s(bucket),
                ":now": _s(now),
                ":updated": _s(BatchStatus.UPDATED),
                ":one": _n(1),
            },
            names={"#status": "status", "#bucket": "bucket"},
        )
        assert attributes is not None  # no condition
        return ProductsState.from_item(attributes)

    # -- waiting for products -------------------------------------------------------------------
    def register_waiting(self, batch_id: str) -> ProductsState:
        """Add ``batch_id`` to the products item's waiting set; the result says if products exist."""
        attributes = self._update(
            PRODUCTS_BATCH_ID, "ADD waiting_batches :batch", {":batch": _ss([batch_id])}
        )
        assert attributes is not None
        return ProductsState.from_item(attributes)

    def unregister_waiting(self, batch_id: str) -> None:
        """Drop ``batch_id`` from the waiting set once its item knows products are present."""
        self._update(PRODUCTS_BATCH_ID, "DELETE waiting_batches :batch", {":batch": _ss([batch_id])})

    def mark_waiting_for_products(self, batch_id: str, now: str) -> None:
        """Informational flag/status; only while products were never seen by this batch."""
        self._update(
            batch_id,
            "SET waiting_for_products = :true, #status = :waiting, last_updated = :now",
            {
                ":true": TRUE,
                ":false": FALSE,
                ":waiting": _s(BatchStatus.WAITING_FOR_PRODUCTS),
                ":now": _s(now),
            },
            condition="attribute_exists(BatchId) AND "
            "(attribute_not_exists(product_file_arrived) OR product_file_arrived = :false)",
            names={"#status": "status"},
        )

    def mark_products_present(self, batch_id: str, products_key: str, now: str) -> BatchState | None:
        """Copy "products present" into the date item so the claim can check it in its condition."""
        attributes = self._update(
            batch_id,
            "SET product_file_arrived = :true, products_key = :key, waiting_for_products = :false, "
            "last_updated = :now",
            {":true": TRUE, ":false": FALSE, ":key": _s(products_key), ":now": _s(now)},
            condition="attribute_exists(BatchId)",
        )
        return BatchState.from_item(attributes) if attributes is not None else None

    # -- generations ----------------------------------------------------------------------------
    def claim(self, state: BatchState, now: str) -> BatchState | None:
        """Claim generation ``state.triggered_generation + 1``; None if someone else acted first.

        The condition re-checks, atomically, everything the caller decided on: the batch is ready,
        owes a generation (``dirty``), nothing is running, no other Lambda claimed since the read
        (generation unchanged) and the manifest is the one that was evaluated. ``dirty`` is reset
        in the same write, so every upload is either inside this generation's snapshot (returned
        as ALL_NEW and used as the execution input) or re-marks the batch dirty afterwards.
        """
        generation = state.triggered_generation + 1
        values: dict[str, Any] = {
            ":g": _n(generation),
            ":true": TRUE,
            ":false": FALSE,
            ":now": _s(now),
            ":triggered": _s(BatchStatus.TRIGGERED),
            ":name": _s(execution_name(state.batch_id, generation)),
        }
        conditions = [
            "product_file_arrived = :true",
            "orders_files_arrived = :true",
            "order_items_files_arrived = :true",
            "dirty = :true",
            "(attribute_not_exists(running) OR running = :false)",
        ]
        if state.triggered_generation:
            conditions.append("triggered_generation = :previous")
            values[":previous"] = _n(state.triggered_generation)
        else:
            conditions.append("attribute_not_exists(triggered_generation)")
        if state.manifest_version:
            conditions.append("manifest_version = :manifest_version")
            values[":manifest_version"] = _s(state.manifest_version)
        else:
            conditions.append("attribute_not_exists(manifest_version)")
        attributes = self._update(
            state.batch_id,
            "SET triggered_generation = :g, running = :true, start_confirmed = :false, dirty = :false, "
            "step_function_triggered = :true, #status = :triggered, triggered_at = :now, "
            "execution_name = :name, waiting_for_products = :false, last_updated = :now, #shard = :open "
            "REMOVE #ttl",
            {**values, ":open": _s(OPEN)},
            condition=" AND ".join(conditions),
            names={"#status": "status", "#shard": SWEEP_SHARD, "#ttl": TTL_ATTRIBUTE},
        )
        return BatchState.from_item(attributes) if attributes is not None else None

    def note_day(self, batch_id: str) -> None:
        """Add a claimed day to the calendar item (idempotent: a set)."""
        self._update(CALENDAR_ID, "ADD days :day", {":day": _ss([batch_id])})

    def confirm_start(self, batch_id: str, generation: int, execution_arn: str, now: str) -> None:
        """StartExecution of ``generation`` returned: stop retrying it on redelivered events."""
        self._update(
            batch_id,
            "SET start_confirmed = :true, execution_arn = :arn, last_updated = :now",
            {":true": TRUE, ":arn": _s(execution_arn), ":g": _n(generation), ":now": _s(now)},
            condition="triggered_generation = :g",
        )

    def skip_generation(self, state: BatchState, now: str) -> BatchState | None:
        """Move an unconfirmed claim to the next generation number.

        Used when the claimed execution name already belongs to another claim's execution (the
        tracker item was lost or replaced, so numbering restarted): that name can never be started
        again (names are unique for 90 days), so the claim takes the next one. None if the claim
        changed meanwhile (confirmed, ended or skipped by someone else).
        """
        generation = state.triggered_generation + 1
        attributes = self._update(
            state.batch_id,
            "SET triggered_generation = :next, execution_name = :name, last_updated = :now",
            {
                ":g": _n(state.triggered_generation),
                ":next": _n(generation),
                ":name": _s(execution_name(state.batch_id, generation)),
                ":true": TRUE,
                ":false": FALSE,
                ":now": _s(now),
            },
            condition="triggered_generation = :g AND running = :true AND start_confirmed = :false",
        )
        return BatchState.from_item(attributes) if attributes is not None else None

    def mark_lost(self, batch_id: str, generation: int, now: str) -> BatchState | None:
        """The confirmed execution of ``generation`` does not exist: end it and owe a new one."""
        attributes = self._update(
            batch_id,
            "SET running = :false, dirty = :true, ended_generation = :g, last_execution_status = :lost, "
            "#status = :failed, last_updated = :now, #shard = :open REMOVE #ttl",
            {
                ":g": _n(generation),
                ":true": TRUE,
                ":false": FALSE,
                ":lost": _s(LOST),
                ":failed": _s(BatchStatus.FAILED),
                ":now": _s(now),
                ":open": _s(OPEN),
            },
            condition="triggered_generation = :g AND running = :true",
            names={"#status": "status", "#shard": SWEEP_SHARD, "#ttl": TTL_ATTRIBUTE},
        )
        return BatchState.from_item(attributes) if attributes is not None else None

    def scan_batches(self) -> list[BatchState]:
        """Every date item: a full, consistent Scan (``{"ecomkpi": "reconcile", "full": true}``, once
        after an upgrade from a table without the open-days marker; the schedule uses
        :meth:`open_batches`)."""
        states = []
        for page in self._ddb.get_paginator("scan").paginate(TableName=self.table_name, ConsistentRead=True):
            for item in page.get("Items", []):
                if is_batch_date(item.get(PARTITION_KEY, {}).get("S", "")):  # not products, not the calendar
                    states.append(BatchState.from_item(item))
        return states

    def open_batches(self) -> Iterator[BatchState]:
        """The days that are dirty or running: a Query of the sparse ``open-days`` index.

        Finished days are not in the index, so the sweep's cost follows the open days, not the
        table. The index is eventually consistent: a day just closed may still show up (its
        reconcile re-reads it consistently and finds nothing to do) and a day just opened is swept
        next time (its own event is handling it now).
        """
        pages = self._ddb.get_paginator("query").paginate(
            TableName=self.table_name,
            IndexName=OPEN_INDEX,
            KeyConditionExpression="#shard = :open",
            ExpressionAttributeNames={"#shard": SWEEP_SHARD},
            ExpressionAttributeValues={":open": _s(OPEN)},
        )
        for page in pages:
            for item in page.get("Items", []):
                if is_batch_date(item.get(PARTITION_KEY, {}).get("S", "")):
                    yield BatchState.from_item(item)

    def mark_stuck_alerted(self, batch_id: str, waiting_since: str) -> bool:
        """Record that the wait since ``waiting_since`` was announced; False when it already was, or
        an upload has started another wait since (lambda_trigger/stuck_days.py)."""
        return (
            self._update(
                batch_id,
                "SET stuck_alerted_for = :since",
                {":since": _s(waiting_since)},
                condition="attribute_exists(BatchId) AND "
                "(attribute_not_exists(stuck_alerted_for) OR stuck_alerted_for <> :since) AND "
                "(attribute_not_exists(last_arrival_at) OR last_arrival_at = :since)",
            )
            is not None
        )

    def unmark_stuck_alerted(self, batch_id: str, waiting_since: str) -> None:
        """Take the mark back (its alert was not sent); only if it is still this wait's."""
        self._update(
            batch_id,
            "REMOVE stuck_alerted_for",
            {":since": _s(waiting_since)},
            condition="stuck_alerted_for = :since",
        )

    def close_if_idle(self, batch_id: str, now: str, retention_days: int | None) -> bool:
        """Take a day that owes nothing out of the open-days index and let it expire.

        One conditional write: only if the day is neither dirty nor running, so an upload or a claim
        racing it keeps (or sets again) the marker. A day written before the marker existed gets its
        ``expires_at`` here too (the one-off full sweep). True when the condition held.
        """
        expires = expiry(now, retention_days)
        expression = "REMOVE #shard"
        values: dict[str, Any] = {":true": TRUE}
        if expires is not None:
            expression = "SET #ttl = :expires " + expression
            values[":expires"] = _n(expires)
        return (
            self._update(
                batch_id,
                expression,
                values,
                condition="attribute_exists(BatchId) AND "
                "(attribute_not_exists(dirty) OR dirty <> :true) AND "
                "(attribute_not_exists(running) OR running <> :true)",
                names={"#shard": SWEEP_SHARD, **({"#ttl": TTL_ATTRIBUTE} if expires is not None else {})},
            )
            is not None
        )

    def remember_undated(self, key: str, batch_id: str, now: str, retention_days: int | None) -> None:
        """Note the day an undated key's last upload was counted in (for its delete or withdrawal)."""
        expires = expiry(now, retention_days)
        values: dict[str, Any] = {":day": _s(batch_id), ":now": _s(now)}
        expression = "SET batch_id = :day, last_updated = :now"
        if expires is not None:
            expression += ", #ttl = :expires"
            values[":expires"] = _n(expires)
        self._update(
            UNDATED_PREFIX + key,
            expression,
            values,
            names={"#ttl": TTL_ATTRIBUTE} if expires is not None else None,
        )

    def undated_day(self, key: str) -> str | None:
        """The day an undated key was last counted in (None: never counted, or expired)."""
        item = self._ddb.get_item(
            TableName=self.table_name, Key={PARTITION_KEY: _s(UNDATED_PREFIX + key)}, ConsistentRead=True
        ).get("Item")
        day = _plain(item).get("batch_id") if item else None
        return day if isinstance(day, str) and is_batch_date(day) else None

    def upload_etag(self, batch_id: str, key: str) -> str | None:
        """The ETag of ``key``'s last counted upload in the day (None: unknown or not counted)."""
        item = self._ddb.get_item(
            TableName=self.table_name,
            Key={PARTITION_KEY: _s(batch_id)},
            ConsistentRead=True,
            ProjectionExpression="#upload",
            ExpressionAttributeNames={"#upload": upload_attribute(key)},
        ).get("Item")
        value = _plain(item).get(upload_attribute(key)) if item else None
        return etag_of_upload(value if isinstance(value, str) else None)

    def upload_etags(self, batch_id: str) -> dict[str, str | None] | None:
        """Every ``u#`` value's ETag of the day (keyed by attribute name); None when no such day."""
        item = self._ddb.get_item(
            TableName=self.table_name, Key={PARTITION_KEY: _s(batch_id)}, ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        return {
            name: etag_of_upload(value.get("S"))
            for name, value in item.items()
            if name.startswith("u#") and isinstance(value, dict)
        }

    def raw_listing_cursor(self) -> str | None:
        item = self._ddb.get_item(
            TableName=self.table_name, Key={PARTITION_KEY: _s(RAW_LISTING_ID)}, ConsistentRead=True
        ).get("Item")
        cursor = _plain(item).get("start_after") if item else None
        return cursor if isinstance(cursor, str) and cursor else None

    def set_raw_listing_cursor(self, start_after: str | None, now: str) -> None:
        if start_after:
            self._update(
                RAW_LISTING_ID,
                "SET start_after = :c, last_updated = :now",
                {":c": _s(start_after), ":now": _s(now)},
            )
        else:
            self._update(RAW_LISTING_ID, "REMOVE start_after SET last_updated = :now", {":now": _s(now)})

    def mark_ended(
        self, batch_id: str, generation: int, sfn_status: str, execution_arn: str | None, now: str
    ) -> BatchState | None:
        """Record the end of ``generation``; None for a duplicate/stale event (nothing changed)."""
        values: dict[str, Any] = {
            ":g": _n(generation),
            ":true": TRUE,
            ":false": FALSE,
            ":sfn_status": _s(sfn_status),
            ":status": _s(
                BatchStatus.SUCCEEDED if sfn_status == ExecutionStatus.SUCCEEDED else BatchStatus.FAILED
            ),
            ":now": _s(now),
        }
        expression = (
            "SET running = :false, start_confirmed = :true, ended_generation = :g, "
            "last_execution_status = :sfn_status, #status = :status, last_updated = :now"
        )
        if execution_arn:
            expression += ", execution_arn = :arn"
            values[":arn"] = _s(execution_arn)
        attributes = self._update(
            batch_id,
            expression,
            values,
            condition="triggered_generation = :g AND running = :true",
            names={"#status": "status"},
        )
        return BatchState.from_item(attributes) if attributes is not None else None


def create_tracker_table(dynamodb_client: DynamoDBClient, name: str) -> str:
    """Create the tracker table (on-demand, ``BatchId`` S, the sparse ``open-days`` index, TTL on
    ``expires_at``) if missing and wait until it is ACTIVE.

    Used by the local stack and the tests; in AWS the table comes from infra/ (the same shape).
    """
    try:
        dynamodb_client.create_table(
            TableName=name,
            AttributeDefinitions=[
                {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": SWEEP_SHARD, "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": OPEN_INDEX,
                    "KeySchema": [
                        {"AttributeName": SWEEP_SHARD, "KeyType": "HASH"},
                        {"AttributeName": PARTITION_KEY, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
    dynamodb_client.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    ttl = dynamodb_client.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        dynamodb_client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
    return name
