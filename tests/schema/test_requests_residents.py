"""What residents and deputies ran into (issue 9 §1), through /graphql: each item's reproduction."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from schema.relay import encode_id
from tenants.db import Database
from tests.helpers import Api
from tests.requests_city import (
    PROGRESS,
    RATE,
    SUBMIT,
    City,
    build_city,
    location,
    request_id,
    resolved,
    submit,
    take,
)

MINE = """query($t: String!) { request(ticket: $t) {
  ticket state station { name } agencyResponsible responseDueAt resolutionDueAt
  history { step note actor public } availableSteps } }"""
RATE_WITH_CODE = """
mutation($c: String!, $t: String!, $k: String!, $score: Int!) {
  rateRequestWithCode(tenant: $c, ticket: $t, ratingCode: $k, score: $score, solved: true) {
    __typename ... on RateWithCodePayload { progress { ticket state } }
    ... on Error { code message field } } }"""


@pytest.fixture(scope="module")
async def city(database: Database) -> City:
    return await build_city(database, "residentcity")


def _resident(api: Api, city: City, sub: str, k: int = 0) -> str:
    return api.token(city.tenant, ["resident"], [city.stations[k].scope], sub=sub)


def _liaison(api: Api, city: City, k: int) -> str:
    return api.token(city.tenant, ["station_liaison"], [city.stations[k].scope], sub="user:9501")


async def _station_name(api: Api, city: City, ticket: str) -> str:
    admin = api.token(city.tenant, ["city_admin"])
    found = await api.gql(
        "query($t: String!) { request(ticket: $t) { station { name } } }", {"t": ticket}, admin
    )
    return str(found["request"]["station"]["name"])


async def _mutation_names(api: Api, token: str) -> set[str]:
    data = await api.gql("{ __schema { mutationType { fields { name } } } }", token=token)
    return {field["name"] for field in data["__schema"]["mutationType"]["fields"]}


async def test_1_the_submitter_sees_where_it_went_its_public_history_and_deadlines(
    api: Api, city: City
) -> None:
    resident = _resident(api, city, "user:9601")
    receipt = await submit(api, city, 0, resident)
    ticket = receipt["ticket"]
    station = await _station_name(api, city, ticket)
    # In the submitRequest answer ...
    assert receipt["progress"]["stationName"] == station == receipt["progress"]["agencyResponsible"]
    assert receipt["progress"]["responseDueAt"] < receipt["progress"]["resolutionDueAt"]
    assert receipt["progress"]["steps"] == [
        {"step": "submit", "state": "SUBMITTED", "note": "已收到，等待受理"}
    ]
    liaison = _liaison(api, city, 0)
    key = await request_id(api, city, ticket)
    await take(api, liaison, "acceptRequest", key, note='"电话已联系"')
    await take(api, liaison, "assignRequest", key, assignee='"user:9501"', note='"交给网格员老王"')
    await take(api, liaison, "resolveRequest", key, note='"已更换灯泡"')
    # ... in request, as the submitting resident ...
    mine = (await api.gql(MINE, {"t": ticket}, resident))["request"]
    assert mine["station"] == {"name": station} and mine["agencyResponsible"] == station
    assert mine["responseDueAt"] == receipt["progress"]["responseDueAt"]
    assert [(s["step"], s["note"], s["actor"]) for s in mine["history"]] == [
        ("submit", "已收到，等待受理", "user:9601"),
        ("accept", "已受理", "staff"),
        ("assign", "已交办", "staff"),
        ("resolve", "已更换灯泡", "staff"),
    ]
    assert mine["availableSteps"] == ["rateRequest"]
    # ... and in requestProgress with the receipt's check code.
    progress = await api.gql(PROGRESS, {"c": city.tenant.code, "t": ticket, "k": receipt["checkCode"]})
    found = progress["requestProgress"]
    assert (found["stationName"], found["agencyResponsible"]) == (station, station)
    assert [s["note"] for s in found["steps"]] == ["已收到，等待受理", "已受理", "已交办", "已更换灯泡"]
    assert "老王" not in str(progress) and "电话已联系" not in str(progress)
    # Staff still read every note.
    staff = (await api.gql(MINE, {"t": ticket}, liaison))["request"]
    assert [s["note"] for s in staff["history"]][1:3] == ["电话已联系", "交给网格员老王"]


async def test_1_a_residents_list_reads_stations_and_histories_per_scope_not_per_request(
    api: Api, city: City
) -> None:
    resident = _resident(api, city, "user:9602", 1)
    for k in (1, 1, 1, 2, 2):
        await submit(api, city, k, resident)
    query = "{ requests(first: 20) { edges { node { ticket station { code } history { step } } } } }"
    with api.count_statements() as statements:
        listed = await api.gql(query, token=resident)
    edges = listed["requests"]["edges"]
    assert len(edges) == 5 and all(e["node"]["station"] and e["node"]["history"] for e in edges)
    # The resident's own transaction (context, count, page), then per scope: context, histories, stations.
    assert len(statements) <= 3 + 3 * 2, statements


async def test_2_satisfaction_out_of_100_rectified_once_then_escalated(api: Api, city: City) -> None:
    resident = _resident(api, city, "user:9603")
    ticket = (await submit(api, city, 0, resident))["ticket"]
    key = await resolved(api, city, 0, ticket)
    bad = await api.gql(RATE, {"id": key, "score": 101, "solved": True}, resident)
    assert (bad["rateRequest"]["code"], bad["rateRequest"]["field"]) == ("INVALID_INPUT", "score")
    # 60 out of 100 (issue 9: 3 of 5 used to close it): below 80, rectified.
    first = (await api.gql(RATE, {"id": key, "score": 60, "solved": True}, resident))["rateRequest"][
        "request"
    ]
    assert (first["state"], first["escalations"], first["level"]) == ("REOPENED", 0, 0)
    liaison = _liaison(api, city, 0)
    await take(api, liaison, "assignRequest", key, assignee='"user:9501"')
    await take(api, liaison, "resolveRequest", key, note='"重新处理"')
    # Below it the second time: reopened and one level up, counted as an escalation, not coloured.
    second = (await api.gql(RATE, {"id": key, "score": 79, "solved": True}, resident))["rateRequest"][
        "request"
    ]
    assert (second["state"], second["level"], second["escalations"]) == ("ASSIGNED", 1, 1)
    assert (second["supervision"], second["overdue"]) == ("NONE", False)
    deputy = api.token(city.tenant, ["deputy"], [city.stations[0].scope], sub=city.stations[0].deputy)
    assert (await take(api, deputy, "resolveRequest", key, note='"代表督办解决"'))["request"][
        "state"
    ] == "RESOLVED"
    third = (await api.gql(RATE, {"id": key, "score": 80, "solved": True}, resident))["rateRequest"][
        "request"
    ]
    assert (third["state"], third["rating"]) == ("CLOSED", 80)


async def test_2_the_threshold_is_the_citys_setting(api: Api, city: City) -> None:
    admin = api.token(city.tenant, ["city_admin"])
    settings = "mutation($t: Int!) { updateRequestSettings(input: {ratingThreshold: $t}) { __typename } }"
    shown = await api.gql("{ requestSettings { ratingThreshold } }", token=admin)
    assert shown["requestSettings"]["ratingThreshold"] == 80  # the default: 80% of the scale
    await api.gql(settings, {"t": 90}, admin)
    try:
        resident = _resident(api, city, "user:9604")
        key = await resolved(api, city, 1, (await submit(api, city, 1, resident))["ticket"])
        rated = (await api.gql(RATE, {"id": key, "score": 85, "solved": True}, resident))["rateRequest"]
        assert rated["request"]["state"] == "REOPENED"
    finally:
        await api.gql(settings, {"t": 80}, admin)


async def test_3_a_deputy_a_routing_rule_assigned_handles_what_is_theirs(api: Api, city: City) -> None:
    admin = api.token(city.tenant, ["city_admin"])
    rule = await api.gql(
        'mutation($n: ID!) { setRoutingRule(input: {nodeId: $n, category: "parking", responsible: DEPUTY}) '
        "{ __typename } }",
        {"n": encode_id("Station", city.stations[1].id)},
        admin,
    )
    assert rule["setRoutingRule"]["__typename"] == "RoutingRulePayload"
    mine = api.token(city.tenant, ["deputy"], [city.stations[1].scope], sub=city.stations[1].deputy)
    other = api.token(city.tenant, ["deputy"], [city.stations[1].scope], sub="user:9605")
    names = await _mutation_names(api, mine)
    tickets = [(await submit(api, city, 1, category="parking"))["ticket"] for _ in range(2)]
    key, returned = [await request_id(api, city, t) for t in tickets]
    steps = "query($t: String!) { request(ticket: $t) { assignee availableSteps } }"
    seen = (await api.gql(steps, {"t": tickets[0]}, mine))["request"]
    assert seen == {"assignee": city.stations[1].deputy, "availableSteps": ["acceptRequest", "returnRequest"]}
    assert set(seen["availableSteps"]) <= names
    assert (await api.gql(steps, {"t": tickets[0]}, other))["request"]["availableSteps"] == []
    assert (await take(api, other, "acceptRequest", key))["code"] == "FORBIDDEN"
    accepted = await take(api, mine, "acceptRequest", key)
    assert accepted["request"]["state"] == "ACCEPTED"
    assert accepted["request"]["availableSteps"] == ["startRequest", "returnRequest"]
    assert (await take(api, mine, "startRequest", key))["request"]["state"] == "IN_PROGRESS"
    assert (await take(api, mine, "resolveRequest", key, note='"车已挪走"'))["request"]["state"] == "RESOLVED"
    back = await take(api, mine, "returnRequest", returned, note='"不属本站"')
    assert back["request"]["state"] == "RETURNED" and back["request"]["assignee"] is None


async def test_4_escalating_by_hand_does_not_colour_a_fresh_request(api: Api, city: City) -> None:
    ticket = (await submit(api, city, 2))["ticket"]
    key = await request_id(api, city, ticket)
    district = api.token(city.tenant, ["district_staff"], [city.stations[2].district_scope], sub="user:9606")
    up = (await take(api, district, "escalateRequest", key, note='"群众反映强烈"'))["request"]
    assert (up["supervision"], up["overdue"], up["level"], up["escalations"]) == ("NONE", False, 1, 1)
    listed = await api.gql(
        "{ requests(first: 50, filter: {supervision: [YELLOW, RED]}) { edges { node { ticket } } } }",
        token=district,
    )
    assert ticket not in str(listed)
    history = await api.gql(
        "query($t: String!) { request(ticket: $t) { history { step } } }", {"t": ticket}, district
    )
    assert [s["step"] for s in history["request"]["history"]] == ["submit", "escalate"]


async def test_5_a_merged_request_names_its_survivor_and_its_submitter_rates_it(
    api: Api, city: City, owner_dsn: str
) -> None:
    first, second = _resident(api, city, "user:9607", 3), _resident(api, city, "user:9608", 3)
    survivor = await submit(api, city, 3, first, category="public_toilets")
    merged = await submit(api, city, 3, second, category="public_toilets")
    liaison = _liaison(api, city, 3)
    merged_id = await request_id(api, city, merged["ticket"])
    into = await request_id(api, city, survivor["ticket"])
    done = await api.gql(
        "mutation($id: ID!, $into: ID!) "
        '{ mergeRequest(id: $id, intoId: $into, note: "同一厕所") { __typename } }',
        {"id": merged_id, "into": into},
        liaison,
    )
    assert done["mergeRequest"]["__typename"] == "RequestPayload"
    progress = (
        await api.gql(PROGRESS, {"c": city.tenant.code, "t": merged["ticket"], "k": merged["checkCode"]})
    )["requestProgress"]
    assert (progress["state"], progress["closed"]) == ("MERGED", True)
    assert progress["steps"][-1]["note"] == f"已并入 {survivor['ticket']} 一并办理"
    assert progress["mergedInto"]["ticket"] == survivor["ticket"]
    assert [s["step"] for s in progress["mergedInto"]["steps"]] == ["submit"]
    steps = "query($t: String!) { request(ticket: $t) { state availableSteps } }"
    assert (await api.gql(steps, {"t": merged["ticket"]}, second))["request"] == {
        "state": "MERGED",
        "availableSteps": [],
    }
    await resolved(api, city, 3, survivor["ticket"], note='"已疏通"')
    assert (await api.gql(steps, {"t": merged["ticket"]}, second))["request"]["availableSteps"] == [
        "rateRequest"
    ]
    rated = (await api.gql(RATE, {"id": merged_id, "score": 90, "solved": True}, second))["rateRequest"]
    # Answered with their own (merged) request: nothing of the survivor's submitter.
    assert rated["request"]["ticket"] == merged["ticket"] and rated["request"]["state"] == "MERGED"
    with psycopg.connect(owner_dsn) as conn:
        state, rated_by = conn.execute(
            "SELECT r.state, g.rated_by FROM requests r JOIN request_ratings g "
            "ON g.tenant_id = r.tenant_id AND g.request_id = r.id WHERE r.ticket = %s",
            (survivor["ticket"],),
        ).fetchone()  # type: ignore[misc]
    assert (state, rated_by) == ("closed", "user:9608")
    again = (await api.gql(RATE, {"id": into, "score": 10, "solved": False}, first))["rateRequest"]
    assert again["code"] == "CONFLICT"  # each resolution is rated once, by whichever submitter rates first
    # A stranger's rating of the merged request is no way in.
    stranger = _resident(api, city, "user:9609", 3)
    assert (await api.gql(RATE, {"id": merged_id, "score": 1, "solved": False}, stranger))["rateRequest"][
        "code"
    ] == "NOT_FOUND"


async def test_6_public_notes_and_received_until_accepted(api: Api, city: City) -> None:
    receipt = await submit(api, city, 2)
    liaison = _liaison(api, city, 2)
    key = await request_id(api, city, receipt["ticket"])
    variables = {"c": city.tenant.code, "t": receipt["ticket"], "k": receipt["checkCode"]}

    async def notes() -> list[str]:
        return [s["note"] for s in (await api.gql(PROGRESS, variables))["requestProgress"]["steps"]]

    assert await notes() == ["已收到，等待受理"]
    await take(api, liaison, "acceptRequest", key)
    await take(api, liaison, "assignRequest", key, assignee='"user:9501"', note='"内部：老王负责"')
    await take(api, liaison, "startRequest", key, note='"师傅已出发"', notePublic="true")
    assert await notes() == ["已收到，等待受理", "已受理", "已交办", "师傅已出发"]


async def test_7_available_steps_name_mutations(api: Api, city: City) -> None:
    resident = _resident(api, city, "user:9610", 2)
    ticket = (await submit(api, city, 2, resident))["ticket"]
    liaison = _liaison(api, city, 2)
    names = await _mutation_names(api, liaison)
    steps = "query($t: String!) { request(ticket: $t) { availableSteps } }"
    at_submit = (await api.gql(steps, {"t": ticket}, liaison))["request"]["availableSteps"]
    assert at_submit == ["acceptRequest", "returnRequest", "mergeRequest", "rejectRequest"]
    dispatcher = api.token(
        city.tenant, ["district_staff"], [city.stations[2].district_scope], sub="user:9611"
    )
    assert "rerouteRequest" in (await api.gql(steps, {"t": ticket}, dispatcher))["request"]["availableSteps"]
    await resolved(api, city, 2, ticket)
    at_resolved = (await api.gql(steps, {"t": ticket}, resident))["request"]["availableSteps"]
    assert at_resolved == ["rateRequest"]
    assert set(at_submit) | set(at_resolved) <= names


async def test_8_an_anonymous_submitter_rates_once_with_the_receipts_rating_code(
    api: Api, city: City
) -> None:
    receipt = await submit(api, city, 1)
    other = await submit(api, city, 1)
    assert receipt["ratingCode"] and receipt["ratingCode"] != receipt["checkCode"]
    signed_in = await submit(api, city, 1, _resident(api, city, "user:9612", 1))
    assert signed_in["ratingCode"] is None  # a resident rates as themselves
    await resolved(api, city, 1, receipt["ticket"])
    await resolved(api, city, 1, other["ticket"])

    async def rate(ticket: str, code: str, score: int = 95) -> dict[str, Any]:
        variables = {"c": city.tenant.code, "t": ticket, "k": code, "score": score}
        answer: dict[str, Any] = (await api.gql(RATE_WITH_CODE, variables))["rateRequestWithCode"]
        return answer

    nowhere = await rate("20990101-999999", receipt["ratingCode"])
    for ticket, code in [
        (receipt["ticket"], "2345-6789-ABCD"),
        (receipt["ticket"], receipt["checkCode"]),  # the check code reads, it does not rate
        (other["ticket"], receipt["ratingCode"]),  # a code rates its own request only
    ]:
        refused = await rate(ticket, code)
        assert refused["code"] == "NOT_FOUND" and refused["field"] == "ticket"
        assert refused["message"].replace(ticket, "T") == nowhere["message"].replace("20990101-999999", "T")
    rated = await rate(receipt["ticket"], receipt["ratingCode"].lower().replace("-", ""))
    assert rated["progress"] == {"ticket": receipt["ticket"], "state": "CLOSED"}
    assert (await rate(receipt["ticket"], receipt["ratingCode"]))["code"] == "CONFLICT"
    assert (await rate(other["ticket"], other["ratingCode"], 40))["progress"]["state"] == "REOPENED"


async def test_9_points_far_outside_the_city_are_refused_inside_it_queued(
    api: Api, city: City, owner_dsn: str
) -> None:
    def count() -> int:
        with psycopg.connect(owner_dsn) as conn:
            found = conn.execute(
                "SELECT count(*) FROM requests WHERE tenant_id = %s", (city.tenant.tenant_id,)
            ).fetchone()
        assert found is not None
        return int(found[0])

    before = count()
    tianjin = await submit(api, city, 0, location={"longitude": 117.2, "latitude": 39.1, "crs": "GCJ02"})
    assert (tianjin["code"], tianjin["field"]) == ("INVALID_INPUT", "location")
    assert "outside the city" in tianjin["message"] and "GCJ02" in tianjin["message"]
    assert count() == before
    lon, lat = city.uncovered
    queued = await submit(api, city, 0, location={"longitude": lon, "latitude": lat})
    assert queued["__typename"] == "SubmitRequestPayload" and queued["routed"] is False
    # The city's west edge is 116.38: about 510 m and 1,530 m beyond it.
    near = await submit(api, city, 0, location={"longitude": 116.374, "latitude": 39.95})
    far = {"longitude": 116.362, "latitude": 39.95}
    assert near["routed"] is False and (await submit(api, city, 0, location=far))["code"] == "INVALID_INPUT"
    admin = api.token(city.tenant, ["city_admin"])
    margin = "mutation($m: Int!) { updateRequestSettings(input: {cityMarginMeters: $m}) { __typename } }"
    await api.gql(margin, {"m": 2000}, admin)
    try:
        assert (await submit(api, city, 0, location=far))["routed"] is False
    finally:
        await api.gql(margin, {"m": 1000}, admin)


async def test_11_reassigning_without_a_note_is_invalid_input(api: Api, city: City) -> None:
    key = await request_id(api, city, (await submit(api, city, 0))["ticket"])
    liaison = _liaison(api, city, 0)
    await take(api, liaison, "acceptRequest", key)
    await take(api, liaison, "assignRequest", key, assignee='"user:9501"')
    again = await take(api, liaison, "assignRequest", key, assignee='"user:9502"')
    assert (again["__typename"], again["code"], again["field"]) == (
        "InvalidInputError",
        "INVALID_INPUT",
        "note",
    )
    resolve = await take(api, liaison, "resolveRequest", key, note='"  "')
    assert (resolve["code"], resolve["field"]) == ("INVALID_INPUT", "note")


async def test_12_the_same_idempotency_key_answers_the_first_receipt(
    api: Api, city: City, owner_dsn: str
) -> None:
    key = "3f9c2a4e-7b1d-4c55-9e0a-1d2b3c4d5e6f"
    values = {
        "category": "safety",
        "description": "井盖松动",
        "location": location(city, 2),
        "idempotencyKey": key,
    }
    anonymous = {**values, "tenant": city.tenant.code}
    first = (await api.gql(SUBMIT, {"input": anonymous}))["submitRequest"]
    retry = (await api.gql(SUBMIT, {"input": anonymous}))["submitRequest"]
    assert first["created"] is True and retry["created"] is False
    for field in ("ticket", "checkCode", "ratingCode", "routed"):
        assert retry[field] == first[field], field
    progress = await api.gql(PROGRESS, {"c": city.tenant.code, "t": retry["ticket"], "k": retry["checkCode"]})
    assert progress["requestProgress"]["ticket"] == first["ticket"]
    reused = (await api.gql(SUBMIT, {"input": {**anonymous, "description": "别的事"}}))["submitRequest"]
    assert (reused["code"], reused["field"]) == ("CONFLICT", "idempotencyKey")
    # Bound to its sender: the same key from a signed-in resident is another request.
    resident = _resident(api, city, "user:9613", 2)
    theirs = (await api.gql(SUBMIT, {"input": values}, resident))["submitRequest"]
    assert theirs["created"] is True and theirs["ticket"] != first["ticket"]
    short = (await api.gql(SUBMIT, {"input": {**anonymous, "idempotencyKey": "abc"}}))["submitRequest"]
    assert (short["code"], short["field"]) == ("INVALID_INPUT", "idempotencyKey")
    # Two retries at once make one request.
    racing = {**values, "idempotencyKey": "race-0000-1111-2222-3333"}
    answers = await asyncio.gather(*(api.gql(SUBMIT, {"input": racing}, resident) for _ in range(4)))
    assert len({a["submitRequest"]["ticket"] for a in answers}) == 1
    assert sorted(a["submitRequest"]["created"] for a in answers) == [False, False, False, True]
    with psycopg.connect(owner_dsn) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM requests WHERE tenant_id = %s AND description = '井盖松动'",
            (city.tenant.tenant_id,),
        ).fetchone()
    assert rows == (3,)
