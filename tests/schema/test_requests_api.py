"""Requests through /graphql as residents and staff would use them, each caller inside its own scope."""

from __future__ import annotations

import subprocess
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from services.celery_app import celery_app
from services.requests.intake import intake_context
from services.requests.models import Request
from services.unit_of_work import unit_of_work
from tenants.db import Database
from tests.helpers import Api, wait_for
from tests.requests_city import City, build_city

SUBMIT = """
mutation($input: SubmitRequestInput!) {
  submitRequest(input: $input) {
    __typename
    ... on SubmitRequestPayload {
      ticket checkCode ratingCode routed created possibleDuplicates { ticket distanceMeters }
      progress { stationName agencyResponsible responseDueAt resolutionDueAt steps { step note } }
    }
    ... on Error { code message field }
  }
}"""

STEP = """
mutation($id: ID!, $note: String%s) {
  %s(id: $id, note: $note) {
    __typename
    ... on RequestPayload { request { state supervision } }
    ... on Error { code message field }
  }
}"""
PROGRESS = """
query($c: String!, $t: String!, $k: String!) { requestProgress(tenant: $c, ticket: $t, checkCode: $k) {
  ticket state closed stationName agencyResponsible responseDueAt resolutionDueAt steps { step state note }
  mergedInto { ticket state steps { step } } } }"""

LIST = """
query($filter: RequestFilterInput) {
  requests(first: 50, filter: $filter) {
    totalCount
    edges { node { id ticket state contactPhone station { code } history { step note public } } }
  }
}"""


def _step(name: str) -> str:
    required = "!" if name in {"resolveRequest", "rejectRequest", "returnRequest", "escalateRequest"} else ""
    return STEP % (required, name)


@pytest.fixture(scope="module")
async def city(database: Database) -> City:
    return await build_city(database, "apicity")


def _location(city: City, k: int) -> dict[str, Any]:
    lon, lat = city.point(k)
    return {"longitude": lon, "latitude": lat}


async def _submit(api: Api, city: City, k: int, token: str | None = None, **extra: Any) -> dict[str, Any]:
    values = {"category": "environment", "description": "路灯不亮", "location": _location(city, k), **extra}
    if token is None:
        values.setdefault("tenant", city.tenant.code)
    data = await api.gql(SUBMIT, {"input": values}, token)
    result: dict[str, Any] = data["submitRequest"]
    return result


def _station_token(api: Api, city: City, k: int, role: str = "station_liaison") -> str:
    return api.token(city.tenant, [role], [city.stations[k].scope], sub="user:9101")


def _district_token(api: Api, city: City, k: int) -> str:
    return api.token(city.tenant, ["district_staff"], [city.stations[k].district_scope], sub="user:9102")


async def _id_of(api: Api, city: City, ticket: str) -> str:
    admin = api.token(city.tenant, ["city_admin"])
    data = await api.gql("query($t: String!) { request(ticket: $t) { id } }", {"t": ticket}, admin)
    return str(data["request"]["id"])


async def test_anonymous_submission_and_public_progress_without_personal_data(api: Api, city: City) -> None:
    submitted = await _submit(api, city, 0, contactPhone="13912345678", contactName="李四")
    assert submitted["__typename"] == "SubmitRequestPayload" and submitted["routed"]
    progress = await api.gql(
        PROGRESS, {"c": city.tenant.code, "t": submitted["ticket"], "k": submitted["checkCode"]}
    )
    found = progress["requestProgress"]
    assert found["ticket"] == submitted["ticket"] and found["state"] == "SUBMITTED"
    assert [s["step"] for s in found["steps"]] == ["submit"]
    assert "13912345678" not in str(progress) and "李四" not in str(progress)


async def test_bad_submissions_are_typed_errors(api: Api, city: City) -> None:
    no_city = await api.gql(
        SUBMIT, {"input": {"category": "environment", "description": "x", "address": "某路"}}
    )
    assert no_city["submitRequest"]["field"] == "tenant"
    unknown = await _submit(api, city, 0, category="ufo")
    assert (unknown["__typename"], unknown["field"]) == ("InvalidInputError", "category")
    too_long = await _submit(api, city, 0, description="长" * 4001)
    assert too_long["field"] == "description"


