"""The KPI read API: request in, (status, headers, body) out. No I/O but the reader.

The same function serves API Gateway (kpi_api/handler.py) and the local server (``ecomkpi serve``,
``ecomkpi up``), so what a test sees locally is what the deployed API answers.

Routes (GET only, JSON, UTF-8):

* ``/kpis/daily?from=YYYY-MM-DD&to=YYYY-MM-DD`` -- DailyKPIs rows of the range;
* ``/kpis/categories?date=YYYY-MM-DD`` -- every category of one day;
* ``/kpis/categories/{category_id}?from=&to=`` -- one category over a range;
* ``/status?from=&to=`` (default: the 14 days up to the latest day that ran) -- per day: generation,
  state (:class:`DayState`: ``running``, ``succeeded``, ``failed``, ``pending``, ``triggered``,
  ``waiting_for_products``, ``kpis_only`` for a date whose orders all came in other days' batches,
  ``unknown`` for a tracker status this API does not know), the last failure with a short cause and
  its reference (the execution; kpi_api/causes.py), seconds since its KPIs were last written;
* ``/quality?from=&to=`` (default: the 14 days up to the latest day that ran; at most
  ``MAX_QUALITY_DAYS``) -- per day with decided files, oldest first: files accepted and rejected,
  rows kept, dropped and rejected, the rules that failed (action, files, rows) and schema drift
  (kpi_api/quality.py);
* ``/quality/{date}`` -- the same for one day, with every file and the links to its report, Data
  Docs and quarantined rows;
* ``/days`` -- every day that ran, oldest first (the page starts from the latest);
* ``/`` -- the live page (kpi_api/page.py).

Money and rates are strings with their contract scale (``"1234.50"``, exact: DynamoDB numbers are
read as Decimal and never pass through a float); counts are integers. Every row carries its
``run_id``, ``updated_at`` and ``rejected_files`` (0, or how many of its day's files were rejected:
the KPIs of a day served partly). A range is at most ``MAX_RANGE_DAYS`` days; a bad date, an
unknown or missing parameter, or a reversed range is a 400 that says which parameter and why.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from kpi_api.causes import short_cause
from kpi_api.page import content_security_policy
from kpi_api.quality import day_detail, day_summary
from kpi_api.reader import KpiReader

MAX_RANGE_DAYS = 366
MAX_QUALITY_DAYS = 92  # one Query per day
STATUS_DEFAULT_DAYS = 14
# DynamoDB's limit on a partition key (CategoryKPIs' category_id), in bytes of UTF-8; validation
# rejects longer categories (jobs/validation/checks.py MAX_KEY_BYTES).
MAX_KEY_BYTES = 2048
# The KPI contract's output scales (jobs/contract.py; a test keeps them equal): money and rates
# have 2 decimals, every other number is a count.
SCALED = frozenset({"total_revenue", "return_rate", "daily_revenue", "avg_order_value", "avg_return_rate"})
DAILY_COLUMNS = (
    "date_key",
    "total_orders",
    "total_revenue",
    "total_items_sold",
    "return_rate",
    "unique_customers",
)
CATEGORY_COLUMNS = ("category_id", "date_key", "daily_revenue", "avg_order_value", "avg_return_rate")
ROW_META = ("run_id", "updated_at")
# jobs/contract.py REJECTED_FILES (this zip does not ship jobs/contract.py; a test keeps them equal).
REJECTED_FILES = "rejected_files"
JSON_TYPE = "application/json; charset=utf-8"


class DayState(StrEnum):
    """A day's state on ``/status`` and the page (which styles each by its ``data-state``)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"
    TRIGGERED = "triggered"
    WAITING_FOR_PRODUCTS = "waiting_for_products"
    KPIS_ONLY = "kpis_only"
    UNKNOWN = "unknown"


# The tracker item's ``status`` (lambda_trigger/states.py BatchStatus; this zip does not ship it) ->
# the day's state when no generation is running.
_STATE_OF_STATUS = {
    "PENDING": DayState.PENDING,
    "TRIGGERED": DayState.TRIGGERED,
    "WAITING_FOR_PRODUCTS": DayState.WAITING_FOR_PRODUCTS,
    "SUCCEEDED": DayState.SUCCEEDED,
    "FAILED": DayState.FAILED,
}


class BadRequest(ValueError):
    """A 400: the message names the parameter and the rule."""


@dataclass(frozen=True)
class Response:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": JSON_TYPE})


# Sent with every answer: no content sniffing (a JSON body is never run as a script or page), and
# JSON documents may load nothing and be framed by nobody. The page's own policy: kpi_api/page.py.
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
JSON_POLICY = "default-src 'none'; frame-ancestors 'none'"


def _json(status: int, value: Any) -> Response:
    return Response(
        status,
        json.dumps(value, ensure_ascii=False, separators=(",", ":")),
        {
            "Content-Type": JSON_TYPE,
            "Cache-Control": "no-store",
            "Content-Security-Policy": JSON_POLICY,
            **NOSNIFF,
        },
    )


