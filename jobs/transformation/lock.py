"""A lease lock in S3 that lets one transformation run at a time write a lake.

Delta's S3 log store is only safe with a single writer, and two runs planning from the same snapshot
would each miss the other's rows. The lock is one object (``<lake prefix>/_lock.json``) written with
S3 conditional writes, so no extra infrastructure is needed:

* acquire: ``PutObject(IfNoneMatch="*")`` creates it only if absent; a holder whose lease expired
  (crashed run) is replaced with ``PutObject(IfMatch=<its ETag>)``, so only one contender wins;
* heartbeat: a background thread extends the lease with ``IfMatch=<our ETag>``; a 412 means another
  run took the lock over (we stalled past the lease) and the run must stop before its next commit
  (:meth:`LeaseLock.ensure_held` is called before every commit);
* release: ``DeleteObject(IfMatch=<our ETag>)`` never deletes a successor's lock.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


class LockTimeoutError(RuntimeError):
    """Another run held the lock for longer than we were willing to wait."""


class LeaseLostError(RuntimeError):
    """Our lease expired or was taken over: committing now could race another writer."""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _lost_race(exc: ClientError) -> bool:
    """412 (condition false) or 409 (a concurrent conditional write won)."""
    return _code(exc) in {"PreconditionFailed", "ConditionalRequestConflict"} or _status(exc) in {409, 412}


def _missing(exc: ClientError) -> bool:
    return _code(exc) in {"NoSuchKey", "404", "NotFound"} or _status(exc) == 404


class _Condition(TypedDict, total=False):
    """The conditional-write header of a put: create only if absent, or replace only that version."""

    IfNoneMatch: str
    IfMatch: str


@dataclass(frozen=True)
class LockSettings:
    ttl_seconds: float = 120.0  # lease length; a crashed holder blocks others at most this long
    wait_seconds: float = 900.0  # how long to wait for a busy lock before failing (the workflow retries)
    poll_seconds: float = 2.0


class LeaseLock:
    """``with LeaseLock(...) as lock:`` holds the lease and heartbeats until the block ends."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        key: str,
        holder: str,
        settings: LockSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.s3, self.bucket, self.key = s3, bucket, key
        self.settings = settings or LockSettings()
        self.owner = f"{holder}/{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.etag: str | None = None
        self.expires_at = 0.0
        self.lost = False
        self.waited_seconds = 0.0
        self.took_over: str | None = None  # owner of the expired lease we replaced, if any
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    # --- acquire / release ------------------------------------------------------------------------

    def _body(self) -> tuple[bytes, float]:
        now = self.clock()
        expires = now + self.settings.ttl_seconds
        body = {
            "owner": self.owner,
            "host": socket.gethostname(),
            "heartbeat_at_ms": int(now * 1000),
            "expires_at_ms": int(expires * 1000),
        }
        return json.dumps(body).encode(), expires

    def _put(self, **condition: Unpack[_Condition]) -> bool:
        body, expires = self._body()
        try:
            r = self.s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=body, ContentType="application/json", **condition
            )
        except ClientError as exc:
            if _lost_race(exc):
                return False
            raise
        self.etag, self.expires_at = r["ETag"], expires
        return True

    def _current(self) -> tuple[dict[str, Any], str] | None:
        try:
            r = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        try:
            holder = json.loads(r["Body"].read())
        except ValueError:
            holder = {}
        return holder, r["ETag"]

    def acquire(self) -> None:
        start = self.clock()
        while True:
            if self._put(IfNoneMatch="*"):
                break
            current = self._current()
            if current is not None:
                holder, etag = current
                if int(holder.get("expires_at_ms", 0)) < self.clock() * 1000 and self._put(IfMatch=etag):
                    self.took_over = str(holder.get("owner", "?"))
                    break
            if current is None:
                continue  # released between our put and get: try again at once
            if self.clock() - start > self.settings.wait_seconds:
                raise LockTimeoutError(
                    f"s3://{self.bucket}/{self.key} held by {current[0].get('owner')} for more than "
                    f"{self.settings.wait_seconds:.0f}s"
                )
            time.sleep(self.settings.poll_seconds * (0.5 + random.random()))
        self.waited_seconds = round(self.clock() - start, 3)
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="ecomkpi-lock-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._mutex:
            if self.etag is None or self.lost:
                return
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
            except ClientError as exc:
                if not (_lost_race(exc) or _missing(exc)):
                    raise
            self.etag = None

    def __enter__(self) -> LeaseLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # --- while held -------------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        interval = self.settings.ttl_seconds / 4
        while not self._stop.wait(interval):
            with self._mutex:
                try:
                    if not self._put(IfMatch=self.etag or ""):
                        self.lost = True
                        return
                except Exception:  # network trouble: keep trying until the lease runs out
                    if self.clock() >= self.expires_at:
                        self.lost = True
                        return

    def ensure_held(self) -> None:
        """Raise unless the lease is ours with at least half its length left (margin for a commit)."""
        remaining = self.expires_at - self.clock()
        if self.lost or self.etag is None or remaining < self.settings.ttl_seconds / 2:
            raise LeaseLostError(
                f"lease on s3://{self.bucket}/{self.key} lost or about to expire ({remaining:.1f}s left)"
            )
