"""The products master's ids, for the order items' unknown-product warning: read once per master
version in a process (a warm worker's later runs reuse them while the master keeps its ETag).

The products key is first in the plan, so when the master is validated in this run its checked
frame provides the ids (``remember``). Otherwise (its verdict was recorded earlier) ``lookup``
reads the current master: raw/ first, the validated copy when raw/ has none. When the master is
missing or unreadable there are no ids and ``note`` says why (it goes into the items' reports).
``version`` names the master object the run consulted (its ETag, ``NO_MASTER`` without one): an
items verdict records it, and is reused only while ``current_version`` still names the same one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jobs.validation.locations as loc
from jobs.contract import PRODUCTS
from jobs.keys import relative_key
from jobs.run_log import RunLog
from jobs.s3_store import ObjectInfo, S3Store
from jobs.validation.structural import HEAD_BYTES, inspect_head
from jobs.validation.verdicts import NO_MASTER

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


# (bucket, master rel, ETag) -> (session, cached ids, count) of the last master this process read. A
# warm worker validates many items parts against one master version: reading and counting it again
# for each run cost ~0.3 s at 30k products. An ETag names one content: a new master version misses.
_SEEN: dict[tuple[str, str, str], tuple[SparkSession, DataFrame, int]] = {}


class ProductIds:
    """One run's product ids (a cached one-column frame), or the note why there are none."""

    def __init__(
        self, store: S3Store, log: RunLog, products_key: str, spark: Callable[[], SparkSession]
    ) -> None:
        self._store = store
        self._log = log
        self._products_key = products_key
        self._spark = spark
        self._ids: DataFrame | None = None
        self._loaded = False  # settled for this run: ids remembered, or a note written
        self.note: str | None = None
        self.version = NO_MASTER

    def _master(self) -> ObjectInfo | None:
        """The master the run uses: raw/ first, the validated copy when raw/ has none."""
        rel = relative_key(self._products_key)
        return self._store.head(loc.raw_key(rel)) or self._store.head(loc.validated_key(rel))

    def current_version(self) -> str:
        """The version ``lookup`` would use now (a run asks at most once, when it resolves items)."""
        info = self._master()
        return info.etag if info is not None else NO_MASTER

    def remember(self, products: DataFrame, version: str) -> None:
        """Take the ids from a products frame (cached and counted, so it may be unpersisted after);
        later runs of this process reuse them while the master has this version."""
        from jobs.validation.checks import product_id_set

        ids = product_id_set(products).cache()
        count = ids.count()  # materialise before the products frame is unpersisted
        self._ids, self._loaded, self.version = ids, True, version
        self._log.event("products.ids", known_products=count, version=version)
        for old_ids in [seen[1] for seen in _SEEN.values() if seen[1] is not ids]:
            old_ids.unpersist()
        _SEEN.clear()
        _SEEN[self._seen_key(version)] = (products.sparkSession, ids, count)

    def _seen_key(self, version: str) -> tuple[str, str, str]:
        return self._store.bucket, relative_key(self._products_key), version

    def _reuse(self, version: str) -> bool:
        """Take the ids a previous run of this process read from this version of the master."""
        seen = _SEEN.get(self._seen_key(version))
        if seen is None or seen[0] is not self._spark():
            return False
        self._ids, self.version = seen[1], version
        self._log.event("products.ids", known_products=seen[2], version=version, reused=True)
        return True

    def master_malformed(self, key: str, version: str) -> None:
        """The master validated in this run is malformed: no ids this run."""
        self._loaded, self.version = True, version
        self.note = f"products master {key} is malformed: product_id was not checked against it"

    def lookup(self) -> DataFrame | None:
        """The ids, reading the master the first time they are needed; None (and a note) without one."""
        if self._loaded:
            return self._ids
        self._loaded = True
        from jobs.normalize import normalize_columns
        from jobs.validation.reading import read_csv

        rel = relative_key(self._products_key)
        info = self._master()
        if info is None:
            self.note = f"products master {rel} not found: product_id was not checked against it"
            return None
        self.version = info.etag
        if self._reuse(info.etag):
            return self._ids
        inspection = inspect_head(
            self._store.read_bytes(info.key, f"bytes=0-{HEAD_BYTES - 1}") if info.size else b"",
            info.size,
            PRODUCTS,
        )
        if not inspection.readable or "id" not in inspection.columns:
            self.note = f"products master {info.key} is unreadable: product_id was not checked against it"
            return None
        self.remember(
            normalize_columns(read_csv(self._spark(), self._store.uri(info.key), inspection.raw_header)),
            info.etag,
        )
        return self._ids

    def release(self) -> None:
        """Drop the cached ids (the run is done with Spark), unless kept for the next run."""
        if self._ids is not None and all(seen[1] is not self._ids for seen in _SEEN.values()):
            self._ids.unpersist()
