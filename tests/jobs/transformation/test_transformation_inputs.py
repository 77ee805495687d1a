"""Finding the run's files, deciding what is already applied, archiving, and the lake lock (no Spark)."""

from __future__ import annotations

import json
import threading
import time
import uuid

import boto3
import pytest

from jobs.config import PipelineConfig
from jobs.s3_store import S3Store
from jobs.transformation.archive import archive
from jobs.transformation.inputs import (
    SKIP_INVALID,
    SKIP_MISSING,
    SKIP_PROCESSED,
    discover,
    pending,
    requested_rels,
)
from jobs.transformation.journal import control_prefix
from jobs.transformation.lock import LeaseLock, LeaseLostError, LockSettings, LockTimeoutError


@pytest.fixture
def bucket(moto_endpoint) -> tuple[str, object]:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = f"ecomkpi-in-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name, s3


def config(bucket: str, endpoint: str, **env: str) -> PipelineConfig:
    return PipelineConfig.from_env({"S3_BUCKET": bucket, "AWS_ENDPOINT_URL": endpoint, **env})


def put(s3, bucket: str, key: str, body: bytes = b"h\n1\n", **metadata: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)


def test_keys_map_to_validated_and_earlier_generations_are_skipped(bucket, moto_endpoint):
    name, s3 = bucket
    cfg = config(
        name,
        moto_endpoint,
        BATCH_ID="2025-07-10",
        ORDERS_KEYS=json.dumps(
            [
                "raw/orders/2025-07-10/a.csv",  # validated, arrived later
                "raw/orders/2025-07-10/b.csv",  # applied by an earlier generation
                "orders/2025-07-10/c.csv",  # rejected
                "raw/orders/2025-07-10/d.csv",  # not validated (yet)
            ]
        ),
        ORDER_ITEMS_KEYS="raw/order_items/2025-07-10/i.csv",
    )
    assert requested_rels(cfg)[0] == "products/products.csv"
    put(
        s3,
        name,
        "validated/orders/2025-07-10/a.csv",
        **{"ecomkpi-raw-etag": "e-a", "ecomkpi-arrived-ms": "2000"},
    )
    put(s3, name, "processed/orders/2025-07-10/b.csv")
    put(s3, name, "invalid/orders/2025-07-10/c.csv")
    put(
        s3,
        name,
        "validated/order_items/2025-07-10/i.csv",
        **{"ecomkpi-raw-etag": "e-i", "ecomkpi-arrived-ms": "1000"},
    )
    # Left in validated/ by a failed earlier run and absent from this execution's input: swept.
    put(s3, name, "validated/order_items/2025-07-10/left.csv")
    put(
        s3,
        name,
        "validated/products/products.csv",
        **{"ecomkpi-raw-etag": "e-p", "ecomkpi-arrived-ms": "500"},
    )

    inputs = discover(cfg, S3Store(cfg, client=s3))
    assert [f.rel for f in inputs.files] == [
        "products/products.csv",
        "order_items/2025-07-10/i.csv",
        "orders/2025-07-10/a.csv",
        "order_items/2025-07-10/left.csv",  # no metadata: arrival = LastModified (now)
    ]
    assert inputs.files[2].raw_etag == "e-a" and inputs.files[2].arrived_ms == 2000
    left = inputs.files[3]
    assert left.raw_etag == left.object_etag and left.arrived_ms > 1_700_000_000_000
    assert inputs.skipped == {
        "orders/2025-07-10/b.csv": SKIP_PROCESSED,
        "orders/2025-07-10/c.csv": SKIP_INVALID,
        "orders/2025-07-10/d.csv": SKIP_MISSING,
    }
    to_apply, done = pending(
        inputs.files, {"orders/2025-07-10/a.csv": "e-a", "order_items/2025-07-10/i.csv": "old"}
    )
    assert [f.rel for f in done] == ["orders/2025-07-10/a.csv"]
    assert "order_items/2025-07-10/i.csv" in [f.rel for f in to_apply]  # a new version of a known file


def test_archive_moves_files_copies_the_master_and_leaves_a_newer_upload(bucket, moto_endpoint):
    name, s3 = bucket
    cfg = config(name, moto_endpoint, BATCH_ID="2025-07-10")
    for key in (
        "validated/orders/2025-07-10/a.csv",
        "validated/orders/2025-07-10/b.csv",
        "validated/products/products.csv",
    ):
        put(s3, name, key)
    store = S3Store(cfg, client=s3)
    cfg = cfg.with_(orders_keys=("orders/2025-07-10/a.csv", "orders/2025-07-10/b.csv"))
    files = discover(cfg, store).files
    put(s3, name, "validated/orders/2025-07-10/b.csv", body=b"h\n2\n")  # re-validated meanwhile
    result = archive(store, files)
    assert result.copied == ["products/products.csv"]
    assert result.moved == ["orders/2025-07-10/a.csv"]
    assert result.left == ["orders/2025-07-10/b.csv"]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"])
    assert "validated/orders/2025-07-10/b.csv" in keys and "validated/orders/2025-07-10/a.csv" not in keys
    assert {
        "processed/orders/2025-07-10/a.csv",
        "processed/products/products.csv",
        "validated/products/products.csv",
    } <= set(keys)


