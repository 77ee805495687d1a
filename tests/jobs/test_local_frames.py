"""Driver-held rows as DataFrames without a Python worker (jobs/local_frames.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql.types import (
    DateType,
    DecimalType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from jobs.local_frames import local_frame

pytestmark = pytest.mark.spark

SCHEMA = StructType(
    [
        StructField("key", StringType(), False),
        StructField("n", LongType(), True),
        StructField("amount", DecimalType(12, 2), True),
        StructField("day", DateType(), True),
        StructField("at", TimestampType(), True),
    ]
)
ROWS = [
    ("a", 1, Decimal("12.30"), date(2025, 7, 10), datetime(2025, 7, 10, 23, 30)),
    ("b", None, None, None, None),
]


def python_workers_in(df) -> bool:
    """Whether computing ``df`` runs tasks in Python worker processes (a PythonRDD in its lineage)."""
    return "PythonRDD" in df._jdf.queryExecution().toRdd().toDebugString()


@pytest.mark.parametrize("rows", [ROWS, []], ids=["rows", "empty"])
def test_the_same_frame_as_create_dataframe_without_a_python_worker(spark, rows) -> None:
    expected = spark.createDataFrame(rows, SCHEMA)
    got = local_frame(spark, rows, SCHEMA)
    assert_df_equality(got, expected)  # schema (nullability too) and rows
    assert got.schema == SCHEMA
    assert python_workers_in(expected) and not python_workers_in(got)


def test_naive_datetimes_are_read_in_the_sessions_time_zone(spark) -> None:
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    aware = datetime(2025, 7, 10, 23, 30, tzinfo=UTC)
    got = local_frame(spark, [("a", None, None, None, aware.replace(tzinfo=None))], SCHEMA)
    [row] = got.selectExpr("unix_timestamp(at) AS s").collect()
    assert row["s"] == int(aware.timestamp())
