"""Check columns and the full-file shape checks, on small in-memory frames and local files (no S3)."""

from __future__ import annotations

import codecs
from pathlib import Path

from jobs.keys import literal_path
from jobs.normalize import normalize_columns
from jobs.validation.checks import add_check_columns, product_id_set, with_columns_present
from jobs.validation.reading import file_shape, read_csv
from jobs.validation.structural import RULE_FIELDS, RULE_UTF8


def _collect(df, *columns: str) -> list[tuple]:
    return [tuple(r) for r in df.select(*columns).collect()]


def test_order_checks_keep_the_original_text_of_bad_values(spark) -> None:
    values = [
        ("2025-07-10 10:00:00", "Complete"),
        ("2025-07-10T23:59:59.123Z", "shipped"),
        ("2025-07-10 10:00:00 UTC", "PENDING"),
        ("2025-07-10 01:00:00+02:00", None),
        ("2025-07-10 01:00:00-0530", "Returned"),
        ("2025-07-10 01:00:00+02", "Delivered"),
        ("2025-02-30 10:00:00", "Cancelled"),
        ("2025-07-10", "Processing"),
        ("10/07/2025 10:00", "Lost"),
        ("2025-07-10 24:00:00", "Shippedd"),
        (None, "Complete"),
        ("9999-12-31 00:00:00", "Complete"),
        ("1969-12-31 23:59:59Z", "Complete"),
        ("1970-01-01 00:00:00", "Complete"),
        ("2099-12-31 23:59:59", "Complete"),
    ]
    df = spark.createDataFrame(values, "created_at string, status string")
    checked = add_check_columns("orders", df)
    rows = _collect(checked, "created_at__unparseable", "status__unknown", "created_at__implausible")
    assert [r[0] for r in rows] == [None] * 6 + ["2025-02-30 10:00:00", "2025-07-10", "10/07/2025 10:00",
                                                 "2025-07-10 24:00:00"] + [None] * 5  # fmt: skip
    assert [r[1] for r in rows] == [None] * 8 + ["Lost", "Shippedd"] + [None] * 5
    assert [r[2] for r in rows] == [None] * 11 + ["9999-12-31 00:00:00", "1969-12-31 23:59:59Z", None, None]


def test_price_checks_and_unknown_products(spark) -> None:
    items = spark.createDataFrame(
        [("1", "12.50"), ("2", "0"), ("9", "abc"), ("1", "12,5"), ("2", "-1.00"), (None, None), ("3", "1e3")],
        "product_id string, sale_price string",
    )
    ids = product_id_set(spark.createDataFrame([("1",), ("2",), ("2",), (None,)], "id string"))
    checked = add_check_columns("order_items", items, ids)
    rows = _collect(checked, "sale_price__not_numeric", "sale_price__negative", "product_id__unknown")
    assert rows == [
        (None, None, None),
        (None, None, None),
        ("abc", None, "9"),
        ("12,5", None, None),
        (None, "-1.00", None),
        (None, None, None),
        (None, None, "3"),  # scientific notation is a number to the contract's try_cast too
    ]
    assert checked.count() == items.count()  # the product lookup never multiplies rows


def test_absent_columns(spark) -> None:
    df = spark.createDataFrame([("1", "9.99")], "order_id string, sale_price string")
    present, absent = with_columns_present(df, ["id"])
    assert absent == {"id"} and present.columns == ["order_id", "sale_price", "id"]
    checked = add_check_columns("order_items", present)  # product_id absent, no lookup
    assert _collect(checked, "product_id__unknown", "sale_price__not_numeric") == [(None, None)]


def _read(spark, path: Path, header: tuple[str, ...]):
    frame = normalize_columns(read_csv(spark, f"file://{path}", header)).cache()
    columns = tuple(c.lower().strip() for c in header)
    return frame, file_shape(frame, columns), columns


def test_shape_of_accepted_quirks(spark, tmp_path: Path) -> None:
    path = tmp_path / "quirks [1].csv"  # glob characters and a space in the name
    path.write_bytes(codecs.BOM_UTF8 + b'Order_ID ,note\r\n1,"a, ""b"""\r\n 2 , trailing \r\n\r\n3,\r\n')
    frame, shape, columns = _read(spark, path, ("Order_ID ", "note"))
    assert shape.findings == () and shape.rows == 3
    assert _collect(frame, *columns) == [("1", 'a, "b"'), ("2", "trailing"), ("3", None)]
    frame.unpersist()
    header_only = tmp_path / "header_only.csv"
    header_only.write_bytes(b"order_id,note\n")
    frame, shape, _ = _read(spark, header_only, ("order_id", "note"))
    assert shape.rows == 0 and shape.findings == ()
    frame.unpersist()


def test_shape_finds_ragged_rows_and_bad_bytes_anywhere(spark, tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_bytes(b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,\xff\xfe,12\n")
    frame, shape, _ = _read(spark, path, ("a", "b", "c"))
    by_rule = {f.rule: f for f in shape.findings}
    assert shape.rows == 4
    assert by_rule[RULE_FIELDS].failing_rows == 2 and set(by_rule[RULE_FIELDS].samples) == {"4,5", "6,7,8,9"}
    assert by_rule[RULE_UTF8].failing_rows == 1 and "\ufffd" in by_rule[RULE_UTF8].samples[0]
    frame.unpersist()


def test_literal_path_escapes_globs() -> None:
    assert literal_path("s3a://b/raw/x [1]{a}*?.csv") == r"s3a://b/raw/x \[1\]\{a\}\*\?.csv"
