"""The validation job end to end: real files in emulated S3, real Spark, real Great Expectations.

One batch holds every bad kind and every accepted quirk, so a single job run (one Spark session,
one GX context) decides them all; each test then checks one file's fate from the run's result and a
snapshot of the bucket taken right after it. The later fixtures build on that bucket: a retry of
the same run (no Spark), then a corrected re-upload (supersedes the earlier rejection).
"""

from __future__ import annotations

import codecs
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from jobs.config import PipelineConfig
from jobs.validation import EXIT_REJECTED, ValidationResult, run
from jobs.validation import structural as st
from jobs.validation.locations import META_ARRIVED_MS, META_RAW_ETAG
from jobs.validation.reading import RULE_VALUE_LENGTH
from jobs.validation.reports import RULE_COLUMN_PRESENT, RULE_FILE_EXISTS, RULE_KNOWN_DATASET
from tests.support.validation import (
    ORDERS_HEADER,
    PRODUCTS_CSV,
    PRODUCTS_KEY,
    Snapshot,
    create_bucket,
    get,
    get_json,
    item_row,
    items_csv,
    make_config,
    order_row,
    orders_csv,
    put,
    s3,
    snapshot,
    staged_rows,
)

ORD, ITM = "orders/2025-07-10", "order_items/2025-07-10"
NOT_NULL = "{} is not null"


@dataclass(frozen=True)
class Case:
    rel: str
    body: bytes | None  # None: announced but never uploaded
    failures: tuple[tuple[str, str | None], ...] = ()  # (rule, column) that must be reported
    warnings: tuple[tuple[str, str | None], ...] = ()

    @property
    def passes(self) -> bool:
        return not self.failures

    @property
    def key(self) -> str:
        return f"raw/{self.rel}"


def _many_orders(n: int, start: int = 1000) -> list[str]:
    return [order_row(i) for i in range(start, start + n)]


LATE = 2200  # rows: > 64 KiB, so the defect at the end is only visible to the Spark pass

