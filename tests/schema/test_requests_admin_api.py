"""The routing table, holiday calendar, settings and categories, configured through /graphql."""

from __future__ import annotations

from typing import Any

import pytest

from schema.relay import encode_id
from tenants.db import Database
from tests.helpers import Api
from tests.requests_city import City, build_city

SUBMIT = """
mutation($input: SubmitRequestInput!) {
  submitRequest(input: $input) { ... on SubmitRequestPayload { ticket } ... on Error { code field } }
}"""
RULE = """
mutation($input: RoutingRuleInput!) {
  setRoutingRule(input: $input) {
    __typename
    ... on RoutingRulePayload { rule { id category territory responsible department } }
    ... on Error { code message field }
  }
}"""


@pytest.fixture(scope="module")
async def city(database: Database) -> City:
    return await build_city(database, "routecity")


async def _routed(api: Api, city: City, k: int, category: str) -> dict[str, Any]:
    lon, lat = city.point(k)
    submitted = await api.gql(
        SUBMIT,
        {
            "input": {
                "tenant": city.tenant.code,
                "category": category,
                "description": "测试",
                "location": {"longitude": lon, "latitude": lat},
            }
        },
    )
    admin = api.token(city.tenant, ["city_admin"])
    data = await api.gql(
        "query($t: String!) { request(ticket: $t) { responsible assignee department level } }",
        {"t": submitted["submitRequest"]["ticket"]},
        admin,
    )
    found: dict[str, Any] = data["request"]
    return found


async def test_the_most_specific_rule_routes_the_request(api: Api, city: City) -> None:
    admin = api.token(city.tenant, ["city_admin"])
    district_id = encode_id("District", city.stations[0].district_id)
    city_rule = await api.gql(
        RULE,
        {"input": {"category": "safety", "responsible": "DEPARTMENT", "department": "应急管理局"}},
        admin,
    )
    assert city_rule["setRoutingRule"]["rule"]["territory"] == city.tenant.scope
    district_rule = await api.gql(
        RULE, {"input": {"category": "safety", "nodeId": district_id, "responsible": "DEPUTY"}}, admin
    )
    assert district_rule["setRoutingRule"]["rule"]["responsible"] == "DEPUTY"
    in_district = await _routed(api, city, 0, "safety")
    assert in_district == {
        "responsible": "DEPUTY",
        "assignee": city.stations[0].deputy,
        "department": None,
        "level": 1,
    }
    elsewhere = await _routed(api, city, 2, "safety")
    assert (elsewhere["responsible"], elsewhere["department"], elsewhere["level"]) == (
        "DEPARTMENT",
        "应急管理局",
        2,
    )
    other_category = await _routed(api, city, 0, "culture")
    assert other_category["responsible"] == "STATION"


async def test_routing_rules_stay_inside_the_callers_scope(api: Api, city: City) -> None:
    district = api.token(city.tenant, ["district_staff"], [city.stations[0].district_scope])
    foreign = encode_id("District", city.stations[2].district_id)
    refused = await api.gql(RULE, {"input": {"nodeId": foreign, "responsible": "STATION"}}, district)
    assert refused["setRoutingRule"]["code"] == "NOT_FOUND"
    needs_name = await api.gql(
        RULE, {"input": {"responsible": "DEPARTMENT"}}, api.token(city.tenant, ["city_admin"])
    )
    assert needs_name["setRoutingRule"]["field"] == "department"
    resident = api.token(city.tenant, ["resident"], sub="user:77")
    forbidden = await api.gql(RULE, {"input": {"responsible": "STATION"}}, resident)
    assert forbidden["setRoutingRule"]["code"] == "FORBIDDEN"


