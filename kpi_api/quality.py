"""The quality view: a day's files as validation decided them, summed for people.

Input: the day's items of ``DATA_QUALITY_TABLE`` (jobs/validation/quality_ledger.py writes one per
file, its latest decided version; this zip does not ship that module, the field names are the
contract and tests/jobs/validation/test_row_actions.py checks both ends). Output, per day:

* ``files``: accepted and rejected;
* ``rows``: ``kept`` (rows of accepted files the KPIs count), ``dropped`` (rows of accepted files that
  broke a drop rule: left out, kept in quarantine), ``rejected`` (rows of rejected files; a file
  that could not be read counts its file, not rows);
* ``rules``: every rule that failed on the day, with its action, the files and rows it hit (a rule
  that rejected its file says so), most rows first;
* ``schema_drift``: each new header form seen that day, with its files;
* per file (``/quality/{date}`` only): verdict, rows, dropped rows and where its report, Data Docs
  and quarantined rows are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

TOP_RULES = 10


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | Decimal) else 0


def file_line(item: Mapping[str, Any], bucket: str | None) -> dict[str, Any]:
    """One file as the day's list shows it; links as s3:// URLs when the bucket is known."""

    def link(key: Any) -> str | None:
        if not key:
            return None
        return f"s3://{bucket}/{key}" if bucket else str(key)

    return {
        "file": item.get("file"),
        "dataset": item.get("dataset"),
        "verdict": item.get("verdict"),
        "rows": _int(item.get("rows")) if item.get("rows_known", True) else None,
        "dropped_rows": _int(item.get("dropped_rows")),
        "rules": sorted(
            (
                {
                    "rule": name,
                    "action": r.get("action"),
                    "rows": _int(r.get("rows")),
                    "rejects": bool(r.get("rejects")),
                }
                for name, r in (item.get("rules") or {}).items()
            ),
            key=lambda r: (-r["rows"], r["rule"]),
        ),
        "schema_drift": (item.get("schema_drift") or {}).get("description") or None,
        "decided_at": item.get("decided_at"),
        "run_id": item.get("run_id"),
        "links": {
            "report": link(item.get("report")),
            "data_docs": link(item.get("data_docs")),
            "quarantined_rows": link(item.get("quarantine")),
        },
    }


def day_summary(day: str, items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The day's totals, its rules and its drift (no file list)."""
    accepted = rejected = kept = dropped = rejected_rows = 0
    rules: dict[tuple[str, str], dict[str, Any]] = {}
    drift: dict[str, dict[str, Any]] = {}
    for item in items:
        rows, lost = _int(item.get("rows")), _int(item.get("dropped_rows"))
        if item.get("verdict") == "passed":
            accepted += 1
            kept += rows - lost
            dropped += lost
        else:
            rejected += 1
            rejected_rows += rows
        dataset = str(item.get("dataset") or "")
        for name, r in (item.get("rules") or {}).items():
            entry = rules.setdefault(
                (dataset, name),
                {
                    "rule": name,
                    "dataset": dataset,
                    "action": r.get("action"),
                    "files": 0,
                    "rows": 0,
                    "rejected_files": 0,
                },
            )
            entry["files"] += 1
            entry["rows"] += _int(r.get("rows"))
            entry["rejected_files"] += 1 if r.get("rejects") else 0
        form = item.get("schema_drift")
        if form:
            seen = drift.setdefault(
                str(form.get("signature")),
                {
                    "dataset": dataset,
                    "signature": form.get("signature"),
                    "new_columns": list(form.get("new") or []),
                    "missing_columns": list(form.get("missing") or []),
                    "reordered": bool(form.get("reordered")),
                    "description": form.get("description"),
                    "files": 0,
                },
            )
            seen["files"] += 1
    ordered = sorted(rules.values(), key=lambda r: (-r["rows"], -r["files"], r["dataset"], r["rule"]))
    return {
        "date": day,
        "files": {"accepted": accepted, "rejected": rejected},
        "rows": {"kept": kept, "dropped": dropped, "rejected": rejected_rows},
        "rules": ordered,
        "top_rules": ordered[:TOP_RULES],
        "schema_drift": sorted(drift.values(), key=lambda d: (d["dataset"], str(d["signature"]))),
    }


def day_detail(day: str, items: Sequence[Mapping[str, Any]], bucket: str | None) -> dict[str, Any]:
    """``/quality/{date}``: the summary and every file, rejected first."""
    files = sorted(
        (file_line(i, bucket) for i in items), key=lambda f: (f["verdict"] == "passed", str(f["file"]))
    )
    return {**day_summary(day, items), "file_list": files}