CASES = [
    # ---- accepted: every quirk the contract allows -------------------------------------------
    Case(f"{ORD}/good.csv", orders_csv(order_row(1), order_row(2, status="shipped"), order_row(3, status="Pending"))),
    Case(f"{ORD}/bom_crlf.csv", codecs.BOM_UTF8 + orders_csv(order_row(4), order_row(5)).replace(b"\n", b"\r\n")),
    Case(
        f"{ORD}/with space.csv",
        orders_csv('6,7,Complete,"F, ""quoted""",2025-07-10T10:00:00Z,,,,1', order_row(7, created="2025-07-10 23:30:00+02:00")),
    ),
    Case(
        f"{ORD}/upper_case.csv",
        orders_csv(" 8 , 7 , COMPLETE , F , 2025-07-10 10:00:00 ,,,, 1 ", header=" ORDER_ID,User_Id ,STATUS,Gender,CREATED_AT ,returned_at,shipped_at,delivered_at,num_of_item"),
    ),
    Case(f"{ORD}/header_only.csv", orders_csv()),
    Case(f"{ORD}/formula_cells.csv", orders_csv('10,7,Complete,"=cmd|\' /C calc\'!A0",2025-07-10 10:00:00,,,,1')),
    Case(f"{ITM}/good.csv", items_csv(item_row(1), item_row(2, product=2, price="7.99"), item_row(3, product=3, price="0"))),
    # a few rows break a drop rule: the file is accepted without them (they go to invalid/rows/)
    Case(
        f"{ORD}/few_bad_rows.csv",
        orders_csv(*_many_orders(40, start=3000), order_row(3100, status="Lost")),
        warnings=(("status is a known order status", "status"),),
    ),
    Case(
        f"{ITM}/unknown_product.csv",
        items_csv(item_row(4, product=999), item_row(5, product=2)),
        warnings=(("product_id is in the products master data", "product_id"),),
    ),
    # ---- rejected by the suites: every rule of a dataset fires in one file ----------------------
    Case(
        f"{ORD}/missing_user_id_column.csv",
        orders_csv("1,Complete,2025-07-10 10:00:00", header="order_id,status,created_at"),
        failures=((RULE_COLUMN_PRESENT, "user_id"),),
    ),
    Case(
        f"{ORD}/bad_values.csv",
        orders_csv(
            order_row(1), order_row("", 7), order_row(3, user=""), order_row(4, created=" "),
            order_row(5, status="Shippedd"), order_row(6, status="Lost", created="2025-02-30 10:00:00"),
            order_row(7, created="yesterday"), order_row(8, created="2025-07-10"),
            order_row(9, created="2025-07-10 24:00:00"), order_row(1, user=8),
        ),
        failures=(
            (NOT_NULL.format("order_id"), "order_id"), (NOT_NULL.format("user_id"), "user_id"),
            (NOT_NULL.format("created_at"), "created_at"), ("order_id is unique within the file", "order_id"),
            ("created_at is a valid timestamp in a contract form", "created_at"),
            ("status is a known order status", "status"),
        ),
    ),
    Case(
        f"{ITM}/missing_sale_price_column.csv",
        items_csv("1,1,7,1", header="id,order_id,user_id,product_id"),
        failures=((RULE_COLUMN_PRESENT, "sale_price"),),
    ),
    Case(
        f"{ITM}/bad_values.csv",
        items_csv(
            item_row(1), item_row(2, order_id=""), item_row(3, product=""), item_row(4, price=""),
            item_row(5, price="abc"), item_row(6, price='"12,5"'), item_row(7, price="-1.00"),
            item_row(1, order_id=2),
        ),
        failures=(
            (NOT_NULL.format("order_id"), "order_id"), (NOT_NULL.format("product_id"), "product_id"),
            (NOT_NULL.format("sale_price"), "sale_price"), ("sale_price is numeric", "sale_price"),
            ("sale_price >= 0", "sale_price"), ("id is unique within the file", "id"),
        ),
    ),
    # ---- rejected by the structural checks -----------------------------------------------------
    Case(f"{ORD}/empty.csv", b"", failures=((st.RULE_NOT_EMPTY, None),)),
    Case(f"{ORD}/binary.csv", bytes(range(256)) * 4, failures=((st.RULE_TEXT, None),)),
    Case(f"{ORD}/latin1.csv", orders_csv(order_row(1, status="Complete")).replace(b"F,", b"\xe9,"), failures=((st.RULE_UTF8, None),)),
    Case(f"{ORD}/late_bad_utf8.csv", orders_csv(*_many_orders(LATE)) + b"9999,7,Complete,\xff\xfe,2025-07-10 10:00:00,,,,1\n",
         failures=((st.RULE_UTF8, None),)),
    Case(f"{ORD}/ragged.csv", orders_csv(order_row(1), "2,7,Complete", order_row(3) + ",extra"), failures=((st.RULE_FIELDS, None),)),
    Case(f"{ORD}/late_ragged.csv", orders_csv(*_many_orders(LATE), "9999,7,Complete"), failures=((st.RULE_FIELDS, None),)),
    Case(f"{ORD}/duplicate_header.csv", orders_csv(order_row(1), header=ORDERS_HEADER.replace("gender", "User_ID")),
         failures=((st.RULE_HEADER_UNIQUE, "user_id"),)),
    Case(f"{ORD}/json.csv", json.dumps([{"order_id": 1, "user_id": 7}]).encode(), failures=((st.RULE_NOT_JSON, None),)),
    Case(f"{ORD}/no_header.csv", "\n".join([order_row(1), order_row(2)]).encode() + b"\n", failures=((st.RULE_HEADER, None),)),
    Case(f"{ORD}/never_uploaded.csv", None, failures=((RULE_FILE_EXISTS, None),)),
    Case(f"{ORD}/sentinel_date.csv", orders_csv(order_row(1), order_row(2, created="9999-12-31 00:00:00")),
         failures=(("created_at is a plausible date (years 1970 to 2099)", "created_at"),)),
    Case(f"{ORD}/too_big.csv", orders_csv(*_many_orders(3 * LATE)), failures=((st.RULE_SIZE, None),)),
    Case(f"{ORD}/huge_value.csv", orders_csv(order_row(1), order_row(2, status="x" * 150_000)),
         failures=((RULE_VALUE_LENGTH, None),)),
    Case(f"{ORD}/semicolons.csv", orders_csv(order_row(1)).replace(b",", b";"), failures=((st.RULE_HEADER, None),)),
    Case(f"{ORD}/too_wide.csv", orders_csv(order_row(1), "2" + ",x" * st.MAX_FIELDS), failures=((st.RULE_MAX_FIELDS, None),)),
]  # fmt: skip
BY_REL = {c.rel: c for c in CASES}
# Files accepted without the rows a drop rule left out: only the one-pass check drops rows; GX on a
# file alone (VALIDATION_ONE_PASS=0) rejects them instead (jobs/validation/actions.py).
DROPPING = {f"{ORD}/few_bad_rows.csv"}
MAX_BYTES = "200000"  # too_big.csv is over it, the late_* files (> 64 KiB) are under it
ITEMS_PREFIX = "order_items/"


