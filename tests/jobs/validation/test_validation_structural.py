"""Byte-level checks of the validation job: every structural kind, as a pure function of bytes."""

from __future__ import annotations

import codecs
import gzip

import pytest

from jobs.validation import structural as st
from jobs.validation.structural import HEAD_BYTES, inspect_head

ORDERS_HEADER = b"order_id,user_id,status,created_at\n"
ROW = b"1,10,Complete,2025-07-10 10:00:00\n"


def inspect(data: bytes, dataset: str = "orders") -> st.HeadInspection:
    return inspect_head(data[:HEAD_BYTES], len(data), dataset)


def rules(data: bytes, dataset: str = "orders") -> list[str]:
    return [f.rule for f in inspect(data, dataset).findings]


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"", st.RULE_NOT_EMPTY),
        (ORDERS_HEADER + b"1,10,\x00\x00,x\n", st.RULE_TEXT),
        (gzip.compress(ORDERS_HEADER + ROW), st.RULE_TEXT),
        (b"PK\x03\x04" + b"\x14" * 40, st.RULE_TEXT),
        (codecs.BOM_UTF16_LE + "order_id,user_id\n".encode("utf-16-le"), st.RULE_TEXT),
        (ORDERS_HEADER + "1,10,Complete,2025-07-10 10:00:00,caf\xe9\n".encode("latin-1"), st.RULE_UTF8),
        (b'[{"order_id": 1, "user_id": 10}]', st.RULE_NOT_JSON),
        (b'  \n{"order_id": 1}\n{"order_id": 2}\n', st.RULE_NOT_JSON),
        (b"\n" + ORDERS_HEADER + ROW, st.RULE_HEADER),
        (b"1,10,Complete,2025-07-10 10:00:00\n2,11,Shipped,2025-07-10 11:00:00\n", st.RULE_HEADER),
        (b"order_id,User_ID, user_id ,created_at\n1,2,3,4\n", st.RULE_HEADER_UNIQUE),
        (b"order_id,,user_id,created_at\n1,2,3,4\n", st.RULE_HEADER_NAMED),
        (
            ORDERS_HEADER + ROW + b"2,11,Shipped\n" + b"3,12,Pending,2025-07-10 10:00:00,extra\n",
            st.RULE_FIELDS,
        ),
        (ORDERS_HEADER + b'1,10,"Comp\nlete",2025-07-10 10:00:00\n', st.RULE_ONE_LINE),
    ],
    ids=[
        "zero-bytes",
        "nul-bytes",
        "gzip",
        "zip",
        "utf16",
        "latin1",
        "json-array",
        "ndjson",
        "blank-first-line",
        "no-header",
        "duplicate-header-after-normalisation",
        "unnamed-header-column",
        "ragged-rows",
        "quoted-line-break",
    ],
)
def test_rejected_kinds(data: bytes, rule: str) -> None:
    found = inspect(data)
    assert rule in [f.rule for f in found.findings]
    assert not found.readable
    f = next(f for f in found.findings if f.rule == rule)
    assert f.message and f.check == "structure"


def test_ragged_rows_are_counted_with_line_numbers() -> None:
    f = inspect(ORDERS_HEADER + ROW + b"2,11,Shipped\n" + ROW + b"3,12,Pending,x,extra\n").findings[0]
    assert f.rule == st.RULE_FIELDS and f.failing_rows == 2
    assert f.samples[0].startswith("line 3 has 3 fields")
    assert f.samples[1].startswith("line 5 has 5 fields")


def test_duplicate_header_names_column_and_originals() -> None:
    f = inspect(b"order_id,User_ID, user_id ,created_at\n").findings[0]
    assert f.column == "user_id" and f.samples == ("User_ID", " user_id ")


def test_invalid_utf8_reports_line_and_bytes() -> None:
    f = inspect(ORDERS_HEADER + ROW + b"2,11,\xff\xfeShipped,2025-07-10 10:00:00\n").findings[0]
    assert f.rule == st.RULE_UTF8 and "line 3" in f.message and "ff fe" in f.samples[0]


