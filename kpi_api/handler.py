"""Lambda entry point behind an API Gateway HTTP API (payload format 2.0): ``kpi_api.handler.lambda_handler``.

Environment: ``DAILY_KPIS_TABLE``, ``CATEGORY_KPIS_TABLE``, ``PIPELINE_BATCH_TRACKER_TABLE`` (the
stack's names; defaults as in the jobs), ``DATA_QUALITY_TABLE`` (the ``/quality`` routes; unset: 404) and ``S3_BUCKET`` (only to print links to reports);
``AWS_ENDPOINT_URL`` (an emulator; unset in AWS) and ``AWS_REGION`` for the client, which comes from
the per-process cache of :mod:`jobs.aws` (shipped in this function's zip). The function holds
read-only DynamoDB rights on those tables and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from jobs import aws
from kpi_api.page import page_html
from kpi_api.reader import KpiReader
from kpi_api.routes import handle, server_error


def reader_from_env(env: Mapping[str, str] | None = None) -> KpiReader:
    env = os.environ if env is None else env
    return KpiReader(
        client=aws.client("dynamodb", aws.Location.from_env(env), retries=aws.REQUEST_RETRIES),
        daily_table=env.get("DAILY_KPIS_TABLE") or "DailyKPIs",
        category_table=env.get("CATEGORY_KPIS_TABLE") or "CategoryKPIs",
        tracker_table=env.get("PIPELINE_BATCH_TRACKER_TABLE") or "BatchFileTracker",
        quality_table=env.get("DATA_QUALITY_TABLE") or None,
    )


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