@dataclass(frozen=True)
class Run:
    config: PipelineConfig
    result: ValidationResult
    after: Snapshot


@pytest.fixture(scope="module")
def first(moto_endpoint: str, spark) -> Run:
    """Upload the whole battery and validate it in ONE job run."""
    config = _battery_config(moto_endpoint)
    _upload_battery(config)
    result = run(config, spark)
    return Run(config, result, snapshot(config))


def _battery_config(moto_endpoint: str, **extra: str) -> PipelineConfig:
    """The whole battery in a bucket of its own: ``first``'s inputs, as the workflow passes them."""
    bucket = f"ecomkpi-valjob-{uuid.uuid4().hex[:8]}"
    orders = [c.key for c in CASES if c.rel.startswith("orders/")]
    orders[1] = orders[1].replace("raw/", "validated/", 1)  # any stage prefix names the same file
    orders.append("raw/misc/stray.csv")
    items = [c.key for c in CASES if c.rel.startswith(ITEMS_PREFIX)]
    return make_config(
        moto_endpoint, bucket, orders=orders, items=items, run_id="run-1", MAX_FILE_BYTES=MAX_BYTES, **extra
    )


def _upload_battery(config: PipelineConfig) -> None:
    create_bucket(config)
    put(config, PRODUCTS_KEY, PRODUCTS_CSV)
    put(config, "raw/misc/stray.csv", orders_csv(order_row(1)))
    for c in CASES:
        if c.body is not None:
            put(config, c.key, c.body)


def test_files_checked_two_at_a_time_end_as_they_do_one_after_the_other(
    first: Run, moto_endpoint: str, spark
) -> None:
    """``first`` checked its files on two threads (the default); one thread must give the same
    verdicts, findings, reports, staging rows and places, and the same count of Spark jobs (the
    threads' jobs are the run's)."""
    config = _battery_config(moto_endpoint, VALIDATION_THREADS="1")
    _upload_battery(config)
    one = run(config, spark)
    assert first.config.validation_threads == 2 and config.validation_threads == 1
    assert one.files == first.result.files
    assert one.spark_jobs == first.result.spark_jobs > 0
    after = snapshot(config)
    assert _places(after) == _places(first.after)
    assert _content(after.reports) == _content(first.after.reports)


def test_one_pass_over_each_dataset_decides_as_gx_does_file_by_file(
    first: Run, moto_endpoint: str, spark
) -> None:
    """``first`` read each dataset's files as one frame and counted every rule per file in one
    aggregation (jobs/validation/dataset_check.py). GX run on every file on its own must give the
    same verdicts, findings (counts and samples), reports, places and staging rows; and GX, asked
    about the files the counts failed, never found them passing (``rules.disagree``)."""
    config = _battery_config(moto_endpoint, VALIDATION_ONE_PASS="0")
    _upload_battery(config)
    each = run(config, spark)
    assert first.config.validation_one_pass and not config.validation_one_pass

    def same(files: list[Any]) -> list[Any]:
        return [f for f in files if f.rel not in DROPPING]

    assert same(each.files) == same(first.result.files)
    for f in each.files:
        if f.rel in DROPPING:  # checked alone, a drop rule cannot drop: it rejects (documented)
            assert (
                f.verdict == "rejected"
                and "could not be dropped" in f.findings[0].details["rejected_because"]
            )
    after = snapshot(config)
    assert _places(after, DROPPING) == _places(first.after, DROPPING)
    assert _content(after.reports, DROPPING) == _content(first.after.reports, DROPPING)

    def staged(c: PipelineConfig) -> dict[str, list[tuple[Any, ...]]]:
        return {d: [r for r in rows if not DROPPING & set(r)] for d, rows in staged_rows(spark, c).items()}

    assert staged(config) == staged(first.config)
    log = get(first.config, first.result.log_key).decode()
    assert '"dataset.spark"' in log and '"rules.disagree"' not in log


