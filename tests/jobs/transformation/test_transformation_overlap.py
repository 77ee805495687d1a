"""Overlapping runs on one lake (two batches at once, a retry racing a slow attempt) are serialised.

The lease lock lets one run write at a time; the second waits, then plans from the first one's
result, so the final state equals running them one after the other. A lock left by a crashed run
does not block anyone longer than its lease.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from jobs.transformation.lake import ITEM_KEY, SILVER_ITEMS, SILVER_ORDERS
from tests.jobs.transformation.test_transformation_batches import (
    assert_matches_oracle,
    load_batch_0710,
    load_batch_0711,
)
from tests.lambda_trigger.test_lambda_trigger import _serialized
from tests.support.transformation import Pipeline


@pytest.fixture(scope="module", autouse=True)
def atomic_conditional_writes() -> Iterator[None]:
    """Give the in-process moto server S3's atomic conditional writes.

    moto checks a PutObject's If-Match / If-None-Match and stores the object in separate Python steps
    while its HTTP server handles requests on many threads, so two runs taking over the same stale
    lock can both pass (S3 lets one win). Seen once in a clean-clone run (2026-12-07): both runs took
    over the crashed run's lock in the same millisecond and one later found its lease lost. The test
    is about the lock's protocol, so the emulator's object writes are serialised here, as the
    trigger's tests serialise DynamoDB's item writes (tests/lambda_trigger/test_lambda_trigger.py)."""
    from moto.s3.responses import S3Response

    with pytest.MonkeyPatch.context() as patch:
        for name in ("put_object", "delete_object"):
            patch.setattr(S3Response, name, _serialized(getattr(S3Response, name)))
        yield


def test_concurrent_runs_equal_sequential_and_a_stale_lock_expires(moto_endpoint, spark, tmp_path):
    p = Pipeline(moto_endpoint, spark, tmp_path)
    b1, b2 = load_batch_0710(p), load_batch_0711(p)
    # A run crashed while holding the lock: its lease ran out a second ago.
    stale = {"owner": "2025-07-09/crashed-run", "expires_at_ms": int((time.time() - 1) * 1000)}
    p.s3.put_object(Bucket=p.bucket, Key="lake/_lock.json", Body=json.dumps(stale).encode())

    results, errors = {}, []

    def run(batch: str, keys: dict[str, list[str]]) -> None:
        try:
            results[batch] = p.run(batch, keys["orders"], keys["items"])
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("2025-07-10", b1)),
        threading.Thread(target=run, args=("2025-07-11", b2)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    first, second = sorted(results.values(), key=lambda r: r.lock["waited_seconds"])
    assert first.lock["took_over"] == "2025-07-09/crashed-run"
    assert second.lock["waited_seconds"] > 0 and second.lock["took_over"] is None
    assert {first.status, second.status} == {"ok"}

    assert_matches_oracle(p)
    orders = p.silver(SILVER_ORDERS, "order_id")
    assert len(orders) == len(set(orders)) == 5
    items = p.silver(SILVER_ITEMS, ITEM_KEY)
    assert len(items) == len(set(items)) == 8
    assert p.keys("lake/") == ["lake/_key_ranges.json"]  # lock released, journal cleared; the ledger stays
