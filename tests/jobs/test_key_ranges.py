"""Key ranges and the key ledger's arithmetic (no JVM): when two key sets provably share no key."""

from __future__ import annotations

import json

import pytest

from jobs.key_ranges import KeyRange, disjoint
from jobs.staging_marker import KeySummary
from jobs.transformation.key_ledger import ITEM_KEYS, ORDER_IDS, KeyLedger
from jobs.validation.suites import load_suite_json, rejects_repeated_keys


def ints(*keys: str) -> KeyRange:
    """The range :func:`jobs.key_ranges.key_range` observes for integer ids ``keys``."""
    by_number = sorted((len(k), k) for k in keys)
    return KeyRange(min(keys), max(keys), (by_number[0], by_number[-1]))


def strings(*keys: str) -> KeyRange:
    return KeyRange(min(keys), max(keys))


def test_integer_ids_past_a_power_of_ten_miss_the_shorter_history() -> None:
    history, day = ints("1", "57", "99"), ints("100", "250")
    assert history.low <= day.low <= history.high  # as strings the ranges overlap...
    assert not history.meets(day) and not day.meets(history)  # ...as numbers they do not
    assert disjoint(history, day)


def test_ranges_that_overlap_as_numbers_meet() -> None:
    assert ints("1", "120").meets(ints("99", "101"))
    assert ints("5", "9").meets(ints("9", "12"))  # a shared bound is a shared key


def test_without_integer_bounds_only_the_string_order_separates() -> None:
    assert strings("a-1", "a-9").meets(strings("a-5", "b"))
    assert not strings("a-1", "a-4").meets(strings("a-5", "b"))
    # One side not all integers: the string ranges decide ("100".."250" overlaps "1".."x").
    assert ints("100", "250").meets(strings("1", "x"))
    assert not ints("100", "250").meets(strings("3", "x"))


def test_string_order_is_spark_s_binary_order() -> None:
    # UTF-8 byte order = code point order: "Z" < "a" < "é" < "中", as Spark compares them.
    assert not strings("Z").meets(strings("a", "é")) and not strings("a", "é").meets(strings("中"))


def test_an_empty_key_set_shares_nothing() -> None:
    assert disjoint(None, ints("1")) and disjoint(ints("1"), None) and disjoint(None, None)


def test_union_keeps_integer_bounds_only_while_both_sides_have_them() -> None:
    joined = ints("1", "99").union(ints("100", "250"))
    assert joined == KeyRange("1", "99", ((1, "1"), (3, "250")))
    assert ints("1").union(strings("x")) == KeyRange("1", "x", None)
    assert ints("7").union(None) == ints("7")


@pytest.mark.parametrize("value", [ints("1", "100"), strings("a", "b"), None])
def test_ranges_survive_json(value: KeyRange | None) -> None:
    assert KeyRange.from_json(json.loads(json.dumps(None if value is None else value.as_json()))) == value


@pytest.mark.parametrize("unique", [True, False])
def test_summaries_survive_their_marker(unique: bool) -> None:
    summary = KeySummary("order_id", unique)
    assert KeySummary.from_marker(json.dumps(summary.as_json()).encode()) == summary


@pytest.mark.parametrize("marker", [b"", b"{}", b"[]", b"not json", b'{"summary": 99, "key": "x"}'])
def test_a_marker_without_a_summary_of_this_release_says_nothing(marker: bytes) -> None:
    assert KeySummary.from_marker(marker) is None


def test_the_ledger_clears_only_what_it_knows_it_does_not_hold() -> None:
    ledger = KeyLedger(True, {ORDER_IDS: ints("1", "99")})
    assert ledger.clear_of(ORDER_IDS, ints("100", "150"))
    assert not ledger.clear_of(ORDER_IDS, ints("50", "150"))
    assert ledger.clear_of(ITEM_KEYS, ints("1"))  # nothing stored under that name
    incomplete = KeyLedger(False, {ORDER_IDS: ints("1", "99")})
    assert not incomplete.clear_of(ORDER_IDS, ints("100", "150"))
    assert not incomplete.clear_of(ITEM_KEYS, ints("1"))


def test_widening_never_narrows_and_keeps_completeness() -> None:
    ledger = KeyLedger(True, {ORDER_IDS: ints("1", "99")})
    wider = ledger.widened({ORDER_IDS: ints("100", "150"), ITEM_KEYS: None})
    assert wider == KeyLedger(True, {ORDER_IDS: KeyRange("1", "99", ((1, "1"), (3, "150")))})
    assert wider.widened({ORDER_IDS: ints("5")}) == wider
    assert KeyLedger(False).widened({ORDER_IDS: ints("1")}).complete is False


def test_the_suites_reject_repeated_keys_so_staging_may_say_unique() -> None:
    assert rejects_repeated_keys("orders", load_suite_json("orders"))
    assert rejects_repeated_keys("order_items", load_suite_json("order_items"))
    assert not rejects_repeated_keys("products", load_suite_json("products"))  # no table key
    relaxed = load_suite_json("orders")
    for e in relaxed["expectations"]:
        if e["type"] == "expect_column_values_to_be_unique":
            e["severity"] = "warning"
    assert not rejects_repeated_keys("orders", relaxed)
