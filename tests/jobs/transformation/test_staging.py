"""Staging rows: the one parse of a producer file, numbered by line, typed, and read back unchanged."""

from __future__ import annotations

import csv
import json
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from jobs.contract import ORDER_ITEMS, ORDERS, ROW_NUM, SOURCE_FILE
from jobs.oracle import read_files
from jobs.s3_store import S3Store
from jobs.staging import (
    ITEM_KEY,
    ORDER_DATE,
    FileVersion,
    parse_file,
    read_staged,
    staged_files,
    staging_prefix,
    staging_schema,
    write_staged,
)
from jobs.staging_marker import KeySummary, marker_body, read_marker
from jobs.transformation.sources import SourceFile, read_new_rows
from tests.support.validation import create_bucket, make_config

HEADER = ["order_id", "user_id", "status", "gender", "created_at", "returned_at", "shipped_at", "delivered_at",
          "num_of_item"]  # fmt: skip


def _write(path: Path, ids: list[int], header: list[str], created: str = "2025-07-10 10:00:00") -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for i in ids:
            row = {"order_id": str(i), "user_id": "7", "status": "Complete", "gender": "F",
                   "created_at": created, "num_of_item": "1"}  # fmt: skip
            w.writerow([row.get(h, "") for h in header])


def _by_line(rows: list[Any], rel: str, column: str) -> list[str]:
    return [r[column] for r in sorted((r for r in rows if r[SOURCE_FILE] == rel), key=lambda r: r[ROW_NUM])]


def test_prefix_names_the_version_and_differs_per_key_and_etag() -> None:
    a = staging_prefix("orders/2025-07-10/a b[1].csv", "e1")
    assert a.startswith("staging/v2/orders/version=") and a == staging_prefix(
        "orders/2025-07-10/a b[1].csv", "e1"
    )
    assert " " not in a and "[" not in a  # a producer's odd name never reaches a Spark path
    assert a != staging_prefix("orders/2025-07-10/a b[1].csv", "e2")
    assert a != staging_prefix("orders/2025-07-11/a b[1].csv", "e1")


@pytest.mark.spark
def test_rows_are_numbered_by_line_across_splits_and_dated(spark: Any, tmp_path: Path) -> None:
    # Ids are not in line order, so a correct number can only come from the line position.
    first, second = list(range(500, 0, -1)), [7, 3, 9, 1]
    _write(tmp_path / "a.csv", first, HEADER)
    _write(tmp_path / "b.csv", second, list(reversed(HEADER)), created="2025-07-10T23:30:00-02:00")
    (tmp_path / "empty.csv").write_text("")
    sources = [
        SourceFile("orders/2025-07-10/a.csv", str(tmp_path / "a.csv"), 2, "ea"),
        SourceFile("orders/2025-07-10/b.csv", str(tmp_path / "b.csv"), 1, "eb"),
        SourceFile("orders/2025-07-10/empty.csv", str(tmp_path / "empty.csv"), 3, "ee"),
    ]
    before = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "2000")  # a.csv is read as ~15 splits
    try:
        assert spark.read.text(str(tmp_path / "a.csv")).rdd.getNumPartitions() > 10
        rows = read_new_rows(spark, ORDERS, sources).collect()
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", before)
    assert _by_line(rows, "orders/2025-07-10/a.csv", "order_id") == [str(i) for i in first]
    assert _by_line(rows, "orders/2025-07-10/b.csv", "order_id") == [str(i) for i in second]
    assert sorted(r[ROW_NUM] for r in rows) == sorted([*range(1, 501), *range(1, 5)])
    dates = {r[SOURCE_FILE]: r[ORDER_DATE] for r in rows}
    assert dates == {
        "orders/2025-07-10/a.csv": date(2025, 7, 10),
        "orders/2025-07-10/b.csv": date(2025, 7, 11),
    }
    assert {r["_ingest_seq"] for r in rows if r[SOURCE_FILE].endswith("b.csv")} == {1}
    # The oracle's view of the same files: the contract columns and bookkeeping, same numbers.
    oracle = read_files(spark, ORDERS, sources).collect()
    assert sorted((r[SOURCE_FILE], r[ROW_NUM], r["order_id"]) for r in oracle) == sorted(
        (r[SOURCE_FILE], r[ROW_NUM], r["order_id"]) for r in rows
    )


