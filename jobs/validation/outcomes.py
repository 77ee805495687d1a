"""What a run decided: the files it was given, each file's outcome, the run's exit code.

Kept apart from the job's machinery so tests, the local demo and notebooks can read results
without importing Spark or Great Expectations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.config import PipelineConfig
from jobs.keys import dataset_of, relative_key
from jobs.validation.findings import Finding
from jobs.validation.reports import summary_line
from jobs.validation.verdicts import PASSED, Verdict

EXIT_OK, EXIT_BROKEN, EXIT_REJECTED = 0, 1, 2


@dataclass(frozen=True)
class Target:
    """One file the job was given."""

    key: str
    rel: str
    dataset: str | None
    master: bool  # the products master data: copied onward, never moved out of raw/


@dataclass
class FileOutcome:
    """The verdict about one file, where it is now and where its report is."""

    key: str
    rel: str
    dataset: str | None
    verdict: Verdict
    location: str | None
    report_key: str | None
    findings: list[Finding] = field(default_factory=list)
    reused: bool = False  # decided by an earlier run; this run did no validation work for it
    decided_by: str | None = None  # run id of the decision
    etag: str | None = None
    rows: int | None = None

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.rejects]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if not f.rejects]

    def to_summary(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "relative_key": self.rel,
            "dataset": self.dataset,
            "verdict": self.verdict,
            "location": self.location,
            "report_key": self.report_key,
            "reused": self.reused,
            "decided_by": self.decided_by,
            "etag": self.etag,
            "rows": self.rows,
            "summary": summary_line(self.findings),
            "failed_rules": [
                {"rule": f.rule, "column": f.column, "failing_rows": f.failing_rows} for f in self.failures
            ],
            "warnings": [
                {"rule": f.rule, "column": f.column, "failing_rows": f.failing_rows} for f in self.warnings
            ],
        }


@dataclass
class ValidationResult:
    batch_id: str
    run_id: str
    files: list[FileOutcome]
    spark_used: bool
    summary_key: str
    log_key: str
    data_docs_key: str | None = None
    spark_jobs: int = 0  # Spark jobs the run started (tests hold budgets on this)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if all(f.verdict == PASSED for f in self.files) else EXIT_REJECTED

    def outcome(self, key: str) -> FileOutcome:
        rel = relative_key(key)
        for f in self.files:
            if f.rel == rel:
                return f
        raise KeyError(key)


def plan(config: PipelineConfig) -> list[Target]:
    """The files to judge, products master first (order items are checked against it), deduplicated."""
    master_rel = relative_key(config.products_key)
    targets: dict[str, Target] = {}
    for key in (config.products_key, *config.orders_keys, *config.order_items_keys):
        rel = relative_key(key)
        if rel in targets:
            continue
        try:
            dataset: str | None = dataset_of(rel)
        except ValueError:
            dataset = None
        targets[rel] = Target(key=key, rel=rel, dataset=dataset, master=rel == master_rel)
    return list(targets.values())
