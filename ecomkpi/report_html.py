"""``report.html``: the demo's run report as one page a person can open and read at a glance.

``run_report.json`` is complete but made for machines; this page shows the same run (executions,
file fates with the rules that rejected a file, alerts, the KPI tables and two charts) in a single
self-contained file: inline CSS, charts as base64 PNGs, no scripts and no network, so it can be
attached to a ticket or opened from a CI artifact as is. Every text taken from the run is escaped,
because file keys, error causes and alert bodies come from producers and the pipeline, not from us.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from html import escape
from pathlib import Path
from typing import Any

from jobs.contract import CATEGORY_KPI_COLUMNS, DAILY_KPI_COLUMNS

REPORT_NAME = "report.html"
# Categories beyond this many are folded into "other" in the mix chart, so the bars stay readable
# (TheLook has 26 categories; a producer with hundreds would make an unreadable chart).
MIX_TOP = 30
# A CategoryKPIs table longer than this starts collapsed, so executions and files stay near the top.
OPEN_ROWS = 40

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2433;
       background: #f5f6f8; }
main { max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d9dde5; padding-bottom: 4px; }
.meta { color: #5b6475; margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; border: 1px solid #d9dde5; border-radius: 6px; padding: 10px 14px;
        min-width: 130px; }
.card b { display: block; font-size: 20px; }
.card > span { color: #5b6475; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; background: #fff; width: 100%; margin: 6px 0 10px; }
th, td { border: 1px solid #d9dde5; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef0f4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 12px;
         font-weight: 600; color: #fff; background: #7a8496; }
.ok { background: #1f8a4c; } .bad { background: #c62828; } .warn { background: #b26a00; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.charts figure { margin: 0; background: #fff; border: 1px solid #d9dde5; border-radius: 6px;
                 padding: 8px; flex: 1 1 520px; }
.charts img { width: 100%; height: auto; }
figcaption { color: #5b6475; font-size: 12px; }
pre { white-space: pre-wrap; word-break: break-word; background: #fff; border: 1px solid #d9dde5;
      padding: 8px; margin: 4px 0; font-size: 12px; }
code { font-size: 12px; }
.empty { color: #5b6475; font-style: italic; }
details summary { cursor: pointer; color: #2f5aa8; }
td.id { white-space: nowrap; }
"""


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


def _badge(text: str, cls: str) -> str:
    return f'<span class="badge {cls}">{escape(text)}</span>'