def _content(
    reports: dict[str, dict[str, object]], leave_out: set[str] = frozenset()
) -> dict[str, dict[str, object]]:
    """The reports without what differs between two runs by design: when the file landed and was
    decided, and the links (Data Docs' timestamped folder); without the files of ``leave_out``."""
    when = ("arrived_ms", "decided_at", "links")
    return {
        k: {f: v for f, v in r.items() if f not in when}
        for k, r in reports.items()
        if not any(rel in k for rel in leave_out)
    }


def _places(snap: Snapshot, leave_out: set[str] = frozenset()) -> set[str]:
    """The bucket's keys up to what differs between two runs by design: the staging files' names
    (Spark's part-<uuid>: their folder names the file version) and Data Docs' timestamped folder;
    without the files of ``leave_out`` (and staging, whose folder names do not say the file)."""
    return {
        k.rsplit("/", 1)[0] + "/" if k.startswith("staging/") else k
        for k in snap.keys
        if "/data_docs/" not in k
        and not (leave_out and (k.startswith("staging/") or any(rel in k for rel in leave_out)))
    }


def test_exit_code_and_spark_used(first: Run) -> None:
    assert first.result.exit_code == EXIT_REJECTED
    assert first.result.spark_used is True
    assert len(first.result.files) == len(CASES) + 2  # + products master + the stray key


@pytest.mark.parametrize("case", [c for c in CASES if c.passes], ids=lambda c: c.rel)
def test_accepted_file_moves_to_validated_with_arrival_metadata(first: Run, case: Case) -> None:
    outcome = first.result.outcome(case.key)
    assert outcome.verdict == "passed", outcome.findings
    assert first.after.stages_of(case.rel) == ["validated"]
    meta = first.after.metadata[f"validated/{case.rel}"]
    assert meta[META_RAW_ETAG] == outcome.etag
    assert int(meta[META_ARRIVED_MS]) > 1_600_000_000_000
    assert get(first.config, f"validated/{case.rel}") == case.body  # the bytes, unchanged
    report = first.after.reports[outcome.report_key]
    assert report["verdict"] == "passed" and report["failures"] == []
    assert [(w["rule"], w["column"]) for w in report["warnings"]] == list(case.warnings)


def test_every_accepted_file_leaves_its_parsed_rows_in_staging_and_no_rejected_one_does(
    first: Run, spark
) -> None:
    from jobs.contract import ROW_NUM, SOURCE_FILE
    from jobs.staging import read_staged, staging_prefix
    from jobs.staging_marker import SUCCESS_MARKER, KeySummary

    for case in CASES:
        outcome = first.result.outcome(case.key)
        if outcome.etag is None:
            continue
        prefix = staging_prefix(case.rel, outcome.etag)
        written = {k for k in first.after.keys if k.startswith(prefix + "/")}
        if case.passes:
            assert f"{prefix}/{SUCCESS_MARKER}" in written, case.rel
        else:
            assert not written, (case.rel, written)
    good = f"{ORD}/good.csv"
    outcome = first.result.outcome(f"raw/{good}")
    dataset = good.split("/", 1)[0]
    rows = read_staged(spark, dataset, [f"s3a://{first.config.bucket}/{staging_prefix(good, outcome.etag)}"])
    got = rows.collect()
    assert len(got) == outcome.rows and sorted(r[ROW_NUM] for r in got) == list(range(1, len(got) + 1))
    meta = first.after.metadata[f"validated/{good}"]
    assert {(r[SOURCE_FILE], r["_raw_etag"], r["_ingest_seq"]) for r in got} == {
        (good, meta[META_RAW_ETAG], int(meta[META_ARRIVED_MS]))  # the same version the copy names
    }
    assert all(r["order_date"] is not None for r in got)
    # Its marker says what the planner needs of its keys: each occurs once (the suite's rule).
    marker = get(first.config, f"{staging_prefix(good, outcome.etag)}/{SUCCESS_MARKER}")
    assert KeySummary.from_marker(marker) == KeySummary("order_id", True)


