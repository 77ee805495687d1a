"""The subset of JSONPath that Step Functions definitions use, parsed once at load time.

Supported: ``$`` (state data) and ``$$`` (context object) roots, ``.name``, ``['name']``, ``[n]``
(negative counts from the end), ``[*]`` / ``.*`` and filter expressions ``[?(...)]`` with ``@``
relative paths, literals, ``== != < <= > >=``, ``&&``, ``||``, ``!`` and parentheses.

Semantics follow Jayway JsonPath, which AWS uses for InputPath/Parameters/ResultSelector:
a *definite* path (names and indices only) yields one value or fails; an *indefinite* one
(wildcard or filter) yields a list, possibly empty, skipping elements that lack the path.
That is what makes ``$.Containers[?(@.Name == 'validation')].ExitCode`` return ``[0]``.
Recursive descent (``..``), slices and unions are rejected at parse time rather than
approximated.

Kept whole: the parser and the evaluator of one small language, sharing its node types; split, each
half would be read with the other open.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

_MISSING = object()
_NAME_STOP = set(".[]()'\", \t\r\n")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


class JsonPathSyntaxError(ValueError):
    """The text is not a path this implementation understands."""


class PathNotFound(LookupError):
    """A definite path does not exist in the data it was applied to."""


# --------------------------------------------------------------------------- segments


@dataclass(frozen=True)
class Name:
    key: str


@dataclass(frozen=True)
class Index:
    index: int


@dataclass(frozen=True)
class Wildcard:
    pass


@dataclass(frozen=True)
class Filter:
    expression: FilterExpr
    text: str


Segment = Name | Index | Wildcard | Filter


# --------------------------------------------------------------------------- filter expressions


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Relative:
    """``@`` followed by names/indices, evaluated against the element being filtered."""

    segments: tuple[Name | Index, ...]


@dataclass(frozen=True)
class Compare:
    op: str
    left: Literal | Relative
    right: Literal | Relative


@dataclass(frozen=True)
class Exists:
    operand: Relative


@dataclass(frozen=True)
class BoolOp:
    op: str  # "&&" or "||"
    items: tuple[FilterExpr, ...]


@dataclass(frozen=True)
class NotOp:
    item: FilterExpr


FilterExpr = Compare | Exists | BoolOp | NotOp


# --------------------------------------------------------------------------- the path object


@dataclass(frozen=True)
class JsonPath:
    """A parsed path; ``context`` is True for ``$$`` paths (the context object)."""

    text: str
    context: bool
    segments: tuple[Segment, ...]

    @property
    def definite(self) -> bool:
        """True when the path can only ever select one node (names and indices only)."""
        return all(isinstance(s, Name | Index) for s in self.segments)

    def evaluate(self, data: Any, context: Any = None) -> Any:
        """Apply the path; a definite path returns the node, an indefinite one a list of nodes.

        Raises ``PathNotFound`` when a definite path does not exist.
        """
        root = context if self.context else data
        if self.context and context is None:
            raise PathNotFound(f"no context object for {self.text}")
        if self.definite:
            node = root
            for segment in self.segments:
                node = _step_definite(node, segment)
                if node is _MISSING:
                    raise PathNotFound(self.text)
            return node
        nodes = [root]
        for segment in self.segments:
            nodes = [child for node in nodes for child in _step_indefinite(node, segment)]
        return nodes

    def __str__(self) -> str:
        return self.text


def _step_definite(node: Any, segment: Segment) -> Any:
    if isinstance(segment, Name):
        if isinstance(node, dict) and segment.key in node:
            return node[segment.key]
        return _MISSING
    if isinstance(segment, Index):
        if isinstance(node, list) and -len(node) <= segment.index < len(node):
            return node[segment.index]
        return _MISSING
    raise AssertionError(segment)  # pragma: no cover - definite paths hold only the two above


def _step_indefinite(node: Any, segment: Segment) -> list[Any]:
    if isinstance(segment, Name | Index):
        child = _step_definite(node, segment)
        return [] if child is _MISSING else [child]
    if isinstance(node, dict):
        children = list(node.values())
    elif isinstance(node, list):
        children = list(node)
    else:
        return []
    if isinstance(segment, Wildcard):
        return children
    if not isinstance(node, list):
        return []
    return [child for child in children if _filter_matches(segment.expression, child)]


def _operand_value(operand: Literal | Relative, element: Any) -> Any:
    if isinstance(operand, Literal):
        return operand.value
    node = element
    for segment in operand.segments:
        node = _step_definite(node, segment)
        if node is _MISSING:
            return _MISSING
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    return type(left) is type(right) and left == right


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _filter_matches(expr: FilterExpr, element: Any) -> bool:
    if isinstance(expr, BoolOp):
        results = (_filter_matches(item, element) for item in expr.items)
        return all(results) if expr.op == "&&" else any(results)
    if isinstance(expr, NotOp):
        return not _filter_matches(expr.item, element)
    if isinstance(expr, Exists):
        return _operand_value(expr.operand, element) is not _MISSING
    left = _operand_value(expr.left, element)
    right = _operand_value(expr.right, element)
    if left is _MISSING or right is _MISSING:
        return False
    if expr.op == "==":
        return _json_equal(left, right)
    if expr.op == "!=":
        return not _json_equal(left, right)
    comparable = (_is_number(left) and _is_number(right)) or (
        isinstance(left, str) and isinstance(right, str)
    )
    return comparable and _ORDER[expr.op](left, right)


# --------------------------------------------------------------------------- parsing


def parse_path(text: str) -> JsonPath:
    """Parse a JSONPath as used in InputPath/OutputPath/Parameters/ResultSelector."""
    if not isinstance(text, str):
        raise JsonPathSyntaxError(f"a path must be a string, got {text!r}")
    stripped = text.strip()
    if stripped.startswith("$$"):
        context, pos = True, 2
    elif stripped.startswith("$"):
        context, pos = False, 1
    else:
        raise JsonPathSyntaxError(f"path {text!r} must start with '$' or '$$'")
    segments: list[Segment] = []
    while pos < len(stripped):
        segment, pos = _parse_segment(stripped, pos)
        segments.append(segment)
    return JsonPath(stripped, context, tuple(segments))


def parse_reference_path(text: str) -> JsonPath:
    """Parse a *reference path* (ResultPath, Choice Variable): definite, no filters or wildcards."""
    path = parse_path(text)
    if not path.definite:
        raise JsonPathSyntaxError(
            f"{text!r} is not a reference path: wildcards and filter expressions are not allowed here"
        )
    return path


def _parse_segment(text: str, pos: int) -> tuple[Segment, int]:
    char = text[pos]
    if char == ".":
        if text.startswith("..", pos):
            raise JsonPathSyntaxError(f"recursive descent '..' is not supported: {text!r}")
        if text.startswith(".*", pos):
            return Wildcard(), pos + 2
        end = pos + 1
        while end < len(text) and text[end] not in _NAME_STOP:
            end += 1
        if end == pos + 1:
            raise JsonPathSyntaxError(f"empty field name at offset {pos} in {text!r}")
        return Name(text[pos + 1 : end]), end
    if char == "[":
        if text.startswith("[?(", pos):
            body, end = _scan_filter(text, pos + 3)
            return Filter(_FilterParser(body, text).parse(), body), end
        if text.startswith("[*]", pos):
            return Wildcard(), pos + 3
        if pos + 1 < len(text) and text[pos + 1] in "'\"":
            name, end = _scan_quoted(text, pos + 1)
            if not text.startswith("]", end):
                raise JsonPathSyntaxError(f"expected ']' at offset {end} in {text!r}")
            return Name(name), end + 1
        close = text.find("]", pos)
        if close < 0:
            raise JsonPathSyntaxError(f"unclosed '[' in {text!r}")
        inner = text[pos + 1 : close].strip()
        if not re.fullmatch(r"-?\d+", inner):
            raise JsonPathSyntaxError(f"unsupported subscript [{inner}] in {text!r} (only [n], [*], [?()])")
        return Index(int(inner)), close + 1
    raise JsonPathSyntaxError(f"unexpected {char!r} at offset {pos} in {text!r}")


def _scan_quoted(text: str, pos: int) -> tuple[str, int]:
    """Read a quoted string starting at ``pos`` (the quote); return (value, index after it)."""
    quote = text[pos]
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if char == quote:
            return "".join(out), i + 1
        out.append(char)
        i += 1
    raise JsonPathSyntaxError(f"unterminated string in {text!r}")


def _scan_filter(text: str, pos: int) -> tuple[str, int]:
    """Find the ``)]`` closing a filter whose body starts at ``pos``; return (body, end)."""
    depth = 1
    i = pos
    while i < len(text):
        char = text[i]
        if char in "'\"":
            _, i = _scan_quoted(text, i)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                if not text.startswith("]", i + 1):
                    raise JsonPathSyntaxError(f"expected ']' after filter in {text!r}")
                return text[pos:i], i + 2
        i += 1
    raise JsonPathSyntaxError(f"unclosed filter expression in {text!r}")


class _FilterParser:
    """Recursive descent over a filter body: or := and ('||' and)*; and := unary ('&&' unary)*."""

    _OPS = ("==", "!=", "<=", ">=", "<", ">")

    def __init__(self, body: str, path_text: str) -> None:
        self.text = body
        self.path_text = path_text
        self.pos = 0

    def parse(self) -> FilterExpr:
        expr = self._or()
        self._ws()
        if self.pos != len(self.text):
            self._fail(f"unexpected {self.text[self.pos :]!r}")
        return expr

    def _fail(self, message: str) -> NoReturn:
        raise JsonPathSyntaxError(f"filter [?({self.text})] in {self.path_text!r}: {message}")

    def _ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _take(self, token: str) -> bool:
        self._ws()
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def _or(self) -> FilterExpr:
        items = [self._and()]
        while self._take("||"):
            items.append(self._and())
        return items[0] if len(items) == 1 else BoolOp("||", tuple(items))

    def _and(self) -> FilterExpr:
        items = [self._unary()]
        while self._take("&&"):
            items.append(self._unary())
        return items[0] if len(items) == 1 else BoolOp("&&", tuple(items))

    def _unary(self) -> FilterExpr:
        if self._take("!"):
            return NotOp(self._unary())
        if self._take("("):
            expr = self._or()
            if not self._take(")"):
                self._fail("missing ')'")
            return expr
        left = self._operand()
        self._ws()
        for op in self._OPS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return Compare(op, left, self._operand())
        if not isinstance(left, Relative):
            self._fail("a literal alone is not a condition")
        return Exists(left)

    def _operand(self) -> Literal | Relative:
        self._ws()
        text, pos = self.text, self.pos
        if pos >= len(text):
            self._fail("missing operand")
        char = text[pos]
        if char == "@":
            self.pos += 1
            segments: list[Name | Index] = []
            while self.pos < len(text) and text[self.pos] in ".[":
                segment, self.pos = _parse_segment(text, self.pos)
                if not isinstance(segment, Name | Index):
                    self._fail("only names and indices are allowed after '@'")
                segments.append(segment)
            return Relative(tuple(segments))
        if char in "'\"":
            value, self.pos = _scan_quoted(text, pos)
            return Literal(value)
        for word, constant in (("true", True), ("false", False), ("null", None)):
            if text.startswith(word, pos):
                self.pos += len(word)
                return Literal(constant)
        match = _NUMBER.match(text, pos)
        if match:
            self.pos = match.end()
            return Literal(json.loads(match.group()))
        self._fail(f"unsupported operand at {text[pos:]!r}")
        raise AssertionError  # pragma: no cover


# --------------------------------------------------------------------------- writing (ResultPath)


def set_path(data: Any, path: JsonPath, value: Any) -> Any:
    """Return a copy of ``data`` with ``value`` placed at reference path ``path`` (ResultPath).

    Missing objects along the way are created, as in AWS; a non-object in the way raises
    ``TypeError`` (the caller turns it into ``States.ResultPathMatchFailure``).
    """
    if path.context or not path.definite:
        raise TypeError(f"{path.text} is not a writable reference path")
    if not path.segments:
        return copy.deepcopy(value)
    result = copy.deepcopy(data)
    if not isinstance(result, dict):
        raise TypeError(f"cannot apply ResultPath {path.text} to a non-object input")
    node: Any = result
    for i, segment in enumerate(path.segments):
        last = i == len(path.segments) - 1
        if isinstance(segment, Name):
            if not isinstance(node, dict):
                raise TypeError(f"{path.text}: {segment.key!r} cannot be set on a non-object")
            if last:
                node[segment.key] = copy.deepcopy(value)
            else:
                node = node.setdefault(segment.key, {})
        else:
            assert isinstance(segment, Index)
            if not isinstance(node, list) or not -len(node) <= segment.index < len(node):
                raise TypeError(f"{path.text}: index {segment.index} does not exist")
            if last:
                node[segment.index] = copy.deepcopy(value)
            else:
                node = node[segment.index]
    return result
