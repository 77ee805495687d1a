"""Choice rules: compiled (and checked) at load time, evaluated against a state's effective input.

AWS semantics kept on purpose:

* ``Variable`` is a *reference path* (no filters), so the named-container lookup has to happen
  earlier, in a ResultSelector; this module rejects ``[?(...)]`` in a Variable like AWS does;
* a comparison whose Variable is missing is a ``States.Runtime`` error, except ``IsPresent``;
* a value of the wrong type never matches (``NumericEquals`` on a string is simply false) and
  booleans are not numbers.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecomkpi.sfn_local.errors import RUNTIME, StatesError
from ecomkpi.sfn_local.jsonpath import JsonPath, JsonPathSyntaxError, PathNotFound, parse_reference_path


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _string_matches(value: str, pattern: str) -> bool:
    """``*`` is a wildcard; ``\\*`` and ``\\\\`` are a literal star and backslash."""
    regex: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            regex.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        regex.append(".*" if char == "*" else re.escape(char))
        i += 1
    return re.fullmatch("".join(regex), value, flags=re.DOTALL) is not None


@dataclass(frozen=True)
class _Comparator:
    type_check: Callable[[Any], bool]
    compare: Callable[[Any, Any], bool]


_ORDERINGS = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "GreaterThan": operator.gt,
    "LessThanEquals": operator.le,
    "GreaterThanEquals": operator.ge,
}

COMPARATORS: dict[str, _Comparator] = {
    **{f"String{name}": _Comparator(_is_string, op) for name, op in _ORDERINGS.items()},
    **{f"Numeric{name}": _Comparator(_is_number, op) for name, op in _ORDERINGS.items()},
    "BooleanEquals": _Comparator(_is_bool, operator.eq),
    "StringMatches": _Comparator(_is_string, _string_matches),
}
PATH_COMPARATORS = {
    f"{name}Path": comparator for name, comparator in COMPARATORS.items() if name != "StringMatches"
}
TYPE_TESTS = {"IsPresent", "IsNull", "IsNumeric", "IsString", "IsBoolean"}
ALL_OPERATORS = set(COMPARATORS) | set(PATH_COMPARATORS) | TYPE_TESTS


@dataclass(frozen=True)
class Rule:
    """One (possibly nested) choice rule; ``next`` is set on top-level rules only."""

    kind: str  # "and" | "or" | "not" | operator name
    children: tuple[Rule, ...] = ()
    variable: JsonPath | None = None
    operand: Any = None  # literal value, or a JsonPath for *Path comparators
    next: str | None = None

    def matches(self, data: Any, context: Any) -> bool:
        if self.kind == "and":
            return all(child.matches(data, context) for child in self.children)
        if self.kind == "or":
            return any(child.matches(data, context) for child in self.children)
        if self.kind == "not":
            return not self.children[0].matches(data, context)
        return self._compare(data, context)

    def _compare(self, data: Any, context: Any) -> bool:
        assert self.variable is not None
        try:
            value = self.variable.evaluate(data, context)
            present = True
        except PathNotFound:
            value, present = None, False
        if self.kind == "IsPresent":
            return bool(present == self.operand)
        if not present:
            raise StatesError(
                RUNTIME,
                f"Invalid path '{self.variable.text}': The choice state's condition path "
                "references an invalid value.",
            )
        if self.kind == "IsNull":
            return bool((value is None) == self.operand)
        if self.kind == "IsNumeric":
            return bool(_is_number(value) == self.operand)
        if self.kind == "IsString":
            return bool(_is_string(value) == self.operand)
        if self.kind == "IsBoolean":
            return bool(_is_bool(value) == self.operand)
        if self.kind in PATH_COMPARATORS:
            comparator = PATH_COMPARATORS[self.kind]
            try:
                expected = self.operand.evaluate(data, context)
            except PathNotFound:
                raise StatesError(
                    RUNTIME, f"Invalid path '{self.operand.text}': the comparison path does not exist"
                ) from None
            if not comparator.type_check(expected):
                return False
        else:
            comparator = COMPARATORS[self.kind]
            expected = self.operand
        return comparator.type_check(value) and comparator.compare(value, expected)


def compile_rule(raw: Any, where: str, problems: list[str], top_level: bool) -> Rule | None:
    """Check one rule (recursively) and compile it; problems are appended, None on failure."""
    if not isinstance(raw, dict):
        problems.append(f"{where}: a choice rule must be an object")
        return None
    allowed = {"Comment"} | ({"Next"} if top_level else set())
    next_state = raw.get("Next")
    if top_level and not isinstance(next_state, str):
        problems.append(f"{where}: a top-level choice rule needs a string 'Next'")
    if not top_level and "Next" in raw:
        problems.append(f"{where}: 'Next' is only allowed on top-level choice rules")

    boolean_ops = [k for k in ("And", "Or", "Not") if k in raw]
    operators = [k for k in raw if k in ALL_OPERATORS]
    if len(boolean_ops) + len(operators) != 1:
        problems.append(
            f"{where}: a choice rule needs exactly one of And/Or/Not or one comparison operator "
            f"(supported: {', '.join(sorted(ALL_OPERATORS))}), found {sorted(boolean_ops + operators)}"
        )
        _unknown_fields(raw, allowed | {"Variable", "And", "Or", "Not"} | ALL_OPERATORS, where, problems)
        return None

    if boolean_ops:
        op = boolean_ops[0]
        _unknown_fields(raw, allowed | {op}, where, problems)
        children: tuple[Rule, ...]
        if op == "Not":
            child = compile_rule(raw["Not"], f"{where}.Not", problems, top_level=False)
            children = (child,) if child else ()
        else:
            items = raw[op]
            if not isinstance(items, list) or not items:
                problems.append(f"{where}.{op}: must be a non-empty array of rules")
                return None
            compiled = [
                compile_rule(item, f"{where}.{op}[{i}]", problems, top_level=False)
                for i, item in enumerate(items)
            ]
            children = tuple(c for c in compiled if c is not None)
        return Rule(op.lower(), children=children, next=next_state if top_level else None)

    op = operators[0]
    _unknown_fields(raw, allowed | {"Variable", op}, where, problems)
    variable = _reference_path(raw.get("Variable"), f"{where}.Variable", problems)
    operand = raw[op]
    if op in TYPE_TESTS or op == "BooleanEquals":
        if not isinstance(operand, bool):
            problems.append(f"{where}.{op}: must be true or false")
    elif op in PATH_COMPARATORS:
        operand = _reference_path(operand, f"{where}.{op}", problems)
    elif not COMPARATORS[op].type_check(operand):
        problems.append(f"{where}.{op}: {operand!r} has the wrong type for {op}")
    if variable is None:
        return None
    return Rule(op, variable=variable, operand=operand, next=next_state if top_level else None)


def _reference_path(text: Any, where: str, problems: list[str]) -> JsonPath | None:
    if not isinstance(text, str):
        problems.append(f"{where}: a reference path string is required")
        return None
    try:
        return parse_reference_path(text)
    except JsonPathSyntaxError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _unknown_fields(raw: dict[str, Any], allowed: set[str], where: str, problems: list[str]) -> None:
    for key in raw:
        if key not in allowed:
            problems.append(f"{where}: unknown or unsupported field {key!r}")
