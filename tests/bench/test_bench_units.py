"""The bench's own arithmetic: overlapping Spark jobs counted once, monthly history files, task stages."""

from __future__ import annotations

import io
import json
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from bench.incremental import monthly_files
from bench.latency import task_stages
from bench.profile import JobTiming, busy_seconds, by_call_site, describe
from jobs.run_log import RunLog


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


def testtask_stages_come_from_the_latest_run_log(moto_endpoint: str, names: Any) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=names.bucket)
    old, new = (
        RunLog("validation", "b1", "r1", io.StringIO()),
        RunLog("validation", "b1", "r2", io.StringIO()),
    )
    with old.stage("spark.session"):
        pass
    for log in (old, new):
        s3.put_object(Bucket=names.bucket, Key=log.s3_key(), Body=log.text().encode())
        time.sleep(1.1)  # S3's LastModified has whole seconds: r2 is the later run
    with new.stage("file", file="a.csv"):
        time.sleep(0.05)
    with new.stage("file", file="b.csv"):
        time.sleep(0.05)
    new.event("not a stage", seconds=99)
    s3.put_object(Bucket=names.bucket, Key=new.s3_key(), Body=(new.text() + "not json\n").encode())
    entered = datetime.fromisoformat(json.loads(new.lines[0])["ts"]).timestamp() - 2.0

    stages = task_stages(s3, names.bucket, "validation", "b1", entered)

    assert set(stages) == {"process_start", "file"}  # r1's spark.session is not read
    assert stages["process_start"] == pytest.approx(2.0, abs=0.01)
    assert 0.1 <= stages["file"] < 1.0  # both files summed
    assert task_stages(s3, names.bucket, "transformation", "b1", entered) == {}