def _page(html: str) -> Response:
    headers = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
    return Response(
        200, html, {**headers, "Content-Security-Policy": content_security_policy(html), **NOSNIFF}
    )


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message, "status": status})


def server_error(exc: BaseException) -> Response:
    """A 500 that says what failed (the DynamoDB error's type), never the stack trace."""
    return _error(500, f"the KPI tables could not be read ({type(exc).__name__}); try again")


def number(column: str, value: Any) -> Any:
    """Exact: scaled columns as strings with 2 decimals, counts as integers."""
    if not isinstance(value, Decimal):
        return value
    if column in SCALED:
        return f"{value:.2f}"
    return int(value)


def present(row: Mapping[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    """A row as served; ``rejected_files`` > 0: the day's KPIs leave out that many rejected files."""
    return {c: number(c, row.get(c)) for c in (*columns, *ROW_META)} | {REJECTED_FILES: rejected_files(row)}


def rejected_files(row: Mapping[str, Any] | None) -> int:
    return int((row or {}).get(REJECTED_FILES) or 0)


# -- parameters ---------------------------------------------------------------------------------
def _one(query: Mapping[str, list[str]], name: str, required: bool = True) -> str | None:
    values = query.get(name)
    if not values:
        if required:
            raise BadRequest(f"parameter '{name}' is required (YYYY-MM-DD)")
        return None
    if len(values) > 1:
        raise BadRequest(f"parameter '{name}' is given {len(values)} times; give it once")
    return values[0]


def _date(name: str, value: str) -> date:
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"parameter '{name}' must be a date written YYYY-MM-DD, got {value!r}") from None


def _only(query: Mapping[str, list[str]], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        expected = ", ".join(f"'{a}'" for a in allowed) or "none"
        raise BadRequest(f"unknown parameter '{unknown[0]}' (this route takes {expected})")


def _range(
    query: Mapping[str, list[str]], default_days: int | None = None, today: date | None = None
) -> list[str]:
    """The dates from ``from`` to ``to`` inclusive, at most MAX_RANGE_DAYS of them."""
    required = default_days is None
    raw_to = _one(query, "to", required)
    raw_from = _one(query, "from", required)
    last = _date("to", raw_to) if raw_to else (today or datetime.now(UTC).date())
    first = _date("from", raw_from) if raw_from else last - timedelta(days=(default_days or 1) - 1)
    if first > last:
        raise BadRequest(f"'from' ({first}) is after 'to' ({last})")
    days = (last - first).days + 1
    if days > MAX_RANGE_DAYS:
        raise BadRequest(f"the range has {days} days; at most {MAX_RANGE_DAYS} per request")
    return [(first + timedelta(days=n)).isoformat() for n in range(days)]


# -- routes -------------------------------------------------------------------------------------
def _daily(reader: KpiReader, query: Mapping[str, list[str]]) -> Response:
    _only(query, ("from", "to"))
    dates = _range(query)
    rows = [present(r, DAILY_COLUMNS) for r in reader.daily(dates)]
    return _json(200, {"from": dates[0], "to": dates[-1], "count": len(rows), "rows": rows})


def _categories(reader: KpiReader, query: Mapping[str, list[str]]) -> Response:
    _only(query, ("date",))
    day = _date("date", _one(query, "date") or "").isoformat()
    rows = [present(r, CATEGORY_COLUMNS) for r in reader.categories_on(day)]
    return _json(200, {"date": day, "count": len(rows), "rows": rows})


def _category(reader: KpiReader, query: Mapping[str, list[str]], category_id: str) -> Response:
    _only(query, ("from", "to"))
    if not category_id.strip():
        raise BadRequest("the category id in the path is empty")
    size = len(category_id.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:  # DynamoDB would refuse the query: a 400, not the 500 of a read failure
        raise BadRequest(
            f"the category id is {size} bytes long; a category id has at most {MAX_KEY_BYTES} bytes"
        )
    dates = _range(query)
    rows = [present(r, CATEGORY_COLUMNS) for r in reader.category_range(category_id, dates[0], dates[-1])]
    return _json(
        200, {"category_id": category_id, "from": dates[0], "to": dates[-1], "count": len(rows), "rows": rows}
    )


def _age_seconds(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round((now - moment).total_seconds(), 1)


def day_status(
    batch: Mapping[str, Any] | None,
    kpis: Mapping[str, Any] | None,
    day: str,
    now: datetime,
    bucket: str | None,
) -> dict[str, Any]:
    """One day's pipeline state as a person reads it on the page."""
    if batch is None:
        # KPIs of a date without a batch of its own: the orders dated that day (UTC) all arrived in
        # other days' files (a producer's day is not always the UTC day).
        state, batch, status = DayState.KPIS_ONLY, {}, None
    else:
        status = _STATE_OF_STATUS.get(str(batch.get("status") or "PENDING"), DayState.UNKNOWN)
        state = DayState.RUNNING if batch.get("running") else status
    last_run = batch.get("last_run")
    # The workflow writes FAILED before the trigger hears the execution ended: show why meanwhile.
    failed = status == DayState.FAILED
    links = {}
    if bucket and failed and last_run:
        links = {
            "validation_reports": f"s3://{bucket}/logs/validation/{day}/{last_run}/",
            "rejected_files": f"s3://{bucket}/invalid/",
        }
    return {
        "date": day,
        "state": state,
        "generation": int(batch["triggered_generation"]) if "triggered_generation" in batch else None,
        "last_run": last_run,
        "finished_at": batch.get("finished_at"),
        "failed_state": batch.get("failed_state") if failed else None,
        "failure_error": batch.get("failure_error") if failed else None,
        # Short and scrubbed (kpi_api/causes.py): the full cause, with its ARNs and host names, is
        # for operators, under the reference (the execution) in the alert and the tracker.
        "failure_cause": short_cause(batch.get("failure_cause")) if failed else None,
        "failure_reference": last_run if failed else None,
        "links": links,
        "kpis_updated_at": (kpis or {}).get("updated_at"),
        "kpis_run_id": (kpis or {}).get("run_id"),
        "rejected_files": rejected_files(kpis),  # > 0: its KPIs were served without those files
        "seconds_since_kpi_update": _age_seconds((kpis or {}).get("updated_at"), now),
    }


def _status(reader: KpiReader, query: Mapping[str, list[str]], now: datetime, bucket: str | None) -> Response:
    _only(query, ("from", "to"))
    known = reader.days() if "to" not in query else []
    latest = date.fromisoformat(known[-1]) if known else now.date()
    dates = _range(query, default_days=STATUS_DEFAULT_DAYS, today=latest)
    batches = {b["BatchId"]: b for b in reader.batches(dates)}
    kpis = {r["date_key"]: r for r in reader.daily(dates)}
    days = [
        day_status(batches.get(d), kpis.get(d), d, now, bucket)
        for d in reversed(dates)
        if d in batches or d in kpis
    ]
    freshest = max((r.get("updated_at") or "" for r in kpis.values()), default="") or None
    return _json(
        200,
        {
            "from": dates[0],
            "to": dates[-1],
            "now": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "latest_kpi_update": freshest,
            "latest_kpi_run_id": next(
                (r.get("run_id") for r in kpis.values() if r.get("updated_at") == freshest), None
            ),
            "seconds_since_latest_kpi_update": _age_seconds(freshest, now),
            "days": days,
        },
    )


def _quality_range(reader: KpiReader, query: Mapping[str, list[str]], now: datetime) -> Response:
    _only(query, ("from", "to"))
    known = reader.days() if "to" not in query else []
    latest = date.fromisoformat(known[-1]) if known else now.date()
    dates = _range(query, default_days=STATUS_DEFAULT_DAYS, today=latest)
    if len(dates) > MAX_QUALITY_DAYS:
        raise BadRequest(f"the range has {len(dates)} days; /quality takes at most {MAX_QUALITY_DAYS}")
    days = [day_summary(d, items) for d in dates if (items := reader.quality(d))]
    return _json(200, {"from": dates[0], "to": dates[-1], "count": len(days), "days": days})


def _quality_day(reader: KpiReader, query: Mapping[str, list[str]], day: str, bucket: str | None) -> Response:
    _only(query, ())
    day = _date("date", day).isoformat()
    return _json(200, day_detail(day, reader.quality(day), bucket))


def handle(
    method: str,
    path: str,
    query: Mapping[str, list[str]],
    reader: KpiReader,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    bucket: str | None = None,
    page: Callable[[], str] | None = None,
) -> Response:
    """Route one request; errors become JSON 400/404/405 (a reader failure propagates as a 500)."""
    if method not in ("GET", "HEAD"):
        return _error(405, f"method {method} is not allowed: the API is read-only (GET)")
    path = "/" + path.strip("/")
    try:
        if path == "/":
            if page is None:
                return _error(404, "no page here")
            return _page(page())
        if path == "/kpis/daily":
            return _daily(reader, query)
        if path == "/kpis/categories":
            return _categories(reader, query)
        if path.startswith("/kpis/categories/") and path.count("/") == 3:
            return _category(reader, query, unquote(path.rsplit("/", 1)[1]))
        if path == "/status":
            return _status(reader, query, now(), bucket)
        if path == "/quality" or (path.startswith("/quality/") and path.count("/") == 2):
            if reader.quality_table is None:
                return _error(404, "the quality view is not configured here (DATA_QUALITY_TABLE)")
            if path == "/quality":
                return _quality_range(reader, query, now())
            return _quality_day(reader, query, unquote(path.rsplit("/", 1)[1]), bucket)
        if path == "/days":
            _only(query, ())
            days = reader.days()
            return _json(200, {"count": len(days), "days": days})
    except BadRequest as exc:
        return _error(400, str(exc))
    return _error(
        404,
        f"no route {path}; see /kpis/daily, /kpis/categories, /kpis/categories/{{id}}, /status, /quality, "
        "/quality/{date}, /days",
    )
