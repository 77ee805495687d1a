"""The suites' rules counted per file in one aggregation decide as GX does, file by file.

The bad-input battery (tests/jobs/validation/test_validation_job.py) proves it for the rules the suites hold; here every
expectation type ``rule_counts`` implements, ``mostly`` included, is judged both ways on files built to
sit on each rule's edges (nulls, empty files, exactly the ``mostly`` share, values at the bounds).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from jobs.validation.rule_counts import FileCounts, RuleCounts, UnsupportedRule

FILE = "file"
SUITE: dict[str, Any] = {
    "name": "edges",
    "expectations": [
        {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": ["a", "b"], "exact_match": False}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "b", "mostly": 0.75}},
        {"type": "expect_column_values_to_be_null", "kwargs": {"column": "c"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "a"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "b", "mostly": 0.5}},
        {"type": "expect_column_value_lengths_to_be_between", "kwargs": {"column": "b", "min_value": 1, "max_value": 3}},
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "a", "regex": "^[0-9]+$"}},
        {"type": "expect_column_values_to_not_match_regex", "kwargs": {"column": "b", "regex": "[\\x00-\\x1f]"}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "b", "value_set": ["x", "yy", "zzz"], "mostly": 0.6}},
    ],
}  # fmt: skip

FILES: dict[str, list[tuple[str | None, str | None, str | None]]] = {
    "good": [("1", "x", None), ("2", "yy", None), ("3", "zzz", None), ("4", "x", None)],
    "empty": [],
    "edges_pass": [("1", "x", None), ("2", None, None), ("3", "zzz", None), ("4", "yy", None)],
    "edges_fail": [("1", None, None), ("2", None, None), ("3", "x", None), ("3", "x", None)],
    "bad_values": [(None, "toolong", "set"), ("x1", "q\u0001", None), ("5", "", None)],
    "all_null_b": [("1", None, None), ("2", None, None)],
}


def _gx_failed(spark: Any, name: str, rows: list[tuple[str | None, str | None, str | None]]) -> set[int]:
    import great_expectations as gx

    from jobs.validation.gx_runner import GxRunner

    suite = gx.ExpectationSuite(name="edges", expectations=[dict(e, meta={}) for e in SUITE["expectations"]])
    runner = GxRunner({"edges": suite}, "rule-counts")
    frame = spark.createDataFrame(rows, "a string, b string, c string")
    result = runner.validate("edges", frame, f"{name}.csv")
    kinds = [(e["type"], e["kwargs"]) for e in SUITE["expectations"]]
    failed = set()
    for r in result.results:
        if not r.success:
            cfg = r.expectation_config
            kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
            failed.add(kinds.index((cfg.type, kwargs)))
    return failed


def _counted_failed(spark: Any) -> dict[str, set[int]]:
    from pyspark.sql import functions as F

    rules = RuleCounts(SUITE)
    rows = [(name, *row) for name, file_rows in FILES.items() for row in file_rows]
    frame = spark.createDataFrame(rows, f"{FILE} string, a string, b string, c string")
    per_file = {r[FILE]: r.asDict() for r in frame.groupBy(FILE).agg(F.count(F.lit(1)).alias("rows"), *rules.aggregations(frame.columns)).collect()}  # fmt: skip
    duplicates: dict[str, dict[int, int]] = defaultdict(dict)
    for rule in rules.unique_rules:
        value = F.col(str(rule.column))
        for r in (
            frame.where(value.isNotNull())
            .groupBy(FILE, value)
            .count()
            .where(F.col("count") > 1)
            .groupBy(FILE)
            .agg(F.sum("count").alias("n"))
            .collect()
        ):
            duplicates[r[FILE]][rule.index] = int(r["n"])
    out = {}
    for name in FILES:
        row = per_file.get(name, {"rows": 0})
        failing, considered = rules.read_counts(row)
        failing.update(duplicates.get(name, {}))
        counts = FileCounts(rows=int(row["rows"]), failing=failing, considered=considered)
        out[name] = {r.index for r in rules.failed(counts, ["a", "b", "c"])}
    return out


def test_every_rule_kind_decides_each_file_as_gx_does(spark: Any) -> None:
    counted = _counted_failed(spark)
    for name, rows in FILES.items():
        assert counted[name] == _gx_failed(spark, name, rows), name
    assert counted["good"] == set() and counted["edges_pass"] == set()  # the edges pass exactly
    assert counted["edges_fail"] and counted["bad_values"]  # and a step past them fails


def test_a_suite_with_a_rule_it_cannot_count_is_left_to_gx() -> None:
    with pytest.raises(UnsupportedRule):
        RuleCounts(
            {"name": "x", "expectations": [{"type": "expect_column_mean_to_be_between", "kwargs": {}}]}
        )
