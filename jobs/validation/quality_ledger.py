"""A day's data quality as the dashboards read it: one DynamoDB item per file, its latest decision.

The verdict records (``logs/validation/verdicts/``) are the job's memory and stay in S3; the API's
``/quality`` routes (kpi_api/quality.py) need a day's files by key, without listing or reading S3.
So each concluded file also writes its line of the day's quality to ``DATA_QUALITY_TABLE``
(``date_key`` + ``file``, the relative key): its verdict, rows, the rows its drop rules left out,
every rule it broke with its action and row count, its schema drift and where its report is.

The item of a newer version replaces the older one (a corrected re-upload clears the day's
rejection), never the reverse: the write is conditional on the arrival time, so a retried run that
concludes an old version late does not overwrite what a newer version's run wrote. Without
``DATA_QUALITY_TABLE`` nothing is written (the S3 records stay the record).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeSerializer

from jobs.validation.actions import DROP, REJECT, WARN, dropped_rows
from jobs.validation.findings import Finding
from jobs.validation.verdicts import VerdictRecord

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_serializer = TypeSerializer()


def quality_day(batch_id: str, decided_at: str) -> str:
    """The day a file's quality counts for: its batch's day; the day of the decision for a batch
    that is not a day (the products master's own batch, an ad hoc run)."""
    return batch_id if _DAY.fullmatch(batch_id) else decided_at[:10]


def rule_action(finding: Finding) -> str:
    """What the rule did: a drop rule says so in its details (even when its count rejected the
    file); any other rule rejects or warns by its severity (jobs.validation.actions)."""
    if finding.details.get("action") == DROP:
        return DROP
    return REJECT if finding.rejects else WARN


def quality_item(record: VerdictRecord, *, data_docs: str, quarantine_key: str = "") -> dict[str, Any]:
    """The item of one decided file version (plain values; numbers as int)."""
    findings = [Finding.from_dict(f) for f in record.findings]
    rules: dict[str, dict[str, Any]] = {}
    for f in findings:
        entry = rules.setdefault(f.rule, {"action": rule_action(f), "rows": 0, "rejects": False})
        entry["rows"] += int(f.failing_rows or 0)
        entry["rejects"] = entry["rejects"] or f.rejects
        if f.column:
            entry["column"] = f.column
    accepted = record.verdict == "passed"
    item: dict[str, Any] = {
        "date_key": quality_day(record.batch_id, record.decided_at),
        "file": record.rel,
        "dataset": record.dataset or "unknown",
        "verdict": str(record.verdict),
        "etag": record.etag,
        "arrived_ms": int(record.arrived_ms or 0),
        "rows": int(record.rows or 0),
        "rows_known": record.rows is not None,  # False: the file could not be read (its rows unknown)
        "dropped_rows": dropped_rows(findings) if accepted else 0,
        "rules": rules,
        "report": record.report_key,
        "data_docs": data_docs,
        "batch_id": record.batch_id,
        "run_id": record.run_id,
        "decided_at": record.decided_at,
    }
    if quarantine_key:
        item["quarantine"] = quarantine_key
    if record.schema_drift:
        drift = record.schema_drift
        item["schema_drift"] = {
            "signature": str(drift.get("signature", "")),
            "new": list(drift.get("new") or []),
            "missing": list(drift.get("missing") or []),
            "reordered": bool(drift.get("reordered")),
            "description": str(drift.get("description", "")),
        }
    return item


def to_attributes(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in item.items()}


class QualityLedger:
    """Writes the items; one conditional PutItem per decided file."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client, self._table = client, table

    def put(self, item: Mapping[str, Any]) -> bool:
        """Write ``item`` unless the table holds a later version of the file (False then)."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=to_attributes(item),
                ConditionExpression="attribute_not_exists(#f) OR arrived_ms <= :arrived",
                ExpressionAttributeNames={"#f": "file"},
                ExpressionAttributeValues={":arrived": {"N": str(item["arrived_ms"])}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True


def create_quality_table(client: DynamoDBClient, name: str) -> None:
    """Create the table as infra/ does (on demand, ``date_key`` + ``file``) if missing; for the local
    stack and the tests."""
    from botocore.exceptions import ClientError

    try:
        client.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "date_key", "AttributeType": "S"},
                {"AttributeName": "file", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "date_key", "KeyType": "HASH"},
                {"AttributeName": "file", "KeyType": "RANGE"},
            ],
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
