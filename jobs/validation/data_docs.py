"""Publishing GX Data Docs of the run's validations next to its reports.

The docs are a convenience for people; the verdicts, reports and summary are the result. A
renderer failure is logged and does not fail the task: a retry would find every verdict recorded
and build no docs anyway.
"""

from __future__ import annotations

import mimetypes
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.run_log import RunLog
from jobs.s3_store import S3Store

if TYPE_CHECKING:
    from jobs.validation.gx_runner import GxRunner


def publish_data_docs(gx: GxRunner | None, store: S3Store, log: RunLog, prefix: str) -> str | None:
    """Upload the docs of ``gx``'s validations under ``prefix``; the index key, or None without docs."""
    if gx is None or not gx.validated:
        return None
    try:
        return _upload(gx, store, log, prefix)
    except Exception as exc:
        log.event("data_docs.skipped", level="WARN", error=f"{type(exc).__name__}: {exc}")
        return None


def _upload(gx: GxRunner, store: S3Store, log: RunLog, prefix: str) -> str:
    with log.stage("data_docs", prefix=prefix) as end, tempfile.TemporaryDirectory() as tmp:
        index = gx.build_docs(Path(tmp))
        files = [p for p in Path(tmp).rglob("*") if p.is_file()]
        for path in files:
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if content_type.startswith("text/"):
                content_type += "; charset=utf-8"
            store.put_bytes(f"{prefix}/{path.relative_to(tmp).as_posix()}", path.read_bytes(), content_type)
        index_key = f"{prefix}/{index.relative_to(tmp).as_posix()}"
        end.update(files=len(files), index=index_key)
    return index_key