async def test_a_resident_sees_only_their_own_requests(api: Api, city: City) -> None:
    me = api.token(city.tenant, ["resident"], [city.tenant.scope], sub="user:7201")
    someone = api.token(city.tenant, ["resident"], [city.tenant.scope], sub="user:7202")
    mine = await _submit(api, city, 0, me)
    theirs = await _submit(api, city, 1, someone)
    listed = await api.gql(LIST, {}, me)
    tickets = {edge["node"]["ticket"] for edge in listed["requests"]["edges"]}
    assert mine["ticket"] in tickets and theirs["ticket"] not in tickets
    other = await api.gql(
        "query($t: String!) { request(ticket: $t) { ticket } }", {"t": theirs["ticket"]}, me
    )
    assert other["request"] is None
    refused = await api.gql(_step("acceptRequest"), {"id": await _id_of(api, city, mine["ticket"])}, me)
    assert refused["acceptRequest"]["code"] == "FORBIDDEN"


async def test_a_district_cannot_see_or_act_on_another_districts_requests(api: Api, city: City) -> None:
    first = await _submit(api, city, 0)  # station 0: district 1
    second = await _submit(api, city, 2)  # station 2: district 2
    district_one = _district_token(api, city, 0)
    listed = await api.gql(LIST, {}, district_one)
    tickets = {edge["node"]["ticket"] for edge in listed["requests"]["edges"]}
    assert first["ticket"] in tickets and second["ticket"] not in tickets
    foreign_id = await _id_of(api, city, second["ticket"])
    node = await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": foreign_id}, district_one)
    assert node["node"] is None
    for step in ("acceptRequest", "rejectRequest", "returnRequest", "resolveRequest"):
        result = await api.gql(_step(step), {"id": foreign_id, "note": "越权"}, district_one)
        assert result[step]["code"] == "NOT_FOUND", step
    for step in ("mergeRequest",):
        merged = await api.gql(
            'mutation($id: ID!, $into: ID!) { mergeRequest(id: $id, intoId: $into, note: "x") '
            "{ __typename ... on Error { code } } }",
            {"id": foreign_id, "into": await _id_of(api, city, first["ticket"])},
            district_one,
        )
        assert merged[step]["code"] == "NOT_FOUND"


async def test_the_lifecycle_through_graphql(api: Api, city: City) -> None:
    resident = api.token(city.tenant, ["resident"], [city.tenant.scope], sub="user:7301")
    submitted = await _submit(api, city, 1, resident, contactPhone="13700000000")
    request_id = await _id_of(api, city, submitted["ticket"])
    liaison = _station_token(api, city, 1)
    accepted = await api.gql(_step("acceptRequest"), {"id": request_id}, liaison)
    assert accepted["acceptRequest"]["request"]["state"] == "ACCEPTED"
    assigned = await api.gql(
        'mutation($id: ID!) { assignRequest(id: $id, assignee: "user:9101") '
        "{ __typename ... on RequestPayload { request { state assignee } } } }",
        {"id": request_id},
        liaison,
    )
    assert assigned["assignRequest"]["request"] == {"state": "ASSIGNED", "assignee": "user:9101"}
    illegal = await api.gql(_step("acceptRequest"), {"id": request_id}, liaison)
    assert illegal["acceptRequest"]["__typename"] == "IllegalTransitionError"
    assert illegal["acceptRequest"]["code"] == "ILLEGAL_TRANSITION"
    await api.gql(_step("startRequest"), {"id": request_id}, liaison)
    resolved = await api.gql(_step("resolveRequest"), {"id": request_id, "note": "已更换灯泡"}, liaison)
    assert resolved["resolveRequest"]["request"]["state"] == "RESOLVED"
    rate = (
        "mutation($id: ID!, $s: Int!, $ok: Boolean!) { rateRequest(id: $id, score: $s, solved: $ok) "
        "{ __typename ... on RequestPayload { request { state rating solved } } ... on Error { code } } }"
    )
    stranger = api.token(city.tenant, ["resident"], [city.tenant.scope], sub="user:7399")
    refused = await api.gql(rate, {"id": request_id, "s": 100, "ok": True}, stranger)
    assert refused["rateRequest"]["code"] == "NOT_FOUND"
    closed = await api.gql(rate, {"id": request_id, "s": 90, "ok": True}, resident)
    assert closed["rateRequest"]["request"] == {"state": "CLOSED", "rating": 90, "solved": True}
    again = await api.gql(rate, {"id": request_id, "s": 10, "ok": False}, resident)
    assert again["rateRequest"]["code"] == "CONFLICT"


