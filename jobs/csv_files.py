"""Reading a producer's CSV file with Spark exactly as the contract allows: the one parser.

Validation reads every file with it, and writes what it read as staging rows
(:mod:`jobs.staging`); the transformation reads those rows and parses CSV only for a validated file
that has none (validated before staging existed). The oracle reads through it too, so all three
see the same values.

The header comes from the byte-level head check (or :func:`read_header`), so the read needs no
inference and no second pass: every column is a string (positional, ``enforceSchema``), plus a
corrupt record column that Spark fills for a row with more or fewer fields than the header
(PERMISSIVE).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StringType, StructField, StructType

from jobs.keys import literal_path
from jobs.normalize import BOM, normalize_header

CORRUPT_RECORD = "__ecomkpi_corrupt_record"
# No value of the contract comes near this; a longer one is a broken export (a stray quote that
# swallows the rest of a line, a blob in a cell) and would otherwise be held in memory whole.
MAX_CHARS_PER_VALUE = 100_000

# One record per line (splittable; a quoted line break is rejected by the head check), RFC 4180
# quoting with doubled quotes, UTF-8 with or without BOM, CRLF or LF. Values stay strings.
CSV_READ_OPTIONS: dict[str, str] = {
    "header": "true",
    "enforceSchema": "true",
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": CORRUPT_RECORD,
    "encoding": "UTF-8",
    "sep": ",",
    "quote": '"',
    "escape": '"',
    "multiLine": "false",
    "ignoreLeadingWhiteSpace": "false",
    "ignoreTrailingWhiteSpace": "false",
    "maxCharsPerColumn": str(MAX_CHARS_PER_VALUE),
}


def read_csv(spark: SparkSession, uri: str | Sequence[str], header: tuple[str, ...]) -> DataFrame:
    """The file's rows as strings under the header's own names, plus the corrupt record column.

    ``uri``: one file, or several files that share this exact header (one scan reads them all;
    ``_metadata.file_path`` tells their rows apart).

    The schema repeats the header exactly (so Spark's header check stays quiet); the names are
    normalised afterwards by ``jobs.normalize.normalize_columns``, like everywhere else. A header
    with a name repeated (Spark compares names case-insensitively) is read positionally (``_c0``, ``_c1``, ...): Spark cannot tell such
    columns apart; :func:`jobs.staging.parse_file` maps them back.
    """
    distinct = len({normalize_header(h) for h in header}) == len(header) and all(header)
    names = header if distinct else tuple(f"_c{i}" for i in range(len(header)))
    schema = StructType([StructField(c, StringType(), True) for c in (*names, CORRUPT_RECORD)])
    uris = [uri] if isinstance(uri, str) else list(uri)
    return spark.read.options(**CSV_READ_OPTIONS).schema(schema).csv([literal_path(u) for u in uris])


def read_header(spark: SparkSession, uri: str) -> tuple[str, ...]:
    """The file's first line parsed as CSV (BOM removed); an empty file has no columns.

    A one-row read of Spark's text source: the same file system (s3a or local) as the data read,
    through public APIs only. Used where no head check ran (the oracle, files without staging).
    """
    first = spark.read.text(literal_path(uri)).limit(1).collect()
    if not first or first[0][0] is None:
        return ()
    return tuple(next(csv.reader([first[0][0].replace(BOM, "")]), []))
