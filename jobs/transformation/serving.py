"""The DynamoDB serving tables: item format, batched idempotent writes, stale-row deletion.

``DailyKPIs`` (``date_key``) and ``CategoryKPIs`` (``category_id`` + ``date_key``, GSI
``date_key-index`` on ``date_key`` with keys only) receive exactly the rows recomputed for the
touched dates. Writes are puts (idempotent, so a retry rewrites the same values); a date or
(category, date) that no longer has a row is deleted, found through the GSI for categories. Numbers
are sent as DynamoDB ``N`` strings built from ``Decimal``/``int``: never through a float.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from botocore.exceptions import ClientError

from jobs.contract import CATEGORY_KPI_COLUMNS, DAILY_KPI_COLUMNS, REJECTED_FILES, TRANSACTION_DATASETS

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        CreateTableInputTypeDef,
        WriteRequestOutputTypeDef,
    )

    from jobs.s3_store import S3Store

DATE_INDEX = "date_key-index"
DAILY_KEY = ("date_key",)
CATEGORY_KEY = ("category_id", "date_key")
MAX_BATCH = 25  # BatchWriteItem limit

Item: TypeAlias = "dict[str, AttributeValueTypeDef]"  # every attribute one {"S"|"N": string}
# A request as BatchWriteItem returns it in UnprocessedItems, so a retry resends that list as is.
WriteRequest: TypeAlias = "WriteRequestOutputTypeDef"


class DuplicateKeyError(ValueError):
    """Two requests for one key in one write: DynamoDB rejects the whole batch, and the intent is ambiguous."""


def attribute(value: object) -> AttributeValueTypeDef:
    if isinstance(value, bool):
        raise TypeError("booleans are not part of the KPI contract")
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    raise TypeError(
        f"unsupported KPI value {value!r} ({type(value).__name__}): numbers must be Decimal or int"
    )


def to_item(row: Mapping[str, Any], columns: Sequence[str], run_id: str, updated_at: str) -> Item:
    """A KPI row as a DynamoDB item; null KPI values are left out rather than stored as NULL."""
    item = {c: attribute(row[c]) for c in columns if row[c] is not None}
    item["updated_at"] = {"S": updated_at}
    item["run_id"] = {"S": run_id}
    return item


def key_of(item: Mapping[str, AttributeValueTypeDef], key: Sequence[str]) -> tuple[object, ...]:
    return tuple(next(iter(item[k].values())) for k in key)


@dataclass
class BatchWriter:
    """BatchWriteItem in requests of 25, retrying UnprocessedItems with backoff and full jitter."""

    client: DynamoDBClient
    max_attempts: int = 10
    base_delay: float = 0.05
    max_delay: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    requests_sent: int = 0

    def write(self, table: str, key: Sequence[str], puts: Iterable[Item], deletes: Iterable[Item]) -> int:
        """Put ``puts`` and delete the keys in ``deletes``; every key at most once overall."""
        requests: list[WriteRequest] = [{"PutRequest": {"Item": i}} for i in puts]
        requests += [{"DeleteRequest": {"Key": {k: d[k] for k in key}}} for d in deletes]
        seen: set[tuple[object, ...]] = set()
        for r in requests:
            k = key_of(_request_key(r), key)
            if k in seen:
                raise DuplicateKeyError(f"{table}: key {k} appears twice in one write")
            seen.add(k)
        for start in range(0, len(requests), MAX_BATCH):
            self._send(table, key, requests[start : start + MAX_BATCH])
        return len(requests)

    def _send(self, table: str, key: Sequence[str], chunk: list[WriteRequest]) -> None:
        assert_unique_keys(chunk, key)
        pending = chunk
        for attempt in range(self.max_attempts):
            response = self.client.batch_write_item(RequestItems={table: pending})
            self.requests_sent += 1
            pending = response.get("UnprocessedItems", {}).get(table, [])
            if not pending:
                return
            self.sleep(random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt)))
        raise RuntimeError(
            f"{table}: {len(pending)} writes still unprocessed after {self.max_attempts} attempts"
        )


def _request_key(request: WriteRequest) -> Item:
    if "PutRequest" in request:
        return request["PutRequest"]["Item"]
    return request["DeleteRequest"]["Key"]


def assert_unique_keys(requests: Sequence[WriteRequest], key: Sequence[str]) -> None:
    """DynamoDB rejects a BatchWriteItem naming one key twice (moto may not): check before sending."""
    keys = [key_of(_request_key(r), key) for r in requests]
    if len(keys) != len(set(keys)):
        raise DuplicateKeyError(f"duplicate keys inside one BatchWriteItem request: {keys}")


def _paged(
    client: DynamoDBClient, operation: Literal["query", "scan"], kwargs: dict[str, Any]
) -> Iterable[Item]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get("Items", [])


def stored_categories(client: DynamoDBClient, table: str, dates: Sequence[str]) -> dict[str, set[str]]:
    """date → categories that have an item for it.

    Through the keys-only GSI ``date_key-index`` (one query per date) as the stack creates it; a
    table made without the index (by hand, or by another tool) is scanned once instead, because
    leaving a stale category behind would break the promise that the table equals the recompute.
    """
    found: dict[str, set[str]] = {d: set() for d in dates}
    try:
        for d in dates:
            kwargs = {
                "TableName": table,
                "IndexName": DATE_INDEX,
                "KeyConditionExpression": "date_key = :d",
                "ExpressionAttributeValues": {":d": {"S": d}},
            }
            found[d].update(i["category_id"]["S"] for i in _paged(client, "query", kwargs))
        return found
    except ClientError as exc:
        # AWS answers ValidationException for a missing index, moto ResourceNotFoundException (a
        # missing table fails the scan below the same way, so nothing is hidden).
        if exc.response.get("Error", {}).get("Code") not in (
            "ValidationException",
            "ResourceNotFoundException",
        ):
            raise
    scan = {
        "TableName": table,
        "ProjectionExpression": "category_id, date_key",
    }
    for item in _paged(client, "scan", scan):
        d = item["date_key"]["S"]
        if d in found:
            found[d].add(item["category_id"]["S"])
    return found


@dataclass
class ServingResult:
    daily_puts: int = 0
    daily_deletes: int = 0
    category_puts: int = 0
    category_deletes: int = 0
    requests: int = 0
    deleted_categories: list[tuple[str, str]] = field(default_factory=list)


def serve(
    client: DynamoDBClient,
    daily_table: str,
    category_table: str,
    dates: Iterable[str],
    daily_rows: Sequence[Mapping[str, Any]],
    category_rows: Sequence[Mapping[str, Any]],
    run_id: str,
    updated_at: str,
    writer: BatchWriter | None = None,
    rejected_files: Mapping[str, int] | None = None,
) -> ServingResult:
    """Make both tables hold exactly ``daily_rows`` / ``category_rows`` for every date in ``dates``.

    ``rejected_files`` (date -> files of that day now rejected, ``rejected_files_by_day``) marks
    the rows of a day served partly; every write of a date sets or clears its mark.
    """
    writer = writer or BatchWriter(client)
    dates = sorted(set(dates))
    result = ServingResult()
    marks = {d: n for d, n in (rejected_files or {}).items() if n > 0}

    def marked(item: Item) -> Item:
        count = marks.get(str(item["date_key"].get("S")))
        return {**item, REJECTED_FILES: {"N": str(count)}} if count else item

    daily_items = [marked(to_item(r, DAILY_KPI_COLUMNS, run_id, updated_at)) for r in daily_rows]
    kept_dates = {r["date_key"] for r in daily_rows}
    daily_gone: list[Item] = [{"date_key": {"S": d}} for d in dates if d not in kept_dates]
    writer.write(daily_table, DAILY_KEY, daily_items, daily_gone)
    result.daily_puts, result.daily_deletes = len(daily_items), len(daily_gone)

    category_items = [marked(to_item(r, CATEGORY_KPI_COLUMNS, run_id, updated_at)) for r in category_rows]
    fresh = {(r["category_id"], r["date_key"]) for r in category_rows}
    stored = stored_categories(client, category_table, dates)
    stale = sorted((c, d) for d in dates for c in stored[d] if (c, d) not in fresh)
    category_gone: list[Item] = [{"category_id": {"S": c}, "date_key": {"S": d}} for c, d in stale]
    writer.write(category_table, CATEGORY_KEY, category_items, category_gone)
    result.category_puts, result.category_deletes = len(category_items), len(category_gone)
    result.deleted_categories = stale
    result.requests = writer.requests_sent
    return result


def rejected_files_by_day(store: S3Store, dates: Iterable[str]) -> dict[str, int]:
    """How many of each date's day files are rejected now (in ``invalid/<dataset>/<date>/``).

    From the bucket, not from this run's inputs: any run that recomputes a date (a later day's
    batch, a recompute) marks its rows the same way, and a corrected upload that passed moves the
    rejection to ``invalid/superseded/``, which clears the mark at the date's next write. Two
    listings per date.
    """
    counts: dict[str, int] = {}
    for day in sorted(set(dates)):
        counts[day] = sum(
            1
            for dataset in TRANSACTION_DATASETS
            for o in store.list(f"invalid/{dataset}/{day}/")
            if not o.key.endswith(".report.json")
        )
    return counts


def create_kpi_tables(dynamodb_client: DynamoDBClient, daily_name: str, category_name: str) -> None:
    """Create the serving tables as infra does (on demand, GSI on CategoryKPIs); existing ones are kept."""
    specs: list[CreateTableInputTypeDef] = [
        {
            "TableName": daily_name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "date_key", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "date_key", "KeyType": "HASH"}],
        },
        {
            "TableName": category_name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "category_id", "AttributeType": "S"},
                {"AttributeName": "date_key", "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": "category_id", "KeyType": "HASH"},
                {"AttributeName": "date_key", "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": DATE_INDEX,
                    "KeySchema": [{"AttributeName": "date_key", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
        },
    ]
    for spec in specs:
        try:
            dynamodb_client.create_table(**spec)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
    for spec in specs:
        dynamodb_client.get_waiter("table_exists").wait(
            TableName=spec["TableName"], WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
