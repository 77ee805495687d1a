"""The worker's own settings (``WORK_QUEUE_URL``, ``WORKER_*``), read once from its environment.

The jobs' settings are ``jobs.config.PipelineConfig``; these are the host's: which queues it polls,
how long it lives and how often it beats. Both are read from the same task definition environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hosts.worker.status import status_path
from jobs.config import ConfigError


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class WorkerSettings:
    queue_url: str
    max_batches: int = 50
    max_heap_fraction: float = 0.85
    heartbeat_seconds: float = 30.0
    poll_seconds: int = 20
    # 0: run until stopped (an ECS service); > 0: exit after that long without work (scripts).
    idle_exit_seconds: float = 0.0
    # Transformation tasks one run may serve (1: never coalesce).
    max_coalesce: int = 10
    # Run both jobs once on a tiny batch of its own before serving (WORKER_WARM_BATCH=0: not).
    warm_batch: bool = True
    # Where the worker says whether it is ready (hosts/worker/status.py; WORKER_STATUS_FILE).
    status_file: Path | None = None
    # The trigger's prechecks (PRECHECK_QUEUE_URL): a queue of their own, which no keeper receives, so
    # its receive count counts attempts and its DLQ catches a part that crashes every worker.
    # Empty: prechecks come on the work queue.
    precheck_queue_url: str = ""

    @property
    def precheck_queue(self) -> str:
        return self.precheck_queue_url or self.queue_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if env is None else env
        queue_url = env.get("WORK_QUEUE_URL", "").strip()
        if not queue_url:
            raise ConfigError("WORK_QUEUE_URL is not set: the worker needs the work queue to poll")
        fraction = _positive(env, "WORKER_MAX_HEAP_FRACTION", 0.85)
        if fraction > 1:
            raise ConfigError(f"WORKER_MAX_HEAP_FRACTION must be at most 1, got {fraction}")
        idle = env.get("WORKER_IDLE_EXIT_SECONDS", "").strip()
        return cls(
            queue_url=queue_url,
            max_batches=int(_positive(env, "WORKER_MAX_BATCHES", 50)),
            max_heap_fraction=fraction,
            heartbeat_seconds=_positive(env, "WORKER_HEARTBEAT_SECONDS", 30.0),
            poll_seconds=min(20, int(_positive(env, "WORKER_POLL_SECONDS", 20))),
            idle_exit_seconds=float(idle) if idle else 0.0,
            max_coalesce=int(_positive(env, "WORKER_MAX_COALESCE", 10)),
            warm_batch=env.get("WORKER_WARM_BATCH", "1").strip() not in ("0", "false", "no"),
            status_file=status_path(env),
            precheck_queue_url=env.get("PRECHECK_QUEUE_URL", "").strip(),
        )
