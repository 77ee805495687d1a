"""Key ranges: what a set of string keys spans, so that two sets can be shown to share no key
without reading either.

A range is observed while rows are computed anyway (:func:`key_range` gives the aggregates for an
``Observation``: no query of its own) and kept as a :class:`KeyRange`: the keys' lexicographic
min/max and, when every key is an integer without leading zeros, their min/max in numeric order as
(length, key) pairs. Two sets whose ranges do not meet in either order share no key.

The numeric order matters for the ids producers send: integers that grow day after day. As strings,
a day whose ids run from 99,990 to 100,020 spans ["100000", "99999"], which holds nearly every
shorter id; in (length, key) order it is [(5, "99990"), (6, "100020")] and stays clear of the
history below it.

The transformation keeps the union of every stored key's range per silver table
(:mod:`jobs.transformation.key_ledger`); the planner compares it with the ranges it observes as it
reads the new rows before it looks up stored versions of their keys
(:mod:`jobs.transformation.incremental`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F

INTEGER_ID = r"^(0|[1-9][0-9]*)$"  # ids whose numeric order is (length, string) order


def key_range(name: str, key: str, where: str | None = None) -> dict[str, Column]:
    """What a range of column ``key`` needs observed (``where``, a SQL condition: of those rows
    only): its lexicographic min/max, and, when every key is an integer without leading zeros, its
    min/max in numeric order as (length, key) structs.

    SQL text, not Column calls: each Column call is a Py4J round trip, and a plan observes several
    ranges (the job budget counts them, tests/jobs/transformation/test_job_budget.py)."""
    k = key if where is None else f"CASE WHEN {where} THEN {key} END"
    by_number = f"CASE WHEN {k} IS NOT NULL THEN named_struct('length', length({k}), 'key', {k}) END"
    return {
        f"{name}_low": F.expr(f"min({k})"),
        f"{name}_high": F.expr(f"max({k})"),
        f"{name}_nlow": F.expr(f"min({by_number})"),
        f"{name}_nhigh": F.expr(f"max({by_number})"),
        f"{name}_integers": F.expr(f"min(CASE WHEN {k} IS NOT NULL THEN {k} RLIKE '{INTEGER_ID}' END)"),
    }


Bound = tuple[int, str]  # (length, key): numeric order of integers without leading zeros


@dataclass(frozen=True)
class KeyRange:
    """The span of a non-empty set of keys (an empty set has no range: ``None`` where one is expected)."""

    low: str
    high: str
    integers: tuple[Bound, Bound] | None = None  # (min, max) when every key is an integer

    @classmethod
    def observed(cls, seen: Mapping[str, Any], name: str) -> KeyRange | None:
        """The range :func:`key_range` ``name`` observed; None when it saw no key."""
        if seen.get(f"{name}_low") is None:
            return None
        integers = None
        if seen.get(f"{name}_integers"):
            low, high = seen[f"{name}_nlow"], seen[f"{name}_nhigh"]
            integers = ((int(low["length"]), str(low["key"])), (int(high["length"]), str(high["key"])))
        return cls(str(seen[f"{name}_low"]), str(seen[f"{name}_high"]), integers)

    def union(self, other: KeyRange | None) -> KeyRange:
        if other is None:
            return self
        integers = None
        if self.integers is not None and other.integers is not None:
            integers = (min(self.integers[0], other.integers[0]), max(self.integers[1], other.integers[1]))
        return KeyRange(min(self.low, other.low), max(self.high, other.high), integers)

    def meets(self, other: KeyRange) -> bool:
        """Whether the two sets may share a key (False: they certainly share none).

        Python compares strings by code point, Spark by UTF-8 bytes: the same order.
        """
        if self.high < other.low or other.high < self.low:
            return False
        if self.integers is not None and other.integers is not None:
            (low, high), (other_low, other_high) = self.integers, other.integers
            return not (high < other_low or other_high < low)
        return True

    def as_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.integers is not None:
            value["integer_low"], value["integer_high"] = (list(b) for b in self.integers)
        return value

    @classmethod
    def from_json(cls, value: Any) -> KeyRange | None:
        """The range :meth:`as_json` wrote; None for ``None`` (no key). Raises on anything else."""
        if value is None:
            return None
        integers = None
        if "integer_low" in value:
            (ll, lk), (hl, hk) = value["integer_low"], value["integer_high"]
            integers = ((int(ll), str(lk)), (int(hl), str(hk)))
        return cls(str(value["low"]), str(value["high"]), integers)


def disjoint(a: KeyRange | None, b: KeyRange | None) -> bool:
    """True when the key sets certainly share no key (an empty set shares none)."""
    return a is None or b is None or not a.meets(b)
