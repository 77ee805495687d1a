"""Schema drift: a file whose header differs from the contract's columns, and the first file of each form.

Producers change their exports: a new column, an optional one dropped or renamed, the columns in
another order. The contract accepts such a file when its required columns are there (the suites'
column rules decide that); this module says how the header differs, so the file's report and its
verdict record carry it, and keeps a history of the forms seen per dataset: one object per form
under ``logs/validation/schemas/<dataset>/<signature>.json``, created only if absent
(``IfNoneMatch="*"``). The run whose write creates it is the one that saw the form first, and only
it sends the notice: a change raises one notice, not one per file or per run, even when two runs see
it at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from jobs.contract import COLUMNS
from jobs.validation.locations import SCHEMAS_PREFIX

if TYPE_CHECKING:
    from jobs.s3_store import S3Store

NOTICE_KIND = "schema_drift"


@dataclass(frozen=True)
class SchemaDrift:
    """How a file's (normalised) header differs from its dataset's contract columns."""

    dataset: str
    columns: tuple[str, ...]  # the file's header, as the contract names columns
    new: tuple[str, ...]  # columns the contract does not know (kept in the report, not loaded)
    missing: tuple[str, ...]  # contract columns the file lacks
    reordered: bool  # the known columns it has are in another order than the contract's

    @property
    def signature(self) -> str:
        """Names the form: the same header (as normalised) is the same form, whichever file has it."""
        return hashlib.sha256("\n".join((self.dataset, *self.columns)).encode()).hexdigest()[:16]

    def describe(self) -> str:
        parts = []
        if self.new:
            parts.append(f"new column(s) {', '.join(self.new)}")
        if self.missing:
            parts.append(f"contract column(s) missing: {', '.join(self.missing)}")
        if self.reordered:
            parts.append("the known columns in another order")
        return f"{self.dataset} header differs from the contract: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "signature": self.signature, "description": self.describe()}


def drift_of(dataset: str | None, columns: Sequence[str]) -> SchemaDrift | None:
    """The drift of a header (normalised names), or None when it is the contract's, in order."""
    if dataset not in COLUMNS:
        return None
    known = COLUMNS[dataset]
    named = tuple(c for c in columns if c)
    new = tuple(c for c in named if c not in known)
    missing = tuple(c for c in known if c not in named)
    present = [c for c in named if c in known]
    reordered = present != [c for c in known if c in named]
    if not new and not missing and not reordered:
        return None
    return SchemaDrift(dataset, named, new, missing, reordered)


def history_key(drift: SchemaDrift) -> str:
    return f"{SCHEMAS_PREFIX}/{drift.dataset}/{drift.signature}.json"


def record_first_seen(
    store: S3Store,
    drift: SchemaDrift,
    seen_in: dict[str, Any],
    notify: Callable[[SchemaDrift, dict[str, Any]], None] | None = None,
) -> bool:
    """Add the form to the dataset's history if it is new there; True when this call added it.

    ``notify`` is called only then. When it fails the entry is removed again, so the next file of
    that form tries the notice again rather than the change going unannounced.
    """
    body = json.dumps({**drift.to_dict(), "first_seen": seen_in}, indent=2, sort_keys=True)
    if not store.put_if_absent(history_key(drift), body.encode(), "application/json"):
        return False
    if notify is not None:
        try:
            notify(drift, seen_in)
        except Exception:
            store.delete(history_key(drift))
            raise
    return True


def schema_history(store: S3Store, dataset: str) -> list[dict[str, Any]]:
    """Every form of ``dataset`` seen so far, the oldest first (by the time it was first seen)."""
    entries = [
        json.loads(store.read_bytes(o.key))
        for o in store.list(f"{SCHEMAS_PREFIX}/{dataset}/")
        if o.key.endswith(".json")
    ]
    return sorted(entries, key=lambda e: str(e.get("first_seen", {}).get("at", "")))