@pytest.mark.parametrize("case", [c for c in CASES if not c.passes], ids=lambda c: c.rel)
def test_rejected_file_moves_to_invalid_with_a_report(first: Run, case: Case) -> None:
    outcome = first.result.outcome(case.key)
    assert outcome.verdict == "rejected"
    report = first.after.reports[outcome.report_key]
    failed = {(f["rule"], f["column"]) for f in report["failures"]}
    assert set(case.failures) <= failed, report["failures"]
    for f in report["failures"]:
        assert f["message"], f
    if case.body is None:  # announced, never uploaded: nothing to move, the report is in the logs
        assert first.after.stages_of(case.rel) == []
        assert outcome.report_key == f"logs/validation/2025-07-10/run-1/reports/{case.rel}.json"
        return
    assert first.after.stages_of(case.rel) == ["invalid"]
    assert outcome.report_key == f"invalid/{case.rel}.report.json"
    assert f"logs/validation/2025-07-10/run-1/reports/{case.rel}.json" in first.after.keys
    assert report["file"] == case.key and report["location"] == f"invalid/{case.rel}"
    assert first.after.metadata[f"invalid/{case.rel}"][META_RAW_ETAG] == outcome.etag


def test_the_battery_says_what_happened_to_each_file_and_its_rows(first: Run, spark: Any) -> None:
    """With the suites' default actions, each kind's file is in validated/ or invalid/ with its
    report, and each of its rows is staged for the KPIs, quarantined, or out with its rejected file:
    none is lost or counted twice. The table is printed (``pytest -s``)."""
    staged = [row for rows in staged_rows(spark, first.config).values() for row in rows]
    lines = [f"{'file':45} {'verdict':8} {'place':9} {'rows':>5} {'served':>6} {'dropped':>7}  rules"]
    for case in CASES:
        outcome = first.result.outcome(case.key)
        served = sum(1 for row in staged if case.rel in row)
        quarantined = f"invalid/rows/{case.rel}"
        dropped = (
            len(get(first.config, quarantined).splitlines()) - 1 if quarantined in first.after.keys else 0
        )
        place = (first.after.stages_of(case.rel) or ["(none)"])[0]
        rows = outcome.rows or 0
        if outcome.verdict == "passed":
            assert place == "validated" and served + dropped == rows, (case.rel, served, dropped, rows)
            assert dropped == (1 if case.rel in DROPPING else 0)
        else:
            assert served == 0 and dropped == 0 and place in ("invalid", "(none)"), case.rel
        rules = ", ".join(sorted({f.rule for f in outcome.findings}))
        lines.append(
            f"{case.rel[-45:]:45} {outcome.verdict:8} {place:9} {rows:5} {served:6} {dropped:7}  {rules}"
        )
    print("\n".join(lines))


def test_report_counts_and_samples_are_readable(first: Run) -> None:
    report = first.after.reports[f"invalid/{ITM}/bad_values.csv.report.json"]
    by_rule = {f["rule"]: f for f in report["failures"]}
    assert by_rule["sale_price is numeric"]["failing_rows"] == 2
    assert set(by_rule["sale_price is numeric"]["samples"]) == {"abc", "12,5"}
    assert by_rule["sale_price >= 0"]["failing_rows"] == 1
    assert by_rule["sale_price >= 0"]["samples"] == ["-1.00"]
    assert by_rule["sale_price is not null"]["failing_rows"] == 1
    assert by_rule["id is unique within the file"]["failing_rows"] == 2
    assert report["rows"] == 8 and report["dataset"] == "order_items"
    assert "sale_price is numeric [sale_price] (2 rows)" in report["summary"]
    orders = {
        f["rule"]: f for f in first.after.reports[f"invalid/{ORD}/bad_values.csv.report.json"]["failures"]
    }
    dates = orders["created_at is a valid timestamp in a contract form"]
    assert dates["failing_rows"] == 4
    assert set(dates["samples"]) == {"2025-02-30 10:00:00", "yesterday", "2025-07-10", "2025-07-10 24:00:00"}
    assert orders["order_id is unique within the file"]["failing_rows"] == 2
    assert orders["order_id is unique within the file"]["samples"] == ["1"]
    assert set(orders["status is a known order status"]["samples"]) == {"Shippedd", "Lost"}
    missing = first.after.reports[f"invalid/{ORD}/missing_user_id_column.csv.report.json"]["failures"]
    assert [(f["rule"], f["column"]) for f in missing] == [(RULE_COLUMN_PRESENT, "user_id")]  # no echo rules


