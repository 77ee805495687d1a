"""Objects above S3's 5 GiB CopyObject limit are moved in parts, by every move of the pipeline.

The emulator copies any size in one request, so each test enforces S3's rule at a lowered limit
(a botocore hook that refuses a CopyObject whose source is larger, as S3 does above 5 GiB) and
lowers the multipart threshold to the same few MiB: an 11 MiB object then stands for a 6 GiB one.
Everything else is real: objects, ETags, metadata and conditional copies on the moto server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from jobs import aws
from jobs.config import PipelineConfig
from jobs.run_log import RunLog
from jobs.s3_store import S3Store
from jobs.transformation.archive import archive
from jobs.transformation.inputs import InputFile
from jobs.validation.locations import META_RAW_ETAG
from jobs.validation.placement import place
from jobs.validation.verdicts import PASSED
from lambda_trigger.unrecognised import move_unrecognised
from lambda_trigger.withdrawal import set_aside
from tests.support.validation import create_bucket, make_config

LIMIT = 5 * 1024 * 1024  # stands for S3's 5 GiB; also the lowered threshold and part size
BIG = b"order_id,user_id\n" + b"1,2\n" * (11 * 1024 * 1024 // 4)  # > 2 parts: stands for > 5 GiB


@pytest.fixture
def config(moto_endpoint: str, names: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineConfig]:
    monkeypatch.setattr(aws, "MULTIPART_COPY_THRESHOLD", LIMIT, raising=False)
    monkeypatch.setattr(aws, "MULTIPART_COPY_PART_SIZE", LIMIT, raising=False)
    cfg = make_config(moto_endpoint, names.bucket)
    create_bucket(cfg)
    # A client of its own for the hook's HEAD (the pipeline's cached client carries the hook).
    plain = boto3.session.Session().client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")

    def refuse_large_copy_sources(params: dict[str, Any], **_: Any) -> None:
        """S3's answer to a CopyObject of a source above the limit (the emulator has no limit)."""
        source = params["CopySource"]
        bucket, key = (source["Bucket"], source["Key"]) if isinstance(source, dict) else source.split("/", 1)
        if plain.head_object(Bucket=bucket, Key=key)["ContentLength"] > LIMIT:
            message = "The specified copy source is larger than the maximum allowable size for a copy source"
            raise ClientError({"Error": {"Code": "InvalidRequest", "Message": message}}, "CopyObject")

    events = aws.client("s3", cfg).meta.events
    events.register("before-parameter-build.s3.CopyObject", refuse_large_copy_sources)
    yield cfg
    events.unregister("before-parameter-build.s3.CopyObject", refuse_large_copy_sources)


def _parts(etag: str) -> int:
    """How many parts S3 wrote the object in (a multipart ETag ends in ``-<parts>``)."""
    etag = etag.strip('"')
    return int(etag.rsplit("-", 1)[1]) if "-" in etag else 1


def test_validation_places_a_file_above_the_copy_limit_in_parts(config: PipelineConfig) -> None:
    store = S3Store(config)
    rel = "orders/2025-07-10/big.csv"
    store.put_bytes(f"raw/{rel}", BIG, "text/csv")
    raw = store.head(f"raw/{rel}")
    assert raw is not None

    placed = place(store, rel, raw, PASSED, keep_raw=False, log=RunLog("validation", "b", "r"))

    assert placed.location == f"validated/{rel}" and not placed.raw_kept
    copy = store.head(f"validated/{rel}")
    assert copy is not None and _parts(copy.etag) == 3
    assert copy.metadata[META_RAW_ETAG] == raw.etag  # the verdict's version, as a single copy records it
    assert store.read_bytes(f"validated/{rel}") == BIG
    assert store.head(f"raw/{rel}") is None


def test_a_large_conditional_copy_still_refuses_a_changed_source(config: PipelineConfig) -> None:
    store = S3Store(config)
    store.put_bytes("raw/orders/2025-07-10/big.csv", BIG)
    stale = store.head("raw/orders/2025-07-10/big.csv")
    assert stale is not None
    store.put_bytes("raw/orders/2025-07-10/big.csv", BIG + b"3,4\n")  # a re-upload meanwhile

    assert not store.copy_if_match("raw/orders/2025-07-10/big.csv", "validated/x.csv", stale.etag)
    assert store.head("validated/x.csv") is None
    assert not store.copy_if_match("raw/orders/2025-07-10/gone.csv", "validated/y.csv", stale.etag)


def test_the_transformation_archives_a_file_above_the_copy_limit(config: PipelineConfig) -> None:
    store = S3Store(config)
    rel = "orders/2025-07-10/big.csv"
    store.put_bytes(f"validated/{rel}", BIG, "text/csv")
    store.copy(f"validated/{rel}", f"validated/{rel}", {META_RAW_ETAG: "raw-etag-1"})
    copy = store.head(f"validated/{rel}")
    assert copy is not None
    f = InputFile(rel=rel, dataset="orders", raw_etag="raw-etag-1", object_etag=copy.etag, arrived_ms=1)

    result = archive(store, [f])

    assert result.moved == [rel]
    processed = store.head(f"processed/{rel}")
    assert processed is not None and _parts(processed.etag) == 3
    assert processed.metadata == {META_RAW_ETAG: "raw-etag-1"}  # kept, as CopyObject keeps it
    assert store.read_bytes(f"processed/{rel}") == BIG


def test_the_trigger_moves_an_unrecognised_key_above_the_copy_limit(config: PipelineConfig) -> None:
    client = aws.client("s3", config)
    key = "raw/orders/2025-07-10/deeper/big.csv"
    client.put_object(
        Bucket=config.bucket, Key=key, Body=BIG, ContentType="text/csv", Metadata={"producer": "shop-1"}
    )

    moved = move_unrecognised(
        client, config.bucket, key, "layout", "a deeper folder", now="2026-12-07T00:00:00Z", event={}
    )

    assert moved is not None
    head = client.head_object(Bucket=config.bucket, Key=moved.destination)
    assert _parts(head["ETag"]) == 3
    assert head["ContentType"] == "text/csv" and head["Metadata"] == {"producer": "shop-1"}
    body = client.get_object(Bucket=config.bucket, Key=moved.destination)["Body"].read()
    assert body == BIG
    with pytest.raises(ClientError):
        client.head_object(Bucket=config.bucket, Key=key)


def test_a_withdrawal_sets_aside_a_file_above_the_copy_limit(config: PipelineConfig) -> None:
    client = aws.client("s3", config)
    client.put_object(Bucket=config.bucket, Key="validated/orders/2025-07-10/big.csv", Body=BIG)

    moved = set_aside(
        client, config.bucket, "raw/orders/2025-07-10/big.csv", "wrong shop", now="2026-12-07", by="test"
    )

    assert moved == ["validated/orders/2025-07-10/big.csv"]
    head = client.head_object(Bucket=config.bucket, Key="invalid/withdrawn/orders/2025-07-10/big.csv")
    assert _parts(head["ETag"]) == 3 and head["ContentLength"] == len(BIG)


def test_small_objects_keep_the_single_request_copy(config: PipelineConfig) -> None:
    store = S3Store(config)
    store.put_bytes("raw/orders/2025-07-10/small.csv", b"order_id\n1\n")
    assert store.copy("raw/orders/2025-07-10/small.csv", "validated/orders/2025-07-10/small.csv")
    copy = store.head("validated/orders/2025-07-10/small.csv")
    assert copy is not None and _parts(copy.etag) == 1
