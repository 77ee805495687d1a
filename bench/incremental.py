"""Incremental cost: one new day applied to lakes holding 0, 30, 365 days of history.

Every lake gets the *same* new-day files (the generator writes max(history) + repeat days; history
size H takes the H days right before the new days). The history is joined into one file per
dataset and month, put straight into ``validated/`` (validation is not what is measured here) and
applied by ONE transformation run (a batch may hold many dates). Then each repeat applies one
further new day, as the day's own files.
"""

from __future__ import annotations

import json
import tempfile
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Stat,
    client,
    files_of,
    last_stage_id,
    put_validated,
    stage_input_bytes,
    suffix,
    timed,
)
from ecomkpi.generator import GeneratorSettings, generate
from jobs.config import PipelineConfig
from jobs.transformation.lock import LockSettings
from jobs.transformation.serving import create_kpi_tables

LOCK = LockSettings(ttl_seconds=1800, wait_seconds=60, poll_seconds=0.2)
START = date(2024, 1, 1)


class _Lake:
    def __init__(self, spark: Any, endpoint: str, work: Path, lake_mode: str) -> None:
        self.sfx = suffix()
        self.spark, self.endpoint = spark, endpoint
        self.bucket = f"bench-inc-{self.sfx}"
        self.daily_t, self.cat_t = f"DailyKPIs-{self.sfx}", f"CategoryKPIs-{self.sfx}"
        self.s3, self.ddb = client("s3", endpoint), client("dynamodb", endpoint)
        self.s3.create_bucket(Bucket=self.bucket)
        create_kpi_tables(self.ddb, self.daily_t, self.cat_t)
        self.lake = f"s3a://{self.bucket}/lake" if lake_mode == "s3" else str(work / f"lake-{self.sfx}")
        self.clock = 1_752_000_000_000
        self.runs = 0

    def put(self, files: list[tuple[str, Path]]) -> list[str]:
        keys = []
        for rel, path in files:
            self.clock += 1000
            put_validated(self.s3, self.bucket, rel, path.read_bytes(), self.clock)
            keys.append(f"raw/{rel}")
        return keys

    def transform(self, batch: str, keys: list[str]) -> Any:
        from jobs.transformation.job import run as transform

        self.runs += 1
        env = {
            "S3_BUCKET": self.bucket,
            "AWS_ENDPOINT_URL": self.endpoint,
            "LAKE_PATH": self.lake,
            "BATCH_ID": batch,
            "ORDERS_KEYS": json.dumps([k for k in keys if k.startswith("raw/orders/")]),
            "ORDER_ITEMS_KEYS": json.dumps([k for k in keys if k.startswith("raw/order_items/")]),
            "DAILY_KPIS_TABLE": self.daily_t,
            "CATEGORY_KPIS_TABLE": self.cat_t,
            "SPARK_SHUFFLE_PARTITIONS": self.spark.conf.get("spark.sql.shuffle.partitions"),
            "RUN_ID": f"{batch}-r{self.runs}-{self.sfx}",
        }
        result = transform(PipelineConfig.from_env(env), self.spark, lock_settings=LOCK)
        if result.status != "ok":
            raise BenchError(f"transformation of {batch} ended {result.status}: {result.error}")
        return result


def _day_files(files: list[tuple[str, Path]], day: date) -> list[tuple[str, Path]]:
    d = day.isoformat()
    return [(rel, p) for rel, p in files if f"/{d}/" in rel]