@pytest.mark.spark
def test_the_validation_shape_counts_number_a_cached_multi_split_file_by_line(
    spark: Any, tmp_path: Path
) -> None:
    """Validation numbers its cached frame from the shape check's per-partition counts (no job of
    its own): the same numbers as counting, and each row's line, whatever the split layout."""
    from jobs.csv_files import read_csv
    from jobs.staging import partition_rows, stage_rows
    from jobs.validation.reading import file_shape

    ids = [*range(700, 0, -1)]
    _write(tmp_path / "c.csv", ids, HEADER)
    before = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "3000")
    try:
        frame = read_csv(spark, str(tmp_path / "c.csv"), tuple(HEADER)).cache()
        shape = file_shape(frame, tuple(HEADER))
        assert shape.rows == 700 and len(shape.partition_rows) > 5
        assert shape.partition_rows == partition_rows(frame) and sum(shape.partition_rows) == 700
        version = FileVersion("orders/2025-07-10/c.csv", "ec", 5)
        given = stage_rows(frame, version, shape.partition_rows).collect()
        counted = stage_rows(frame, version).collect()
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", before)
        frame.unpersist()
    assert _by_line(given, version.rel, "order_id") == [str(i) for i in ids]
    assert sorted(r[ROW_NUM] for r in given) == list(range(1, 701))
    assert sorted(given) == sorted(counted)


