"""The key ledger: the span of every key silver stores, per table, kept next to the journal.

The planner looks up the stored versions of every key a run applies (orders by ``order_id``, items
by ``item_key``, the items of orders that arrive by ``order_id``). For a new day those lookups find
nothing: producers' ids grow, and a new day's ids lie above everything stored. Each lookup still
costs Delta's file filtering and a few adaptive stages (~2.5 s of a 100k-item day's plan,
bench/results/LOG.md, 50d2942). The ledger lets the planner prove "nothing stored" without reading
silver: when the ranges of the run's keys (:mod:`jobs.key_ranges`, observed while its rows are read)
miss the ledger's, no stored row has one of them.

Invariant: a *complete* ledger's ranges contain every key the silver tables hold. A run widens it
with the ranges of the rows it is about to write before its first silver commit (under the lake
lock, after the journal), so a run that dies after that leaves a wider ledger, never a narrower one;
it is never narrowed (a deleted row leaves its key inside the range: wider only means a lookup that
finds nothing). A lake whose silver tables exist but that has no ledger (made by an earlier release,
or the object was removed) gets an *incomplete* one, and every plan looks up as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from jobs.key_ranges import KeyRange, disjoint
from jobs.s3_store import S3Store
from jobs.transformation.lake import SILVER_ITEMS, SILVER_ORDERS, Lake

ORDER_IDS = f"{SILVER_ORDERS}.order_id"
ITEM_KEYS = f"{SILVER_ITEMS}.item_key"  # producer ids only: a "row:" key is never shared (staging)
ITEM_ORDER_IDS = f"{SILVER_ITEMS}.order_id"
LEDGER_FORMAT = 1


@dataclass(frozen=True)
class KeyLedger:
    complete: bool
    ranges: dict[str, KeyRange] = field(default_factory=dict)

    def clear_of(self, name: str, keys: KeyRange | None) -> bool:
        """True when no stored value of ``name`` can be one of ``keys``."""
        return self.complete and disjoint(self.ranges.get(name), keys)

    def widened(self, added: Mapping[str, KeyRange | None]) -> KeyLedger:
        ranges = dict(self.ranges)
        for name, keys in added.items():
            if keys is not None:
                ranges[name] = keys.union(ranges.get(name))
        return KeyLedger(self.complete, ranges)


@dataclass
class LedgerObject:
    """The ledger of the lake at ``lake_path``, as a JSON object in the pipeline bucket."""

    store: S3Store
    key: str  # <lake prefix>/_key_ranges.json
    lake_path: str

    def read(self, lake: Lake) -> KeyLedger:
        """The ledger; without one (or one of another lake sharing the prefix, or unreadable), an
        empty one that is complete only while silver has no orders or items table yet."""
        value = self.store.read_json(self.key)
        try:
            if (
                isinstance(value, dict)
                and value["format"] == LEDGER_FORMAT
                and value["lake"] == self.lake_path
            ):
                ranges = {name: KeyRange.from_json(r) for name, r in value["ranges"].items()}
                return KeyLedger(
                    value["complete"] is True, {n: r for n, r in ranges.items() if r is not None}
                )
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
        return KeyLedger(not (lake.exists(SILVER_ORDERS) or lake.exists(SILVER_ITEMS)))

    def write(self, ledger: KeyLedger) -> None:
        self.store.put_json(
            self.key,
            {
                "format": LEDGER_FORMAT,
                "lake": self.lake_path,
                "complete": ledger.complete,
                "ranges": {name: r.as_json() for name, r in sorted(ledger.ranges.items())},
            },
        )
