"""boto3 clients, created once per process and per endpoint.

A Lambda container serves many invocations; building a client costs tens of milliseconds, so they
are cached at module level. The cache key includes ``AWS_ENDPOINT_URL`` and the region as read at
call time (a dict lookup, cheap), so tests that point the environment at an emulator get fresh
clients without an explicit reset, while in AWS (variable unset) the same code talks to the real
endpoints. boto3 itself applies ``AWS_ENDPOINT_URL``; we only pass the region.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config

# Standard retry mode already retries throttling and 5xx; max_pool_connections only matters for
# threaded callers (tests), a Lambda invocation is single threaded.
_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=64)
_lock = threading.Lock()
_clients: dict[tuple[str, str, str | None], Any] = {}


def region() -> str:
    """The region Lambda runs in (``AWS_REGION`` is set by the runtime), defaulting like the jobs."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def client(service: str) -> Any:
    """Return the cached client for ``service`` for the current region and endpoint override."""
    key = (service, region(), os.environ.get("AWS_ENDPOINT_URL") or None)
    cached = _clients.get(key)
    if cached is not None:
        return cached
    with _lock:
        cached = _clients.get(key)
        if cached is None:
            cached = boto3.session.Session().client(service, region_name=key[1], config=_CONFIG)
            _clients[key] = cached
        return cached