async def test_duplicates_are_suggested_to_the_submitter(api: Api, city: City) -> None:
    lon, lat = city.point(3)
    first = await _submit(api, city, 3, category="public_toilets")
    second = await _submit(
        api, city, 3, category="public_toilets", location={"longitude": lon + 0.0003, "latitude": lat}
    )
    assert first["ticket"] in [d["ticket"] for d in second["possibleDuplicates"]]


async def test_the_list_reads_histories_without_a_statement_per_request(api: Api, city: City) -> None:
    for _ in range(3):
        await _submit(api, city, 0)
    admin = api.token(city.tenant, ["city_admin"])
    with api.count_statements() as statements:
        data = await api.gql(LIST, {"filter": {"states": ["SUBMITTED"]}}, admin)
    assert len(data["requests"]["edges"]) >= 3
    # Context, count, page, histories, stations (+ their parents at most): never one per request.
    assert len(statements) <= 7, statements


async def test_overdue_requests_escalate_when_the_worker_sweeps(
    api: Api, city: City, database: Database, worker: subprocess.Popen[bytes]
) -> None:
    submitted = await _submit(api, city, 2, category="safety")
    beijing = ZoneInfo("Asia/Shanghai")
    async with unit_of_work(database, intake_context(city.tenant.tenant_id)) as session:
        request = await session.scalar(select(Request).where(Request.ticket == submitted["ticket"]))
        assert request is not None
        due = request.response_due_at
    later = datetime.fromtimestamp(due.timestamp() + 60, tz=beijing)
    celery_app.send_task("timers.sweep", kwargs={"now": later.isoformat()})

    async def escalated() -> str | None:
        async with unit_of_work(database, intake_context(city.tenant.tenant_id)) as session:
            row = await session.scalar(select(Request).where(Request.ticket == submitted["ticket"]))
            assert row is not None
            return f"{row.supervision} {row.escalations} {row.overdue}" if row.level == 1 else None

    # A missed deadline colours it (yellow) and is counted as an escalation.
    assert await wait_for(escalated) == "yellow 1 True"
    district = _district_token(api, city, 2)
    yellow = await api.gql(LIST, {"filter": {"supervision": ["YELLOW"]}}, district)
    assert submitted["ticket"] in {e["node"]["ticket"] for e in yellow["requests"]["edges"]}


async def test_staff_see_duplicates_to_merge_only_inside_their_scope(api: Api, city: City) -> None:
    lon, lat = city.point(2)
    first = await _submit(api, city, 2, category="ev_charging")
    second = await _submit(
        api, city, 2, category="ev_charging", location={"longitude": lon + 0.0002, "latitude": lat}
    )
    district_two = _district_token(api, city, 2)
    detail = await api.gql(
        "query($t: String!) { request(ticket: $t) { possibleDuplicates { ticket distanceMeters } } }",
        {"t": second["ticket"]},
        district_two,
    )
    assert first["ticket"] in [d["ticket"] for d in detail["request"]["possibleDuplicates"]]
    # Staff of another district, taking a call about the same spot, are not shown district two's tickets.
    district_one = _district_token(api, city, 0)
    on_behalf = await _submit(
        api,
        city,
        2,
        district_one,
        category="ev_charging",
        channel="HOTLINE",
        location={"longitude": lon, "latitude": lat},
    )
    assert on_behalf["__typename"] == "SubmitRequestPayload" and on_behalf["possibleDuplicates"] == []
    # Nor where the request went: district two's station is not theirs to see.
    assert on_behalf["progress"] is None and on_behalf["checkCode"] and on_behalf["ratingCode"] is None
    anonymous = await _submit(
        api, city, 2, category="ev_charging", location={"longitude": lon, "latitude": lat}
    )
    assert first["ticket"] in [d["ticket"] for d in anonymous["possibleDuplicates"]]
