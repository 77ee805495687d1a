"""Which files a run must apply: the batch's keys mapped to ``validated/``, in arrival order.

The execution input carries every key of the batch so far (cumulative across generations). A key
whose file is no longer in ``validated/`` but is in ``processed/`` was applied by an earlier run and
is skipped; a file still in ``validated/`` is applied unless the lake already holds that exact
version (same raw ETag), which makes retries and byte-identical re-uploads free. The batch folders
of ``validated/`` are swept too, so a file left there by an earlier failed run is never stranded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from jobs.config import PipelineConfig
from jobs.contract import ORDER_ITEMS, ORDERS, PRODUCTS
from jobs.keys import INVALID, PROCESSED, VALIDATED, dataset_of, relative_key, stage_key
from jobs.s3_store import ObjectInfo, S3Store
from jobs.staging import staged_files, staging_prefix
from jobs.staging_marker import KeySummary, read_marker
from jobs.transformation.sources import SourceFile

# Object metadata the validation job puts on its copies in validated/ (contract, docs/design.md).
META_RAW_ETAG = "ecomkpi-raw-etag"
META_ARRIVED_MS = "ecomkpi-arrived-ms"

SKIP_PROCESSED = "already processed by an earlier run"
SKIP_INVALID = "rejected by validation"
SKIP_MISSING = "not in validated/"
SKIP_APPLIED = "this version is already applied"


@dataclass(frozen=True)
class InputFile:
    """One validated file version waiting in ``validated/<rel>``."""

    rel: str
    dataset: str
    raw_etag: str  # identity of the producer's version (same bytes, same ETag)
    object_etag: str  # ETag of the validated copy, for the conditional archive move
    arrived_ms: int  # arrival of the raw version; orders versions of a key, ties broken by rel
    staged: bool = False  # validation left this version's parsed rows in staging/
    key_summary: KeySummary | None = None  # what their marker says of the file's keys

    @property
    def key(self) -> str:
        return stage_key(VALIDATED, self.rel)

    @property
    def staging_prefix(self) -> str:
        return staging_prefix(self.rel, self.raw_etag)

    @property
    def order(self) -> tuple[int, str]:
        return (self.arrived_ms, self.rel)

    def source(self, store: S3Store) -> SourceFile:
        return SourceFile(
            rel=self.rel,
            uri=store.uri(self.key),
            seq=self.arrived_ms,
            raw_etag=self.raw_etag,
            staged_uri=store.uri(self.staging_prefix) if self.staged else None,
            key_summary=self.key_summary,  # None unless staged (read with the marker)
        )

    @classmethod
    def from_object(cls, rel: str, info: ObjectInfo) -> InputFile:
        arrived = info.metadata.get(META_ARRIVED_MS, "")
        return cls(
            rel=rel,
            dataset=dataset_of(rel),
            raw_etag=info.metadata.get(META_RAW_ETAG) or info.etag,
            object_etag=info.etag,
            arrived_ms=int(arrived) if arrived.isdigit() else info.last_modified_ms,
        )


@dataclass
class Inputs:
    files: list[InputFile] = field(default_factory=list)  # in validated/, arrival order
    skipped: dict[str, str] = field(default_factory=dict)  # rel -> why it is not read

    def of(self, dataset: str) -> list[InputFile]:
        return [f for f in self.files if f.dataset == dataset]


def requested_rels(config: PipelineConfig) -> list[str]:
    """Products first, then orders and items keys as given, relative and de-duplicated."""
    keys = [config.products_key, *config.orders_keys, *config.order_items_keys]
    return list(dict.fromkeys(relative_key(k) for k in keys if k.strip()))


def batch_folders(batch_id: str) -> list[str]:
    return [f"{VALIDATED}/{ds}/{batch_id}/" for ds in (ORDERS, ORDER_ITEMS)]


DISCOVERY_THREADS = 8  # a file's discovery is one to three S3 requests; many parts wait on them together


def discover(config: PipelineConfig, store: S3Store) -> Inputs:
    """Head every requested key in ``validated/`` (with its staging marker) and sweep the batch's
    folders there; the keys are looked at several at a time, since a day in many parts would
    otherwise wait on one round trip after the other."""
    rels = requested_rels(config)
    for prefix in batch_folders(config.batch_id):
        rels.extend(relative_key(o.key) for o in store.list(prefix) if o.key.endswith(".csv"))
    unique = list(dict.fromkeys(rels))
    inputs = Inputs()
    if len(unique) > 1:
        from concurrent.futures import ThreadPoolExecutor

        listed = staged_files(store, {ds for rel in unique if (ds := _dataset(rel))})
        with ThreadPoolExecutor(max_workers=DISCOVERY_THREADS, thread_name_prefix="discover") as pool:
            found = list(pool.map(lambda rel: _discover_one(rel, store, listed), unique))
    else:
        found = [_discover_one(rel, store) for rel in unique]
    for rel, file, skipped in found:
        if file is not None:
            inputs.files.append(file)
        else:
            inputs.skipped[rel] = skipped
    inputs.files.sort(key=lambda f: f.order)
    return inputs


def _dataset(rel: str) -> str | None:
    try:
        return dataset_of(rel)
    except ValueError:
        return None


def _discover_one(
    rel: str, store: S3Store, listed: Mapping[str, Mapping[str, int]] | None = None
) -> tuple[str, InputFile | None, str]:
    """(rel, the version waiting in validated/ or None, why it is skipped otherwise)."""
    if _dataset(rel) is None:
        return rel, None, "not a products/, orders/ or order_items/ key"
    info = store.head(stage_key(VALIDATED, rel))
    if info is not None:
        found = InputFile.from_object(rel, info)
        staged, summary = read_marker(store, found.staging_prefix, listed)
        return rel, dataclasses.replace(found, staged=staged, key_summary=summary), ""
    if store.exists(stage_key(PROCESSED, rel)):
        return rel, None, SKIP_PROCESSED
    if store.exists(stage_key(INVALID, rel)):
        return rel, None, SKIP_INVALID
    return rel, None, SKIP_MISSING


def discover_all(configs: Iterable[PipelineConfig], store: S3Store) -> Inputs:
    """``discover`` for several batches at once: each file once, in arrival order; a key skipped
    for one batch but found in ``validated/`` for another is applied."""
    files: dict[str, InputFile] = {}
    skipped: dict[str, str] = {}
    for config in configs:
        found = discover(config, store)
        for f in found.files:
            files.setdefault(f.rel, f)
        for rel, why in found.skipped.items():
            skipped.setdefault(rel, why)
    return Inputs(
        files=sorted(files.values(), key=lambda f: f.order),
        skipped={rel: why for rel, why in skipped.items() if rel not in files},
    )


def pending(
    files: Iterable[InputFile], applied: Mapping[str, str]
) -> tuple[list[InputFile], list[InputFile]]:
    """(to apply, already applied): a file is applied when the lake holds its exact raw ETag."""
    to_apply: list[InputFile] = []
    done: list[InputFile] = []
    for f in files:
        (done if applied.get(f.rel) == f.raw_etag else to_apply).append(f)
    return to_apply, done


def is_products(f: InputFile) -> bool:
    return f.dataset == PRODUCTS
