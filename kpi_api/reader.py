"""Reads of the serving tables by key only: GetItem/BatchGetItem and Query, never Scan.

A dashboard asks for a bounded date range, so every request maps to keys it can name: DailyKPIs by
``date_key`` (BatchGetItem, 100 keys a call), CategoryKPIs by ``category_id`` + a ``date_key``
range (Query), or by date through the keys-only ``date_key-index`` GSI followed by BatchGetItem,
and the tracker by ``BatchId``. Items come back as plain Python values with DynamoDB numbers as
``Decimal`` (exact: the API prints them as strings, never through a float).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from boto3.dynamodb.types import TypeDeserializer

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        KeysAndAttributesUnionTypeDef,
        UniversalAttributeValueTypeDef,
    )

    Key = Mapping[str, UniversalAttributeValueTypeDef]

T = TypeVar("T")

DATE_INDEX = "date_key-index"
CALENDAR_ID = "_calendar"  # the tracker item listing every day that ran (lambda_trigger/tracker.py)
MAX_BATCH_GET = 100  # BatchGetItem limit
_deserializer = TypeDeserializer()


def plain(item: Mapping[str, AttributeValueTypeDef]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def items(client: DynamoDBClient, operation: Literal["query", "scan"], **kwargs: Any) -> list[dict[str, Any]]:
    """Every item of a ``query`` or ``scan`` (all pages), as plain values.

    The one DynamoDB read loop of the project: tools (``ecomkpi kpis``, the demo report, the
    benchmarks) use it with ``scan``; the API itself only ever uses ``query``.
    """
    pages = client.get_paginator(operation).paginate(**kwargs)
    return [plain(item) for page in pages for item in page.get("Items", [])]


def _chunks(values: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass
class KpiReader:
    """The three tables the API reads; ``client`` is a low-level boto3 DynamoDB client."""

    client: DynamoDBClient
    daily_table: str
    category_table: str
    tracker_table: str
    quality_table: str | None = None  # DATA_QUALITY_TABLE: the /quality routes (None: not served)
    max_attempts: int = 8

    def batch_get(self, table: str, keys: Iterable[Key]) -> list[dict[str, Any]]:
        """Every existing item of ``keys`` (any number), retrying UnprocessedKeys with backoff."""
        found: list[dict[str, Any]] = []
        for chunk in _chunks(list(keys), MAX_BATCH_GET):
            request: Mapping[str, KeysAndAttributesUnionTypeDef] = {table: {"Keys": chunk}}
            for attempt in range(self.max_attempts):
                response = self.client.batch_get_item(RequestItems=request)
                found += [plain(i) for i in response.get("Responses", {}).get(table, [])]
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))
            else:
                raise RuntimeError(f"DynamoDB kept {len(request[table]['Keys'])} keys of {table} unprocessed")
        return found

    def query(self, **kwargs: Any) -> list[dict[str, Any]]:
        return items(self.client, "query", **kwargs)

    # -- the requests the API serves -----------------------------------------------------------
    def daily(self, dates: list[str]) -> list[dict[str, Any]]:
        rows = self.batch_get(self.daily_table, [{"date_key": {"S": d}} for d in dates])
        return sorted(rows, key=lambda r: r["date_key"])

    def categories_on(self, date_key: str) -> list[dict[str, Any]]:
        keys = self.query(
            TableName=self.category_table,
            IndexName=DATE_INDEX,
            KeyConditionExpression="date_key = :d",
            ExpressionAttributeValues={":d": {"S": date_key}},
        )
        rows = self.batch_get(
            self.category_table,
            [{"category_id": {"S": k["category_id"]}, "date_key": {"S": date_key}} for k in keys],
        )
        return sorted(rows, key=lambda r: r["category_id"])

    def category_range(self, category_id: str, first: str, last: str) -> list[dict[str, Any]]:
        return self.query(
            TableName=self.category_table,
            KeyConditionExpression="category_id = :c AND date_key BETWEEN :first AND :last",
            ExpressionAttributeValues={
                ":c": {"S": category_id},
                ":first": {"S": first},
                ":last": {"S": last},
            },
        )

    def batches(self, dates: list[str]) -> list[dict[str, Any]]:
        rows = self.batch_get(self.tracker_table, [{"BatchId": {"S": d}} for d in dates])
        return sorted(rows, key=lambda r: r["BatchId"])

    def quality(self, date_key: str) -> list[dict[str, Any]]:
        """The day's files as validation last decided them (every page of one Query)."""
        assert self.quality_table is not None
        return self.query(
            TableName=self.quality_table,
            KeyConditionExpression="date_key = :d",
            ExpressionAttributeValues={":d": {"S": date_key}},
        )

    def days(self) -> list[str]:
        """Every day that started a generation, oldest first (one GetItem on the calendar item)."""
        item = self.client.get_item(
            TableName=self.tracker_table, Key={"BatchId": {"S": CALENDAR_ID}}, ConsistentRead=True
        ).get("Item")
        return sorted(plain(item).get("days") or ()) if item else []
