"""Unit tests of the JSONPath subset, the intrinsic-function parser and the Choice rules."""

from __future__ import annotations

import pytest

from ecomkpi.sfn_local.choice import compile_rule
from ecomkpi.sfn_local.errors import INTRINSIC_FAILURE, RUNTIME, StatesError
from ecomkpi.sfn_local.intrinsics import (
    Call,
    IntrinsicSyntaxError,
    PathArgument,
    StringLiteral,
    ValueLiteral,
    evaluate_intrinsic,
    parse_intrinsic,
)
from ecomkpi.sfn_local.jsonpath import (
    JsonPathSyntaxError,
    PathNotFound,
    parse_path,
    parse_reference_path,
    set_path,
)

ECS_TASK = {
    "TaskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/1",
    "Containers": [
        {"Name": "log-router", "ExitCode": 0},
        {"Name": "validation", "ExitCode": 2},
        {"Name": "no-exit-code-yet"},
    ],
}


# --------------------------------------------------------------------------- JSONPath


def test_definite_paths_return_the_node() -> None:
    data = {"a": {"b": [10, 20, 30]}, "odd key": 1}
    assert parse_path("$").evaluate(data) == data
    assert parse_path("$.a.b[1]").evaluate(data) == 20
    assert parse_path("$.a.b[-1]").evaluate(data) == 30
    assert parse_path("$['odd key']").evaluate(data) == 1
    assert parse_path("$$.Execution.Name").evaluate(data, {"Execution": {"Name": "run-1"}}) == "run-1"


def test_missing_definite_path_raises() -> None:
    with pytest.raises(PathNotFound):
        parse_path("$.a.missing").evaluate({"a": {}})
    with pytest.raises(PathNotFound):
        parse_path("$.a[5]").evaluate({"a": [1]})


def test_filter_selects_the_named_container_wherever_it_is() -> None:
    path = parse_path("$.Containers[?(@.Name == 'validation')].ExitCode")
    assert not path.definite
    assert path.evaluate(ECS_TASK) == [2]
    # a container without ExitCode is skipped, an unknown name gives an empty list
    assert parse_path("$.Containers[?(@.Name == 'no-exit-code-yet')].ExitCode").evaluate(ECS_TASK) == []
    assert parse_path("$.Containers[?(@.Name == 'nope')].ExitCode").evaluate(ECS_TASK) == []


def test_filter_operators_and_boolean_logic() -> None:
    items = {"xs": [{"n": 1, "s": "a"}, {"n": 2, "s": "b"}, {"n": 3, "s": "c"}, {"s": "d"}]}
    assert parse_path("$.xs[?(@.n > 1)].s").evaluate(items) == ["b", "c"]
    assert parse_path("$.xs[?(@.n >= 2 && @.s != 'c')].s").evaluate(items) == ["b"]
    assert parse_path('$.xs[?(@.n == 1 || @.s == "d")].s').evaluate(items) == ["a", "d"]
    assert parse_path("$.xs[?(!(@.n))].s").evaluate(items) == ["d"]
    assert parse_path("$.xs[?(@.n)].n").evaluate(items) == [1, 2, 3]
    assert parse_path("$.xs[*].s").evaluate(items) == ["a", "b", "c", "d"]
    assert parse_path("$.xs[?(@.s == 'a,b)')].n").evaluate(items) == []  # quotes protect , and )


def test_booleans_are_not_numbers_in_filters() -> None:
    data = {"xs": [{"v": True}, {"v": 1}]}
    assert parse_path("$.xs[?(@.v == 1)].v").evaluate(data) == [1]


@pytest.mark.parametrize("text", ["a.b", "$..a", "$.a[1:2]", "$.a[", "$.a[?(@.b == )]", "$.a b"])
def test_unsupported_or_malformed_paths_are_rejected(text: str) -> None:
    with pytest.raises(JsonPathSyntaxError):
        parse_path(text)


def test_reference_paths_reject_filters() -> None:
    assert parse_reference_path("$.validation.ExitCodes[0]").definite
    with pytest.raises(JsonPathSyntaxError):
        parse_reference_path("$.Containers[?(@.Name == 'x')].ExitCode")


def test_set_path_creates_objects_and_keeps_the_input() -> None:
    original = {"keep": 1, "a": {"x": 1}}
    result = set_path(original, parse_reference_path("$.a.b.c"), {"v": 2})
    assert result == {"keep": 1, "a": {"x": 1, "b": {"c": {"v": 2}}}}
    assert original == {"keep": 1, "a": {"x": 1}}
    assert set_path(original, parse_reference_path("$"), 5) == 5
    with pytest.raises(TypeError):
        set_path({"a": 1}, parse_reference_path("$.a.b"), 2)


# --------------------------------------------------------------------------- intrinsics


def test_parser_builds_nested_calls_literals_and_paths() -> None:
    call = parse_intrinsic("States.Format('it\\'s {} of {}', States.ArrayLength($.xs), 3)")
    assert call.name == "States.Format"
    template, nested, number = call.args
    assert template == StringLiteral("it's {} of {}", "it\\'s {} of {}")
    assert isinstance(nested, Call) and nested.name == "States.ArrayLength"
    assert isinstance(nested.args[0], PathArgument) and nested.args[0].path.text == "$.xs"
    assert number == ValueLiteral(3)


def test_format_escapes_and_values() -> None:
    call = parse_intrinsic("States.Format('\\{literal\\} {} {} {} {} \\\\', $.s, $.n, $.b, $.z)")
    data = {"s": "x", "n": 1.5, "b": True, "z": None}
    assert evaluate_intrinsic(call, data, None) == "{literal} x 1.5 true null \\"


