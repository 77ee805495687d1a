"""``report.html``: the demo's run report as one page a person can open and read at a glance.

``run_report.json`` is complete but made for machines; this page shows the same run (executions,
file fates with the rules that rejected a file, alerts, the KPI tables and two charts) in a single
self-contained file: inline CSS, charts as base64 PNGs, no scripts and no network, so it can be
attached to a ticket or opened from a CI artifact as is.

The markup is the jinja2 template ``ecomkpi/templates/report.html.j2``; this module only turns the
run into plain values for it. The template is rendered with autoescape, so every text taken from the
run is escaped on output (file keys, error causes and alert bodies come from producers and the
pipeline, not from us) without an ``escape()`` call at each place a value is written.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from jobs.contract import CATEGORY_KPI_COLUMNS, DAILY_KPI_COLUMNS

REPORT_NAME = "report.html"
TEMPLATE_NAME = "report.html.j2"  # in ecomkpi/templates/
# Categories beyond this many are folded into "other" in the mix chart, so the bars stay readable
# (TheLook has 26 categories; a producer with hundreds would make an unreadable chart).
MIX_TOP = 30
# A CategoryKPIs table longer than this starts collapsed, so executions and files stay near the top.
OPEN_ROWS = 40


def _num(value: Any) -> Decimal | None:
    """A KPI cell as a number; the CSV rows carry strings and an empty cell means no value."""
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _status_class(status: str) -> str:
    return {"SUCCEEDED": "ok", "FAILED": "bad", "TIMED_OUT": "bad", "ABORTED": "bad"}.get(status, "warn")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    with _plain_text():  # tick labels are made while drawing
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plain_text() -> Any:
    """Every text of a chart as written: a category named ``Sale $\\frac{1}$`` is a label, not
    mathtext (which fails on it and would fail the whole report)."""
    from matplotlib import rc_context

    return rc_context({"text.parse_math": False, "text.usetex": False})


def revenue_chart(daily_rows: Sequence[dict[str, Any]]) -> str | None:
    """Revenue per date as bars with the order count as a line: base64 PNG, or None without data.

    Built on ``matplotlib.figure.Figure`` (the Agg canvas, no pyplot) so writing the report never
    touches a GUI backend or the global figure state of whoever called the demo.
    """
    points: list[tuple[str, Decimal, Decimal | None]] = []
    for r in daily_rows:
        date, total = str(r.get("date_key", "")), _num(r.get("total_revenue"))
        if date and total is not None:
            points.append((date, total, _num(r.get("total_orders"))))
    if not points:
        return None
    from matplotlib.figure import Figure

    points.sort(key=lambda p: p[0])  # one row per date
    dates = [p[0] for p in points]
    revenue = [float(p[1]) for p in points]
    orders = [float(p[2]) if p[2] is not None else float("nan") for p in points]
    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.add_subplot()
    ax.bar(dates, revenue, color="#3b6fd1", label="revenue")
    ax.set_ylabel("total revenue")
    ax.set_ylim(0, max(revenue) * 1.25 or 1)  # headroom for the legend above the bars
    ax.set_title("Revenue and orders by date")
    ax.tick_params(axis="x", labelrotation=30 if len(dates) > 6 else 0)
    twin = ax.twinx()
    twin.plot(dates, orders, color="#d1603b", marker="o", label="orders")
    twin.set_ylabel("orders")
    finite = [n for n in orders if n == n]
    twin.set_ylim(0, (max(finite) if finite else 1) * 1.25 or 1)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, ["revenue", "orders"], loc="upper left", ncols=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return _png(fig)


def category_mix(category_rows: Sequence[dict[str, Any]]) -> list[tuple[str, Decimal]]:
    """Revenue per category over the whole run, largest first, the tail folded into ``other``."""
    totals: dict[str, Decimal] = {}
    for r in category_rows:
        value = _num(r.get("daily_revenue"))
        if value is not None:
            key = str(r.get("category_id", ""))
            totals[key] = totals.get(key, Decimal(0)) + value
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) > MIX_TOP:
        rest = sum((v for _, v in ranked[MIX_TOP - 1 :]), Decimal(0))
        ranked = [*ranked[: MIX_TOP - 1], (f"other ({len(ranked) - MIX_TOP + 1})", rest)]
    return ranked


def category_chart(category_rows: Sequence[dict[str, Any]]) -> str | None:
    """Share of revenue per category as horizontal bars: base64 PNG, or None without data."""
    mix = category_mix(category_rows)
    total = sum((v for _, v in mix), Decimal(0))
    if not mix or total <= 0:
        return None
    from matplotlib.figure import Figure

    labels = [name for name, _ in reversed(mix)]
    shares = [float(100 * v / total) for _, v in reversed(mix)]
    with _plain_text():
        fig = Figure(figsize=(6.4, 0.6 + 0.28 * len(mix)))
        ax = fig.add_subplot()
        bars = ax.barh(labels, shares, color="#3b9c8f")
        ax.bar_label(bars, labels=[f"{s:.1f}%" for s in shares], fontsize=8, padding=2)
        ax.set_xlabel("share of revenue (%)")
        ax.set_title("Category revenue mix (all dates)")
        ax.set_xlim(0, max(shares) * 1.18)
        fig.tight_layout()
        return _png(fig)


def _fate_kind(fate: str) -> str:
    """``processed/...`` → processed; the demo's other fates start with their stage prefix too."""
    return fate.split("/", 1)[0] if fate else "unknown"


