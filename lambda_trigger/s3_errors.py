"""How S3 says "not there" and "changed since": one answer for every module of the trigger.

GetObject says ``NoSuchKey``, HeadObject only has the status (``404``/``NotFound``), and a
conditional copy or delete that lost its race says ``PreconditionFailed`` (``412``).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_CHANGED = frozenset({"PreconditionFailed", "412"})


def code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_missing(exc: ClientError) -> bool:
    return code(exc) in _MISSING


def is_changed(exc: ClientError) -> bool:
    return code(exc) in _CHANGED
