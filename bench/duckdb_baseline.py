"""The same validation checks and KPI contract in DuckDB: the single-node baseline for the benchmark.

It reads the same raw/-shaped CSV files, applies the validation rules (counting failures per rule),
and computes DailyKPIs and CategoryKPIs exactly as jobs/kpis.py does (exact decimals, half-up
rounding by integer arithmetic), so the benchmark can check both engines agree before comparing
their speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from jobs.contract import (
    CATEGORY_KPI_COLUMNS,
    CREATED_AT_REGEX,
    DAILY_KPI_COLUMNS,
    ORDER_STATUSES,
    UNKNOWN_CATEGORY,
)

# The contract's regex uses only syntax that Java (Spark) and RE2 (DuckDB) read the same way.
_REGEX = CREATED_AT_REGEX
_STATUSES = ", ".join(f"'{s.lower()}'" for s in ORDER_STATUSES)


@dataclass
class DuckResult:
    daily: list[dict[str, Any]]
    category: list[dict[str, Any]]
    rule_failures: dict[str, int] = field(default_factory=dict)


def _files_sql(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _read(paths: list[Path]) -> str:
    # all_varchar: the same "everything is text until a rule says otherwise" as the Spark jobs.
    return (
        f"read_csv({_files_sql(paths)}, header=true, all_varchar=true, filename=true, "
        "quote='\"', escape='\"', union_by_name=true)"
    )


def compute(folder: Path, threads: int | None = None) -> DuckResult:
    """Validate and compute KPIs over one raw/-shaped folder (products/, orders/, order_items/)."""
    folder = Path(folder)
    products = sorted(folder.glob("products/*.csv"))
    orders = sorted(folder.glob("orders/**/*.csv"))
    items = sorted(folder.glob("order_items/**/*.csv"))
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute(f"CREATE TEMP TABLE p AS SELECT * FROM {_read(products)}")
    con.execute(f"CREATE TEMP TABLE o_raw AS SELECT * FROM {_read(orders)}")
    con.execute(f"CREATE TEMP TABLE i_raw AS SELECT * FROM {_read(items)}")

    failures = {}
    checks = {
        "products.id not null": "SELECT count(*) FROM p WHERE nullif(trim(id), '') IS NULL",
        "products.id unique": "SELECT count(*) - count(DISTINCT trim(id)) FROM p",
        "products.cost numeric >= 0": "SELECT count(*) FROM p WHERE try_cast(trim(cost) AS DECIMAL(38,10)) IS NULL OR try_cast(trim(cost) AS DECIMAL(38,10)) < 0",
        "products.retail_price numeric >= 0": "SELECT count(*) FROM p WHERE try_cast(trim(retail_price) AS DECIMAL(38,10)) IS NULL OR try_cast(trim(retail_price) AS DECIMAL(38,10)) < 0",
        "orders.order_id not null": "SELECT count(*) FROM o_raw WHERE nullif(trim(order_id), '') IS NULL",
        "orders.order_id unique within file": "SELECT coalesce(sum(c - 1), 0) FROM (SELECT count(*) c FROM o_raw GROUP BY filename, trim(order_id) HAVING count(*) > 1)",
        "orders.user_id not null": "SELECT count(*) FROM o_raw WHERE nullif(trim(user_id), '') IS NULL",
        "orders.created_at form": f"SELECT count(*) FROM o_raw WHERE NOT regexp_matches(trim(created_at), '{_REGEX}')",
        "orders.status known": f"SELECT count(*) FROM o_raw WHERE nullif(trim(status), '') IS NOT NULL AND lower(trim(status)) NOT IN ({_STATUSES})",
        "order_items.order_id not null": "SELECT count(*) FROM i_raw WHERE nullif(trim(order_id), '') IS NULL",
        "order_items.product_id not null": "SELECT count(*) FROM i_raw WHERE nullif(trim(product_id), '') IS NULL",
        "order_items.sale_price numeric >= 0": "SELECT count(*) FROM i_raw WHERE try_cast(trim(sale_price) AS DECIMAL(38,10)) IS NULL OR try_cast(trim(sale_price) AS DECIMAL(38,10)) < 0",
        "order_items.id unique within file": "SELECT coalesce(sum(c - 1), 0) FROM (SELECT count(*) c FROM i_raw WHERE nullif(trim(id), '') IS NOT NULL GROUP BY filename, trim(id) HAVING count(*) > 1)",
    }
    for rule, sql in checks.items():
        (count,) = con.execute(sql).fetchall()[0]  # a count(*)/sum: exactly one row
        failures[rule] = int(count)

    # Arrival order = file order (sorted keys); a later file's row replaces an earlier one.
    con.execute(
        f"""
        CREATE TEMP TABLE o AS
        WITH typed AS (
          SELECT trim(order_id) AS order_id, trim(user_id) AS user_id, trim(created_at) AS ca,
                 (lower(trim(coalesce(status, ''))) = 'returned' OR nullif(trim(coalesce(returned_at, '')), '') IS NOT NULL) AS is_returned,
                 dense_rank() OVER (ORDER BY filename) AS seq
          FROM o_raw
        ), latest AS (
          SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (PARTITION BY order_id ORDER BY seq DESC) AS rn FROM typed) WHERE rn = 1
        ), parts AS (
          SELECT *, regexp_extract(ca, '{_REGEX}', ['d', 'h', 'm', 's', 'f', 'z']) AS x FROM latest
        )
        SELECT order_id, user_id, is_returned,
          CASE WHEN regexp_matches(ca, '{_REGEX}') AND try_cast(x.d AS DATE) IS NOT NULL
               AND CAST(x.h AS INT) < 24 AND CAST(x.m AS INT) < 60 AND CAST(x.s AS INT) < 60
          THEN CAST(try_cast(x.d AS DATE) + CAST(floor((CAST(x.h AS INT) * 3600 + CAST(x.m AS INT) * 60 + CAST(x.s AS INT)
                 - (CASE WHEN starts_with(x.z, '-') THEN -1 ELSE 1 END) *
                   (coalesce(try_cast(substr(regexp_replace(x.z, '[^0-9]', '', 'g'), 1, 2) AS INT), 0) * 3600
                  + coalesce(try_cast(substr(regexp_replace(x.z, '[^0-9]', '', 'g'), 3, 2) AS INT), 0) * 60)
                 ) / 86400.0) AS INT) AS DATE)
          END AS order_date
        FROM parts
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE i AS
        SELECT * EXCLUDE (rn) FROM (
          SELECT coalesce(nullif(trim(id), ''), filename || '#' || CAST(rn0 AS VARCHAR)) AS item_key,
                 trim(order_id) AS order_id, trim(product_id) AS product_id,
                 CAST(trim(sale_price) AS DECIMAL(38,10)) AS sale_price,
                 row_number() OVER (PARTITION BY coalesce(nullif(trim(id), ''), filename || '#' || CAST(rn0 AS VARCHAR))
                                    ORDER BY seq DESC) AS rn
          FROM (SELECT *, dense_rank() OVER (ORDER BY filename) AS seq, row_number() OVER () AS rn0 FROM i_raw))
        WHERE rn = 1
        """
    )
    con.execute(
        "CREATE TEMP TABLE prod AS SELECT DISTINCT ON (trim(id)) trim(id) AS product_id, trim(category) AS category FROM p"
    )
    half_up = "CAST(CAST(({num} * 200 + CAST({den} AS HUGEINT) * 10000000000) // (2 * CAST({den} AS HUGEINT) * 10000000000) AS DECIMAL(38,0)) / 100 AS DECIMAL(38,2))"
    rev_units = "CAST(sum(i.sale_price) * 10000000000 AS HUGEINT)"
    daily = con.execute(
        f"""
        WITH od AS (SELECT * FROM o WHERE order_date IS NOT NULL),
        per_order AS (SELECT order_date, count(*) AS n, sum(CAST(is_returned AS INT)) AS r, count(DISTINCT user_id) AS u FROM od GROUP BY 1),
        per_item AS (SELECT od.order_date, sum(i.sale_price) AS rev, count(*) AS k FROM i JOIN od USING (order_id) GROUP BY 1)
        SELECT strftime(p.order_date, '%Y-%m-%d') AS date_key, p.n AS total_orders,
               round(coalesce(rev, 0), 2)::DECIMAL(38,2) AS total_revenue, coalesce(k, 0) AS total_items_sold,
               {half_up.format(num="CAST(p.r AS HUGEINT) * 100 * 10000000000", den="p.n")} AS return_rate,
               p.u AS unique_customers
        FROM per_order p LEFT JOIN per_item USING (order_date) ORDER BY 1
        """
    ).fetchall()
    category = con.execute(
        f"""
        WITH od AS (SELECT * FROM o WHERE order_date IS NOT NULL)
        SELECT coalesce(prod.category, '{UNKNOWN_CATEGORY}') AS category_id, strftime(od.order_date, '%Y-%m-%d') AS date_key,
               round(sum(i.sale_price), 2)::DECIMAL(38,2) AS daily_revenue,
               {half_up.format(num=rev_units, den="count(DISTINCT od.order_id)")} AS avg_order_value,
               {half_up.format(num="CAST(count(DISTINCT CASE WHEN od.is_returned THEN od.order_id END) AS HUGEINT) * 100 * 10000000000", den="count(DISTINCT od.order_id)")} AS avg_return_rate
        FROM i JOIN od USING (order_id) LEFT JOIN prod USING (product_id)
        GROUP BY 1, 2 ORDER BY 2, 1
        """
    ).fetchall()
    return DuckResult(
        daily=[dict(zip(DAILY_KPI_COLUMNS, r, strict=True)) for r in daily],
        category=[dict(zip(CATEGORY_KPI_COLUMNS, r, strict=True)) for r in category],
        rule_failures=failures,
    )
