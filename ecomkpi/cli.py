"""The ``ecomkpi`` command: generate data, run the pipeline locally, query KPIs."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from tqdm import tqdm

from ecomkpi.workflow_modes import MODES

TASK_MODE_HELP = (
    "worker: one warm worker serves every task (default); ecs: a fresh process per task; "
    "emr-serverless: each task an EMR Serverless job run, locally a spark-submit on Spark 4.0 (make compat)"
)
TASK_RUNTIME_HELP = (
    "process: tasks run as processes of this checkout (default); container: as containers of the "
    "pipeline image (make image), configured by infra/'s task definitions as on Fargate"
)
TASK_RUNTIMES = ("process", "container")


def _cmd_generate(args: argparse.Namespace) -> int:
    from ecomkpi.generator import GeneratorSettings, generate

    settings = GeneratorSettings(
        days=args.days,
        orders_per_day=args.orders_per_day,
        parts=args.parts,
        seed=args.seed,
        products=args.products,
        start=args.start,
        manifests=args.manifests,
    )
    with tqdm(total=settings.days, desc="generate", unit="day", file=sys.stderr) as bar:
        summary = generate(args.out, settings, progress=lambda done, _total: bar.update(1))
    print(summary.describe())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ecomkpi.demo import run_demo
    from ecomkpi.local_stack import StackSettings

    settings = StackSettings(
        bucket=args.bucket,
        spark_master=args.spark_master,
        task_mode=args.task_mode,
        task_runtime=args.task_runtime,
        image=args.image,
    )
    result = run_demo(list(args.data or []), args.out, settings, verbose=args.verbose, timeout=args.timeout)
    return result.exit_code


def _cmd_up(args: argparse.Namespace) -> int:
    import threading

    from ecomkpi.demo import Console
    from ecomkpi.local_stack import LocalStack, StackSettings

    console = Console(verbose=True)
    settings = StackSettings(
        bucket=args.bucket,
        port=args.port,
        work_dir=args.work_dir,
        spark_master=args.spark_master,
        task_mode=args.task_mode,
        task_runtime=args.task_runtime,
        image=args.image,
    )
    with LocalStack(settings, on_event=console.event, on_container_output=console.container) as stack:
        api = None
        if args.api_port >= 0:
            from ecomkpi.api_server import serve
            from kpi_api.reader import KpiReader

            reader = KpiReader(
                stack.client("dynamodb"),
                settings.daily_table,
                settings.category_table,
                settings.tracker_table,
                settings.quality_table,
            )
            api = serve(reader, port=args.api_port, bucket=settings.bucket)
            console.stream.write(
                f"\nLive KPIs: {api.url} (API: {api.url}kpis/daily?from=...&to=..., {api.url}status)\n"
            )
        console.stream.write(
            "\nThe pipeline is listening. In another shell:\n"
            f"  export AWS_ENDPOINT_URL={stack.endpoint} AWS_ACCESS_KEY_ID=local "
            f"AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION={settings.region}\n"
            f"  aws s3 cp products.csv s3://{settings.bucket}/raw/products/products.csv\n"
            f"  aws s3 cp orders.csv s3://{settings.bucket}/raw/orders/2025-07-10/orders_part1.csv\n"
            "  ecomkpi kpis --date 2025-07-10\n"
            "Ctrl-C stops it.\n\n"
        )
        console.stream.flush()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            console.line("stopping")
        finally:
            if api:
                api.stop()
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    """The API and live page for a stack that runs elsewhere (AWS, or AWS_ENDPOINT_URL's emulator)."""
    import threading

    from ecomkpi.api_server import serve
    from kpi_api.handler import reader_from_env

    api = serve(reader_from_env(), host=args.host, port=args.port, bucket=os.environ.get("S3_BUCKET") or None)
    print(f"Live KPIs: {api.url}  (Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        api.stop()
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    """The warm worker against any stack (WORK_QUEUE_URL, PRECHECK_QUEUE_URL and the jobs' variables from the environment)."""
    from hosts.worker.main import main

    return main()


def _cmd_kpis(args: argparse.Namespace) -> int:
    from ecomkpi.kpi_query import print_kpis

    return print_kpis(date_key=args.date, category=args.category)


def _cmd_withdraw(args: argparse.Namespace) -> int:
    """Send the trigger a withdrawal through its own event queue (AWS, or the local stack's emulator)."""
    import json
    import os

    from jobs import aws

    sqs = aws.client("sqs")
    queue_url = args.queue_url or os.environ.get("ECOMKPI_EVENTS_QUEUE_URL", "").strip()
    if not queue_url:
        queue_url = sqs.get_queue_url(QueueName=args.queue_name)["QueueUrl"]
    body = {"ecomkpi": "withdraw", "key": args.key, "reason": args.reason}
    if args.bucket:
        body["bucket"] = args.bucket
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    print(
        f"withdrawal of {args.key} sent to {queue_url}: the trigger takes it out of its day, moves any "
        "unprocessed copy to invalid/withdrawn/ with a report, and starts the next generation when the rest is ready"
    )
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    """Recompute and re-serve a date range from the lake (after a KPI change, or a restored table)."""
    import json
    import os
    from datetime import timedelta

    from jobs.config import PipelineConfig
    from jobs.transformation.job import run

    first, last = args.date_from, args.date_to or args.date_from
    if last < first:
        print(f"--to {last} is before --from {first}", file=sys.stderr)
        return 2
    dates = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    env = {k: v for k, v in os.environ.items() if k != "RUN_ID"}  # a run id of its own
    # No batch files: the run recomputes RECOMPUTE_DATES (plus dates a crashed run left pending, and
    # a products master version still waiting in validated/, which every run applies).
    env.update(
        BATCH_ID=args.batch_id or f"replay-{first}-{last}",
        RECOMPUTE_DATES=json.dumps(dates),
        ORDERS_KEYS="[]",
        ORDER_ITEMS_KEYS="[]",
    )
    result = run(PipelineConfig.from_env(env))
    print(json.dumps({"status": result.status, "touched_dates": result.touched_dates, **result.dynamodb}))
    return 0 if result.status == "ok" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecomkpi", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write TheLook-shaped CSVs laid out like the bucket's raw/")
    g.add_argument("--out", type=Path, required=True, help="folder to write (products/, orders/DATE/, ...)")
    g.add_argument("--days", type=int, default=3)
    g.add_argument("--orders-per-day", type=int, default=200)
    g.add_argument("--parts", type=int, default=2, help="part files per dataset and day")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--products", type=int, default=400)
    g.add_argument(
        "--start", type=date.fromisoformat, default=date(2025, 7, 10), help="first date (YYYY-MM-DD)"
    )
    g.add_argument("--manifests", action="store_true", help="also write manifests/DATE.json per day")
    g.set_defaults(func=_cmd_generate)

    d = sub.add_parser("demo", help="run the whole pipeline locally on data folders and report")
    d.add_argument(
        "--data", type=Path, action="append", help="a raw/-shaped folder; repeat to upload in waves"
    )
    d.add_argument("--out", type=Path, default=Path("out"), help="where KPIs and the run report go")
    d.add_argument("--bucket", default="ecomkpi-local")
    d.add_argument("--spark-master", default="local[2]")
    d.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for each wave")
    d.add_argument("-v", "--verbose", action="store_true", help="stream every Lambda and container line")
    d.add_argument("--task-mode", choices=MODES, default="worker", help=TASK_MODE_HELP)
    d.add_argument("--task-runtime", choices=TASK_RUNTIMES, default="process", help=TASK_RUNTIME_HELP)
    d.add_argument("--image", default="localhost/ecomkpi:dev", help="the image of --task-runtime container")
    d.set_defaults(func=_cmd_demo)

    u = sub.add_parser("up", help="keep the local stack running and stream the pipeline's events")
    u.add_argument("--port", type=int, default=5000, help="emulator port (0 = any free port)")
    u.add_argument("--bucket", default="ecomkpi-local")
    u.add_argument("--work-dir", type=Path, default=Path("out") / ".stack")
    u.add_argument("--spark-master", default="local[2]")
    u.add_argument("--task-mode", choices=MODES, default="worker", help=TASK_MODE_HELP)
    u.add_argument("--task-runtime", choices=TASK_RUNTIMES, default="process", help=TASK_RUNTIME_HELP)
    u.add_argument("--image", default="localhost/ecomkpi:dev", help="the image of --task-runtime container")
    u.add_argument("--api-port", type=int, default=8000, help="port of the KPI API and live page (-1: none)")
    u.set_defaults(func=_cmd_up)

    sv = sub.add_parser(
        "serve",
        help="serve the KPI API and live page on 127.0.0.1 (tables from the environment, as for the jobs)",
    )
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.set_defaults(func=_cmd_serve)

    w = sub.add_parser(
        "worker",
        help="serve the workflow's tasks from the work queue (WORK_QUEUE_URL, jobs' variables from the environment)",
    )
    w.set_defaults(func=_cmd_worker)

    k = sub.add_parser(
        "kpis", help="query DailyKPIs / CategoryKPIs (AWS, or the local stack via AWS_ENDPOINT_URL)"
    )
    k.add_argument("--date", help="YYYY-MM-DD")
    k.add_argument("--category", help="category text as given, e.g. Jeans")
    k.set_defaults(func=_cmd_kpis)

    wd = sub.add_parser(
        "withdraw",
        help="take a data file out of its day (a rejected or abandoned part); sent through the trigger's queue",
    )
    wd.add_argument("key", help="raw/orders/YYYY-MM-DD/<file>.csv or raw/order_items/YYYY-MM-DD/<file>.csv")
    wd.add_argument("--reason", default="withdrawn by an operator", help="kept in the withdrawal report")
    wd.add_argument("--bucket", help="the pipeline bucket (default: the trigger's S3_BUCKET or the day's)")
    wd.add_argument(
        "--queue-url", help="the trigger's event queue (default: ECOMKPI_EVENTS_QUEUE_URL, or by name)"
    )
    wd.add_argument("--queue-name", default="ecomkpi-raw-events", help="looked up when no URL is given")
    wd.set_defaults(func=_cmd_withdraw)

    r = sub.add_parser(
        "replay",
        help="recompute and re-serve KPIs for a date range from the lake (environment as for the jobs)",
    )
    r.add_argument("--from", dest="date_from", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    r.add_argument("--to", dest="date_to", type=date.fromisoformat, help="YYYY-MM-DD (default: --from)")
    r.add_argument("--batch-id", help="names the run's logs (default: replay-FROM-TO)")
    r.set_defaults(func=_cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
