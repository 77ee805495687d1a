"""Lambda entry point behind an API Gateway HTTP API (payload format 2.0): ``kpi_api.handler.lambda_handler``.

Environment: ``DAILY_KPIS_TABLE``, ``CATEGORY_KPIS_TABLE``, ``PIPELINE_BATCH_TRACKER_TABLE`` (the
stack's names; defaults as in the jobs) and ``S3_BUCKET`` (only to print links to reports). The
function holds read-only DynamoDB rights on those tables and nothing else.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

import boto3
from botocore.config import Config

from kpi_api.page import page_html
from kpi_api.reader import KpiReader
from kpi_api.routes import handle, server_error

_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"})


def reader_from_env(env: Any = None) -> KpiReader:
    env = os.environ if env is None else env
    return KpiReader(
        client=_client(env.get("AWS_ENDPOINT_URL") or None),
        daily_table=env.get("DAILY_KPIS_TABLE") or "DailyKPIs",
        category_table=env.get("CATEGORY_KPIS_TABLE") or "CategoryKPIs",
        tracker_table=env.get("PIPELINE_BATCH_TRACKER_TABLE") or "BatchFileTracker",
    )


@lru_cache(maxsize=4)
def _client(endpoint_url: str | None) -> Any:
    """One client per container (and endpoint): building one costs tens of milliseconds."""
    return boto3.session.Session().client("dynamodb", endpoint_url=endpoint_url, config=_CONFIG)


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    http = (event.get("requestContext") or {}).get("http") or {}
    query = parse_qs(event.get("rawQueryString") or "", keep_blank_values=True)
    try:
        response = handle(
            str(http.get("method") or "GET"),
            str(event.get("rawPath") or http.get("path") or "/"),
            query,
            reader_from_env(),
            bucket=os.environ.get("S3_BUCKET") or None,
            page=page_html,
        )
    except Exception as exc:  # answered as a JSON 500 (the API alarm counts 5xx); the log keeps the reason
        print(f"[ERROR] {type(exc).__name__}: {exc}", flush=True)
        response = server_error(exc)
    return {"statusCode": response.status, "headers": response.headers, "body": response.body}
