"""Intrinsic functions (``States.Format(...)`` and friends): parsed at load time, evaluated per state.

Grammar (as AWS documents it)::

    call     := 'States.' NAME '(' [ argument (',' argument)* ] ')'
    argument := call | string | number | 'true' | 'false' | 'null' | path
    string   := "'" ( '\\' any-char | any char but "'" and '\\' )* "'"

Inside a string literal the characters ``' { } \\`` must be escaped with a backslash.
The literal's *raw* text is kept because ``States.Format`` needs to tell an escaped ``\\{`` (a brace
in the output) from a ``{}`` placeholder. A path argument extends to the next ``,`` or ``)`` that
is outside brackets and quotes, so filters like ``$.a[?(@.b == 'x,y')]`` survive.

Parsing at load time means an unknown function, a wrong argument count or a ``States.Format``
whose placeholders do not match its arguments is a definition error, not a failed run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecomkpi.sfn_local.errors import INTRINSIC_FAILURE, RUNTIME, StatesError
from ecomkpi.sfn_local.jsonpath import JsonPath, JsonPathSyntaxError, PathNotFound, parse_path

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_FUNCTION_NAME = re.compile(r"States\.[A-Za-z]+")


class IntrinsicSyntaxError(ValueError):
    """The text is not a well-formed intrinsic function call we support."""


@dataclass(frozen=True)
class StringLiteral:
    value: str  # unescaped
    raw: str  # as written between the quotes, escapes included


@dataclass(frozen=True)
class ValueLiteral:
    value: Any  # number, bool or None


@dataclass(frozen=True)
class PathArgument:
    path: JsonPath


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Argument, ...]
    text: str


Argument = StringLiteral | ValueLiteral | PathArgument | Call


# --------------------------------------------------------------------------- parsing


def is_intrinsic(text: Any) -> bool:
    """True when a ``.$`` value is an intrinsic call rather than a path."""
    return isinstance(text, str) and text.lstrip().startswith("States.")


def parse_intrinsic(text: str) -> Call:
    """Parse and check one call (function names, arity, Format placeholders)."""
    parser = _Parser(text)
    call = parser.call()
    parser.ws()
    if parser.pos != len(text):
        raise IntrinsicSyntaxError(f"unexpected text after the call in {text!r}: {text[parser.pos :]!r}")
    _check(call)
    return call


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> IntrinsicSyntaxError:
        return IntrinsicSyntaxError(f"{message} at offset {self.pos} in {self.text!r}")

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def call(self) -> Call:
        self.ws()
        start = self.pos
        match = _FUNCTION_NAME.match(self.text, self.pos)
        if not match:
            raise self.fail("expected a 'States.<Function>(' call")
        name = match.group()
        self.pos = match.end()
        self.ws()
        if not self.text.startswith("(", self.pos):
            raise self.fail(f"expected '(' after {name}")
        self.pos += 1
        args: list[Argument] = []
        self.ws()
        if self.text.startswith(")", self.pos):
            self.pos += 1
            return Call(name, (), self.text[start : self.pos])
        while True:
            args.append(self.argument())
            self.ws()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith(")", self.pos):
                self.pos += 1
                return Call(name, tuple(args), self.text[start : self.pos])
            raise self.fail("expected ',' or ')'")

    def argument(self) -> Argument:
        self.ws()
        text, pos = self.text, self.pos
        if pos >= len(text):
            raise self.fail("missing argument")
        if text.startswith("States.", pos):
            return self.call()
        char = text[pos]
        if char == "'":
            return self.string()
        if char == "$":
            return self.path()
        for word, value in (("true", True), ("false", False), ("null", None)):
            if re.match(rf"{word}\b", text[pos:]):
                self.pos += len(word)
                return ValueLiteral(value)
        match = _NUMBER.match(text, pos)
        if match:
            self.pos = match.end()
            return ValueLiteral(json.loads(match.group()))
        raise self.fail("expected a string, number, path or call")

    def string(self) -> StringLiteral:
        start = self.pos + 1
        i = start
        value: list[str] = []
        while i < len(self.text):
            char = self.text[i]
            if char == "\\":
                if i + 1 >= len(self.text):
                    break
                value.append(self.text[i + 1])
                i += 2
                continue
            if char == "'":
                self.pos = i + 1
                return StringLiteral("".join(value), self.text[start:i])
            value.append(char)
            i += 1
        raise self.fail("unterminated string literal")

    def path(self) -> PathArgument:
        start = i = self.pos
        depth = 0
        while i < len(self.text):
            char = self.text[i]
            if char in "'\"":
                quote = char
                i += 1
                while i < len(self.text) and self.text[i] != quote:
                    i += 2 if self.text[i] == "\\" else 1
                i += 1
                continue
            if char in "[(":
                depth += 1
            elif char in "])":
                if depth == 0:
                    break
                depth -= 1
            elif char == "," and depth == 0:
                break
            i += 1
        self.pos = i
        try:
            return PathArgument(parse_path(self.text[start:i].strip()))
        except JsonPathSyntaxError as exc:
            raise IntrinsicSyntaxError(str(exc)) from exc


# --------------------------------------------------------------------------- checking


def _format_placeholders(raw: str) -> int:
    """Count ``{}`` in a Format template, rejecting unescaped lone braces."""
    count = 0
    i = 0
    while i < len(raw):
        if raw[i] == "\\":
            i += 2
            continue
        if raw.startswith("{}", i):
            count += 1
            i += 2
            continue
        if raw[i] in "{}":
            raise IntrinsicSyntaxError(f"unescaped {raw[i]!r} in States.Format template {raw!r}")
        i += 1
    return count


def _check(call: Call) -> None:
    spec = _FUNCTIONS.get(call.name)
    if spec is None:
        raise IntrinsicSyntaxError(f"unsupported intrinsic function {call.name} in {call.text!r}")
    low, high = spec.arity
    if len(call.args) < low or (high is not None and len(call.args) > high):
        expected = f"{low}" if low == high else f"{low}..{high if high is not None else 'n'}"
        raise IntrinsicSyntaxError(f"{call.name} takes {expected} argument(s), got {len(call.args)}")
    if call.name == "States.Format" and isinstance(call.args[0], StringLiteral):
        placeholders = _format_placeholders(call.args[0].raw)
        if placeholders != len(call.args) - 1:
            raise IntrinsicSyntaxError(
                f"States.Format template has {placeholders} placeholder(s) but "
                f"{len(call.args) - 1} argument(s): {call.text!r}"
            )
    for arg in call.args:
        if isinstance(arg, Call):
            _check(arg)


# --------------------------------------------------------------------------- evaluation


def evaluate_intrinsic(call: Call, data: Any, context: Any) -> Any:
    """Evaluate a parsed call against the state's effective input and the context object."""
    args = [_evaluate_argument(arg, data, context) for arg in call.args]
    try:
        return _FUNCTIONS[call.name].function(call, args)
    except StatesError:
        raise
    except (TypeError, ValueError, IndexError) as exc:
        raise StatesError(INTRINSIC_FAILURE, f"{call.text}: {exc}") from exc


