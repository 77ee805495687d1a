"""A suite's row rules as columns of one aggregation: each file's failing rows per rule, many files at once.

Great Expectations turns every expectation of every file into Spark jobs of its own (a small file's
suite is ~11 jobs and 0.4-1.6 s on a warm JVM: ``python -m bench --only many-parts``), so a day in 96
parts paid that 96 times. The suites' rules are few kinds of row predicate, and a rule's verdict is a
count of the rows that break it; counted per (file, scan partition) in the same aggregation that
counts the rows, every rule of every file of a run's dataset costs one pass. Uniqueness, a rule of
one file by nature, is counted per (file, value), never across files: the same order in two files
is a correction, twice in one file it is ambiguous.

The suites stay the source of the rules: this module reads ``expectations/<dataset>.json`` and
implements GX's semantics for the expectation types it knows (``mostly`` included). A file that
breaks any rule is then validated by GX itself for its report's counts and samples and its Data
Docs page (``jobs.validation.dataset_check``); a suite holding a type not listed here is validated
file by file by GX, as before. tests/jobs/validation/test_rule_counts.py proves the verdicts equal GX's own, file by
file, on the bad-input battery and on generated valid files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.validation.suites import COLUMN_SET_RULE


class UnsupportedRule(ValueError):
    """An expectation type this module does not implement: its suite is validated by GX per file."""


def _col(name: str) -> Column:
    return F.col(f"`{name}`")


def _kwargs(e: dict[str, Any]) -> dict[str, Any]:
    return dict(e.get("kwargs") or {})


# expectation type -> (the failing-row predicate, whether GX leaves null values out of the rule)
def _null(kw: dict[str, Any]) -> Column:
    return _col(kw["column"]).isNull()


def _not_null(kw: dict[str, Any]) -> Column:
    return _col(kw["column"]).isNotNull()


def _lengths(kw: dict[str, Any]) -> Column:
    length = F.length(_col(kw["column"]))
    low, high = kw.get("min_value"), kw.get("max_value")
    outside = F.lit(False)
    if low is not None:
        outside = outside | ((length <= low) if kw.get("strict_min") else (length < low))
    if high is not None:
        outside = outside | ((length >= high) if kw.get("strict_max") else (length > high))
    return outside


def _not_matching(kw: dict[str, Any]) -> Column:
    return ~_col(kw["column"]).rlike(kw["regex"])


def _matching(kw: dict[str, Any]) -> Column:
    return _col(kw["column"]).rlike(kw["regex"])


def _not_in_set(kw: dict[str, Any]) -> Column:
    return ~_col(kw["column"]).isin(list(kw["value_set"]))


_ROW_RULES: dict[str, tuple[Callable[[dict[str, Any]], Column], bool]] = {
    "expect_column_values_to_not_be_null": (_null, False),
    "expect_column_values_to_be_null": (_not_null, False),
    "expect_column_value_lengths_to_be_between": (_lengths, True),
    "expect_column_values_to_match_regex": (_not_matching, True),
    "expect_column_values_to_not_match_regex": (_matching, True),
    "expect_column_values_to_be_in_set": (_not_in_set, True),
}
UNIQUE_RULE = "expect_column_values_to_be_unique"
SUPPORTED = frozenset({*_ROW_RULES, UNIQUE_RULE, COLUMN_SET_RULE})
_KNOWN_KWARGS = frozenset(
    {"column", "mostly", "min_value", "max_value", "strict_min", "strict_max", "regex", "value_set"}
    | {"column_set", "exact_match", "result_format", "catch_exceptions", "meta"}
)


def _fail_alias(i: int) -> str:
    return f"__rule_{i}_failing"


def _considered_alias(i: int) -> str:
    return f"__rule_{i}_considered"


@dataclass(frozen=True)
class Rule:
    """One expectation of a suite, by its position in the suite's list."""

    index: int
    type: str
    kwargs: dict[str, Any]

    @property
    def column(self) -> str | None:
        column = self.kwargs.get("column")
        return None if column is None else str(column)

    @property
    def mostly(self) -> float | None:
        value = self.kwargs.get("mostly")
        return None if value is None else float(value)


@dataclass(frozen=True)
class FileCounts:
    """One file's counts: its rows, and per rule (suite index) the failing and the considered rows."""

    rows: int
    failing: Mapping[int, int]
    considered: Mapping[int, int]