def test_late_defects_are_found_by_the_full_pass(first: Run) -> None:
    utf8 = first.after.reports[f"invalid/{ORD}/late_bad_utf8.csv.report.json"]["failures"][0]
    assert utf8["failing_rows"] == 1 and "\ufffd" in utf8["samples"][0]
    ragged = first.after.reports[f"invalid/{ORD}/late_ragged.csv.report.json"]["failures"][0]
    assert ragged["failing_rows"] == 1 and ragged["samples"] == ["9999,7,Complete"]


def test_nothing_is_lost_or_duplicated(first: Run) -> None:
    for case in CASES:
        if case.body is not None:
            assert len(first.after.stages_of(case.rel)) == 1, (case.rel, first.after.stages_of(case.rel))
    assert not [k for k in first.after.keys if k.startswith("raw/") and k != PRODUCTS_KEY]
    stray = first.result.outcome("raw/misc/stray.csv")
    assert stray.verdict == "rejected" and stray.failures[0].rule == RULE_KNOWN_DATASET
    assert first.after.stages_of("misc/stray.csv") == ["invalid"]


def test_products_master_stays_in_raw_and_is_copied(first: Run) -> None:
    outcome = first.result.outcome(PRODUCTS_KEY)
    assert outcome.verdict == "passed"
    assert first.after.stages_of("products/products.csv") == ["raw", "validated"]
    meta = first.after.metadata["validated/products/products.csv"]
    assert meta[META_RAW_ETAG] == first.after.etags[PRODUCTS_KEY]


def test_run_summary_log_and_data_docs(first: Run) -> None:
    prefix = "logs/validation/2025-07-10/run-1"
    summary = get_json(first.config, f"{prefix}/summary.json")
    assert summary["exit_code"] == EXIT_REJECTED and summary["spark_used"] is True
    files = {f["relative_key"]: f for f in summary["files"]}
    assert files[f"{ITM}/bad_values.csv"]["report_key"] == f"invalid/{ITM}/bad_values.csv.report.json"
    assert files[f"{ORD}/good.csv"]["verdict"] == "passed"
    passing = sum(c.passes for c in CASES)
    assert summary["counts"] == {
        "passed": passing + 1,
        "rejected": len(CASES) - passing + 1,
    }  # products; stray
    log_lines = [json.loads(line) for line in get(first.config, f"{prefix}.log").decode().splitlines()]
    steps = {line["step"] for line in log_lines}
    assert {"plan", "resolve.end", "file.end", "validation.end", "data_docs.end"} <= steps
    assert first.result.data_docs_key == f"{prefix}/data_docs/index.html"
    index = get(first.config, first.result.data_docs_key).decode()
    assert "orders" in index and "order_items" in index
    pages = [k for k in first.after.keys if k.startswith(f"{prefix}/data_docs/validations/")]
    assert any("bad_values.csv" in k for k in pages)
    # The failure alert quotes this: every rejected file, its failed rules, its report; no passed file.
    rejections = get(first.config, f"{prefix}/rejections.txt").decode()
    rejected = [f for f in summary["files"] if f["verdict"] == "rejected"]
    assert rejections.startswith(f"{len(rejected)} file(s) rejected:")
    assert f"- raw/{ITM}/bad_values.csv -> invalid/{ITM}/bad_values.csv" in rejections
    assert f"report: invalid/{ITM}/bad_values.csv.report.json" in rejections
    for rule in files[f"{ITM}/bad_values.csv"]["failed_rules"]:
        assert f"rule '{rule['rule']}'" in rejections
    assert f"{ORD}/good.csv" not in rejections


def test_a_worker_takes_the_data_docs_for_after_its_answer(moto_endpoint: str, spark) -> None:
    """With ``after_answer`` the run ends without rendering its Data Docs (the warm worker answers
    first); the work it leaves publishes them at the key the summary and reports name, and adds
    its lines to the run's log once."""
    bucket = f"ecomkpi-docs-{uuid.uuid4().hex[:8]}"
    key = f"raw/{ORD}/later.csv"
    config = make_config(moto_endpoint, bucket, orders=[key], run_id="run-later")
    create_bucket(config)
    put(config, PRODUCTS_KEY, PRODUCTS_CSV)
    put(config, key, orders_csv(order_row(1)))
    later: list = []
    result = run(config, spark, after_answer=later)
    prefix = "logs/validation/2025-07-10/run-later"
    assert result.exit_code == 0 and result.data_docs_key == f"{prefix}/data_docs/index.html"
    assert get_json(config, f"{prefix}/summary.json")["data_docs"] == result.data_docs_key
    listed = s3(config).list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/data_docs/")
    assert listed["KeyCount"] == 0 and len(later) == 1

    later[0]()
    assert "orders" in get(config, result.data_docs_key).decode()
    steps = [json.loads(line)["step"] for line in get(config, f"{prefix}.log").decode().splitlines()]
    assert steps.count("validation.end") == 1 and steps.count("data_docs.end") == 1
    assert steps.index("validation.end") < steps.index("data_docs.end")


