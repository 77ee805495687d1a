"""ECS task scale-in protection while the worker is busy (the ECS agent's endpoint)."""

from __future__ import annotations

import json
import time
from typing import Any

from hosts.worker.log import log


class ScaleInProtection:
    """ECS task scale-in protection while the worker is busy, through the ECS agent's endpoint
    (``$ECS_AGENT_URI/task-protection/v1/state``): a scale-in or a deployment then takes an idle worker
    instead of stopping a batch. Best effort: without ``ECS_AGENT_URI`` (not on ECS) it does nothing,
    and a failed call is logged, never raised (SIGTERM handling covers a stop that comes anyway).
    Protection expires by itself after ``minutes`` (renewed when work keeps coming), so a worker that
    hangs does not stay protected for ever."""

    def __init__(self, agent_uri: str | None, minutes: int = 60, timeout: float = 2.0) -> None:
        self.url = f"{agent_uri.rstrip('/')}/task-protection/v1/state" if agent_uri else ""
        self.minutes, self.timeout = minutes, timeout
        self.enabled: bool | None = None
        self._since = 0.0

    def set(self, enabled: bool) -> None:
        if not self.url:
            return
        renew = enabled and time.monotonic() - self._since > self.minutes * 30  # half its lifetime
        if enabled == self.enabled and not renew:
            return
        import urllib.request

        body: dict[str, Any] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.minutes
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except Exception as exc:
            self.enabled = None  # unknown: the next change is sent again
            log("protection.error", level="WARN", enabled=enabled, error=f"{type(exc).__name__}: {exc}")
            return
        self.enabled, self._since = enabled, time.monotonic()
        log("protection", enabled=enabled)