class RuleCounts:
    """A suite compiled to aggregate columns; see the module docstring."""

    def __init__(self, suite_json: dict[str, Any]) -> None:
        rules = []
        for i, e in enumerate(suite_json["expectations"]):
            kind, kwargs = e.get("type"), _kwargs(e)
            if kind not in SUPPORTED:
                raise UnsupportedRule(f"{suite_json.get('name')}: expectation {i} is of type {kind!r}")
            unknown = set(kwargs) - _KNOWN_KWARGS
            if unknown:
                raise UnsupportedRule(f"{suite_json.get('name')}: expectation {i} has {sorted(unknown)}")
            rules.append(Rule(i, str(kind), kwargs))
        self.rules = tuple(rules)

    @property
    def row_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.type in _ROW_RULES)

    @property
    def unique_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.type == UNIQUE_RULE)

    def aggregations(self, present: Iterable[str]) -> list[Column]:
        """The row rules' counts as aggregate columns over the columns ``present`` in the frame.

        A rule on a column the frame lacks gets no column: its file lacks a required column, which
        the column-set rule rejects (``verdicts``), and GX then fails the rule too.
        """
        present = set(present)
        out: list[Column] = []
        for r in self.row_rules:
            if r.column not in present:
                continue
            _, skips_nulls = _ROW_RULES[r.type]
            out.append(F.count(F.when(self.failing(r), 1)).alias(_fail_alias(r.index)))
            if r.mostly is not None:
                considered = _col(r.column).isNotNull() if skips_nulls else F.lit(True)
                out.append(F.count(F.when(considered, 1)).alias(_considered_alias(r.index)))
        for r in self.unique_rules:  # their failing rows are counted per (file, value) apart
            if r.mostly is not None and r.column in present:
                out.append(F.count(_col(r.column)).alias(_considered_alias(r.index)))
        return out

    def failing(self, rule: Rule) -> Column:
        """Whether a row breaks the row rule ``rule`` (GX leaves nulls out of some rule types)."""
        fails, skips_nulls = _ROW_RULES[rule.type]
        predicate = fails(rule.kwargs)
        return _col(str(rule.column)).isNotNull() & predicate if skips_nulls else predicate

    def any_failing(self, indexes: Iterable[int], present: Iterable[str]) -> Column | None:
        """Whether a row breaks any of the row rules at ``indexes`` whose column is ``present``
        (None: no such rule); a null from a null value counts as not breaking."""
        present, wanted = set(present), set(indexes)
        chosen = [r for r in self.row_rules if r.index in wanted and r.column in present]
        if not chosen:
            return None
        return F.coalesce(reduce(lambda a, b: a | b, [self.failing(r) for r in chosen]), F.lit(False))

    def read_counts(self, row: Mapping[str, Any]) -> tuple[dict[int, int], dict[int, int]]:
        """The failing and considered rows per rule found in one aggregated row (absent: none)."""
        failing, considered = {}, {}
        for r in self.rules:
            if _fail_alias(r.index) in row:
                failing[r.index] = int(row[_fail_alias(r.index)] or 0)
            if _considered_alias(r.index) in row:
                considered[r.index] = int(row[_considered_alias(r.index)] or 0)
        return failing, considered

    def summed_counts(self, rows: Iterable[Any]) -> tuple[dict[int, int], dict[int, int]]:
        """:meth:`read_counts` summed over several aggregated rows (a file's scan partitions)."""
        failing: dict[int, int] = {}
        considered: dict[int, int] = {}
        for row in rows:
            f, c = self.read_counts(row.asDict())
            for k, v in f.items():
                failing[k] = failing.get(k, 0) + v
            for k, v in c.items():
                considered[k] = considered.get(k, 0) + v
        return failing, considered

    def failed(self, counts: FileCounts, columns: Iterable[str]) -> list[Rule]:
        """The rules a file breaks, as GX would judge them: ``columns`` are the frame's columns
        (the producer's, normalised, plus the check columns)."""
        present = set(columns)
        out = []
        for r in self.rules:
            if r.type == COLUMN_SET_RULE:
                if not _columns_match(r.kwargs, present):
                    out.append(r)
            elif r.column not in present:
                out.append(r)  # GX fails an expectation on a missing column
            elif not _success(counts.rows, counts.failing.get(r.index, 0), counts.considered.get(r.index), r):
                out.append(r)
        return out


def _columns_match(kwargs: dict[str, Any], present: set[str]) -> bool:
    expected = set(kwargs.get("column_set") or ())
    if kwargs.get("exact_match", True):
        return expected == present
    return expected <= present


def _success(rows: int, failing: int, considered: int | None, rule: Rule) -> bool:
    """GX's verdict of a map rule: no failing row, or with ``mostly`` at least that share passing
    among the rows the rule considers (a rule that considers no row passes)."""
    if rule.mostly is None:
        return failing == 0
    total = rows if considered is None else considered
    if total == 0:
        return True
    return (total - failing) / total >= rule.mostly


def without_dropped_rows(dataset: str, frame: DataFrame) -> DataFrame:
    """``frame`` (a normalised file) without the rows its suite's drop rules leave out
    (jobs.validation.actions): what validation stages of an accepted file, for a reader that
    parses a validated file instead (its staging rows gone, or written by an older release)."""
    from jobs.validation.actions import SuiteActions
    from jobs.validation.checks import add_check_columns
    from jobs.validation.suites import load_suite_json

    suite = load_suite_json(dataset)
    actions = SuiteActions.of(suite)
    if not actions.drop_indexes:
        return frame
    checked = add_check_columns(dataset, frame)
    drops = RuleCounts(suite).any_failing(actions.drop_indexes, checked.columns)
    return frame if drops is None else checked.where(~drops).select(*frame.columns)
