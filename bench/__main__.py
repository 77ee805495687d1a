"""``python -m bench`` (``make bench ARGS=...``): throughput, incremental cost, latency, trigger."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.common import fake_credentials, moto_server, start_spark

KINDS = ("throughput", "incremental", "latency", "trigger", "burst", "api")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--only", default=",".join(KINDS), help="comma list of " + ", ".join(KINDS))
    p.add_argument("--sizes", type=_ints, default=[1_000_000, 5_000_000], help="order items per day")
    p.add_argument("--history", type=_ints, default=[0, 30, 365], help="history days before the new day")
    p.add_argument("--history-orders", type=int, default=40, help="orders per history day")
    p.add_argument("--latency-items", type=int, default=100_000, help="order items of the latency batch")
    p.add_argument(
        "--task-modes",
        default="worker,ecs",
        help="latency, burst: comma list of worker (warm worker) and ecs (a fresh process per task)",
    )
    p.add_argument(
        "--latency-upload",
        default="burst",
        help="latency: comma list of burst (a day's files back to back) and spaced (the stack idle "
        "before the last part, so the earlier parts were prechecked)",
    )
    p.add_argument(
        "--latency-warm-days",
        type=int,
        default=0,
        help="latency: days served first and not measured, as a stack that has been up a while has",
    )
    p.add_argument(
        "--latency-parts",
        type=_ints,
        default=[1],
        help="latency: comma list of files per dataset and day, e.g. 1,48 (the same rows in 2 and in 96 files)",
    )
    p.add_argument("--trigger-events", type=int, default=1000)
    p.add_argument("--api-requests", type=int, default=10_000, help="api: GETs against the local server")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--burst-days", type=int, default=10, help="burst: days uploaded at once")
    p.add_argument("--burst-orders", type=int, default=200, help="burst: orders per day")
    p.add_argument("--master", default="local[2]", help="Spark master of the in-process session")
    p.add_argument("--partitions", type=int, default=4, help="spark.sql.shuffle.partitions")
    p.add_argument(
        "--driver-memory", default=None, help="Spark driver memory, e.g. 6g (default: Spark's, 1g)"
    )
    p.add_argument(
        "--lake", choices=("local", "s3"), default="local", help="lake on local disk or on the emulator"
    )
    p.add_argument("--duck-threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    p.add_argument("--out", type=Path, default=Path("bench/results") / f"{stamp}.json")
    p.add_argument("--quick", action="store_true", help="tiny smoke configuration (minutes, not hours)")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.history, args.history_orders = [2_000], [0, 5], 10
        args.latency_items, args.trigger_events, args.repeat = 1_000, 200, 1
        args.burst_days, args.burst_orders = 3, 20
        args.api_requests = 200
    args.only = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = set(args.only) - set(KINDS)
    if unknown:
        p.error(f"unknown --only {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    fake_credentials()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
    }
    spark_kinds = {"throughput", "incremental"} & set(args.only)
    with moto_server() as endpoint:
        if spark_kinds:
            spark, startup = start_spark(endpoint, args.master, args.partitions, args.driver_memory)
            results["spark_startup_s"] = round(startup, 2)
            print(f"[spark] JVM + session start-up {startup:.1f}s (reported separately)")
            if "throughput" in args.only:
                from bench import throughput

                results["throughput"] = throughput.run(
                    spark, endpoint, args.sizes, args.repeat, args.lake, args.duck_threads
                )
            if "incremental" in args.only:
                from bench import incremental

                results["incremental"] = incremental.run(
                    spark, endpoint, args.history, args.repeat, args.history_orders, args.lake
                )
            spark.stop()
        if "trigger" in args.only:
            from bench import trigger

            results["trigger"] = trigger.run(endpoint, args.repeat, args.trigger_events)
        if "api" in args.only:
            from bench import api

            results["api"] = api.run(endpoint, args.api_requests)
    if "latency" in args.only:
        from bench import latency

        for mode in args.task_modes.split(","):
            for upload in args.latency_upload.split(","):
                for parts in args.latency_parts:
                    key = "latency" if mode == "worker" else f"latency_{mode}"
                    key += "" if upload == "burst" else f"_{upload}"
                    key += f"_warm{args.latency_warm_days}" if args.latency_warm_days else ""
                    key += f"_parts{parts}" if parts != 1 else ""
                    results[key] = latency.run(
                        args.latency_items,
                        args.repeat,
                        task_mode=mode,
                        upload=upload,
                        warm_days=args.latency_warm_days,
                        parts=parts,
                    )
    if "burst" in args.only:
        from bench import burst

        for mode in args.task_modes.split(","):
            key = "burst" if mode == "worker" else f"burst_{mode}"
            results[key] = burst.run(args.burst_days, args.burst_orders, args.repeat, task_mode=mode)
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report.write(results, args.out)
    print(report.table(results))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
