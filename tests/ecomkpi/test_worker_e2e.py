"""The warm worker in the local stack, with the real jobs: a worker killed mid-batch costs a retry,
never a KPI.

The stack runs the worker-mode definition with HeartbeatSeconds scaled down; plain boto3 uploads
feed it (manifest first). The worker process is SIGKILLed while the transformation holds the lake
(after its plan, before its silver commits): the state stops hearing heartbeats, fails with
``States.HeartbeatTimeout``, its retrier sends the batch again, and the supervisor's new worker
serves it. The KPIs read back from DynamoDB must equal a from-scratch computation of the files.
"""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ecomkpi.demo import scan_all
from ecomkpi.generator import GeneratorSettings, generate, iter_data_files
from ecomkpi.kpi_query import format_value
from ecomkpi.local_stack import LocalStack, StackSettings
from ecomkpi.sfn_local.tasks import ContainerOutput
from jobs.contract import CATEGORY_KPI_COLUMNS, DAILY_KPI_COLUMNS
from tests.support.browser import CHROMIUM, DRIVER, cells, open_page, read

# worker processes: JVMs of their own
pytestmark = [pytest.mark.slow, pytest.mark.own_jvms]


def rows(items: list[dict[str, Any]], columns: tuple[str, ...], key: tuple[str, ...]) -> dict:
    """KPI rows by key, every value as the demo's CSVs print it (DynamoDB drops trailing zeros)."""
    return {
        tuple(str(it[k]) for k in key): {c: format_value(c, _decimal(it.get(c))) for c in columns}
        for it in items
    }


def _decimal(value: Any) -> Any:
    return Decimal(str(value)) if isinstance(value, int | float | Decimal) else value


def stack_settings(tmp_path: Path, names: Any, **changes: Any) -> StackSettings:
    """Names of this test's own: every stack in the test process shares one emulator state, so a
    tracker item of an earlier test's batch 2025-07-10 would otherwise join this one."""
    return StackSettings(
        bucket=names.bucket,
        tracker_table=names.tracker_table,
        daily_table=names.daily_table,
        category_table=names.category_table,
        quality_table=f"DataQuality-{names.suffix}",
        topic_name=f"alerts-{names.suffix}",
        queue_name=f"raw-events-{names.suffix}",
        dlq_name=f"raw-events-dlq-{names.suffix}",
        work_queue_name=f"work-{names.suffix}",
        work_dir=tmp_path / "stack",
        **changes,
    )


def _page_shows(
    stack: LocalStack, settings: StackSettings, daily: list[dict[str, Any]], files: list[tuple[str, str]]
) -> None:
    """The page shows DynamoDB's KPIs, the day's state, and the day's quality as validation wrote it
    from inside the task: every uploaded part accepted with all its rows, none dropped or rejected."""
    from ecomkpi.api_server import serve
    from kpi_api.reader import KpiReader

    reader = KpiReader(
        stack.client("dynamodb"),
        settings.daily_table,
        settings.category_table,
        settings.tracker_table,
        settings.quality_table,
    )
    server = serve(reader, bucket=settings.bucket)
    try:
        with open_page(server.url) as browser:
            for item in daily:
                shown = cells(browser, f'#daily-table tr[data-date="{item["date_key"]}"]')
                assert [v for v, _ in shown][1:3] == [
                    str(item["total_orders"]),
                    f"{item['total_revenue']:.2f}",
                ]
            latest = read(
                browser,
                """const row = document.querySelector('#status-table tr[data-state="succeeded"]');
                   return row && row.getAttribute('data-date');""",
            )
            assert latest == max(i["date_key"] for i in daily)
            day = latest
            parts = {
                rel: len(Path(path).read_text().splitlines()) - 1 for rel, path in files if f"/{day}/" in rel
            }
            shown = read(
                browser,
                """const bar = document.querySelector('#quality-chart g[data-date="' + arguments[0] + '"]');
                   const rows = Array.from(document.querySelectorAll('#quality-files tr[data-file]'),
                                           r => [r.getAttribute('data-file'), r.getAttribute('data-verdict'),
                                                 r.querySelectorAll('td')[2].getAttribute('data-value')]);
                   return bar && rows.length && {dropped: bar.getAttribute('data-dropped'),
                                                 rejected: bar.getAttribute('data-rejected'), rows};""",
                day,
            )
            assert (shown["dropped"], shown["rejected"]) == ("0", "0")
            listed = {f: (v, int(n)) for f, v, n in shown["rows"] if f in parts}
            assert listed == {rel: ("passed", n) for rel, n in parts.items()}
    finally:
        server.stop()


