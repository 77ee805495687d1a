"""The validation job's pieces without Spark: the report JSON, the engine's laziness, the decisions."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest

from jobs.config import PipelineConfig
from jobs.run_log import RunLog
from jobs.s3_store import S3Store
from jobs.validation.conclude import Concluder
from jobs.validation.decisions import inspect, known
from jobs.validation.engine import Engine
from jobs.validation.findings import WARNING, Finding, structural
from jobs.validation.outcomes import Target
from jobs.validation.reports import RULE_FILE_EXISTS, RULE_KNOWN_DATASET, Report, report_json
from jobs.validation.verdicts import MISSING, REJECTED, Resolution, VerdictBook
from tests.support.validation import BATCH, create_bucket, make_config


def test_report_json_keeps_its_fields_and_their_order() -> None:
    failure = structural("file is not empty", "the file has no bytes")
    warning = Finding(rule="product_id is in the products master data", column="product_id",
                      failing_rows=1, samples=("999",), severity=WARNING, check="c", message="m")  # fmt: skip
    report = Report(
        file="raw/order_items/d/p.csv",
        relative_key="order_items/d/p.csv",
        dataset="order_items",
        verdict=REJECTED,
        findings=[failure, warning],
        batch_id="b",
        run_id="r",
        decided_at="2025-07-10T06:12:03+00:00",
        location="invalid/order_items/d/p.csv",
        etag="e",
        size_bytes=0,
        arrived_ms=5,
        rows=None,
        notes=["n"],
        links={"log": "l", "suite": None},
    )
    assert json.loads(report_json(report.to_dict())) == {
        "report_version": 1,
        "file": "raw/order_items/d/p.csv",
        "relative_key": "order_items/d/p.csv",
        "dataset": "order_items",
        "verdict": "rejected",
        "summary": "1 rule failed: file is not empty. 1 warning: product_id is in the products master data "
        "[product_id] (1 row)",
        "failures": [failure.to_dict()],
        "warnings": [warning.to_dict()],
        "notes": ["n"],
        "rows": None,
        "location": "invalid/order_items/d/p.csv",
        "etag": "e",
        "size_bytes": 0,
        "arrived_ms": 5,
        "batch_id": "b",
        "run_id": "r",
        "decided_at": "2025-07-10T06:12:03+00:00",
        "links": {"log": "l", "suite": None},
    }
    assert list(report.to_dict())[:6] == [
        "report_version",
        "file",
        "relative_key",
        "dataset",
        "verdict",
        "summary",
    ]


class _Context:
    def __init__(self) -> None:
        self.properties: dict[str, str | None] = {}

    def getLocalProperty(self, key: str) -> str | None:
        return self.properties.get(key)

    def setLocalProperty(self, key: str, value: str | None) -> None:
        self.properties[key] = value


class _Session:
    def __init__(self) -> None:
        self.sparkContext = _Context()


@pytest.fixture
def log() -> RunLog:
    return RunLog("validation", BATCH, "run-1", stream=io.StringIO())


def test_the_engine_is_used_only_once_the_session_is_asked_for(moto_endpoint: str, log: RunLog) -> None:
    session: Any = _Session()
    engine = Engine(make_config(moto_endpoint, "unused"), log, session)
    assert engine.used is False and engine.spark_jobs() == 0 and engine.gx_built is None
    engine.close()  # nothing to close yet
    assert session.sparkContext.properties == {}
    assert engine.spark() is session
    assert engine.used is True
    assert session.sparkContext.properties["spark.jobGroup.id"].startswith("ecomkpi-validation-run-1-")
    engine.close()
    assert session.sparkContext.properties["spark.jobGroup.id"] is None


@pytest.fixture
def config(moto_endpoint: str) -> PipelineConfig:
    config = make_config(moto_endpoint, f"ecomkpi-valpieces-{uuid.uuid4().hex[:8]}")
    create_bucket(config)
    return config


@pytest.fixture
def store(config: PipelineConfig) -> S3Store:
    return S3Store(config)


def test_a_missing_key_is_rejected_with_a_report(config: PipelineConfig, store: S3Store, log: RunLog) -> None:
    rel = "orders/2025-07-10/gone.csv"
    target = Target(key=f"raw/{rel}", rel=rel, dataset="orders", master=False)
    concluder = Concluder(config, store, log, VerdictBook(store), "rules")
    outcome = known(target, Resolution(MISSING), store, log, concluder)
    assert outcome.verdict == REJECTED and outcome.location is None and outcome.decided_by == "run-1"
    assert outcome.report_key == f"logs/validation/{BATCH}/run-1/reports/{rel}.json"
    report = store.read_json(outcome.report_key)
    assert report["verdict"] == REJECTED and report["location"] is None and report["etag"] is None
    assert [f["rule"] for f in report["failures"]] == [RULE_FILE_EXISTS]
    assert VerdictBook(store).get(rel) is None  # nothing to place, nothing recorded


def test_a_file_outside_the_dataset_folders_is_rejected_unread(store: S3Store) -> None:
    store.put_bytes("raw/misc/x.csv", b"a,b\n")
    raw = store.head("raw/misc/x.csv")
    assert raw is not None
    target = Target(key="raw/misc/x.csv", rel="misc/x.csv", dataset=None, master=False)
    inspection = inspect(store, target, raw, max_file_bytes=10)
    assert not inspection.readable
    assert [f.rule for f in inspection.findings] == [RULE_KNOWN_DATASET]