def test_control_prefix_sits_next_to_a_lake_in_the_bucket():
    assert control_prefix("s3a://bkt/lake", "bkt") == "lake"
    assert control_prefix("s3a://bkt/data/lake/", "bkt") == "data/lake"
    assert control_prefix("/tmp/lake", "bkt") == "lake"
    assert control_prefix("s3a://other/lake", "bkt") == "lake"


FAST = LockSettings(ttl_seconds=2.0, wait_seconds=1.0, poll_seconds=0.05)


def test_lock_is_exclusive_and_released_conditionally(bucket):
    name, s3 = bucket
    first = LeaseLock(s3, name, "lake/_lock.json", "run-a", FAST)
    first.acquire()
    first.ensure_held()
    with pytest.raises(LockTimeoutError):
        LeaseLock(s3, name, "lake/_lock.json", "run-b", FAST).acquire()
    first.release()
    with LeaseLock(s3, name, "lake/_lock.json", "run-b", FAST) as second:
        assert second.took_over is None
    assert s3.list_objects_v2(Bucket=name).get("KeyCount") == 0


def test_heartbeat_keeps_the_lease_and_a_stale_lock_expires(bucket):
    name, s3 = bucket
    with LeaseLock(s3, name, "lake/_lock.json", "run-a", FAST) as held:
        time.sleep(2.5)  # longer than the lease: only the heartbeat keeps it
        held.ensure_held()
        with pytest.raises(LockTimeoutError):
            LeaseLock(s3, name, "lake/_lock.json", "run-b", FAST).acquire()
    # A crashed run's lock: expired, never released.
    body = {"owner": "crashed-run", "expires_at_ms": int((time.time() - 1) * 1000)}
    s3.put_object(Bucket=name, Key="lake/_lock.json", Body=json.dumps(body).encode())
    with LeaseLock(s3, name, "lake/_lock.json", "run-c", FAST) as taker:
        assert taker.took_over == "crashed-run"


def test_a_run_that_lost_its_lease_stops_before_committing(bucket):
    name, s3 = bucket
    slow = LeaseLock(s3, name, "lake/_lock.json", "run-a", LockSettings(ttl_seconds=60, wait_seconds=1))
    slow.acquire()
    slow._stop.set()  # the run stalls: no more heartbeats
    s3.put_object(Bucket=name, Key="lake/_lock.json", Body=b'{"owner": "someone-else"}')  # taken over
    slow.expires_at = 0.0  # and its lease has run out
    with pytest.raises(LeaseLostError):
        slow.ensure_held()
    slow.release()  # must not delete the new holder's lock
    assert s3.get_object(Bucket=name, Key="lake/_lock.json")["Body"].read() == b'{"owner": "someone-else"}'


def test_two_contenders_for_an_expired_lock_one_wins(bucket):
    name, s3 = bucket
    body = {"owner": "crashed-run", "expires_at_ms": 0}
    s3.put_object(Bucket=name, Key="lake/_lock.json", Body=json.dumps(body).encode())
    settings = LockSettings(ttl_seconds=30, wait_seconds=0.5, poll_seconds=0.05)
    locks = [LeaseLock(s3, name, "lake/_lock.json", f"run-{i}", settings) for i in range(2)]
    outcomes: list[str] = []

    def contend(lock: LeaseLock) -> None:
        try:
            lock.acquire()
            outcomes.append("won")
        except LockTimeoutError:
            outcomes.append("waited")

    threads = [threading.Thread(target=contend, args=(lock,)) for lock in locks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["waited", "won"]
    for lock in locks:
        lock.release()


def test_the_bytes_a_run_starts_its_jvm_for_are_its_batches_validated_files(bucket, moto_endpoint):
    """What decides a short-lived JVM (jobs.spark_session.is_short_lived) for a per-batch task."""
    from jobs.transformation.job import batch_bytes

    name, s3 = bucket
    put(s3, name, "validated/orders/2025-07-10/a.csv", b"x" * 100)
    put(s3, name, "validated/order_items/2025-07-10/i.csv", b"x" * 30)
    put(s3, name, "validated/orders/2025-07-11/b.csv", b"x" * 7)
    put(s3, name, "validated/products/products.csv", b"x" * 5)
    put(s3, name, "raw/orders/2025-07-10/late.csv", b"x" * 1000)  # not validated: not read
    day = config(
        name,
        moto_endpoint,
        ORDERS_KEYS=json.dumps(["raw/orders/2025-07-10/a.csv", "raw/orders/2025-07-10/late.csv"]),
        ORDER_ITEMS_KEYS=json.dumps(["raw/order_items/2025-07-10/i.csv"]),
    )
    other = config(name, moto_endpoint, ORDERS_KEYS=json.dumps(["orders/2025-07-11/b.csv"]))
    store = S3Store(day)
    assert batch_bytes(store, [day]) == 100 + 30 + 5
    assert batch_bytes(store, [day, other]) == 100 + 30 + 5 + 7  # the master counted once