def test_path_argument_with_filter_and_commas() -> None:
    call = parse_intrinsic("States.JsonToString($.Containers[?(@.Name == 'a,b')].ExitCode)")
    data = {"Containers": [{"Name": "a,b", "ExitCode": 0}]}
    assert evaluate_intrinsic(call, data, None) == "[0]"


def test_json_to_string_split_array_and_context() -> None:
    context = {"Execution": {"Name": "2025-07-10-g1"}}
    data = {"keys": ["raw/orders/2025-07-10/a.csv"], "generation": 1}
    assert evaluate_intrinsic(parse_intrinsic("States.JsonToString($.keys)"), data, context) == (
        '["raw/orders/2025-07-10/a.csv"]'
    )
    assert evaluate_intrinsic(parse_intrinsic("States.JsonToString($.generation)"), data, context) == "1"
    assert evaluate_intrinsic(
        parse_intrinsic("States.StringSplit('subnet-a,subnet-b', ',')"), data, context
    ) == [
        "subnet-a",
        "subnet-b",
    ]
    assert evaluate_intrinsic(parse_intrinsic("States.StringSplit('a.b+c,,d', '.+,')"), data, context) == [
        "a",
        "b",
        "c",
        "d",
    ]
    array = parse_intrinsic("States.Array('x', 2, $$.Execution.Name, States.Array())")
    assert evaluate_intrinsic(array, data, context) == ["x", 2, "2025-07-10-g1", []]
    get = parse_intrinsic("States.ArrayGetItem(States.StringToJson('[5,6]'), 1)")
    assert evaluate_intrinsic(get, data, context) == 6


def test_runtime_errors_of_intrinsics() -> None:
    with pytest.raises(StatesError) as missing:
        evaluate_intrinsic(parse_intrinsic("States.JsonToString($.nope)"), {}, None)
    assert missing.value.error == RUNTIME
    with pytest.raises(StatesError) as bad_type:
        evaluate_intrinsic(parse_intrinsic("States.Format('{}', $.obj)"), {"obj": {"a": 1}}, None)
    assert bad_type.value.error == INTRINSIC_FAILURE


@pytest.mark.parametrize(
    "text",
    [
        "States.Nope($.a)",  # unknown function
        "States.JsonToString($.a, $.b)",  # arity
        "States.Format('{} {}', $.a)",  # placeholders vs arguments
        "States.Format('lone { brace', $.a)",
        "States.Format('unterminated)",
        "States.Array(1,)",
        "States.Array(1) trailing",
        "States.JsonToString(bare)",
    ],
)
def test_malformed_intrinsics_are_rejected(text: str) -> None:
    with pytest.raises(IntrinsicSyntaxError):
        parse_intrinsic(text)


# --------------------------------------------------------------------------- choice rules


def _rule(raw: dict) -> object:
    problems: list[str] = []
    rule = compile_rule({**raw, "Next": "X"}, "test", problems, top_level=True)
    assert not problems, problems
    return rule


def test_choice_comparisons() -> None:
    data = {"n": 0, "s": "2025-07-10", "b": False, "z": None, "other": 0}
    assert _rule({"Variable": "$.n", "NumericEquals": 0}).matches(data, None)
    assert not _rule({"Variable": "$.s", "NumericEquals": 0}).matches(data, None)  # wrong type: no match
    assert not _rule({"Variable": "$.b", "NumericEquals": 0}).matches(data, None)  # bools are not numbers
    assert _rule({"Variable": "$.n", "NumericEqualsPath": "$.other"}).matches(data, None)
    assert _rule({"Variable": "$.s", "StringMatches": "2025-*"}).matches(data, None)
    assert _rule({"Variable": "$.s", "StringGreaterThan": "2025-01-01"}).matches(data, None)
    assert _rule({"Variable": "$.b", "BooleanEquals": False}).matches(data, None)
    assert _rule({"Variable": "$.z", "IsNull": True}).matches(data, None)
    assert _rule({"Variable": "$.n", "IsNumeric": True}).matches(data, None)
    assert _rule({"Variable": "$.missing", "IsPresent": False}).matches(data, None)
    assert _rule(
        {
            "And": [
                {"Variable": "$.n", "NumericLessThanEquals": 0},
                {"Not": {"Variable": "$.b", "BooleanEquals": True}},
            ]
        }
    ).matches(data, None)
    assert _rule(
        {
            "Or": [
                {"Variable": "$.n", "NumericGreaterThan": 5},
                {"Variable": "$.n", "NumericGreaterThanEquals": 0},
            ]
        }
    ).matches(data, None)
    with pytest.raises(StatesError) as err:
        _rule({"Variable": "$.missing", "NumericEquals": 0}).matches(data, None)  # type: ignore[attr-defined]
    assert err.value.error == RUNTIME


@pytest.mark.parametrize(
    "raw",
    [
        {"Variable": "$.a", "NumericEquals": "0"},  # wrong operand type
        {"Variable": "$.a[?(@.x == 1)]", "NumericEquals": 0},  # filter in Variable: not allowed by AWS
        {"Variable": "$.a", "TimestampEquals": "2025-01-01T00:00:00Z"},  # unsupported locally
        {"Variable": "$.a", "NumericEquals": 0, "StringEquals": "x"},  # two operators
        {"Variable": "$.a", "NumericEquals": 0, "Bogus": 1},  # unknown field
        {"And": []},
    ],
)
def test_invalid_choice_rules_are_reported(raw: dict) -> None:
    problems: list[str] = []
    compile_rule({**raw, "Next": "X"}, "test", problems, top_level=True)
    assert problems
