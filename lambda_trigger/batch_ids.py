"""Which batch a raw key belongs to, and which keys the trigger must ignore.

The rules mirror the bucket layout in docs/design.md:

* ``raw/products/products.csv`` (or ``PRODUCTS_KEY``) -> the ``products_master_data`` batch;
* ``raw/orders/YYYY-MM-DD/<file>.csv`` / ``raw/order_items/YYYY-MM-DD/<file>.csv`` -> that date;
* ``raw/orders/<file>.csv`` / ``raw/order_items/<file>.csv`` -> the current UTC date (a producer
  without date folders still gets daily batches);
* ``raw/manifests/YYYY-MM-DD.json`` -> the manifest of that date.

Everything else (outside ``raw/``, not ``.csv``, ``..`` anywhere, control characters, an impossible
date, deeper folders) is rejected with a reason, because a key we cannot place would either pollute a batch or
make a job read outside its prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

RAW_PREFIX = "raw/"
DEFAULT_PRODUCTS_KEY = "raw/products/products.csv"
PRODUCTS_BATCH_ID = "products_master_data"
MANIFEST_PREFIX = "raw/manifests/"
DataTable = Literal["orders", "order_items"]
DATA_TABLES: tuple[DataTable, ...] = ("orders", "order_items")

Kind = Literal["products", "manifest"] | DataTable

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Control characters (C0, DEL, C1, the Unicode line separators): a key holding them forges log
# lines and report fields downstream, and no producer names a file that way on purpose.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MANIFEST_RE = re.compile(r"raw/manifests/(\d{4}-\d{2}-\d{2})\.json")


class IgnoredKey(ValueError):
    """The key is not part of any batch; ``str(exc)`` says why and ``rule`` names the rule it broke.

    Keys under ``raw/`` are then moved to ``invalid/unrecognised/`` with a report (see
    :mod:`lambda_trigger.unrecognised`); keys elsewhere are only logged.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class KeyInfo:
    """Where a raw key belongs.

    ``dated`` is False when the key had no date folder and ``batch_id`` is the current UTC date.
    """

    key: str
    kind: Kind
    batch_id: str
    dated: bool = True


def utc_now() -> datetime:
    """The clock used for undated keys and timestamps (a function so tests can pin it)."""
    return datetime.now(UTC)


def is_batch_date(value: str) -> bool:
    """True for a real calendar date written ``YYYY-MM-DD`` (``2025-02-30`` is not one)."""
    if not _DATE_RE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def classify_key(key: str, *, today: date, products_key: str = DEFAULT_PRODUCTS_KEY) -> KeyInfo:
    """Place a decoded S3 key into its batch, or raise :class:`IgnoredKey` with the reason."""
    if _CONTROL_RE.search(key):
        raise IgnoredKey("no_control_characters", "key contains control characters (newline, tab, escape...)")
    if ".." in key:
        raise IgnoredKey("no_dot_segments", "key contains '..'")
    if not key.startswith(RAW_PREFIX):
        raise IgnoredKey("under_raw", "key is outside raw/")
    parts = key.split("/")
    if any(part == "" for part in parts):
        raise IgnoredKey("no_empty_segments", "key has an empty path segment")
    if key == products_key:
        return KeyInfo(key, "products", PRODUCTS_BATCH_ID)
    if key.startswith(MANIFEST_PREFIX):
        match = _MANIFEST_RE.fullmatch(key)
        if match is None or not is_batch_date(match.group(1)):
            raise IgnoredKey("manifest_name", "manifests must be named raw/manifests/YYYY-MM-DD.json")
        return KeyInfo(key, "manifest", match.group(1))
    if not key.endswith(".csv"):
        raise IgnoredKey("csv_extension", "key does not end with .csv (lower case)")
    table = next((t for t in DATA_TABLES if t == parts[1]), None)
    if table is None:
        raise IgnoredKey(
            "known_table",
            f"raw/{parts[1]}/ is not a batch input (expected {products_key} or orders/order_items)",
        )
    if len(parts) == 3:
        return KeyInfo(key, table, today.isoformat(), dated=False)
    if len(parts) == 4:
        if not is_batch_date(parts[2]):
            raise IgnoredKey("date_partition", f"date partition {parts[2]!r} is not a valid YYYY-MM-DD date")
        return KeyInfo(key, table, parts[2])
    raise IgnoredKey(
        "folder_depth", "data files must be raw/<table>/<file>.csv or raw/<table>/YYYY-MM-DD/<file>.csv"
    )