def upload(stack: LocalStack, folder: Path) -> list[tuple[str, str]]:
    s3 = stack.client("s3")
    files = sorted(iter_data_files(folder), key=lambda f: (not f[0].startswith("manifests/"), f[0]))
    for rel, path in files:
        s3.put_object(Bucket=stack.settings.bucket, Key=f"raw/{rel}", Body=path.read_bytes())
    return [(rel, str(path)) for rel, path in files if rel.endswith(".csv")]


def test_a_worker_killed_mid_transformation_is_replaced_and_the_batch_retried(
    tmp_path: Path, spark: Any, names: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs.oracle import kpis_from_files

    data = tmp_path / "data"
    generate(
        data, GeneratorSettings(days=1, orders_per_day=40, parts=2, seed=11, products=50, manifests=True)
    )
    monkeypatch.setenv("LOCK_TTL_SECONDS", "5")  # the dead worker's lease on the lake expires soon
    killed = threading.Event()
    stack_box: dict[str, LocalStack] = {}

    def on_output(out: ContainerOutput) -> None:
        if killed.is_set() or out.container_name != "transformation":
            return
        try:
            step = json.loads(out.line).get("step")
        except ValueError:
            return
        if step == "plan.end":
            killed.set()
            assert stack_box["stack"].worker is not None
            stack_box["stack"].worker.kill()

    # 300 s x 0.1 = 30 s of heartbeat: the replacement worker's JVM start and first look must fit in it
    # (or in the next attempt's). At 0.04 (12 s) a CI run with three lanes and two containers on the
    # 2 cores took longer than both retries: the day failed where AWS's 300 s would not have.
    settings = stack_settings(tmp_path, names, heartbeat_scale=0.1)
    with LocalStack(settings, on_container_output=on_output) as stack:
        stack_box["stack"] = stack
        files = upload(stack, data)
        assert stack.wait_idle(timeout=600, settle=3)
        assert killed.is_set(), "the transformation never reached its plan"
        executions = stack.executor.list_executions()
        assert [e["status"] for e in executions] == ["SUCCEEDED"]
        history = stack.executor.get_execution_history(executions[0]["executionArn"])
        timed_out = [e for e in history if e.type == "TaskTimedOut"]
        # The kill shows as a heartbeat timeout. The retry (3 s later at this scale) waits in the
        # queue while the replacement worker starts its JVM; where that outlasts the test's shortened
        # heartbeat (30 s), the retry times out once more and the next attempt succeeds, as it would
        # in AWS: the state allows two retries.
        errors = [e.details["error"] for e in timed_out]
        assert errors and set(errors) == {"States.HeartbeatTimeout"}, errors
        assert stack.worker is not None and stack.worker.starts == 2
        ddb = stack.client("dynamodb")
        daily = scan_all(ddb, settings.daily_table)
        category = scan_all(ddb, settings.category_table)

    expected_daily, expected_category = kpis_from_files(spark, files)
    assert rows(daily, DAILY_KPI_COLUMNS, ("date_key",)) == rows(
        [r.asDict() for r in expected_daily.collect()], DAILY_KPI_COLUMNS, ("date_key",)
    )
    key = ("category_id", "date_key")
    assert rows(category, CATEGORY_KPI_COLUMNS, key) == rows(
        [r.asDict() for r in expected_category.collect()], CATEGORY_KPI_COLUMNS, key
    )


def test_the_per_batch_ecs_mode_serves_the_same_kpis(tmp_path: Path, spark: Any, names: Any) -> None:
    """The cold path (a fresh process per task through docker/entrypoint.sh) stays a working mode."""
    from jobs.oracle import kpis_from_files

    data = tmp_path / "data"
    generate(data, GeneratorSettings(days=1, orders_per_day=30, parts=1, seed=5, products=40, manifests=True))
    settings = stack_settings(tmp_path, names, task_mode="ecs")
    with LocalStack(settings) as stack:
        assert stack.worker is None and stack.work_queue_url == ""
        files = upload(stack, data)
        assert stack.wait_idle(timeout=600, settle=3)
        assert [e["status"] for e in stack.executor.list_executions()] == ["SUCCEEDED"]
        assert [r.state_name for r in stack.run_task.runs] == ["ValidateData", "TransformData"]
        daily = scan_all(stack.client("dynamodb"), settings.daily_table)
        if CHROMIUM and DRIVER:  # the live page over the batch that just landed shows DynamoDB's numbers
            _page_shows(stack, settings, daily, files)
    expected_daily, _ = kpis_from_files(spark, files)
    assert rows(daily, DAILY_KPI_COLUMNS, ("date_key",)) == rows(
        [r.asDict() for r in expected_daily.collect()], DAILY_KPI_COLUMNS, ("date_key",)
    )
