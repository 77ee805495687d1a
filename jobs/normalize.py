"""Turning a producer's CSV frame into the contract's typed columns, without I/O.

Producers differ in header case, stray whitespace, a UTF-8 BOM and time-zone notation; the contract
says all of those mean the same thing, so they are normalised here once for every consumer.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.contract import CREATED_AT_REGEX, MONEY_IN, RETURNED_STATUS

BOM = "\ufeff"


def normalize_header(name: str) -> str:
    """Header names match case-insensitively after trimming whitespace and a UTF-8 BOM."""
    return name.replace(BOM, "").strip().lower()


def normalize_columns(df: DataFrame) -> DataFrame:
    """Rename headers to their normal form and trim every value; empty strings become null.

    Values are read as strings (no schema inference), so trimming is safe for every column.
    """
    return df.select(
        *[
            F.when(F.trim(F.col(f"`{c}`")) == "", None)
            .otherwise(F.trim(F.col(f"`{c}`")))
            .alias(normalize_header(c))
            for c in df.columns
        ]
    )


def try_decimal(col: Column | str) -> Column:
    """A money value as an exact decimal; null when not numeric (ANSI mode would raise instead)."""
    c = F.col(col) if isinstance(col, str) else col
    return c.try_cast(MONEY_IN)


def with_order_date(df: DataFrame, source: str = "created_at", target: str = "order_date") -> DataFrame:
    """Add ``target``: the UTC calendar date of ``source`` in any accepted form, else null.

    Computed from the text's own fields (date + time-of-day - zone offset) so the result does not
    depend on the session time zone of whoever calls it. The fields are extracted in their own
    projection so each regex runs once per row (a single nested expression made the optimizer and
    code generator duplicate the regex many times over).
    """
    tmp = {n: f"__od_{n}" for n in ("text", "day", "h", "m", "s", "zone")}
    text = F.col(tmp["text"])
    staged = df.withColumn(tmp["text"], F.trim(F.col(f"`{source}`"))).withColumns(
        {
            tmp["day"]: F.to_date(
                F.try_to_timestamp(F.regexp_extract(text, CREATED_AT_REGEX, 1), F.lit("yyyy-MM-dd"))
            ),
            tmp["h"]: F.regexp_extract(text, CREATED_AT_REGEX, 2).try_cast("int"),
            tmp["m"]: F.regexp_extract(text, CREATED_AT_REGEX, 3).try_cast("int"),
            tmp["s"]: F.regexp_extract(text, CREATED_AT_REGEX, 4).try_cast("int"),
            tmp["zone"]: F.upper(F.regexp_extract(text, CREATED_AT_REGEX, 6)),
        }
    )
    zone = F.col(tmp["zone"])
    digits = F.regexp_replace(zone, r"[^0-9]", "")
    sign = F.when(zone.startswith("-"), F.lit(-1)).otherwise(F.lit(1))
    off_h = F.when(F.length(digits) >= 2, F.substring(digits, 1, 2).cast("int")).otherwise(F.lit(0))
    off_m = F.when(F.length(digits) == 4, F.substring(digits, 3, 2).cast("int")).otherwise(F.lit(0))
    h, m, s, day = (F.col(tmp[k]) for k in ("h", "m", "s", "day"))
    seconds = h * 3600 + m * 60 + s - sign * (off_h * 3600 + off_m * 60)
    valid = (
        text.rlike(CREATED_AT_REGEX)
        & day.isNotNull()
        & h.between(0, 23)
        & m.between(0, 59)
        & s.between(0, 59)
        & off_h.between(0, 23)
        & off_m.between(0, 59)
    )
    result = F.when(valid, F.date_add(day, F.floor(seconds / F.lit(86400)).cast("int")))
    return staged.withColumn(target, result).drop(*tmp.values())


def is_returned(df: DataFrame) -> Column:
    """Returned when status is `returned` (any case) or returned_at is non-empty; else not."""
    cond = F.lit(False)
    if "status" in df.columns:
        cond = cond | F.coalesce(F.lower(F.trim(F.col("status"))) == RETURNED_STATUS, F.lit(False))
    if "returned_at" in df.columns:
        cond = cond | F.coalesce(F.trim(F.col("returned_at")) != "", F.lit(False))
    return cond
