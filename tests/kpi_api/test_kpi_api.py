"""The KPI read API over the emulated tables, through the local server and the Lambda handler.

Items are written with the pipeline's own writers (serving.to_item, the tracker's calendar), so the
API reads exactly what the transformation and the trigger leave behind.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest

from ecomkpi.api_server import ApiServer, serve
from jobs.transformation.serving import to_item
from kpi_api import routes
from kpi_api.causes import short_cause
from kpi_api.handler import lambda_handler
from kpi_api.reader import KpiReader
from tests.support.kpi_tables import NOW, UPDATED, seed


@dataclass
class Api:
    server: ApiServer
    ddb: Any
    names: Any
    calls: list[str]

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.server.url + path.lstrip("/"), timeout=10) as response:
                body = response.read().decode()
                kind = response.headers["Content-Type"]
                return response.status, json.loads(body) if kind.startswith("application/json") else body
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read().decode())


@pytest.fixture
def api(moto_endpoint: str, names: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    seed(ddb, names)
    calls: list[str] = []
    reader_client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    reader_client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    reader = KpiReader(reader_client, names.daily_table, names.category_table, names.tracker_table)
    monkeypatch.setattr(routes, "datetime", _FrozenDatetime)
    server = serve(reader, bucket=names.bucket)
    try:
        yield Api(server, ddb, names, calls)
    finally:
        server.stop()


class _FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return NOW


def test_daily_range_exact_values_with_their_run(api: Api) -> None:
    status, body = api.get("/kpis/daily?from=2025-07-01&to=2025-07-31")
    assert status == 200
    assert (body["from"], body["to"], body["count"]) == ("2025-07-01", "2025-07-31", 2)
    assert body["rows"][0] == {
        "date_key": "2025-07-08", "total_orders": 3, "total_revenue": "120.50", "total_items_sold": 5,
        "return_rate": "33.33", "unique_customers": 3, "run_id": "2025-07-08-g1", "updated_at": UPDATED,
        "rejected_files": 0,
    }  # fmt: skip
    assert body["rows"][1]["total_revenue"] == "98765.40" and body["rows"][1]["return_rate"] == "0.00"


def test_categories_of_a_day_and_one_category_over_a_range(api: Api) -> None:
    status, body = api.get("/kpis/categories?date=2025-07-10")
    assert status == 200 and [r["category_id"] for r in body["rows"]] == ["Jeans", "Tops & Tees"]
    assert body["rows"][0]["daily_revenue"] == "2077.70" and body["rows"][0]["run_id"] == "2025-07-10-g2"

    status, body = api.get("/kpis/categories/Tops%20%26%20Tees?from=2025-07-01&to=2025-07-10")
    assert status == 200 and body["category_id"] == "Tops & Tees"
    assert [(r["date_key"], r["daily_revenue"]) for r in body["rows"]] == [
        ("2025-07-08", "40.00"),
        ("2025-07-10", "6319.72"),
    ]


def test_status_per_day_with_failure_cause_links_and_freshness(api: Api) -> None:
    status, body = api.get("/status")  # default: 14 days up to the latest day that ran
    assert status == 200 and (body["from"], body["to"]) == ("2025-06-27", "2025-07-10")
    by_day = {d["date"]: d for d in body["days"]}
    assert [d["date"] for d in body["days"]] == ["2025-07-10", "2025-07-09", "2025-07-08"]
    failed = by_day["2025-07-10"]
    assert (failed["state"], failed["generation"], failed["failure_error"]) == (
        "failed",
        2,
        "Validation.DataRejected",
    )
    assert failed["failure_cause"].endswith("<b>x</b>")  # JSON carries text; the page inserts it as text
    assert (
        failed["links"]["validation_reports"]
        == f"s3://{api.names.bucket}/logs/validation/2025-07-10/2025-07-10-g2/"
    )
    assert failed["seconds_since_kpi_update"] == 30.0 and failed["kpis_run_id"] == "2025-07-10-g1"
    assert by_day["2025-07-09"]["state"] == "running" and by_day["2025-07-09"]["kpis_updated_at"] is None
    assert by_day["2025-07-08"]["state"] == "succeeded" and by_day["2025-07-08"]["failure_cause"] is None
    assert body["latest_kpi_update"] == UPDATED and body["seconds_since_latest_kpi_update"] == 30.0
    assert api.get("/days")[1] == {"count": 3, "days": ["2025-07-08", "2025-07-09", "2025-07-10"]}


def test_a_date_with_kpis_but_no_batch_of_its_own(api: Api) -> None:
    """Orders dated 2025-07-07 (UTC) that arrived in the 2025-07-08 files: KPIs, no batch."""
    row = {"date_key": "2025-07-07", "total_orders": 1, "total_revenue": Decimal("9.99"), "total_items_sold": 1,
           "return_rate": Decimal("0.00"), "unique_customers": 1}  # fmt: skip
    api.ddb.put_item(TableName=api.names.daily_table, Item=to_item(row, list(row), "2025-07-08-g1", UPDATED))
    days = {d["date"]: d for d in api.get("/status")[1]["days"]}
    assert days["2025-07-07"]["state"] == "kpis_only" and days["2025-07-07"]["generation"] is None
    assert days["2025-07-07"]["kpis_run_id"] == "2025-07-08-g1"


def test_no_request_scans_a_table(api: Api) -> None:
    for path in (
        "/kpis/daily?from=2024-07-11&to=2025-07-10",
        "/kpis/categories?date=2025-07-10",
        "/kpis/categories/Jeans?from=2025-07-01&to=2025-07-10",
        "/status",
        "/days",
    ):
        assert api.get(path)[0] == 200, path
    assert "Scan" not in api.calls
    assert set(api.calls) <= {"BatchGetItem", "Query", "GetItem"}


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/kpis/daily?to=2025-07-10", 400, "parameter 'from' is required"),
        ("/kpis/daily?from=2025-07-10", 400, "parameter 'to' is required"),
        (
            "/kpis/daily?from=2025-13-01&to=2025-07-10",
            400,
            "parameter 'from' must be a date written YYYY-MM-DD",
        ),
        ("/kpis/daily?from=20250701&to=2025-07-10", 400, "parameter 'from' must be a date"),
        ("/kpis/daily?from=2025-07-10&to=2025-07-01", 400, "'from' (2025-07-10) is after 'to' (2025-07-01)"),
        ("/kpis/daily?from=2024-07-09&to=2025-07-10", 400, "the range has 367 days; at most 366"),
        ("/kpis/daily?from=2025-07-01&to=2025-07-10&limit=5", 400, "unknown parameter 'limit'"),
        (
            "/kpis/daily?from=2025-07-01&from=2025-07-02&to=2025-07-10",
            400,
            "parameter 'from' is given 2 times",
        ),
        ("/kpis/categories", 400, "parameter 'date' is required"),
        ("/kpis/categories?date=yesterday", 400, "parameter 'date' must be a date"),
        ("/kpis/categories/Jeans?from=2025-07-01", 400, "parameter 'to' is required"),
        ("/status?to=2025-07-10&from=2020-01-01", 400, "at most 366"),
        ("/days?x=1", 400, "unknown parameter 'x' (this route takes none)"),
        ("/kpis/weekly", 404, "no route /kpis/weekly"),
        ("/quality", 404, "the quality view is not configured here (DATA_QUALITY_TABLE)"),
        (
            "/kpis/categories/" + "%E2%82%AC" * 683 + "?from=2025-07-01&to=2025-07-10",
            400,
            "the category id is 2049 bytes long; a category id has at most 2048 bytes",
        ),
    ],
)
def test_parameter_errors_name_the_parameter(api: Api, path: str, status: int, message: str) -> None:
    got, body = api.get(path)
    assert (got, body["status"]) == (status, status)
    assert message in body["error"]


def test_writes_are_refused(api: Api) -> None:
    request = urllib.request.Request(api.server.url + "kpis/daily", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405


def test_the_lambda_answers_api_gateway_like_the_local_server(
    api: Api, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("DAILY_KPIS_TABLE", api.names.daily_table)
    monkeypatch.setenv("CATEGORY_KPIS_TABLE", api.names.category_table)
    monkeypatch.setenv("PIPELINE_BATCH_TRACKER_TABLE", api.names.tracker_table)
    event = {
        "version": "2.0",
        "routeKey": "GET /kpis/categories/{category_id}",
        "rawPath": "/kpis/categories/Tops%20%26%20Tees",
        "rawQueryString": "from=2025-07-01&to=2025-07-10",
        "requestContext": {"http": {"method": "GET", "path": "/kpis/categories/Tops & Tees"}},
    }
    response = lambda_handler(event)
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"].startswith("application/json")
    assert (
        json.loads(response["body"])
        == api.get("/kpis/categories/Tops%20%26%20Tees?from=2025-07-01&to=2025-07-10")[1]
    )
    bad = lambda_handler({**event, "rawQueryString": "from=2025-07-01"})
    assert bad["statusCode"] == 400


def test_the_page_is_served_with_no_outside_references(api: Api) -> None:
    status, html = api.get("/")
    assert status == 200 and html.startswith("<!doctype html>")
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    assert "<script src" not in html and "<link" not in html
    assert "innerHTML" not in html  # every value goes in as text


def test_scaled_columns_match_the_kpi_contract() -> None:
    from pyspark.sql.types import DecimalType

    from jobs.contract import CATEGORY_KPI_SCHEMA, DAILY_KPI_SCHEMA

    assert tuple(DAILY_KPI_SCHEMA.fieldNames()) == routes.DAILY_COLUMNS
    assert tuple(CATEGORY_KPI_SCHEMA.fieldNames()) == routes.CATEGORY_COLUMNS
    scaled = {
        f.name
        for s in (DAILY_KPI_SCHEMA, CATEGORY_KPI_SCHEMA)
        for f in s.fields
        if isinstance(f.dataType, DecimalType)
    }
    assert scaled == routes.SCALED
    assert {
        f.dataType.scale
        for s in (DAILY_KPI_SCHEMA, CATEGORY_KPI_SCHEMA)
        for f in s.fields
        if f.name in scaled
    } == {2}


def test_ecomkpi_kpis_reads_through_the_same_reader(api: Api, moto_endpoint: str) -> None:
    from ecomkpi.kpi_query import category_rows, daily_rows
    from jobs.config import PipelineConfig

    config = PipelineConfig(
        bucket=api.names.bucket,
        endpoint_url=moto_endpoint,
        daily_kpis_table=api.names.daily_table,
        category_kpis_table=api.names.category_table,
        tracker_table=api.names.tracker_table,
    )
    assert [r["date_key"] for r in daily_rows(config)] == ["2025-07-08", "2025-07-10"]
    assert daily_rows(config, "2025-07-10")[0]["total_revenue"] == Decimal("98765.40")
    assert [r["category_id"] for r in category_rows(config, "2025-07-10")] == ["Jeans", "Tops & Tees"]
    assert [r["date_key"] for r in category_rows(config, category="Tops & Tees")] == [
        "2025-07-08",
        "2025-07-10",
    ]
    assert len(category_rows(config)) == 3


@pytest.mark.parametrize(
    ("batch", "state", "failed"),
    [
        (None, "kpis_only", False),
        ({"status": "SUCCEEDED"}, "succeeded", False),
        ({"status": "WAITING_FOR_PRODUCTS"}, "waiting_for_products", False),
        ({}, "pending", False),
        ({"status": "TRIGGERED", "running": True}, "running", False),
        # The workflow wrote FAILED; the trigger has not heard the execution end yet.
        ({"status": "FAILED", "running": True, "failure_error": "E"}, "running", True),
        ({"status": "FAILED", "failure_error": "E"}, "failed", True),
        ({"status": "SOMETHING_NEW"}, "unknown", False),
    ],
)
def test_day_state_is_one_of_a_closed_set(batch: dict[str, Any] | None, state: str, failed: bool) -> None:
    day = routes.day_status(batch, {"updated_at": "2025-07-10T00:00:00Z"}, "2025-07-10", NOW, "b")
    assert day["state"] == state and isinstance(day["state"], routes.DayState)
    assert (day["failure_error"] is not None) == failed
    assert json.loads(json.dumps(day))["state"] == state


ECS_CAUSE = json.dumps(
    {
        "TaskArn": "arn:aws:ecs:eu-west-1:123456789012:task/ecomkpi-prod/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "ClusterArn": "arn:aws:ecs:eu-west-1:123456789012:cluster/ecomkpi-prod",
        "StoppedReason": "Essential container in task exited",
        "Containers": [{"Name": "transformation", "ExitCode": 1, "RuntimeId": "0f1e2d3c4b5a-1527"}],
        "Attachments": [{"Details": [{"Name": "privateDnsName", "Value": "ip-10-0-3-17.eu-west-1.compute.internal"},
                                     {"Name": "privateIPv4Address", "Value": "10.0.3.17"}]}],
    }
)  # fmt: skip


def test_status_gives_readers_a_short_cause_and_a_reference_never_the_raw_one(api: Api) -> None:
    """The raw cause of a broken ECS task names task and cluster ARNs (the account), the private
    host and its address: readers of /status get the reason, the exit codes and the execution."""
    api.ddb.update_item(
        TableName=api.names.tracker_table,
        Key={"BatchId": {"S": "2025-07-10"}},
        UpdateExpression="SET failure_cause = :c, failure_error = :e",
        ExpressionAttributeValues={":c": {"S": ECS_CAUSE}, ":e": {"S": "States.TaskFailed"}},
    )
    status, body = api.get("/status")
    assert status == 200
    failed = next(d for d in body["days"] if d["date"] == "2025-07-10")
    assert failed["failure_cause"] == "Essential container in task exited; transformation exited 1"
    assert failed["failure_reference"] == "2025-07-10-g2"
    text = json.dumps(body)
    for secret in ("arn:aws", "123456789012", "compute.internal", "10.0.3.17"):
        assert secret not in text, secret


@pytest.mark.parametrize(
    ("cause", "short"),
    [
        ("worker w-1 on ip-10-0-3-17.eu-west-1.compute.internal (10.0.3.17) died\nTraceback ...",
         "worker w-1 on <host> (<ip>) died"),
        ("AccessDenied for arn:aws:iam::123456789012:role/x calling https://sqs.eu-west-1.amazonaws.com/1/q",
         "AccessDenied for <arn> calling <url>"),
        ("x" * 500, "x" * 197 + "..."),
        ("", None),
    ],
)  # fmt: skip
def test_short_causes_are_one_scrubbed_line(cause: str, short: str | None) -> None:
    assert short_cause(cause) == short


def test_quality_routes_check_their_parameters_and_answer_an_empty_day(api: Api) -> None:
    from jobs.validation.quality_ledger import create_quality_table
    from kpi_api.routes import handle

    table = f"DataQuality-{api.names.suffix}"
    create_quality_table(api.ddb, table)
    reader = KpiReader(
        api.ddb, api.names.daily_table, api.names.category_table, api.names.tracker_table, table
    )
    wide = handle("GET", "/quality", {"from": ["2025-01-01"], "to": ["2025-07-10"]}, reader)
    assert (wide.status, json.loads(wide.body)["error"]) == (
        400,
        "the range has 191 days; /quality takes at most 92",
    )
    bad = handle("GET", "/quality/2025-13-01", {}, reader)
    assert bad.status == 400 and "'date' must be a date" in json.loads(bad.body)["error"]
    empty = json.loads(handle("GET", "/quality/2025-07-10", {}, reader).body)
    assert empty["files"] == {"accepted": 0, "rejected": 0} and empty["file_list"] == []
    assert json.loads(handle("GET", "/quality", {"to": ["2025-07-10"]}, reader).body)["days"] == []


def test_every_answer_says_how_a_browser_may_treat_it(api: Api) -> None:
    for path in ("/", "/status", "/kpis/daily?from=2025-07-01&to=2025-07-10", "/kpis/weekly", "/days?x=1"):
        try:
            with urllib.request.urlopen(api.server.url + path.lstrip("/"), timeout=10) as response:
                headers = response.headers
        except urllib.error.HTTPError as exc:
            headers = exc.headers
        assert headers["X-Content-Type-Options"] == "nosniff", path
        policy = headers["Content-Security-Policy"]
        assert policy.startswith("default-src 'none'") and "frame-ancestors 'none'" in policy, path


def test_the_page_policy_allows_its_own_inline_code_and_nothing_else(api: Api) -> None:
    with urllib.request.urlopen(api.server.url, timeout=10) as response:
        html, policy = response.read().decode(), response.headers["Content-Security-Policy"]
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    for kind in ("script", "style"):
        body = html.split(f"<{kind}>", 1)[1].split(f"</{kind}>", 1)[0]
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert directives[f"{kind}-src"] == f"'sha256-{digest}'"
    assert directives["connect-src"] == "'self'" and "unsafe" not in policy
    response = lambda_handler({"rawPath": "/", "requestContext": {"http": {"method": "GET"}}})
    assert response["headers"]["Content-Security-Policy"] == policy  # the same page, the same policy