def monthly_files(files: list[tuple[str, Path]], days: list[date], out: Path) -> list[tuple[str, Path]]:
    """The days' orders and items files joined into one file per dataset and month.

    A producer may send many dates in one file (the date comes from ``created_at``), and 24 files
    for 365 days keep the history build to minutes: one file per day made one run read ~730 files.
    """
    groups: dict[tuple[str, str], list[Path]] = {}
    for day in days:
        for rel, path in _day_files(files, day):
            groups.setdefault((rel.split("/")[0], day.strftime("%Y-%m")), []).append(path)
    joined = []
    for (dataset, month), paths in sorted(groups.items()):
        target = out / dataset / "history" / f"{dataset}_{month}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as sink:
            for i, path in enumerate(paths):
                lines = path.read_bytes().splitlines(keepends=True)
                if lines and not lines[-1].endswith(b"\n"):
                    lines[-1] += b"\n"
                sink.writelines(lines if i == 0 else lines[1:])  # one header per file
        joined.append((target.relative_to(out).as_posix(), target))
    return joined


def run(
    spark: Any,
    endpoint: str,
    histories: list[int],
    repeat: int,
    orders_per_day: int = 40,
    lake_mode: str = "local",
) -> list[dict[str, Any]]:
    max_h = max(histories)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-inc-") as tmp:
        work = Path(tmp)
        folder = work / "data"
        generate(
            folder,
            GeneratorSettings(
                days=max_h + repeat, orders_per_day=orders_per_day, parts=1, seed=11, start=START
            ),
        )
        files = files_of(folder)
        products = [(rel, p) for rel, p in files if rel.startswith("products/")]
        new_days = [START + timedelta(days=max_h + i) for i in range(repeat)]
        # The first transformation of a JVM pays for JIT compilation and class loading: without a
        # warm-up, whichever history size ran first looked slowest (the empty lake, 1.28x).
        warm = _Lake(spark, endpoint, work, lake_mode)
        warm_keys = warm.put(products) + warm.put(_day_files(files, new_days[0]))
        _, warm_s = timed(lambda: warm.transform("warm-up", warm_keys))
        print(f"[incremental] warm-up run {warm_s:.1f}s (not reported)")
        for h in histories:
            lake = _Lake(spark, endpoint, work, lake_mode)
            history_days = [START + timedelta(days=max_h - h + i) for i in range(h)]
            keys = lake.put(products)
            keys += lake.put(monthly_files(files, history_days, work / f"history-{h}"))
            # One run applies products (and every history day): the new days then pay the same
            # products cost (none) whatever the history size.
            hist, build_s = timed(partial(lake.transform, "history", keys))
            if h and len(hist.touched_dates) < h:
                raise BenchError(f"history run touched {len(hist.touched_dates)} dates, expected >= {h}")
            print(f"[incremental] history {h} days built in {build_s:.1f}s")
            seconds, rows_read, bytes_read, records_read = Stat(), [], Stat(), Stat()
            stages = []
            for d in new_days:
                new_keys = lake.put(_day_files(files, d))
                before = last_stage_id(spark)
                result, s = timed(partial(lake.transform, d.isoformat(), new_keys))
                b, rec = stage_input_bytes(spark, before)
                seconds.add(s)
                bytes_read.add(b)
                records_read.add(rec)
                rows_read.append(result.rows_read_by_table)
                stages.append(result.stage_seconds)
                print(
                    f"[incremental] history {h}: new day {d} in {s:.1f}s, touched {result.touched_dates}, "
                    f"rows read {sum(result.rows_read_by_table.values())}, Spark input {b / 1e3:.0f} kB"
                )
            results.append(
                {
                    "history_days": h,
                    "orders_per_day": orders_per_day,
                    "history_build_s": build_s,
                    "new_day_s": seconds.as_dict(),
                    "rows_read_by_table": rows_read,
                    "lake_rows_read_median": Stat([sum(r.values()) for r in rows_read]).median,
                    "spark_input_bytes": bytes_read.as_dict(),
                    "spark_input_records": records_read.as_dict(),
                    "stage_seconds": stages,
                    "lake": lake_mode,
                }
            )
    base = results[0]["new_day_s"]["median"] if results and results[0]["history_days"] == 0 else None
    for r in results:
        r["ratio_to_empty_lake"] = r["new_day_s"]["median"] / base if base else None
    return results
