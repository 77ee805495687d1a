"""``python -m hosts.worker`` / ``ecomkpi worker``: the worker process, configured from its environment."""

from __future__ import annotations

import threading
import traceback
from typing import Any

from hosts.worker.answers import EXIT_BROKEN
from hosts.worker.log import log
from hosts.worker.loop import Worker
from hosts.worker.settings import WorkerSettings
from jobs.config import ConfigError, PipelineConfig


def install_stop_handler(worker: Worker) -> None:
    """SIGTERM -> ``worker.terminate`` on a thread of its own: the handler runs in the main thread,
    which may be inside a Py4J call of the job; answering and cancelling from another thread lets
    that call end (its Spark jobs cancelled) instead of waiting for it."""
    import signal

    def on_sigterm(_signum: int, _frame: Any) -> None:
        threading.Thread(target=worker.terminate, name="worker-terminate", daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)


def main(argv: list[str] | None = None) -> int:
    del argv
    from jobs.aws import client
    from jobs.spark_session import get_spark

    try:
        settings = WorkerSettings.from_env()
        config = PipelineConfig.from_env()
    except ConfigError as exc:
        log("config.error", level="ERROR", error=str(exc))
        return EXIT_BROKEN
    worker = Worker(
        settings,
        sqs=client("sqs", config),
        sfn=client("stepfunctions", config),
        spark_factory=lambda: get_spark(config, app_name="ecomkpi-worker"),
    )
    install_stop_handler(worker)
    try:
        worker.warm_up()
        return worker.serve()
    except Exception:
        traceback.print_exc()
        return EXIT_BROKEN