@pytest.fixture(scope="module")
def retried(first: Run) -> Run:
    """The same run again, as the workflow's Retry would start it, after two half-finished moves.

    A crash between copy and delete leaves the raw object behind next to its copy; putting the
    very same bytes back into raw/ (same ETag) reproduces that state.
    """
    for rel, stage in ((f"{ORD}/good.csv", "validated"), (f"{ITM}/bad_values.csv", "invalid")):
        put(first.config, f"raw/{rel}", get(first.config, f"{stage}/{rel}"))
    result = run(first.config)  # no session handed over: it must not need one
    return Run(first.config, result, snapshot(first.config))


def test_retry_reaches_the_same_verdicts_without_spark(first: Run, retried: Run) -> None:
    assert retried.result.spark_used is False
    assert retried.result.exit_code == first.result.exit_code
    before = {f.rel: (f.verdict, f.location, f.report_key) for f in first.result.files}
    after = {f.rel: (f.verdict, f.location, f.report_key) for f in retried.result.files}
    assert after == before
    assert all(
        f.reused
        for f in retried.result.files
        if f.dataset is not None and f.rel in BY_REL and BY_REL[f.rel].body
    )


def test_retry_finishes_interrupted_moves(retried: Run) -> None:
    for case in CASES:
        if case.body is not None:
            assert len(retried.after.stages_of(case.rel)) == 1, case.rel
    assert retried.after.stages_of(f"{ORD}/good.csv") == ["validated"]
    assert retried.after.stages_of(f"{ITM}/bad_values.csv") == ["invalid"]
    log = get(retried.config, "logs/validation/2025-07-10/run-1.log").decode()
    assert log.count('"step": "plan"') == 2  # the retry's attempt is appended, not overwritten


@pytest.fixture(scope="module")
def reuploaded(retried: Run) -> Run:
    """The producer fixes bad_values.csv and uploads it again; a later generation re-sends all keys."""
    fixed = items_csv(
        item_row(1), item_row(2, price="3.50"), item_row(3, price="12.5"), item_row(4, product=777)
    )
    put(retried.config, f"raw/{ITM}/bad_values.csv", fixed)
    config = retried.config.with_(run_id="run-2")
    return Run(config, run(config, None), snapshot(config))


def test_corrected_reupload_passes_and_supersedes_the_rejection(retried: Run, reuploaded: Run) -> None:
    rel = f"{ITM}/bad_values.csv"
    outcome = reuploaded.result.outcome(rel)
    assert outcome.verdict == "passed" and not outcome.reused
    assert reuploaded.after.stages_of(rel) == ["validated"]
    assert f"invalid/{rel}.report.json" not in reuploaded.after.keys
    old_etag = retried.after.metadata[f"invalid/{rel}"][META_RAW_ETAG]
    superseded = f"invalid/superseded/{rel}.{old_etag}"
    assert superseded in reuploaded.after.keys
    old_report = reuploaded.after.reports[f"{superseded}.report.json"]
    assert old_report["verdict"] == "rejected" and old_report["superseded"]["by_etag"] == outcome.etag
    # the products master was not re-validated, yet its ids were read for the unknown-product check
    assert [(w.rule, w.column) for w in outcome.warnings] == [
        ("product_id is in the products master data", "product_id")
    ]
    assert reuploaded.result.spark_used is True
    assert all(
        f.reused for f in reuploaded.result.files if f.rel != rel and f.rel in BY_REL and BY_REL[f.rel].body
    )
    assert reuploaded.result.exit_code == EXIT_REJECTED  # the other rejected files are still in the batch


def test_verdict_records_are_per_etag(reuploaded: Run) -> None:
    record = get_json(reuploaded.config, f"logs/validation/verdicts/{ITM}/bad_values.csv.json")
    assert record["verdict"] == "passed" and record["run_id"] == "run-2"
    assert record["etag"] == reuploaded.result.outcome(f"{ITM}/bad_values.csv").etag
