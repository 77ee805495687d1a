"""The suites in expectations/ agree with the contract, the check columns and the README."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobs.contract import DATASETS, REQUIRED_COLUMNS
from jobs.validation import structural
from jobs.validation.checks import CHECK_COLUMNS
from jobs.validation.reports import (
    RULE_COLUMN_PRESENT,
    RULE_FILE_EXISTS,
    RULE_KNOWN_DATASET,
    RULE_REJECTED_EARLIER,
)
from jobs.validation.suites import (
    SuiteError,
    expectations_dir,
    load_suite_json,
    load_suites,
    required_columns,
    source_columns,
    suite_path,
)


def check_columns(suite_json: dict[str, Any]) -> tuple[str, ...]:
    """Columns the suite's expectations run on that are not the producer's (``<column>__<problem>``)."""
    return tuple(
        dict.fromkeys(
            e["kwargs"]["column"]
            for e in suite_json["expectations"]
            if "column" in e.get("kwargs", {}) and e["kwargs"]["column"] != e["meta"]["column"]
        )
    )


README = Path(__file__).resolve().parents[3] / "jobs" / "validation" / "README.md"


@pytest.mark.parametrize("dataset", DATASETS)
def test_suite_matches_the_contract(dataset: str) -> None:
    suite = load_suite_json(dataset)
    assert required_columns(suite) == REQUIRED_COLUMNS[dataset]
    assert set(check_columns(suite)) == set(CHECK_COLUMNS[dataset])
    for name, (source, _rule) in CHECK_COLUMNS[dataset].items():
        assert name.startswith(f"{source}__")
        assert source in source_columns(suite)
    rules = [e["meta"]["rule"] for e in suite["expectations"]]
    assert len(rules) == len(set(rules)), "rule names identify failures in reports: keep them unique"


def test_suites_load_as_great_expectations_objects() -> None:
    suites = load_suites()
    assert set(suites) == set(DATASETS)
    # GX's severity follows each rule's action: only a rejecting rule fails its file by itself.
    for dataset, suite in suites.items():
        for e in suite.expectations:
            expected = "critical" if e.meta["action"] == "reject" else "warning"
            assert str(e.severity.value) == expected, (dataset, e.meta["rule"])
    actions = {e.meta["rule"]: e.meta["action"] for e in suites["order_items"].expectations}
    assert actions["product_id is in the products master data"] == "warn"
    assert actions["sale_price >= 0"] == "drop"
    assert actions["id is unique within the file"] == "reject"
    assert {e.meta["action"] for e in suites["products"].expectations} == {"reject"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {
                "meta": {"rule": "x", "column": "order_id", "action": "drop"},
                "type": "expect_column_values_to_be_unique",
            },
            "one row",
        ),
        ({"meta": {"rule": "x", "column": "order_id", "action": "drop"}, "severity": "critical"}, "severity"),
        ({"meta": {"rule": "x", "column": "order_id", "action": "quarantine"}}, "not one of"),
        (
            {
                "meta": {"rule": "x", "column": "order_id", "action": "drop"},
                "kwargs": {"column": "order_id", "mostly": 0.9},
            },
            "mostly",
        ),
    ],
)
def test_contradicting_actions_are_a_suite_error(tmp_path: Path, change: dict, problem: str) -> None:
    suite = json.loads(suite_path("orders").read_text())
    rule = {
        "type": "expect_column_values_to_not_be_null",
        "kwargs": {"column": "order_id"},
        "severity": "warning",
        **change,
    }
    suite["expectations"].append(rule)
    (tmp_path / "orders.json").write_text(json.dumps(suite))
    with pytest.raises(SuiteError, match=problem):
        load_suite_json("orders", tmp_path)


def test_a_broken_suite_is_a_task_error(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="no expectation suite"):
        load_suite_json("orders", tmp_path)
    (tmp_path / "orders.json").write_text(json.dumps({"name": "orders", "expectations": [{"type": "x"}]}))
    with pytest.raises(SuiteError, match=r"meta\.rule"):
        load_suite_json("orders", tmp_path)
    assert expectations_dir().name == "expectations"


def test_readme_documents_every_rule() -> None:
    text = README.read_text(encoding="utf-8")
    names = [v for k, v in vars(structural).items() if k.startswith("RULE_")]
    names += [RULE_COLUMN_PRESENT, RULE_FILE_EXISTS, RULE_KNOWN_DATASET, RULE_REJECTED_EARLIER]
    names += [e["meta"]["rule"] for d in DATASETS for e in load_suite_json(d)["expectations"]]
    missing = [n for n in names if n not in text]
    assert not missing, f"jobs/validation/README.md does not mention: {missing}"
