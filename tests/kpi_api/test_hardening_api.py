"""The KPI API's JWT mode needs scopes: a token of the audience alone reads nothing.

API Gateway checks a route's ``AuthorizationScopes`` against the token's ``scope``/``scp`` claim
(any one of them); without scopes every token issued for the audience reads every route.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.test_infra_template import JWT_PARAMS, MODES, deployed, load_template, rule_failures

KPI_ROUTES = {
    "GET /",
    "GET /kpis/daily",
    "GET /kpis/categories",
    "GET /kpis/categories/{category_id}",
    "GET /days",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _routes(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        body["Properties"]["RouteKey"]: body["Properties"]
        for body in t["Resources"].values()
        if body["Type"] == "AWS::ApiGatewayV2::Route"
    }


@pytest.mark.parametrize("mode", MODES)
def test_every_jwt_route_requires_a_scope_of_its_kind(template: dict[str, Any], mode: str) -> None:
    routes = _routes(deployed(template, {**JWT_PARAMS, "TaskMode": mode}))
    # The pipeline's state (days, failures, files and their rules) needs a status scope.
    state = {"GET /status", "GET /quality", "GET /quality/{date}"}
    assert set(routes) == KPI_ROUTES | state
    for key, route in routes.items():
        wanted = "JwtStatusScopes" if key in state else "JwtKpiScopes"
        assert route["AuthorizationScopes"] == {"Fn::Split": [",", {"Ref": wanted}]}, key
    defaults = {name: template["Parameters"][name]["Default"] for name in ("JwtKpiScopes", "JwtStatusScopes")}
    assert defaults == {"JwtKpiScopes": "ecomkpi/kpis.read", "JwtStatusScopes": "ecomkpi/status.read"}


def test_iam_routes_carry_no_scopes(template: dict[str, Any]) -> None:
    """Scopes are a JWT notion: an AWS_IAM route with AuthorizationScopes is refused by API Gateway."""
    for route in _routes(deployed(template, {"ApiAuthorization": "IAM"})).values():
        assert "AuthorizationScopes" not in route


def test_jwt_without_scopes_is_refused(template: dict[str, Any]) -> None:
    (no_kpi,) = rule_failures(template, {**JWT_PARAMS, "JwtKpiScopes": ""})
    assert "JwtKpiScopes" in no_kpi
    (no_status,) = rule_failures(template, {**JWT_PARAMS, "JwtStatusScopes": ""})
    assert "JwtStatusScopes" in no_status
    assert rule_failures(template, {"JwtKpiScopes": ""}) == []  # IAM does not use them
