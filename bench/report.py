"""The printed table and the JSON file of a bench run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _s(stat: dict[str, Any] | None, unit: str = "s", scale: float = 1.0) -> str:
    if not stat or stat.get("median") is None:
        return "-"
    m, lo, hi = (stat[k] * scale for k in ("median", "min", "max"))
    return f"{m:.2f}{unit} [{lo:.2f}-{hi:.2f}]"


def table(results: dict[str, Any]) -> str:
    lines = [
        f"JVM + SparkSession start-up: {results.get('spark_startup_s', '-')} s (not in any figure below)"
    ]
    for r in results.get("throughput", []):
        lines.append(
            f"throughput {r['order_items']:,} items: validation {_s(r['validation_s'])}, transformation "
            f"{_s(r['transformation_s'])}, Spark {r['spark_items_per_s']:,.0f} items/s, DuckDB "
            f"{_s(r['duckdb_s'])} = {r['duckdb_items_per_s']:,.0f} items/s, Spark/DuckDB time "
            f"{r['spark_over_duckdb']:.1f}x, KPIs identical: {r['kpis_identical']}"
        )
        lines.append(f"  note: {r['note']} (lake: {r['lake']})")
    for r in results.get("incremental", []):
        ratio = r.get("ratio_to_empty_lake")
        lines.append(
            f"incremental history {r['history_days']:>3} days: new day {_s(r['new_day_s'])}, lake rows read "
            f"{r['lake_rows_read_median']:.0f}, Spark input {_s(r['spark_input_bytes'], ' kB', 1e-3)}, "
            f"ratio to empty lake {ratio:.2f}"
            if ratio
            else "ratio -"
        )
    for key in sorted(k for k in results if k.startswith("latency")):
        lat = results[key]
        lines.append(
            f"latency ({lat.get('task_mode', 'worker')} mode) {lat['order_items_per_batch']:,}-item batch "
            + f"in {2 * lat.get('parts', 1)} files, {lat.get('upload', 'burst')} upload "
            + (f"after {lat['warm_days']} warm-up days " if lat.get("warm_days") else "")
            + "(median [min-max]):"
        )
        for k, v in lat["stages_s"].items():
            lines.append(f"  {k:<32} {_s(v)}")
        if lat.get("duckdb_s"):
            lines.append(f"  {'duckdb, same files':<32} {_s(lat['duckdb_s'])}")
        if lat.get("task_stages_s"):
            lines.append("  inside the tasks (their run logs):")
            for k, v in lat["task_stages_s"].items():
                lines.append(f"    {k:<30} {_s(v)}")
    for key in sorted(k for k in results if k.startswith("burst")):
        b = results[key]
        lines.append(
            f"burst ({b['task_mode']} mode): {b['days']} days x {b['orders_per_day']} orders uploaded at once: "
            f"{_s(b['total_s'])}, at most {b['peak_jvms']} JVM(s) at a time"
        )
    trg = results.get("trigger")
    if trg:
        lines.append(f"trigger: {_s(trg['events_per_s'], ' ev/s')} over {trg['events']} distinct events")
        for name, counts in trg["executions_started"].items():
            lines.append(
                f"  {trg['duplicates']} duplicates from {trg['threads']} threads, {name}: executions {counts}"
            )
    api = results.get("api")
    if api:
        lines.append(
            f"api: {api['requests']:,} GETs, p50 {api['api']['p50_ms']} ms, p99 {api['api']['p99_ms']} ms; bare "
            f"DynamoDB Query p50 {api['bare_query']['p50_ms']} ms, p99 {api['bare_query']['p99_ms']} ms "
            f"(ratio p50 {api['ratio_p50']}x, p99 {api['ratio_p99']}x); KPI write to page {api['page_freshness_s']} s"
        )
        for route, p in api["per_route"].items():
            lines.append(f"  {route:<28} p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms")
    return "\n".join(lines)


def write(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
