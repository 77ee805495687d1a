"""Reading the serving tables the way a dashboard would: by date, by category, or both."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jobs import aws
from jobs.config import PipelineConfig
from jobs.contract import CATEGORY_KPI_COLUMNS, DAILY_KPI_COLUMNS
from kpi_api.reader import KpiReader, items

MONEY_OR_RATE = frozenset(
    {"total_revenue", "return_rate", "daily_revenue", "avg_order_value", "avg_return_rate"}
)


def format_value(column: str, value: Any) -> str:
    """DynamoDB drops trailing zeros (40.00 comes back as 40); show money and rates with 2 places."""
    if isinstance(value, Decimal):
        return f"{value:.2f}" if column in MONEY_OR_RATE else str(int(value))
    return "" if value is None else str(value)


def _reader(config: PipelineConfig) -> KpiReader:
    return KpiReader(
        aws.client("dynamodb", config),
        config.daily_kpis_table,
        config.category_kpis_table,
        config.tracker_table,
    )


def daily_rows(config: PipelineConfig, date_key: str | None = None) -> list[dict[str, Any]]:
    reader = _reader(config)
    if date_key:
        return reader.daily([date_key])
    return sorted(
        items(reader.client, "scan", TableName=config.daily_kpis_table), key=lambda r: r["date_key"]
    )


def category_rows(
    config: PipelineConfig, date_key: str | None = None, category: str | None = None
) -> list[dict[str, Any]]:
    reader = _reader(config)
    if category:
        rows = reader.category_range(category, date_key or "0000-01-01", date_key or "9999-12-31")
    elif date_key:
        rows = reader.categories_on(date_key)
    else:
        rows = items(reader.client, "scan", TableName=config.category_kpis_table)
    return sorted(rows, key=lambda r: (r["date_key"], r["category_id"]))


def format_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    cells = [[format_value(c, r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def print_kpis(date_key: str | None = None, category: str | None = None) -> int:
    config = PipelineConfig.from_env()
    if not category:
        daily = daily_rows(config, date_key)
        print(f"DailyKPIs ({config.daily_kpis_table}): {len(daily)} rows")
        print(format_table(daily, DAILY_KPI_COLUMNS))
        print()
    cats = category_rows(config, date_key, category)
    print(f"CategoryKPIs ({config.category_kpis_table}): {len(cats)} rows")
    print(format_table(cats, CATEGORY_KPI_COLUMNS))
    return 0
