"""Unit tests of the JSONPath subset, the intrinsic-function parser and the Choice rules."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a.b", "must start with '$' or '$$'"),
        ("$..a", "recursive descent '..' is not supported"),
        ("$.a[1:2]", "unsupported subscript [1:2]"),
        ("$.a[", "unclosed '['"),
        ("$.a[?(@.b == )]", "missing operand"),
        ("$.a b", "unexpected ' ' at offset 3"),
    ],
)
def test_unsupported_or_malformed_paths_are_rejected(text: str, reason: str) -> None:
    with pytest.raises(JsonPathSyntaxError, match=re.escape(reason)):
        parse_path(text)


def test_reference_paths_reject_filters() -> None:
    assert parse_reference_path("$.validation.ExitCodes[0]").definite
    with pytest.raises(
        JsonPathSyntaxError, match="is not a reference path: wildcards and filter expressions"
    ):
        parse_reference_path("$.Containers[?(@.Name == 'x')].ExitCode")


def test_set_path_creates_objects_and_keeps_the_input() -> None:
    original = {"keep": 1, "a": {"x": 1}}
    result = set_path(original, parse_reference_path("$.a.b.c"), {"v": 2})
    assert result == {"keep": 1, "a": {"x": 1, "b": {"c": {"v": 2}}}}
    assert original == {"keep": 1, "a": {"x": 1}}
    assert set_path(original, parse_reference_path("$"), 5) == 5
    with pytest.raises(TypeError, match=re.escape("$.a.b: 'b' cannot be set on a non-object")):
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
    assert "'$.nope' could not be found in the input" in missing.value.cause
    with pytest.raises(StatesError) as bad_type:
        evaluate_intrinsic(parse_intrinsic("States.Format('{}', $.obj)"), {"obj": {"a": 1}}, None)
    assert bad_type.value.error == INTRINSIC_FAILURE
    assert "arguments must be strings, numbers, booleans or null" in bad_type.value.cause


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("States.Nope($.a)", "unsupported intrinsic function States.Nope"),
        ("States.JsonToString($.a, $.b)", "States.JsonToString takes 1 argument(s), got 2"),
        ("States.Format('{} {}', $.a)", "template has 2 placeholder(s) but 1 argument(s)"),
        ("States.Format('lone { brace', $.a)", "unescaped '{' in States.Format template"),
        ("States.Format('unterminated)", "unterminated string literal"),
        # the argument after the comma is missing: the parser stops at the ')' (offset 15)
        ("States.Array(1,)", "expected a string, number, path or call at offset 15"),
        ("States.Array(1) trailing", "unexpected text after the call"),
        ("States.JsonToString(bare)", "expected a string, number, path or call at offset 20"),
    ],
)
def test_malformed_intrinsics_are_rejected(text: str, reason: str) -> None:
    with pytest.raises(IntrinsicSyntaxError, match=re.escape(reason)):
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


ONE_OPERATOR = "a choice rule needs exactly one of And/Or/Not or one comparison operator"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {"Variable": "$.a", "NumericEquals": "0"},
            ["test.NumericEquals: '0' has the wrong type for NumericEquals"],
            id="wrong-operand-type",
        ),
        pytest.param(
            {"Variable": "$.a", "NumericEquals": True},
            ["test.NumericEquals: True has the wrong type for NumericEquals"],
            id="bool-is-not-a-number",
        ),
        pytest.param(
            {"Variable": "$.a", "BooleanEquals": "true"},
            ["test.BooleanEquals: must be true or false"],
            id="boolean-operand",
        ),
        pytest.param(
            {"Variable": "$.a", "IsPresent": 1},
            ["test.IsPresent: must be true or false"],
            id="type-test-operand",
        ),
        pytest.param(  # AWS does not allow filters in Variable
            {"Variable": "$.a[?(@.x == 1)]", "NumericEquals": 0},
            ["test.Variable: '$.a[?(@.x == 1)]' is not a reference path"],
            id="filter-in-variable",
        ),
        pytest.param(
            {"Variable": "a.b", "NumericEquals": 0},
            ["test.Variable: path 'a.b' must start with '$' or '$$'"],
            id="variable-not-a-path",
        ),
        pytest.param(
            {"NumericEquals": 0},
            ["test.Variable: a reference path string is required"],
            id="no-variable",
        ),
        pytest.param(
            {"Variable": "$.a", "NumericEqualsPath": "$.b[*]"},
            ["test.NumericEqualsPath: '$.b[*]' is not a reference path"],
            id="wildcard-in-operand-path",
        ),
        pytest.param(  # unsupported locally: no operator found, and the field is named
            {"Variable": "$.a", "TimestampEquals": "2025-01-01T00:00:00Z"},
            [(f"test: {ONE_OPERATOR}", "found []"), "test: unknown or unsupported field 'TimestampEquals'"],
            id="timestamp-unsupported",
        ),
        pytest.param(
            {"Variable": "$.a", "NumericEquals": 0, "StringEquals": "x"},
            [(f"test: {ONE_OPERATOR}", "found ['NumericEquals', 'StringEquals']")],
            id="two-operators",
        ),
        pytest.param(
            {"Variable": "$.a", "NumericEquals": 0, "Bogus": 1},
            ["test: unknown or unsupported field 'Bogus'"],
            id="unknown-field",
        ),
        pytest.param({"And": []}, ["test.And: must be a non-empty array of rules"], id="empty-and"),
        pytest.param({"Or": "x"}, ["test.Or: must be a non-empty array of rules"], id="or-not-an-array"),
        pytest.param(
            {"And": [{"Variable": "$.a", "NumericEquals": "0"}]},
            ["test.And[0].NumericEquals: '0' has the wrong type for NumericEquals"],
            id="nested-rule-named-by-position",
        ),
        pytest.param(
            {"Not": {"Variable": "$.a", "NumericEquals": 0, "Next": "Y"}},
            [
                "test.Not: 'Next' is only allowed on top-level choice rules",
                "test.Not: unknown or unsupported field 'Next'",
            ],
            id="next-in-nested-rule",
        ),
        pytest.param(
            {"Variable": "$.a", "NumericEquals": 0, "Next": None},
            ["test: a top-level choice rule needs a string 'Next'"],
            id="top-level-without-next",
        ),
    ],
)
def test_invalid_choice_rules_are_reported(raw: dict, expected: list[str | tuple[str, ...]]) -> None:
    """Each rule is rejected for its own reason, named by field: exactly the expected problems, in
    order, each holding its fragment(s), so a rule refused for another reason fails the case."""
    problems: list[str] = []
    compile_rule({"Next": "X", **raw}, "test", problems, top_level=True)
    assert len(problems) == len(expected), problems
    for problem, fragments in zip(problems, expected, strict=True):
        for fragment in (fragments,) if isinstance(fragments, str) else fragments:
            assert fragment in problem, problems


def test_a_rule_that_is_not_an_object_is_reported() -> None:
    problems: list[str] = []
    assert compile_rule("rule", "test", problems, top_level=True) is None
    assert problems == ["test: a choice rule must be an object"]
