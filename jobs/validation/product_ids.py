"""The products master's ids, for the order items' unknown-product warning: read once per run.

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

from jobs.contract import PRODUCTS
from jobs.keys import relative_key
from jobs.run_log import RunLog
from jobs.s3_store import ObjectInfo, S3Store
from jobs.validation import locations as loc
from jobs.validation.structural import HEAD_BYTES, inspect_head
from jobs.validation.verdicts import NO_MASTER

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


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
        """Take the ids from a products frame (cached and counted, so it may be unpersisted after)."""
        from jobs.validation.checks import product_id_set

        ids = product_id_set(products).cache()
        count = ids.count()  # materialise before the products frame is unpersisted
        self._ids, self._loaded, self.version = ids, True, version
        self._log.event("products.ids", known_products=count, version=version)

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
        inspection = inspect_head(
            self._store.read_bytes(info.key, f"bytes=0-{HEAD_BYTES - 1}") if info.size else b"",
            info.size,
            PRODUCTS,
        )
        self.version = info.etag
        if not inspection.readable or "id" not in inspection.columns:
            self.note = f"products master {info.key} is unreadable: product_id was not checked against it"
            return None
        self.remember(
            normalize_columns(read_csv(self._spark(), self._store.uri(info.key), inspection.raw_header)),
            info.etag,
        )
        return self._ids

    def release(self) -> None:
        """Drop the cached ids (the run is done with Spark)."""
        if self._ids is not None:
            self._ids.unpersist()
