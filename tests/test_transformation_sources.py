"""Row numbers of producer files: the sort-free numbering equals the window's, split files included."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from jobs.contract import ORDERS, ROW_NUM, SOURCE_FILE
from jobs.transformation.sources import SourceFile, number_rows, read_files, read_positioned
from jobs.transformation.versions import materialize

HEADER = ["order_id", "user_id", "status", "gender", "created_at", "returned_at", "shipped_at", "delivered_at",
          "num_of_item"]  # fmt: skip


def _write(path: Path, ids: list[int], header: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for i in ids:
            row = {"order_id": str(i), "user_id": "7", "status": "Complete", "gender": "F",
                   "created_at": "2025-07-10 10:00:00", "num_of_item": "1"}  # fmt: skip
            w.writerow([row.get(h, "") for h in header])


def test_sort_free_row_numbers_equal_the_window_and_the_line_positions(spark: Any, tmp_path: Path) -> None:
    # Producers differ in column order; ids are not in line order, so numbers can only come from lines.
    first, second = list(range(500, 0, -1)), [7, 3, 9, 1]
    _write(tmp_path / "a.csv", first, HEADER)
    _write(tmp_path / "b.csv", second, list(reversed(HEADER)))
    (tmp_path / "empty.csv").write_text("")
    sources = [
        SourceFile("orders/2025-07-10/a.csv", str(tmp_path / "a.csv"), 2),
        SourceFile("orders/2025-07-10/b.csv", str(tmp_path / "b.csv"), 1),
        SourceFile("orders/2025-07-10/empty.csv", str(tmp_path / "empty.csv"), 3),
    ]
    before = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "2000")  # a.csv is read as ~15 partitions
    try:
        positioned = read_positioned(spark, ORDERS, sources)
        assert positioned.rdd.getNumPartitions() > 10
        windowed = read_files(spark, ORDERS, sources)
        numbered = number_rows(materialize(positioned))
        assert numbered.columns == windowed.columns
        got = sorted(tuple(r) for r in numbered.collect())
        assert got == sorted(tuple(r) for r in windowed.collect())
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", before)
    by_file = {
        rel: [r["order_id"] for r in sorted((x for x in numbered.collect() if x[SOURCE_FILE] == rel),
                                             key=lambda x: x[ROW_NUM])]
        for rel in (s.rel for s in sources[:2])
    }  # fmt: skip
    assert by_file["orders/2025-07-10/a.csv"] == [str(i) for i in first]
    assert by_file["orders/2025-07-10/b.csv"] == [str(i) for i in second]
    assert sorted(r[ROW_NUM] for r in numbered.collect()) == sorted([*range(1, 501), *range(1, 5)])


def test_no_files_give_an_empty_numbered_frame(spark: Any) -> None:
    numbered = number_rows(read_positioned(spark, ORDERS, []))
    assert numbered.columns == read_files(spark, ORDERS, []).columns
    assert numbered.count() == 0
