"""The bench's own arithmetic: overlapping Spark jobs counted once, monthly history files."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from bench.incremental import monthly_files
from bench.profile import JobTiming, busy_seconds, by_call_site, describe


def test_busy_seconds_counts_overlapping_jobs_once() -> None:
    jobs = [
        JobTiming(1, "collect at a.py:1", 0.0, 4.0),
        JobTiming(2, "stage", 1.0, 3.0),  # inside job 1 (an AQE stage of the same query)
        JobTiming(3, "stage", 3.5, 6.0),  # overlaps the end of job 1
        JobTiming(4, "save at b.py:2", 8.0, 9.0),  # after a gap
    ]
    assert busy_seconds(jobs) == 7.0
    assert busy_seconds([]) == 0.0
    sites = by_call_site(jobs)
    assert sites[0] == {"call_site": "stage", "jobs": 2, "seconds": 4.5}  # largest first
    assert sites[1] == {"call_site": "collect at a.py:1", "jobs": 1, "seconds": 4.0}
    line = describe({"jobs": 4, "busy_s": 7.0, "by_call_site": sites}, top=2)
    assert line == "4 Spark jobs, busy 7.0s; top: stage 4.5s/2, collect at a.py:1 4.0s/1"


def test_monthly_files_keep_one_header_and_every_row(tmp_path: Path) -> None:
    days = [date(2024, 1, 30), date(2024, 1, 31), date(2024, 2, 1)]
    files = []
    for i, d in enumerate(days):
        for dataset in ("orders", "order_items"):
            path = tmp_path / "raw" / dataset / d.isoformat() / f"{dataset}_part1.csv"
            path.parent.mkdir(parents=True)
            body = f"id,created_at\n{i}a,{d}\n{i}b,{d}"  # the last line has no newline
            path.write_text(body if i else body + "\n")
            files.append((f"{dataset}/{d.isoformat()}/{path.name}", path))

    joined = dict(monthly_files(files, days, tmp_path / "out"))

    assert sorted(joined) == [
        "order_items/history/order_items_2024-01.csv",
        "order_items/history/order_items_2024-02.csv",
        "orders/history/orders_2024-01.csv",
        "orders/history/orders_2024-02.csv",
    ]
    january = joined["orders/history/orders_2024-01.csv"].read_text().splitlines()
    assert january == ["id,created_at", "0a,2024-01-30", "0b,2024-01-30", "1a,2024-01-31", "1b,2024-01-31"]
    assert (
        joined["orders/history/orders_2024-02.csv"].read_text()
        == "id,created_at\n2a,2024-02-01\n2b,2024-02-01\n"
    )
