"""Where a file lives in the bucket as it moves through the pipeline.

A file keeps its relative key (``orders/2025-07-10/orders_part1.csv``) for life; only the stage
prefix changes (``raw/`` → ``validated/`` → ``processed/`` or ``invalid/``). Both jobs accept a key
with any stage prefix, so the workflow can hand them the keys exactly as the Lambda saw them.
"""

from __future__ import annotations

from jobs.contract import DATASETS

STAGES = ("raw", "validated", "processed", "invalid")
RAW, VALIDATED, PROCESSED, INVALID = STAGES


def relative_key(key: str) -> str:
    """``raw/orders/x.csv`` → ``orders/x.csv``; a key without a stage prefix is already relative."""
    key = key.lstrip("/")
    head, _, rest = key.partition("/")
    return rest if head in STAGES and rest else key


def stage_key(stage: str, key: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    return f"{stage}/{relative_key(key)}"


def dataset_of(key: str) -> str:
    """The dataset a file belongs to, from its first relative path component."""
    head = relative_key(key).split("/", 1)[0]
    if head not in DATASETS:
        raise ValueError(f"{key!r} is not under products/, orders/ or order_items/")
    return head


_GLOB_CHARS = "\\*?[]{}"


def literal_path(uri: str) -> str:
    """Escape Hadoop glob characters so a key like ``orders[1].csv`` names exactly one object.

    Spark's file sources expand globs in the paths they are given; a producer's file name is data,
    never a pattern, so every path built from a key goes through this before a Spark read.
    """
    return "".join("\\" + c if c in _GLOB_CHARS else c for c in uri)


# An accepted file's dropped rows (a CSV): validation writes them (jobs/validation/quarantine.py), the
# transformation copies them to the lake's quarantine table (jobs/transformation/quarantine_table.py).
QUARANTINE_ROWS_PREFIX = f"{INVALID}/rows"
QUARANTINE_BOOKKEEPING = ("row_number", "failed_rules", "raw_etag")  # the CSV's first columns
QUARANTINE_RULE_SEPARATOR = "; "  # between the rules of one row in ``failed_rules``


def quarantine_rows_key(rel: str) -> str:
    return f"{QUARANTINE_ROWS_PREFIX}/{rel}"