def _evaluate_argument(arg: Argument, data: Any, context: Any) -> Any:
    if isinstance(arg, StringLiteral):
        return arg.value
    if isinstance(arg, ValueLiteral):
        return arg.value
    if isinstance(arg, Call):
        return evaluate_intrinsic(arg, data, context)
    try:
        return arg.path.evaluate(data, context)
    except PathNotFound as exc:
        raise StatesError(
            RUNTIME, f"The JsonPath argument for the field '{arg.path.text}' could not be found in the input"
        ) from exc


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        raise ValueError("States.Format arguments must be strings, numbers, booleans or null")
    return json.dumps(value)


def _states_format(call: Call, args: list[Any]) -> str:
    template = args[0]
    if not isinstance(template, str):
        raise ValueError("the template must be a string")
    first = call.args[0]
    raw = first.raw if isinstance(first, StringLiteral) else template
    values = iter(args[1:])
    out: list[str] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "\\" and isinstance(first, StringLiteral):
            out.append(raw[i + 1])
            i += 2
        elif raw.startswith("{}", i):
            try:
                out.append(_format_value(next(values)))
            except StopIteration:
                raise ValueError("more placeholders than arguments") from None
            i += 2
        else:
            out.append(char)
            i += 1
    if next(values, _END) is not _END:
        raise ValueError("more arguments than placeholders")
    return "".join(out)


_END = object()


def _json_to_string(_: Call, args: list[Any]) -> str:
    return json.dumps(args[0], separators=(",", ":"), ensure_ascii=False)


def _string_to_json(_: Call, args: list[Any]) -> Any:
    if not isinstance(args[0], str):
        raise ValueError("the argument must be a string")
    return json.loads(args[0])


def _string_split(_: Call, args: list[Any]) -> list[str]:
    """Split on every character of the delimiter string, dropping empty parts (AWS behaviour)."""
    text, delimiters = args
    if not isinstance(text, str) or not isinstance(delimiters, str) or not delimiters:
        raise ValueError("both arguments must be strings and the delimiter must not be empty")
    pattern = "[" + re.escape(delimiters) + "]"
    return [part for part in re.split(pattern, text) if part]


def _array(_: Call, args: list[Any]) -> list[Any]:
    return list(args)


def _array_get_item(_: Call, args: list[Any]) -> Any:
    array, index = args
    if not isinstance(array, list) or isinstance(index, bool) or not isinstance(index, int):
        raise ValueError("expects an array and an integer index")
    if not 0 <= index < len(array):
        raise IndexError(f"index {index} is out of bounds for an array of {len(array)}")
    return array[index]


def _array_length(_: Call, args: list[Any]) -> int:
    if not isinstance(args[0], list):
        raise ValueError("the argument must be an array")
    return len(args[0])


@dataclass(frozen=True)
class _Function:
    arity: tuple[int, int | None]
    function: Callable[[Call, list[Any]], Any]


_FUNCTIONS: dict[str, _Function] = {
    "States.Format": _Function((1, None), _states_format),
    "States.JsonToString": _Function((1, 1), _json_to_string),
    "States.StringToJson": _Function((1, 1), _string_to_json),
    "States.StringSplit": _Function((2, 2), _string_split),
    "States.Array": _Function((0, None), _array),
    "States.ArrayGetItem": _Function((2, 2), _array_get_item),
    "States.ArrayLength": _Function((1, 1), _array_length),
}
