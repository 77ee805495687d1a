"""Resolution of keys and placement of files against emulated S3 (no Spark): the idempotency core."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from jobs.run_log import RunLog
from jobs.s3_store import S3Store
from jobs.validation.locations import META_ARRIVED_MS, META_RAW_ETAG
from jobs.validation.placement import place
from jobs.validation.verdicts import (
    MISSING,
    PASSED,
    PASSED_EARLIER,
    RECORDED,
    REJECTED,
    REJECTED_EARLIER,
    VALIDATE,
    VerdictBook,
    VerdictRecord,
    resolve,
)
from tests.support.validation import create_bucket, make_config

REL = "orders/2025-07-10/part1.csv"
RULES = "rules-a"


@pytest.fixture
def store(moto_endpoint: str) -> S3Store:
    config = make_config(moto_endpoint, f"ecomkpi-valverd-{uuid.uuid4().hex[:8]}")
    create_bucket(config)
    return S3Store(config)


@pytest.fixture
def log() -> RunLog:
    return RunLog("validation", "2025-07-10", "run-1", stream=io.StringIO())


def _record(store: S3Store, verdict: str, etag: str, rules: str = RULES) -> VerdictRecord:
    rec = VerdictRecord(rel=REL, etag=etag, verdict=verdict, dataset="orders", report_key="r.json",
                        batch_id="2025-07-10", run_id="run-0", decided_at="t", rules=rules)  # fmt: skip
    VerdictBook(store).put(rec)
    return rec


def _resolve(store: S3Store) -> str:
    return resolve(store, VerdictBook(store), REL, RULES).kind


def test_a_raw_version_is_reused_only_for_its_etag_and_rules(store: S3Store) -> None:
    store.put_bytes(f"raw/{REL}", b"a,b\n1,2\n")
    assert _resolve(store) == VALIDATE
    etag = store.head(f"raw/{REL}").etag
    _record(store, PASSED, etag)
    assert _resolve(store) == RECORDED
    _record(store, PASSED, etag, rules="rules-b")  # the suites changed since
    assert _resolve(store) == VALIDATE
    _record(store, PASSED, etag)
    store.put_bytes(f"raw/{REL}", b"a,b\n1,3\n")  # a re-upload
    assert _resolve(store) == VALIDATE


def test_moved_files_and_missing_ones(store: S3Store) -> None:
    assert _resolve(store) == MISSING
    store.put_bytes(f"invalid/{REL}", b"x")
    assert _resolve(store) == REJECTED_EARLIER
    store.put_bytes(f"processed/{REL}", b"x")
    _record(store, REJECTED, "e1")  # the latest decision names the current fate
    assert _resolve(store) == REJECTED_EARLIER
    _record(store, PASSED, "e0")
    assert _resolve(store) == PASSED_EARLIER


def test_without_a_record_the_newest_arrival_wins(store: S3Store) -> None:
    client, bucket = store.client, store.bucket
    client.put_object(Bucket=bucket, Key=f"validated/{REL}", Body=b"v1", Metadata={META_ARRIVED_MS: "1000"})
    client.put_object(Bucket=bucket, Key=f"invalid/{REL}", Body=b"v2", Metadata={META_ARRIVED_MS: "2000"})
    assert _resolve(store) == REJECTED_EARLIER
    client.put_object(Bucket=bucket, Key=f"validated/{REL}", Body=b"v3", Metadata={META_ARRIVED_MS: "3000"})
    assert _resolve(store) == PASSED_EARLIER


def test_place_is_idempotent_and_stamps_the_copy(store: S3Store, log: RunLog) -> None:
    store.put_bytes(f"raw/{REL}", b"a,b\n1,2\n")
    raw = store.head(f"raw/{REL}")
    first = place(store, REL, raw, PASSED, keep_raw=False, log=log)
    again = place(store, REL, raw, PASSED, keep_raw=False, log=log)  # a retry after the move
    assert first.location == again.location == f"validated/{REL}"
    assert store.head(f"raw/{REL}") is None
    meta = store.head(f"validated/{REL}").metadata
    assert meta == {META_RAW_ETAG: raw.etag, META_ARRIVED_MS: str(raw.last_modified_ms)}


def test_place_never_deletes_a_newer_upload(store: S3Store, log: RunLog) -> None:
    store.put_bytes(f"raw/{REL}", b"a,b\n1,2\n")
    validated_version = store.head(f"raw/{REL}")
    store.put_bytes(f"raw/{REL}", b"a,b\n1,2\n3,4\n")  # the producer re-uploads during the run
    placed = place(store, REL, validated_version, PASSED, keep_raw=False, log=log)
    assert placed.raw_kept
    assert store.read_bytes(f"raw/{REL}") == b"a,b\n1,2\n3,4\n"  # left for the next run
    assert "place.raw_changed" in log.text()


def test_a_pass_supersedes_the_earlier_rejection(store: S3Store, log: RunLog) -> None:
    store.client.put_object(
        Bucket=store.bucket, Key=f"invalid/{REL}", Body=b"old", Metadata={META_RAW_ETAG: "e-old"}
    )
    store.put_text(f"invalid/{REL}.report.json", json.dumps({"verdict": "rejected", "etag": "e-old"}))
    store.put_bytes(f"raw/{REL}", b"a,b\n1,2\n")
    raw = store.head(f"raw/{REL}")
    placed = place(store, REL, raw, PASSED, keep_raw=True, log=log)  # the master: copied, kept
    assert placed.superseded == f"invalid/superseded/{REL}.e-old"
    assert store.head(f"invalid/{REL}") is None and store.head(f"invalid/{REL}.report.json") is None
    report = store.read_json(f"invalid/superseded/{REL}.e-old.report.json")
    assert report["superseded"]["by_etag"] == raw.etag
    assert store.read_bytes(f"invalid/superseded/{REL}.e-old") == b"old"
    assert store.head(f"raw/{REL}") is not None and placed.raw_kept
