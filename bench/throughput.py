"""Throughput: one generated day through validation + transformation (Spark, one session, S3
emulator) and through DuckDB's ``compute`` on local copies of the same files; KPIs must agree."""

from __future__ import annotations

import json
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from bench import profile
from bench.common import (
    BenchError,
    Stat,
    client,
    compare_kpis,
    files_of,
    folder_bytes,
    served_kpis,
    suffix,
    timed,
)
from bench.duckdb_baseline import compute
from ecomkpi.generator import GeneratedSummary, GeneratorSettings, generate
from jobs.config import PipelineConfig
from jobs.transformation.lock import LockSettings
from jobs.transformation.serving import create_kpi_tables

ITEMS_PER_ORDER = 1.65
NOTE = "Spark reads and writes through the moto S3 emulator (HTTP); DuckDB reads local files."


def generate_day(out: Path, items: int, seed: int = 7) -> GeneratedSummary:
    parts = max(1, min(8, items // 250_000))
    settings = GeneratorSettings(
        days=1, orders_per_day=max(10, round(items / ITEMS_PER_ORDER)), parts=parts, seed=seed
    )
    return generate(out, settings)


def _spark_once(spark: Any, endpoint: str, folder: Path, work: Path, lake_mode: str) -> dict[str, Any]:
    from jobs.transformation.job import run as transform
    from jobs.validation.job import run as validate

    sfx = suffix()
    bucket, daily_t, cat_t = f"bench-tp-{sfx}", f"DailyKPIs-{sfx}", f"CategoryKPIs-{sfx}"
    s3, ddb = client("s3", endpoint), client("dynamodb", endpoint)
    s3.create_bucket(Bucket=bucket)
    create_kpi_tables(ddb, daily_t, cat_t)
    keys = []
    for rel, path in files_of(folder):
        s3.put_object(Bucket=bucket, Key=f"raw/{rel}", Body=path.read_bytes())
        keys.append(f"raw/{rel}")
    batch = next(k.split("/")[2] for k in keys if k.startswith("raw/orders/"))
    lake = f"s3a://{bucket}/lake" if lake_mode == "s3" else str(work / f"lake-{sfx}")
    env = {
        "S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": endpoint,
        "LAKE_PATH": lake,
        "BATCH_ID": batch,
        "ORDERS_KEYS": json.dumps([k for k in keys if k.startswith("raw/orders/")]),
        "ORDER_ITEMS_KEYS": json.dumps([k for k in keys if k.startswith("raw/order_items/")]),
        "DAILY_KPIS_TABLE": daily_t,
        "CATEGORY_KPIS_TABLE": cat_t,
        "SPARK_SHUFFLE_PARTITIONS": spark.conf.get("spark.sql.shuffle.partitions"),
    }
    v_config = PipelineConfig.from_env({**env, "RUN_ID": f"{batch}-v-{sfx}"})
    mark = profile.last_job_id(spark)
    verdicts, v_s = timed(lambda: validate(v_config, spark))
    v_profile = profile.summary(spark, mark)
    mark = profile.last_job_id(spark)
    if verdicts.exit_code != 0:
        raise BenchError(f"validation rejected generated data: {[f.rel for f in verdicts.files]}")
    t_config = PipelineConfig.from_env({**env, "RUN_ID": f"{batch}-t-{sfx}"})
    lock = LockSettings(ttl_seconds=600, wait_seconds=60, poll_seconds=0.2)
    result, t_s = timed(lambda: transform(t_config, spark, lock_settings=lock))
    return {
        "validation_profile": v_profile,
        "transformation_profile": profile.summary(spark, mark),
        "validation_s": v_s,
        "transformation_s": t_s,
        "transformation_stages_s": result.stage_seconds,
        "rows_read_by_table": result.rows_read_by_table,
        "served": served_kpis(ddb, daily_t, cat_t),
    }


def run(
    spark: Any,
    endpoint: str,
    sizes: list[int],
    repeat: int,
    lake_mode: str = "local",
    duck_threads: int | None = None,
) -> list[dict[str, Any]]:
    results = []
    for items in sizes:
        with tempfile.TemporaryDirectory(prefix=f"bench-tp-{items}-") as tmp:
            work = Path(tmp)
            folder = work / "data"
            summary, gen_s = timed(partial(generate_day, folder, items))
            n_items, size = summary.order_items, folder_bytes(folder)
            print(
                f"[throughput] {items:,} requested: {n_items:,} items, {size / 1e6:.1f} MB, gen {gen_s:.1f}s"
            )
            spark_s, val_s, tr_s, duck_s = Stat(), Stat(), Stat(), Stat()
            stages: list[dict[str, float]] = []
            profiles: list[dict[str, Any]] = []
            for r in range(repeat):
                once = _spark_once(spark, endpoint, folder, work, lake_mode)
                duck, d_s = timed(partial(compute, folder, threads=duck_threads))
                problems = compare_kpis(duck.daily, duck.category, once["served"])
                if problems or not duck.daily:
                    raise BenchError(f"Spark and DuckDB KPIs differ ({len(problems)}): {problems[:5]}")
                if any(duck.rule_failures.values()):
                    raise BenchError(f"DuckDB found rule failures on generated data: {duck.rule_failures}")
                val_s.add(once["validation_s"])
                tr_s.add(once["transformation_s"])
                spark_s.add(once["validation_s"] + once["transformation_s"])
                duck_s.add(d_s)
                stages.append(once["transformation_stages_s"])
                profiles.append({k: once[f"{k}_profile"] for k in ("validation", "transformation")})
                for k in ("validation", "transformation"):
                    print(f"[throughput]   {k}: {profile.describe(once[f'{k}_profile'])}")
                print(
                    f"[throughput] run {r + 1}/{repeat}: validation {once['validation_s']:.1f}s, "
                    f"transformation {once['transformation_s']:.1f}s, duckdb {d_s:.2f}s, KPIs identical "
                    f"({len(duck.daily)} daily, {len(duck.category)} category rows)"
                )
            results.append(
                {
                    "items_requested": items,
                    "order_items": n_items,
                    "orders": summary.orders,
                    "input_bytes": size,
                    "validation_s": val_s.as_dict(),
                    "transformation_s": tr_s.as_dict(),
                    "spark_total_s": spark_s.as_dict(),
                    "duckdb_s": duck_s.as_dict(),
                    "spark_items_per_s": n_items / spark_s.median,
                    "duckdb_items_per_s": n_items / duck_s.median,
                    "spark_over_duckdb": spark_s.median / duck_s.median,
                    "transformation_stages_s": stages,
                    "spark_jobs": profiles,
                    "kpis_identical": True,
                    "lake": lake_mode,
                    "note": NOTE,
                }
            )
    return results
