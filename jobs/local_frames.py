"""DataFrames of rows the driver holds (a few KPI rows, applied-file records, an empty lookup).

``spark.createDataFrame(list, schema)`` goes through a Python RDD: every query that reads such a frame
runs its tasks in Python worker processes, a fixed cost per query (measured alone and in
`make bench ARGS="--only latency --task-modes worker --latency-upload spaced"`: bench/results/LOG.md,
2026-12-01), and a transformation run reads several (the planner's empty lookups, the gold writes, ``applied_files``).
From a ``pyarrow.Table`` PySpark hands the rows to the JVM as Arrow data in the driver: no Python
worker, the same schema (nullability included). Naive datetimes are read in the session's time zone
(UTC, ``jobs.spark_session``), not in the process's local one as the list path would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import StructType

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def local_frame(spark: SparkSession, rows: Iterable[Sequence[Any]], schema: StructType) -> DataFrame:
    """``rows`` (tuples or Rows in ``schema``'s field order) as a DataFrame read by the JVM alone."""
    arrow_schema = to_arrow_schema(schema)
    listed = [tuple(row) for row in rows]
    columns = [pa.array([row[i] for row in listed], type=field.type) for i, field in enumerate(arrow_schema)]
    return spark.createDataFrame(pa.Table.from_arrays(columns, schema=arrow_schema), schema)