async def test_the_calendar_and_settings_are_the_city_admins(api: Api, city: City) -> None:
    admin = api.token(city.tenant, ["city_admin"])
    changed = await api.gql(
        'mutation { setCalendarDays(days: [{day: "2027-01-01", kind: HOLIDAY, name: "元旦"}, '
        '{day: "2027-01-04", kind: WORKDAY, name: "调休"}]) { ... on CalendarPayload { changed } } }',
        token=admin,
    )
    assert changed["setCalendarDays"]["changed"] == 2
    year = await api.gql("{ holidayCalendar(year: 2027) { day kind } }", token=admin)
    assert year["holidayCalendar"] == [
        {"day": "2027-01-01", "kind": "HOLIDAY"},
        {"day": "2027-01-04", "kind": "WORKDAY"},
    ]
    seeded = await api.gql("{ holidayCalendar(year: 2026) { day kind } }", token=admin)
    assert {"day": "2026-10-01", "kind": "HOLIDAY"} in seeded["holidayCalendar"]
    bad = await api.gql(
        "mutation { updateRequestSettings(input: {ratingThreshold: 101}) { ... on Error { code field } } }",
        token=admin,
    )
    assert bad["updateRequestSettings"] == {"code": "INVALID_INPUT", "field": "rating_threshold"}
    good = await api.gql(
        'mutation { updateRequestSettings(input: {ratingThreshold: 85, timezone: "Asia/Urumqi"}) '
        "{ ... on SettingsPayload { settings { ratingThreshold timezone } } } }",
        token=admin,
    )
    assert good["updateRequestSettings"]["settings"] == {"ratingThreshold": 85, "timezone": "Asia/Urumqi"}
    staff = api.token(city.tenant, ["district_staff"], [city.stations[0].district_scope])
    forbidden = await api.gql(
        "mutation { updateRequestSettings(input: {ratingThreshold: 70}) { ... on Error { code } } }",
        token=staff,
    )
    assert forbidden["updateRequestSettings"]["code"] == "FORBIDDEN"
    category = await api.gql(
        'mutation { saveRequestCategory(input: {code: "lifts", name: "加装电梯", kind: "personalised", '
        "responseDays: 2, resolutionDays: 30}) "
        "{ ... on CategoryPayload { category { code resolutionDays } } } }",
        token=admin,
    )
    assert category["saveRequestCategory"]["category"] == {"code": "lifts", "resolutionDays": 30}
    listed = await api.gql("{ requestCategories { code } }", token=staff)
    assert "lifts" in {c["code"] for c in listed["requestCategories"]}


async def test_tenant_wide_changes_need_a_token_for_the_whole_city(api: Api, city: City) -> None:
    """A city admin whose token is bound to one district reads the city's configuration and changes none
    of it: FORBIDDEN with a clear message, and nothing changed."""
    admin = api.token(city.tenant, ["city_admin"])
    bound = api.token(city.tenant, ["city_admin"], [city.stations[0].district_scope], sub="user:9401")
    state = (
        "{ requestSettings { ratingThreshold timezone cityMarginMeters } "
        "requestCategories { code name resolutionDays } holidayCalendar(year: 2031) { day kind } }"
    )
    before = await api.gql(state, token=admin)
    attempts = {
        "updateRequestSettings": "mutation { updateRequestSettings(input: {ratingThreshold: 10}) "
        "{ __typename ... on Error { code message } } }",
        "saveRequestCategory": 'mutation { saveRequestCategory(input: {code: "environment", name: "改名", '
        'kind: "basic", responseDays: 1, resolutionDays: 99}) { __typename ... on Error { code message } } }',
        "setCalendarDays": 'mutation { setCalendarDays(days: [{day: "2031-01-02", kind: HOLIDAY}]) '
        "{ __typename ... on Error { code message } } }",
    }
    for name, mutation in attempts.items():
        answer = (await api.gql(mutation, token=bound))[name]
        assert answer["code"] == "FORBIDDEN", (name, answer)
        assert "whole city" in answer["message"], answer
    assert await api.gql(state, token=bound) == before
    assert await api.gql(state, token=admin) == before
