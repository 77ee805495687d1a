"""Reports a person can act on: which file, which rule, which column, how many rows, which values.

GX results are rich but talk about check columns and metric names; a producer needs "sale_price is
numeric: 3 rows, e.g. 'abc', '12,5'". This module turns a suite result into ``Finding`` records
(the suite's ``meta.rule``/``meta.column`` give the wording) and assembles the JSON report that is
stored beside a rejected file, under the run's log folder, and summarised in ``summary.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from jobs.validation.findings import CRITICAL, Finding, distinct_samples
from jobs.validation.suites import COLUMN_SET_RULE
from jobs.validation.verdicts import Verdict

REPORT_VERSION = 1
RULE_FILE_EXISTS = "file exists"
RULE_KNOWN_DATASET = "file is under products/, orders/ or order_items/"
RULE_COLUMN_PRESENT = "column is present"
RULE_REJECTED_EARLIER = "rejected by an earlier run"  # invalid/<rel> without its report


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _value_message(rule: str, column: str, expectation: str, unexpected: int, rows: int | None) -> str:
    of = f" of {rows}" if rows is not None else ""
    if expectation == "expect_column_values_to_not_be_null":
        return f"{unexpected}{of} rows have no {column} (empty or missing value)"
    if expectation == "expect_column_values_to_be_unique":
        return f"{unexpected}{of} rows share their {column} with another row of the file"
    return f"{unexpected}{of} rows break the rule '{rule}'"


def findings_from_suite_result(
    result: Any, header: tuple[str, ...] = (), absent: frozenset[str] = frozenset()
) -> list[Finding]:
    """Failed expectations of one file's GX result as findings (warnings included).

    ``header``: the file's own (normalised) columns, shown with a missing-column finding.
    ``absent``: columns the file does not have. Their missing presence is reported once (per
    column) by the column-set rule; the rules about their values would only repeat it.
    """
    findings: list[Finding] = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        meta = cfg.meta or {}
        rule = str(meta.get("rule") or cfg.type)
        column = meta.get("column") or cfg.kwargs.get("column")
        severity = str(getattr(cfg.severity, "value", cfg.severity) or CRITICAL)
        check = f"{result.suite_name}: {cfg.type}" + (
            f"({cfg.kwargs['column']})" if "column" in cfg.kwargs else ""
        )
        details = r.result or {}
        exception = r.exception_info or {}
        if cfg.type != COLUMN_SET_RULE and column in absent:
            continue
        if exception.get("raised_exception"):
            findings.append(
                Finding(
                    rule=rule,
                    column=column,
                    severity=severity,
                    check=check,
                    message=f"the rule could not be evaluated: {exception.get('exception_message')}",
                )
            )
            continue
        if cfg.type == COLUMN_SET_RULE:
            mismatched = (details.get("details") or {}).get("mismatched") or {}
            required = cfg.kwargs.get("column_set") or []
            missing = mismatched.get("missing") or [c for c in required if c in absent]
            for name in missing:
                findings.append(
                    Finding(
                        rule=RULE_COLUMN_PRESENT,
                        column=name,
                        severity=severity,
                        check=check,
                        samples=distinct_samples(list(header), limit=50),
                        message=f"required column {name!r} is missing; samples list the header's "
                        "columns (names match case-insensitively after trimming)",
                    )
                )
            continue
        unexpected = int(details.get("unexpected_count") or 0)
        rows = details.get("element_count")
        samples = (
            ()
            if cfg.type == "expect_column_values_to_not_be_null"
            else distinct_samples(list(details.get("partial_unexpected_list") or []))
        )
        findings.append(
            Finding(
                rule=rule,
                column=column,
                failing_rows=unexpected,
                samples=samples,
                severity=severity,
                check=check,
                message=_value_message(rule, str(column), cfg.type, unexpected, rows),
            )
        )
    return findings


def summary_line(findings: list[Finding]) -> str:
    """One sentence for logs and the summary: what failed and how often."""
    errors = [f for f in findings if f.rejects]
    warnings = [f for f in findings if not f.rejects]

    def part(f: Finding) -> str:
        where = f" [{f.column}]" if f.column else ""
        count = f" ({_plural(f.failing_rows, 'row')})" if f.failing_rows is not None else ""
        return f"{f.rule}{where}{count}"

    text = []
    if errors:
        text.append(f"{_plural(len(errors), 'rule')} failed: " + "; ".join(part(f) for f in errors))
    if warnings:
        text.append(f"{_plural(len(warnings), 'warning')}: " + "; ".join(part(f) for f in warnings))
    return ". ".join(text) if text else "all rules passed"


@dataclass(frozen=True)
class Report:
    """The report of one file's verdict (the same JSON beside the file and under the run's logs).

    A contract: people, the alert and tests read it. ``to_dict`` keeps the field order of the JSON
    (file, verdict, summary first: a person reads it top-down).
    """

    file: str  # the key as given (or the raw key that was read)
    relative_key: str
    dataset: str | None
    verdict: Verdict
    findings: list[Finding]
    batch_id: str
    run_id: str
    decided_at: str
    location: str | None
    etag: str | None = None
    size_bytes: int | None = None
    arrived_ms: int | None = None
    rows: int | None = None
    notes: list[str] = field(default_factory=list)
    links: dict[str, str | None] = field(default_factory=dict)
    schema_drift: dict[str, Any] | None = None  # jobs.validation.drift: how its header differs

    def to_dict(self) -> dict[str, Any]:
        drift = {"schema_drift": self.schema_drift} if self.schema_drift else {}
        return {
            "report_version": REPORT_VERSION,
            "file": self.file,
            "relative_key": self.relative_key,
            "dataset": self.dataset,
            "verdict": self.verdict,
            "summary": summary_line(self.findings),
            "failures": [f.to_dict() for f in self.findings if f.rejects],
            "warnings": [f.to_dict() for f in self.findings if not f.rejects],
            "notes": list(self.notes),
            "rows": self.rows,
            **drift,
            "location": self.location,
            "etag": self.etag,
            "size_bytes": self.size_bytes,
            "arrived_ms": self.arrived_ms,
            "batch_id": self.batch_id,
            "run_id": self.run_id,
            "decided_at": self.decided_at,
            "links": dict(self.links),
        }


def report_json(report: dict[str, Any]) -> str:
    """Reports keep their field order (file, verdict, summary first): a person reads them top-down."""
    return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"


def findings_from_report(report: dict[str, Any] | None) -> list[Finding]:
    if not report:
        return []
    return [Finding.from_dict(d) for d in (*report.get("failures", []), *report.get("warnings", []))]
