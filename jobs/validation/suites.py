"""The rules as data: Great Expectations 1.x suites loaded from ``expectations/<dataset>.json``.

Keeping the rules in GX's own JSON (not in code) lets a reviewer read and change them without
touching the job, and makes the Data Docs show the same rule names as the reports. Each expectation
carries ``meta.rule`` (the human-readable rule name used in reports) and ``meta.column`` (the
producer's column it is about, even when the expectation runs on a check column).

Where the suites live: ``$ECOMKPI_EXPECTATIONS_DIR``, else ``expectations/`` at the repository root
next to ``jobs/`` (the layout of a checkout and of an image that copies it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.config import PipelineConfig
from jobs.contract import DATASETS
from jobs.validation.actions import ActionError, SuiteActions
from jobs.validation.findings import CRITICAL

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

COLUMN_SET_RULE = "expect_table_columns_to_match_set"
# Bump when structural.py, reading.py or checks.py change what passes: recorded verdicts of files
# still in raw/ (the products master above all) are then re-validated instead of reused.
RULES_CODE_VERSION = 1


class SuiteError(RuntimeError):
    """A suite file is missing or malformed: the task is broken (exit 1), not the data."""


def expectations_dir(config: PipelineConfig | None = None) -> Path:
    """``config``'s suites directory (``ECOMKPI_EXPECTATIONS_DIR``), else ``expectations/`` beside the code."""
    configured = (config or PipelineConfig.from_env()).expectations_dir
    return configured or Path(__file__).resolve().parents[2] / "expectations"


def suite_path(dataset: str, directory: Path | None = None) -> Path:
    return (directory or expectations_dir()) / f"{dataset}.json"


def load_suite_json(dataset: str, directory: Path | None = None) -> dict[str, Any]:
    path = suite_path(dataset, directory)
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SuiteError(
            f"no expectation suite for {dataset!r} at {path}; set ECOMKPI_EXPECTATIONS_DIR to the "
            "directory holding products.json, orders.json and order_items.json"
        ) from exc
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path} is not valid JSON: {exc}") from exc
    if data.get("name") != dataset or not isinstance(data.get("expectations"), list):
        raise SuiteError(f"{path} must be a GX suite named {dataset!r} with a list of expectations")
    for i, e in enumerate(data["expectations"]):
        meta = e.get("meta") or {}
        if not meta.get("rule"):
            raise SuiteError(f"{path}: expectation {i} ({e.get('type')}) has no meta.rule name")
        if e.get("type") != COLUMN_SET_RULE and not meta.get("column"):
            raise SuiteError(f"{path}: expectation {i} ({e.get('type')}) has no meta.column")
    try:
        SuiteActions.of(data)
    except ActionError as exc:
        raise SuiteError(f"{path}: {exc}") from exc
    return data


def load_suites(directory: Path | None = None) -> dict[str, ExpectationSuite]:
    """Every dataset's suite as GX objects (imports GX, so only called when Spark work is due)."""
    import great_expectations as gx

    suites = {}
    for d in DATASETS:
        data = load_suite_json(d, directory)
        for e in data["expectations"]:
            # Data Docs show an expectation's description instead of GX's generic sentence.
            e.setdefault("description", e["meta"]["rule"])
        suites[d] = gx.ExpectationSuite(**data)
    return suites


def source_columns(suite_json: dict[str, Any]) -> tuple[str, ...]:
    """The producer columns a suite talks about: required ones and optional ones with rules."""
    names: list[str] = []
    for e in suite_json["expectations"]:
        if e["type"] == COLUMN_SET_RULE:
            names.extend(e["kwargs"]["column_set"])
        else:
            names.append(e["meta"]["column"])
    return tuple(dict.fromkeys(names))


def required_columns(suite_json: dict[str, Any]) -> tuple[str, ...]:
    for e in suite_json["expectations"]:
        if e["type"] == COLUMN_SET_RULE:
            return tuple(e["kwargs"]["column_set"])
    return ()


# The producer column whose values make a dataset's table key (jobs.staging.TABLE_KEYS): the item
# key is the item's id when it has one (a row without one gets a key of its own).
KEY_SOURCE_COLUMNS = {"orders": "order_id", "order_items": "id"}


def rejects_repeated_keys(dataset: str, suite_json: dict[str, Any]) -> bool:
    """Whether the suite rejects a file in which a value of the dataset's key column repeats (a
    critical uniqueness rule on it): then an accepted file's keys occur once each, which its staging
    summary records and the planner relies on (jobs.transformation.incremental.fresh_keys)."""
    column = KEY_SOURCE_COLUMNS.get(dataset)
    return column is not None and any(
        e["type"] == "expect_column_values_to_be_unique"
        and e.get("kwargs", {}).get("column") == column
        and e.get("severity", CRITICAL) == CRITICAL
        for e in suite_json["expectations"]
    )


def rules_fingerprint(directory: Path | None = None) -> str:
    """Identity of the rules in force: the suites' JSON and the code version of the derived checks.

    Recorded with every verdict; a raw file whose verdict was reached under other rules is judged
    again (a relaxed rule must not leave the master rejected forever).
    """
    canonical = json.dumps(
        {"code": RULES_CODE_VERSION, "suites": {d: load_suite_json(d, directory) for d in DATASETS}},
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
