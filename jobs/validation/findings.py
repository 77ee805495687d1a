"""One failed rule of one file, in the shape every report, log line and test speaks.

Structural checks (bytes, CSV shape) and the Great Expectations suites produce the same record, so
a person reading a report does not need to know which layer caught the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CRITICAL, WARNING = "critical", "warning"  # the severities of GX 1.x (FailureSeverity values)
MAX_SAMPLES = 5
MAX_SAMPLE_CHARS = 200


def clip(value: Any) -> str | None:
    """A sample as short text: reports must stay readable even when a 'value' is a whole binary line."""
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= MAX_SAMPLE_CHARS else text[: MAX_SAMPLE_CHARS - 1] + "…"


def distinct_samples(values: list[Any] | tuple[Any, ...], limit: int = MAX_SAMPLES) -> tuple[str | None, ...]:
    """First distinct values in order: a duplicated id listed five times tells the reader nothing new."""
    seen: dict[str | None, None] = {}
    for v in values:
        seen.setdefault(clip(v), None)
        if len(seen) >= limit:
            break
    return tuple(seen)


@dataclass(frozen=True)
class Finding:
    """A rule a file broke: what, where, how often, and a few of the offending values."""

    rule: str
    column: str | None = None
    failing_rows: int | None = None  # None for file-level rules (the whole file fails)
    samples: tuple[str | None, ...] = ()
    severity: str = CRITICAL  # CRITICAL rejects the file; WARNING is only reported
    message: str = ""
    check: str = ""  # where the rule lives: "structure" or "<suite>: <expectation type>"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rejects(self) -> bool:
        return self.severity == CRITICAL

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "column": self.column,
            "failing_rows": self.failing_rows,
            "samples": list(self.samples),
            "severity": self.severity,
            "message": self.message,
            "check": self.check,
        }
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(
            rule=str(d.get("rule", "")),
            column=d.get("column"),
            failing_rows=d.get("failing_rows"),
            samples=tuple(d.get("samples") or ()),
            severity=str(d.get("severity", CRITICAL)),
            message=str(d.get("message", "")),
            check=str(d.get("check", "")),
            details=dict(d.get("details") or {}),
        )


def structural(
    rule: str,
    message: str,
    *,
    column: str | None = None,
    failing_rows: int | None = None,
    samples: list[Any] | tuple[Any, ...] = (),
) -> Finding:
    """A rejection decided before (or instead of) the suite: the file cannot be read as the contract's CSV."""
    return Finding(
        rule=rule,
        column=column,
        failing_rows=failing_rows,
        samples=distinct_samples(list(samples)),
        message=message,
        check="structure",
    )
