"""What a broken rule does to its file: reject it, drop the failing rows into quarantine, or warn.

Each expectation of ``expectations/<dataset>.json`` names its action in ``meta.action``:

* ``reject`` the whole file (structural problems and key rules: a file that breaks them cannot be
  trusted row by row). GX severity ``critical``.
* ``drop`` the rows that break it: the rest of the file is accepted and served, the dropped rows are
  kept, with the rules they broke, in ``invalid/rows/<relative key>`` (:mod:`jobs.validation.quarantine`).
  GX severity ``warning`` (the rule does not fail the file by itself).
* ``warn``: the rows are kept and served; the report counts them. GX severity ``warning``.

A file whose rows to drop are more than the suite's ``meta.drop_threshold`` share of its rows is
rejected whole: a file that is mostly bad is a broken export, not a few bad rows. Only a row rule
(a predicate on one row, :mod:`jobs.validation.rule_counts`) can drop, and not with ``mostly``:
uniqueness and the column set are about the file. Where rows cannot be dropped (a file checked on its
own by GX, :class:`jobs.validation.spark_check.SparkCheck`), a drop rule that fails rejects the file,
as it did before actions existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from jobs.validation.findings import CRITICAL, WARNING, Finding

REJECT, DROP, WARN = "reject", "drop", "warn"
ACTIONS = (REJECT, DROP, WARN)
SEVERITY_OF = {REJECT: CRITICAL, DROP: WARNING, WARN: WARNING}
DEFAULT_DROP_THRESHOLD = 0.05
# The rule types whose failing rows can be dropped: a predicate on one row (rule_counts._ROW_RULES).
DROPPABLE_TYPES = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_value_lengths_to_be_between",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_values_to_be_in_set",
    }
)


class ActionError(ValueError):
    """A suite's actions contradict themselves (a suite error: the task is broken, not the data)."""


def action_of(expectation: Mapping[str, Any]) -> str:
    """An expectation's action; without ``meta.action`` its GX severity decides (critical: reject)."""
    meta = expectation.get("meta") or {}
    action = meta.get("action")
    if action is None:
        return REJECT if expectation.get("severity", CRITICAL) == CRITICAL else WARN
    return str(action)


@dataclass(frozen=True)
class SuiteActions:
    """A suite's actions by rule name (``meta.rule``) and its drop threshold."""

    dataset: str
    by_rule: Mapping[str, str]
    drop_indexes: tuple[int, ...]  # the suite positions of its drop rules
    threshold: float

    @classmethod
    def of(cls, suite_json: Mapping[str, Any]) -> SuiteActions:
        name = str(suite_json.get("name"))
        by_rule: dict[str, str] = {}
        drops: list[int] = []
        for i, e in enumerate(suite_json["expectations"]):
            action = action_of(e)
            where = f"{name}: expectation {i} ({e.get('type')})"
            if action not in ACTIONS:
                raise ActionError(f"{where}: meta.action {action!r} is not one of {', '.join(ACTIONS)}")
            if e.get("severity", CRITICAL) != SEVERITY_OF[action]:
                raise ActionError(f"{where}: action {action} needs GX severity {SEVERITY_OF[action]!r}")
            if action == DROP:
                if e.get("type") not in DROPPABLE_TYPES:
                    raise ActionError(f"{where}: only a rule on one row's values can drop rows")
                if (e.get("kwargs") or {}).get("mostly") is not None:
                    raise ActionError(
                        f"{where}: a drop rule cannot have 'mostly' (it drops every failing row)"
                    )
                drops.append(i)
            by_rule[str((e.get("meta") or {}).get("rule") or e.get("type"))] = action
        threshold = float((suite_json.get("meta") or {}).get("drop_threshold", DEFAULT_DROP_THRESHOLD))
        if not 0 <= threshold < 1:
            raise ActionError(f"{name}: meta.drop_threshold must be in [0, 1), got {threshold}")
        return cls(name, by_rule, tuple(drops), threshold)

    def action(self, finding: Finding) -> str:
        """A finding's action: its rule's, and reject for what no expectation names (structure)."""
        if finding.check == "structure":
            return REJECT
        return self.by_rule.get(finding.rule, REJECT if finding.severity == CRITICAL else WARN)

    def too_many(self, rows: int, dropped: int) -> bool:
        return dropped > 0 and dropped > self.threshold * rows

    def apply(self, findings: Iterable[Finding], rows: int, dropped: int | None) -> list[Finding]:
        """The findings with their actions: a drop finding stays a warning (its rows dropped) or,
        when ``dropped`` rows exceed the threshold or cannot be dropped (``None``), rejects."""
        findings = list(findings)
        # Rows are dropped only from a file that is accepted: a file another rule rejects keeps them all.
        rejected_otherwise = any(f.rejects and self.action(f) != DROP for f in findings)
        out = []
        for f in findings:
            action = self.action(f)
            if action != DROP:  # reject and warn findings are what GX made of them
                out.append(f)
                continue
            details: dict[str, Any] = {**f.details, "action": DROP}
            if dropped is None:
                details["rejected_because"] = "its rows could not be dropped here (a file checked on its own)"
                out.append(replace(f, severity=CRITICAL, details=details))
            elif self.too_many(rows, dropped):
                details["rejected_because"] = (
                    f"{dropped} of {rows} rows break drop rules, more than the "
                    f"{self.threshold:.0%} a file may lose: a broken export, rejected whole"
                )
                out.append(replace(f, severity=CRITICAL, details=details))
            elif rejected_otherwise:
                details["not_dropped"] = (
                    f"{dropped} rows break drop rules; the file is rejected by another rule"
                )
                out.append(replace(f, severity=WARNING, details=details))
            else:
                out.append(replace(f, severity=WARNING, details={**details, "dropped_rows": dropped}))
        return out


def dropped_rows(findings: Iterable[Finding]) -> int:
    """The rows an accepted file's findings say were dropped (0: none)."""
    return max((int(f.details.get("dropped_rows") or 0) for f in findings), default=0)
