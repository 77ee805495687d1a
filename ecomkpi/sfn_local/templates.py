"""Payload templates: the ``Parameters`` and ``ResultSelector`` objects with their ``"key.$"`` fields.

A template is compiled once (every ``.$`` value parsed as a path or an intrinsic call) so that a
malformed path is a load-time ``DefinitionError``. Evaluating it returns a fresh JSON value where
each ``"key.$": "<path|call>"`` became ``"key": <value>``; templates nest through objects and
arrays (the ECS ``Environment`` list of ``{"Name": ..., "Value.$": ...}`` relies on that).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ecomkpi.sfn_local.errors import RUNTIME, StatesError
from ecomkpi.sfn_local.intrinsics import (
    Call,
    IntrinsicSyntaxError,
    evaluate_intrinsic,
    is_intrinsic,
    parse_intrinsic,
)
from ecomkpi.sfn_local.jsonpath import JsonPath, JsonPathSyntaxError, PathNotFound, parse_path


@dataclass(frozen=True)
class _Dynamic:
    key: str
    source: JsonPath | Call


@dataclass(frozen=True)
class _Object:
    static: tuple[tuple[str, Any], ...]
    dynamic: tuple[_Dynamic, ...]
    order: tuple[str, ...]


@dataclass(frozen=True)
class _Array:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Template:
    """A compiled payload template; ``evaluate`` applies it to the effective input."""

    root: Any
    field: str

    def evaluate(self, data: Any, context: Any) -> Any:
        return _evaluate(self.root, data, context, self.field)


def compile_template(value: Any, where: str, problems: list[str]) -> Template:
    """Compile ``value`` (the Parameters/ResultSelector object), appending problems found."""
    return Template(_compile(value, where, problems), where)


def _compile(value: Any, where: str, problems: list[str]) -> Any:
    if isinstance(value, dict):
        static: list[tuple[str, Any]] = []
        dynamic: list[_Dynamic] = []
        order: list[str] = []
        for key, item in value.items():
            if key.endswith(".$"):
                name = key[:-2]
                source = compile_source(item, f"{where}.{key}", problems)
                if source is not None:
                    dynamic.append(_Dynamic(name, source))
            else:
                name = key
                static.append((key, _compile(item, f"{where}.{key}", problems)))
            if name in order:
                problems.append(f"{where}: field {name!r} is given both as {name!r} and {name + '.$'!r}")
            order.append(name)
        return _Object(tuple(static), tuple(dynamic), tuple(order))
    if isinstance(value, list):
        return _Array(tuple(_compile(item, f"{where}[{i}]", problems) for i, item in enumerate(value)))
    return value


def compile_source(text: Any, where: str, problems: list[str]) -> JsonPath | Call | None:
    """Parse the value of a ``.$`` field: a path (``$``/``$$``) or an intrinsic call."""
    if not isinstance(text, str):
        problems.append(f"{where}: a '.$' field needs a string path or intrinsic call, got {text!r}")
        return None
    try:
        if is_intrinsic(text):
            return parse_intrinsic(text)
        return parse_path(text)
    except (IntrinsicSyntaxError, JsonPathSyntaxError) as exc:
        problems.append(f"{where}: {exc}")
        return None


def evaluate_source(source: JsonPath | Call, data: Any, context: Any, field: str) -> Any:
    """Resolve one ``.$`` value; a missing definite path is ``States.Runtime`` as in AWS."""
    if isinstance(source, Call):
        return evaluate_intrinsic(source, data, context)
    try:
        return source.evaluate(data, context)
    except PathNotFound:
        shown = json.dumps(context if source.context else data)[:500]
        raise StatesError(
            RUNTIME,
            f"The JSONPath '{source.text}' specified for the field '{field}' could not be found "
            f"in the input '{shown}'",
        ) from None


def _evaluate(node: Any, data: Any, context: Any, field: str) -> Any:
    if isinstance(node, _Object):
        values: dict[str, Any] = {key: _evaluate(item, data, context, key) for key, item in node.static}
        for dyn in node.dynamic:
            values[dyn.key] = evaluate_source(dyn.source, data, context, f"{dyn.key}.$")
        return {key: values[key] for key in node.order if key in values}
    if isinstance(node, _Array):
        return [_evaluate(item, data, context, field) for item in node.items]
    return node
