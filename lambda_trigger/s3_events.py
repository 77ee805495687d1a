"""S3 notification events shaped as S3 sends them, for driving the handler without a bucket.

Tests and the trigger benchmark feed the handler synthetic events; keeping one builder means both
exercise the exact shape the handler parses (URL-encoded keys, a sequencer per record).
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote_plus

_sequencers = itertools.count(0x1000)


def s3_event(
    bucket: str,
    key: str,
    *,
    sequencer: str | None = None,
    event_name: str = "ObjectCreated:Put",
    event_time: str = "2025-07-10T12:00:00.000Z",
    etag: str = "0123456789abcdef",
) -> dict[str, Any]:
    """One record; the key URL-encoded with ``quote_plus`` as S3 does (spaces become ``+``)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": event_time,
                "eventName": event_name,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": 2,
                        "eTag": etag,
                        "sequencer": sequencer or f"{next(_sequencers):016X}",
                    },
                },
            }
        ]
    }