def _fate_class(kind: str) -> str:
    return {"processed": "ok", "invalid": "bad"}.get(kind, "warn")


def _files(files: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every file with its fate, the count per kind of fate, and the rejected ones with their rules."""
    every: list[dict[str, str]] = []
    rejected: list[dict[str, Any]] = []
    for f in files:
        fate = str(f.get("fate", ""))
        kind = _fate_kind(fate)
        key = str(f.get("key", ""))
        every.append({"key": key, "fate": fate, "kind": kind, "cls": _fate_class(kind)})
        if kind == "invalid":
            rules = [
                {
                    "rule": str(r.get("rule", "?")),
                    "column": str(r["column"]) if r.get("column") else None,
                    "failing_rows": r.get("failing_rows"),
                }
                for r in f.get("failed_rules") or []
            ]
            report = str(f["report"]) if f.get("report") else None
            rejected.append({"key": key, "rules": rules, "report": report})
    counts = Counter(f["kind"] for f in every)
    return {
        "files": every,
        "fate_counts": [
            {"text": f"{n} {kind}", "cls": _fate_class(kind)} for kind, n in sorted(counts.items())
        ],
        "rejected": rejected,
    }


def _executions(executions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for e in executions:
        status = str(e.get("status", ""))
        seconds = e.get("seconds")
        rows.append(
            {
                "name": str(e.get("name", "")),
                "batch": str(e.get("batch_id") or ""),
                "status": status,
                "status_class": _status_class(status),
                "seconds": "" if seconds is None else f"{float(seconds):.1f}",
                "files": str(e.get("files", "")),
                "states": [str(s) for s in e.get("states") or []],
                "retries": [
                    f"{r.get('state')}: {r.get('error')} (attempt {r.get('attempt')})"
                    for r in e.get("retries") or []
                ],
                "error": str(e["error"]) if e.get("error") else None,
                "cause": str(e["cause"]) if e.get("cause") else None,
            }
        )
    return rows


def _cells(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> list[list[str]]:
    """KPI rows as text cells in column order (the CSV rows are strings already; a gap is empty)."""
    return [[str(r.get(c, "")) for c in columns] for r in rows]


@cache
def _template() -> jinja2.Template:
    """The page template, shipped as package data (``ecomkpi/templates``) so a wheel carries it.

    Autoescape is on for every value: file keys, error causes and alert bodies come from producers
    and the pipeline, so the template never emits them as markup. ``StrictUndefined`` turns a
    misspelt name in the template into an error instead of an empty cell.
    """
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ecomkpi", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(TEMPLATE_NAME)


def render_report_html(
    report: dict[str, Any], daily_rows: Sequence[dict[str, Any]], category_rows: Sequence[dict[str, Any]]
) -> str:
    """The page as a string (no I/O), so it can be tested without touching disk."""
    executions = report.get("executions") or []
    files = report.get("files") or []
    alerts = report.get("alerts") or []
    succeeded = sum(1 for e in executions if e.get("status") == "SUCCEEDED")
    ok = bool(executions) and succeeded == len(executions)
    invalid = sum(1 for f in files if _fate_kind(str(f.get("fate", ""))) == "invalid")
    category_sorted = sorted(
        category_rows, key=lambda r: (str(r.get("date_key", "")), str(r.get("category_id", "")))
    )
    return _template().render(
        meta=[
            f"{label}: {report[key]}"
            for key, label in (
                ("started_at", "started"),
                ("finished_at", "finished"),
                ("bucket", "bucket"),
                ("endpoint", "endpoint"),
            )
            if report.get(key)
        ],
        cards=[
            {"label": "run", "text": "OK" if ok else "ATTENTION", "badge": "ok" if ok else "bad"},
            {"label": "executions", "text": f"{succeeded}/{len(executions)} succeeded", "badge": None},
            {"label": "files", "text": f"{len(files)} ({invalid} rejected)", "badge": None},
            {"label": "alerts", "text": str(len(alerts)), "badge": None},
            {"label": "KPI days", "text": str(len(daily_rows)), "badge": None},
        ],
        charts=[
            {
                "png": revenue_chart(daily_rows),
                "alt": "revenue by date",
                "caption": "DailyKPIs: total_revenue and total_orders",
            },
            {
                "png": category_chart(category_rows),
                "alt": "category revenue mix",
                "caption": "CategoryKPIs: daily_revenue summed over the run's dates",
            },
        ],
        daily_columns=DAILY_KPI_COLUMNS,
        daily_rows=_cells(DAILY_KPI_COLUMNS, daily_rows),
        executions=_executions(executions),
        **_files(files),
        alerts=[
            {"subject": str(a.get("subject") or "(no subject)"), "message": str(a.get("message", ""))}
            for a in alerts
        ],
        category_columns=CATEGORY_KPI_COLUMNS,
        category_rows=_cells(CATEGORY_KPI_COLUMNS, category_sorted),
        category_open=len(category_sorted) <= OPEN_ROWS,
    )


def write_report_html(
    out_dir: Path,
    report: dict[str, Any],
    daily_rows: list[dict[str, Any]],
    category_rows: list[dict[str, Any]],
) -> Path:
    """Write ``out_dir/report.html`` next to ``run_report.json`` and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_NAME
    path.write_text(render_report_html(report, daily_rows, category_rows), encoding="utf-8")
    return path
