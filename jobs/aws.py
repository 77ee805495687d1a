"""boto3 clients built from the pipeline configuration.

The endpoint override is passed explicitly (rather than relying on boto3 reading
``AWS_ENDPOINT_URL`` itself) so that a config built in a test or notebook is honoured too.
Clients are cached per process: building one costs ~50 ms and they are thread-safe.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from jobs.config import PipelineConfig

_RETRIES = BotoConfig(retries={"max_attempts": 8, "mode": "adaptive"})


@lru_cache(maxsize=32)
def _client(service: str, region: str, endpoint_url: str | None) -> Any:
    return boto3.session.Session().client(
        service, region_name=region, endpoint_url=endpoint_url, config=_RETRIES
    )


def client(service: str, config: PipelineConfig) -> Any:
    return _client(service, config.region, config.endpoint_url)


@lru_cache(maxsize=8)
def _resource(service: str, region: str, endpoint_url: str | None) -> Any:
    return boto3.session.Session().resource(
        service, region_name=region, endpoint_url=endpoint_url, config=_RETRIES
    )


def resource(service: str, config: PipelineConfig) -> Any:
    return _resource(service, config.region, config.endpoint_url)