@pytest.mark.spark
def test_written_rows_read_back_unchanged_and_replace_the_parse(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text(
        "ID,order_id,user_id,product_id,sale_price,id\n"  # `id` repeats `ID`: the first one counts
        " 11 ,1,7,p1,9.99,x\n"
        ",1,7,p2,5.00,y\n",
        encoding="utf-8",
    )
    version = FileVersion("order_items/2025-07-10/items.csv", "etag-1", 1234)
    parsed = parse_file(spark, str(path), version)
    assert [(f.name, f.dataType) for f in parsed.schema] == [
        (f.name, f.dataType) for f in staging_schema(ORDER_ITEMS)
    ]
    out = str(tmp_path / "staged")
    write_staged(parsed, out)
    assert (tmp_path / "staged" / "_SUCCESS").exists()
    staged = read_staged(spark, ORDER_ITEMS, [out])
    assert sorted(map(repr, staged.collect())) == sorted(map(repr, parsed.collect()))
    got = {
        r[ROW_NUM]: (r["id"], r[ITEM_KEY], r["sale_price"], r["inventory_item_id"]) for r in staged.collect()
    }
    assert got == {
        1: ("11", "11", "9.99", None),  # trimmed; a column the file lacks is null
        2: (None, "row:order_items/2025-07-10/items.csv#2", "5.00", None),  # no id: the row is its own item
    }
    via_source = read_new_rows(
        spark, ORDER_ITEMS, [SourceFile(version.rel, str(path), 1234, "etag-1", staged_uri=out)]
    )
    assert sorted(map(repr, via_source.collect())) == sorted(map(repr, parsed.collect()))


@pytest.mark.spark
def test_a_validated_file_without_staging_rows_is_read_less_the_rows_its_drop_rules_leave_out(
    spark: Any, tmp_path: Path
) -> None:
    """The transformation parses such a file as validation would have staged it: the row with a
    negative price (a drop rule of the items suite) is left out, and row numbers count the kept rows,
    as in staging."""
    path = tmp_path / "items.csv"
    path.write_text(
        "id,order_id,user_id,product_id,sale_price\n1,1,7,p1,9.99\n2,1,7,p2,-3.00\n3,2,7,p3,5.00\n",
        encoding="utf-8",
    )
    rel = "order_items/2025-07-10/items.csv"
    everything = parse_file(spark, str(path), FileVersion(rel, "etag-1", 1))
    assert sorted(r["id"] for r in everything.collect()) == ["1", "2", "3"]
    kept = read_new_rows(spark, ORDER_ITEMS, [SourceFile(rel, str(path), 1, "etag-1")]).collect()
    assert sorted((r["id"], r[ROW_NUM]) for r in kept) == [("1", 1), ("3", 2)]


def test_a_marker_is_trusted_only_while_its_files_are_there_at_their_sizes(moto_endpoint: str) -> None:
    """``read_marker`` needs no Spark: the names and sizes come with the listing. A marker of an
    earlier release (names only) is still checked by name; an empty marker (Spark's own) by nothing."""
    config = make_config(moto_endpoint, f"ecomkpi-marker-{uuid.uuid4().hex[:8]}")
    create_bucket(config)
    store = S3Store(config)
    prefix = "staging/v2/orders/version=abc"
    store.put_bytes(f"{prefix}/part-0.parquet", b"x" * 10)
    store.put_bytes(f"{prefix}/part-1.parquet", b"y" * 20)
    summary = KeySummary("order_id", True)

    def check(body: bytes) -> bool:
        store.put_bytes(f"{prefix}/_SUCCESS", body)
        complete, _ = read_marker(store, prefix)
        listed, _ = read_marker(store, prefix, staged_files(store, ["orders"]))
        assert complete == listed  # one listing per dataset decides as the per-version one does
        return complete

    assert check(marker_body(summary, {"part-0.parquet": 10, "part-1.parquet": 20}, rows=7))
    assert json.loads(store.read_bytes(f"{prefix}/_SUCCESS"))["rows"] == 7
    assert read_marker(store, prefix)[1] == summary
    assert not check(marker_body(summary, {"part-0.parquet": 10, "part-1.parquet": 21}))  # rewritten
    assert not check(marker_body(summary, {"part-0.parquet": 10, "part-2.parquet": 20}))  # gone
    assert check(json.dumps({"parts": ["part-0.parquet", "part-1.parquet"]}).encode())  # names only
    assert not check(json.dumps({"parts": ["part-0.parquet", "part-9.parquet"]}).encode())
    assert check(b"")  # Spark's own marker names nothing


@pytest.mark.spark
def test_a_run_reads_only_its_versions_from_the_datasets_staging_folder(
    spark: Any, moto_endpoint: str, tmp_path: Path
) -> None:
    """Versions are partitions of their dataset's folder, read through it with a filter: another
    version's rows there (another day's, or one being written without its marker yet) are not read."""
    config = make_config(moto_endpoint, f"ecomkpi-staged-{uuid.uuid4().hex[:8]}")
    create_bucket(config)
    store = S3Store(config)
    versions = [FileVersion(f"orders/2025-07-10/part {i}.csv", f"etag-{i}", i) for i in range(3)]
    for i, version in enumerate(versions):
        path = tmp_path / f"part{i}.csv"
        _write(path, [10 * i + 1, 10 * i + 2], HEADER)
        write_staged(parse_file(spark, str(path), version), store.uri(version.prefix), store, dataset=ORDERS)
    assert all(v.prefix.startswith("staging/v2/orders/version=") for v in versions)

    wanted = [versions[2], versions[0]]
    rows = read_staged(spark, ORDERS, [store.uri(v.prefix) for v in wanted]).collect()
    assert sorted((r[SOURCE_FILE], r["order_id"]) for r in rows) == [
        ("orders/2025-07-10/part 0.csv", "1"),
        ("orders/2025-07-10/part 0.csv", "2"),
        ("orders/2025-07-10/part 2.csv", "21"),
        ("orders/2025-07-10/part 2.csv", "22"),
    ]
    assert [f.name for f in read_staged(spark, ORDERS, [store.uri(versions[1].prefix)]).schema] == [
        f.name for f in staging_schema(ORDERS)
    ]