@pytest.mark.parametrize(
    "data",
    [
        codecs.BOM_UTF8 + ORDERS_HEADER + ROW,
        ORDERS_HEADER.replace(b"\n", b"\r\n") + ROW.replace(b"\n", b"\r\n"),
        b'order_id,user_id,status,created_at\n1,10,"Complete, ""really""",2025-07-10 10:00:00\n',
        b"ORDER_ID , User_Id,STATUS,Created_At  \n1 ,10 , complete ,2025-07-10 10:00:00  \n",
        ORDERS_HEADER,
        codecs.BOM_UTF8 + ORDERS_HEADER.rstrip(b"\n"),
        ORDERS_HEADER + ROW + b"\n\n" + ROW,
        ORDERS_HEADER + "1,10,Complete,2025-07-10 10:00:00 — café ✓\n".encode(),
    ],
    ids=["bom", "crlf", "quoted", "case-and-whitespace", "header-only", "bom-header-only-no-eol",
         "blank-lines", "non-ascii-utf8"],
)  # fmt: skip
def test_accepted_quirks(data: bytes) -> None:
    found = inspect(data)
    assert found.findings == ()
    assert found.columns == ("order_id", "user_id", "status", "created_at")


def test_multibyte_character_cut_by_the_head_boundary_is_not_an_error() -> None:
    filler = ORDERS_HEADER + b"".join(ROW for _ in range(HEAD_BYTES // len(ROW)))
    data = filler[: HEAD_BYTES - 1] + "é".encode() + b"\n" + ROW  # 'é' straddles the 64 KiB cut
    found = inspect_head(data[:HEAD_BYTES], len(data), "orders")
    assert st.RULE_UTF8 not in [f.rule for f in found.findings]


def test_ragged_scope_names_the_head_for_large_files() -> None:
    body = ORDERS_HEADER + b"2,11,Shipped\n" + ROW * (HEAD_BYTES // len(ROW) + 10)
    f = inspect(body).findings[0]
    assert f.rule == st.RULE_FIELDS and "first 64 KiB" in f.message


def test_header_check_uses_the_dataset_columns() -> None:
    assert rules(b"id,sku,cost,category,retail_price\n1,a,1,b,2\n", "products") == []
    assert rules(b"a,b,c\n1,2,3\n", "order_items") == [st.RULE_HEADER]


def test_an_object_over_the_size_cap_is_rejected_unread() -> None:
    head = ORDERS_HEADER + ROW
    over = inspect_head(head, 6 * 1024**3, "orders")  # a 6 GiB object: only its size is looked at
    assert [f.rule for f in over.findings] == [st.RULE_SIZE] and not over.readable
    assert "6,442,450,944 bytes" in over.findings[0].message
    assert inspect_head(head, len(head), "orders", max_bytes=len(head)).readable
    assert not inspect_head(head, len(head), "orders", max_bytes=len(head) - 1).readable


def test_a_single_line_longer_than_the_head_is_a_missing_header() -> None:
    """A 2 GB file without a line break: the head shows no complete header row."""
    head = b"order_id" + b"x" * (HEAD_BYTES - 8)
    found = inspect_head(head, 2 * 1024**3, "orders")
    assert [f.rule for f in found.findings] == [st.RULE_HEADER] and not found.readable


@pytest.mark.parametrize(
    ("data", "where"),
    [
        # A complete record: ragged too, but this is the rule that says why Spark cannot read it.
        (ORDERS_HEADER + ROW + b"2" + b",x" * st.MAX_FIELDS + b"\n" + ROW, "line 3"),
        # A record the 64 KiB cut ends in: its fields up to the cut are already too many.
        (ORDERS_HEADER + ROW * 500 + b"2" + b",x" * (HEAD_BYTES // 2) + b"\n", "line 502"),
    ],
)
def test_more_fields_than_the_csv_reader_holds_is_a_rejection(data: bytes, where: str) -> None:
    (finding,) = inspect(data).findings
    assert finding.rule == st.RULE_MAX_FIELDS == "rows have at most 20,480 fields"
    assert finding.message.startswith(f"{where} has ")
    assert finding.rejects


def test_a_wide_record_inside_quotes_is_one_field() -> None:
    quoted = ORDERS_HEADER + b'1,10,"' + b"," * (st.MAX_FIELDS + 5) + b'",2025-07-10 10:00:00\n'
    assert rules(quoted) == []