def _table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: frozenset[str] = frozenset(),
    nowrap: frozenset[str] = frozenset(),
) -> str:
    """An HTML table; cells are given already rendered (escaped) so callers can embed badges.

    ``numeric`` columns are right-aligned; ``nowrap`` columns (ids, dates) never break mid-name.
    """

    def cell(col: str, value: str) -> str:
        cls = "num" if col in numeric else "id" if col in nowrap else ""
        return f'<td class="{cls}">{value}</td>' if cls else f"<td>{value}</td>"

    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(cell(c, v) for c, v in zip(columns, row, strict=True)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def revenue_chart(daily_rows: Sequence[dict[str, Any]]) -> str | None:
    """Revenue per date as bars with the order count as a line: base64 PNG, or None without data.

    Built on ``matplotlib.figure.Figure`` (the Agg canvas, no pyplot) so writing the report never
    touches a GUI backend or the global figure state of whoever called the demo.
    """
    points = [
        (str(r.get("date_key", "")), _num(r.get("total_revenue")), _num(r.get("total_orders")))
        for r in daily_rows
    ]
    points = [(d, rev, n) for d, rev, n in points if d and rev is not None]
    if not points:
        return None
    from matplotlib.figure import Figure

    dates = [p[0] for p in sorted(points)]
    revenue = [float(p[1]) for p in sorted(points)]
    orders = [float(p[2]) if p[2] is not None else float("nan") for p in sorted(points)]
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
    fig = Figure(figsize=(6.4, 0.6 + 0.28 * len(mix)))
    ax = fig.add_subplot()
    bars = ax.barh(labels, shares, color="#3b9c8f")
    ax.bar_label(bars, labels=[f"{s:.1f}%" for s in shares], fontsize=8, padding=2)
    ax.set_xlabel("share of revenue (%)")
    ax.set_title("Category revenue mix (all dates)")
    ax.set_xlim(0, max(shares) * 1.18)
    fig.tight_layout()
    return _png(fig)


def _figure(png: str | None, alt: str, caption: str) -> str:
    if png is None:
        return f'<figure><p class="empty">{escape(alt)}: no data</p></figure>'
    return (
        f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{png}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _fate_kind(fate: str) -> str:
    """``processed/...`` → processed; the demo's other fates start with their stage prefix too."""
    return fate.split("/", 1)[0] if fate else "unknown"


def _files_section(files: Sequence[dict[str, Any]]) -> str:
    if not files:
        return '<p class="empty">no files were uploaded</p>'
    counts: dict[str, int] = {}
    for f in files:
        kind = _fate_kind(str(f.get("fate", "")))
        counts[kind] = counts.get(kind, 0) + 1
    summary = " ".join(
        _badge(f"{n} {kind}", {"processed": "ok", "invalid": "bad"}.get(kind, "warn"))
        for kind, n in sorted(counts.items())
    )
    invalid = [f for f in files if _fate_kind(str(f.get("fate", ""))) == "invalid"]
    parts = [f"<p>{summary}</p>"]
    if invalid:
        rows = []
        for f in invalid:
            rules = f.get("failed_rules") or []
            rendered = (
                "<br>".join(
                    f"<code>{escape(str(r.get('rule', '?')))}</code>"
                    + (f" on <b>{escape(str(r['column']))}</b>" if r.get("column") else "")
                    + (
                        f" ({escape(str(r['failing_rows']))} rows)"
                        if r.get("failing_rows") is not None
                        else ""
                    )
                    for r in rules
                )
                or '<span class="empty">no report found</span>'
            )
            report = f"<code>{escape(str(f['report']))}</code>" if f.get("report") else ""
            rows.append((escape(str(f.get("key", ""))), rendered, report))
        parts.append("<h3>Rejected files</h3>")
        parts.append(_table(("file", "failing rules", "report"), rows))
    every = [
        (
            escape(str(f.get("key", ""))),
            _badge(_fate_kind(str(f.get("fate", ""))), _fate_badge(str(f.get("fate", "")))),
            escape(str(f.get("fate", ""))),
        )
        for f in files
    ]
    parts.append(
        f"<details><summary>every file ({len(files)})</summary>"
        + _table(("uploaded key", "fate", "where it is now"), every)
        + "</details>"
    )
    return "".join(parts)


def _fate_badge(fate: str) -> str:
    return {"processed": "ok", "invalid": "bad"}.get(_fate_kind(fate), "warn")


def _executions_section(executions: Sequence[dict[str, Any]]) -> str:
    if not executions:
        return '<p class="empty">no workflow execution was started</p>'
    rows = []
    for e in executions:
        status = str(e.get("status", ""))
        retries = e.get("retries") or []
        retry_text = (
            "<br>".join(
                escape(f"{r.get('state')}: {r.get('error')} (attempt {r.get('attempt')})") for r in retries
            )
            if retries
            else "0"
        )
        error = ""
        if e.get("error"):
            error = f"<b>{escape(str(e['error']))}</b>"
            if e.get("cause"):
                error += f"<details><summary>cause</summary><pre>{escape(str(e['cause']))}</pre></details>"
        seconds = e.get("seconds")
        rows.append(
            (
                escape(str(e.get("name", ""))),
                escape(str(e.get("batch_id") or "")),
                _badge(status, _status_class(status)),
                "" if seconds is None else escape(f"{float(seconds):.1f}"),
                escape(str(e.get("files", ""))),
                " → ".join(escape(str(s)) for s in e.get("states") or []),
                retry_text,
                error,
            )
        )
    return _table(
        ("execution", "batch", "status", "seconds", "files", "states passed", "retries", "error"),
        rows,
        numeric=frozenset({"seconds", "files"}),
        nowrap=frozenset({"execution", "batch", "status"}),
    )


def _alerts_section(alerts: Sequence[dict[str, Any]]) -> str:
    if not alerts:
        return '<p class="empty">no alerts</p>'
    return "".join(
        f"<p><b>{escape(str(a.get('subject') or '(no subject)'))}</b></p>"
        f"<pre>{escape(str(a.get('message', '')))}</pre>"
        for a in alerts
    )


def _kpi_table(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="empty">no rows</p>'
    numeric = frozenset(c for c in columns if c not in ("date_key", "category_id"))
    rendered = [[escape(str(r.get(c, ""))) for c in columns] for r in rows]
    return _table(columns, rendered, numeric, nowrap=frozenset({"date_key"}))


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
    cards = [
        ("run", _badge("OK" if ok else "ATTENTION", "ok" if ok else "bad")),
        ("executions", f"{succeeded}/{len(executions)} succeeded"),
        ("files", f"{len(files)} ({invalid} rejected)"),
        ("alerts", str(len(alerts))),
        ("KPI days", str(len(daily_rows))),
    ]
    card_html = "".join(f'<div class="card"><span>{escape(k)}</span><b>{v}</b></div>' for k, v in cards)
    meta = " · ".join(
        escape(f"{label}: {report[key]}")
        for key, label in (
            ("started_at", "started"),
            ("finished_at", "finished"),
            ("bucket", "bucket"),
            ("endpoint", "endpoint"),
        )
        if report.get(key)
    )
    category_sorted = sorted(
        category_rows, key=lambda r: (str(r.get("date_key", "")), str(r.get("category_id", "")))
    )
    charts = (
        '<div class="charts">'
        + _figure(revenue_chart(daily_rows), "revenue by date", "DailyKPIs: total_revenue and total_orders")
        + _figure(
            category_chart(category_rows),
            "category revenue mix",
            "CategoryKPIs: daily_revenue summed over the run's dates",
        )
        + "</div>"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ecomkpi run report</title>
<style>{CSS}</style>
</head>
<body><main>
<h1>ecomkpi run report</h1>
<p class="meta">{meta}</p>
<div class="cards">{card_html}</div>
<h2>KPIs</h2>
{charts}
<h3>DailyKPIs</h3>
{_kpi_table(DAILY_KPI_COLUMNS, daily_rows)}
<h2>Executions</h2>
{_executions_section(executions)}
<h2>Files</h2>
{_files_section(files)}
<h2>Alerts</h2>
{_alerts_section(alerts)}
<h2>CategoryKPIs</h2>
<details{" open" if len(category_sorted) <= OPEN_ROWS else ""}><summary>{len(category_sorted)} rows</summary>
{_kpi_table(CATEGORY_KPI_COLUMNS, category_sorted)}
</details>
</main></body>
</html>
"""


def write_report_html(
    out_dir: Path, report: dict[str, Any], daily_rows: list[dict], category_rows: list[dict]
) -> Path:
    """Write ``out_dir/report.html`` next to ``run_report.json`` and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_NAME
    path.write_text(render_report_html(report, daily_rows, category_rows), encoding="utf-8")
    return path
