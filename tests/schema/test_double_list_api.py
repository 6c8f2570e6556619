"""The double list over GraphQL: a station's demands (by hand, from a request, from a survey's CSV), the
street's resources, a batch run that proposes the best assignment under capacity with each match's terms,
the owner accepting (a project) or declining, the project closed with a rating, and match accuracy.
Another district neither sees nor changes any of it; bad input gets clear errors and keeps nothing."""

from __future__ import annotations

import base64
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from schema.relay import decode_id, encode_id
from tenants.db import Database
from tests.helpers import Api, select_rows
from tests.requests_city import City, build_city, location

_names = itertools.count(1)
FIELDS = "... on Error { code message field }"
DEMAND = "id category kind title households urgency source state station { code } matches { id state }"
RESOURCE = "id name ownerKind skills monthlyCapacity ownerPrincipal stations { code }"
MATCH = "id demandId resourceId score terms state reason projectOwner responsibleUnit deadline outcome rating"
CREATE_DEMAND = f"""
mutation($input: CreateDemandInput!) {{ createDemand(input: $input) {{ __typename
  ... on DemandPayload {{ demand {{ {DEMAND} }} }} {FIELDS} }} }}"""
CREATE_RESOURCE = f"""
mutation($input: CreateResourceInput!) {{ createResource(input: $input) {{ __typename
  ... on ResourcePayload {{ resource {{ {RESOURCE} }} }} {FIELDS} }} }}"""
SERVE = f"""
mutation($r: ID!, $s: ID!) {{ setResourceStation(resourceId: $r, stationId: $s) {{ __typename
  ... on ResourcePayload {{ resource {{ {RESOURCE} }} }} {FIELDS} }} }}"""
RUN = f"""
mutation($n: ID) {{ runMatching(nodeId: $n) {{ __typename
  ... on MatchRunPayload {{ run {{ demands candidates matched totalScore greedyScore }}
    matches {{ {MATCH} }} }}
  {FIELDS} }} }}"""
ACCEPT = f"""
mutation($id: ID!, $unit: String!, $deadline: Date!) {{
  acceptMatch(id: $id, responsibleUnit: $unit, deadline: $deadline) {{ __typename
  ... on MatchPayload {{ match {{ {MATCH} }} }} {FIELDS} }} }}"""
DECLINE = f"""
mutation($id: ID!, $reason: String!) {{ declineMatch(id: $id, reason: $reason) {{ __typename
  ... on MatchPayload {{ match {{ {MATCH} }} }} {FIELDS} }} }}"""
CLOSE = f"""
mutation($id: ID!, $outcome: String!, $rating: Int!) {{
  closeProject(id: $id, outcome: $outcome, rating: $rating) {{ __typename
  ... on MatchPayload {{ match {{ {MATCH} }} }} {FIELDS} }} }}"""
IMPORT = f"""
mutation($csv: String, $b64: String, $dry: Boolean!) {{
  importDemands(csv: $csv, csvBase64: $b64, dryRun: $dry) {{ __typename
  ... on DemandImportPayload {{ result {{ encoding dryRun created refused {{ line reason }} }} }}
  {FIELDS} }} }}"""


@pytest.fixture(scope="module")
async def city(database: Database) -> City:
    return await build_city(database, "doublelist")


def street_staff(api: Api, city: City, k: int) -> str:
    return api.token(city.tenant, ["street_staff"], [city.stations[k].street_scope], sub=f"user:{7700 + k}")


def street_id(owner_dsn: str, city: City, k: int) -> str:
    (row,) = select_rows(
        owner_dsn,
        "SELECT id FROM streets WHERE tenant_id = %s AND scope = %s::ltree",
        city.tenant.tenant_id,
        city.stations[k].street_scope,
    )
    return str(encode_id("Street", int(row[0])))


def station_id(city: City, k: int) -> str:
    return str(encode_id("Station", city.stations[k].id))


async def demand(api: Api, token: str, city: City, k: int, **given: Any) -> dict[str, Any]:
    values = {"stationId": station_id(city, k), "category": "elderly_care", "title": f"需求{next(_names)}"}
    result: dict[str, Any] = (await api.gql(CREATE_DEMAND, {"input": {**values, **given}}, token))[
        "createDemand"
    ]
    return result


async def resource(api: Api, token: str, node: str, serves: list[str], **given: Any) -> dict[str, Any]:
    values = {
        "name": f"资源{next(_names)}",
        "ownerKind": "DEPARTMENT",
        "offer": "SERVICE",
        "skills": ["medicine"],
        "monthlyCapacity": 5,
        "nodeId": node,
        **given,
    }
    made: dict[str, Any] = (await api.gql(CREATE_RESOURCE, {"input": values}, token))["createResource"]
    assert made["__typename"] == "ResourcePayload", made
    for station in serves:
        served = await api.gql(SERVE, {"r": made["resource"]["id"], "s": station}, token)
        assert served["setResourceStation"]["__typename"] == "ResourcePayload", served
        made = served["setResourceStation"]
    return made["resource"]  # type: ignore[no-any-return]


def _deadline() -> str:
    return (datetime.now(UTC).date() + timedelta(days=30)).isoformat()


async def test_a_demand_is_matched_accepted_by_its_owner_closed_and_counted(
    api: Api, city: City, owner_dsn: str
) -> None:
    staff = street_staff(api, city, 0)
    street = street_id(owner_dsn, city, 0)
    # The owner signs in as a deputy of another station of the street: the match lies outside their scope.
    owner = "user:7790"
    helper = await resource(
        api, staff, street, [station_id(city, 0)], ownerKind="DEPUTY", ownerPrincipal=owner, monthlyCapacity=3
    )
    far = await resource(api, staff, street, [station_id(city, 1)], skills=["medicine", "law"])
    made = await demand(api, staff, city, 0, households=12, urgency="URGENT", source="FORUM")
    assert made["__typename"] == "DemandPayload", made
    assert (made["demand"]["kind"], made["demand"]["state"]) == ("BASIC", "OPEN")

    ran = (await api.gql(RUN, {"n": street}, staff))["runMatching"]
    assert ran["__typename"] == "MatchRunPayload", ran
    assert ran["run"]["matched"] >= 1 and ran["run"]["totalScore"] >= ran["run"]["greedyScore"]
    (match,) = [m for m in ran["matches"] if m["demandId"] == made["demand"]["id"]]
    assert match["resourceId"] == helper["id"], "the resource at the demand's own station scores higher"
    assert match["terms"]["distanceMeters"] == 0 and match["terms"]["fit"] == 1
    assert set(match["terms"]) >= {"fit", "distance", "load", "satisfaction"}
    assert far["id"] != match["resourceId"]

    deputy = api.token(city.tenant, ["deputy"], [city.stations[1].scope], sub=owner)
    mine = await api.gql("{ matches(mine: true) { totalCount edges { node { id state } } } }", token=deputy)
    assert match["id"] in [e["node"]["id"] for e in mine["matches"]["edges"]]
    accepted = (
        await api.gql(
            ACCEPT, {"id": match["id"], "unit": "街道社区卫生服务中心", "deadline": _deadline()}, deputy
        )
    )["acceptMatch"]
    assert accepted["__typename"] == "MatchPayload", accepted
    assert (accepted["match"]["state"], accepted["match"]["projectOwner"]) == ("ACCEPTED", owner)
    again = (await api.gql(DECLINE, {"id": match["id"], "reason": "太忙"}, deputy))["declineMatch"]
    assert again["code"] == "ILLEGAL_TRANSITION"

    closed = (await api.gql(CLOSE, {"id": match["id"], "outcome": "已上门服务", "rating": 92}, deputy))[
        "closeProject"
    ]
    assert (closed["match"]["state"], closed["match"]["rating"]) == ("CLOSED", 92)
    seen = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on Demand { state } } }", {"id": made["demand"]["id"]}, staff
    )
    assert seen["node"]["state"] == "CLOSED"
    accuracy = await api.gql(
        "query($n: ID) { matchAccuracy(nodeId: $n) { proposed accepted satisfied accuracy } }",
        {"n": station_id(city, 0)},
        staff,
    )
    figures = accuracy["matchAccuracy"]
    assert figures["satisfied"] >= 1 and figures["proposed"] >= figures["satisfied"]
    assert figures["accuracy"] == round(figures["satisfied"] / figures["proposed"], 4)
    actions = [
        row[0]
        for row in select_rows(
            owner_dsn,
            "SELECT action FROM audit_log WHERE tenant_id = %s AND subject = %s ORDER BY seq",
            city.tenant.tenant_id,
            f"match:{_key(match['id'])}",
        )
    ]
    assert actions == ["match.accepted", "match.closed"]


def _key(global_id: str) -> int:
    return decode_id(global_id)[1]


async def test_capacity_holds_and_a_declined_resource_is_not_proposed_again(
    api: Api, city: City, owner_dsn: str
) -> None:
    staff = street_staff(api, city, 2)
    street = street_id(owner_dsn, city, 2)
    station = station_id(city, 2)
    single = await resource(api, staff, street, [station], skills=["law"], monthlyCapacity=1)
    first = await demand(api, staff, city, 2, category="disputes")
    second = await demand(api, staff, city, 2, category="disputes")
    ran = (await api.gql(RUN, {"n": station}, staff))["runMatching"]
    taken = [m for m in ran["matches"] if m["resourceId"] == single["id"]]
    assert len(taken) == 1, "a resource with capacity 1 takes one demand a month"
    left = {first["demand"]["id"], second["demand"]["id"]} - {taken[0]["demandId"]}

    blank = (await api.gql(DECLINE, {"id": taken[0]["id"], "reason": "  "}, staff))["declineMatch"]
    assert (blank["code"], blank["field"]) == ("INVALID_INPUT", "reason")
    declined = (await api.gql(DECLINE, {"id": taken[0]["id"], "reason": "本月已满"}, staff))["declineMatch"]
    assert declined["match"]["state"] == "DECLINED" and declined["match"]["reason"] == "本月已满"
    rerun = (await api.gql(RUN, {"n": station}, staff))["runMatching"]
    again = [m for m in rerun["matches"] if m["resourceId"] == single["id"]]
    # The declined demand is not proposed to it again; the other demand may now take its one place.
    assert [m["demandId"] for m in again] == sorted(left)


async def test_a_routed_request_is_promoted_once(api: Api, city: City) -> None:
    submitted = await api.gql(
        "mutation($input: SubmitRequestInput!) { submitRequest(input: $input) {"
        " ... on SubmitRequestPayload { ticket } } }",
        {
            "input": {
                "tenant": city.tenant.code,
                "category": "elderly_care",
                "description": "老人助餐需求",
                "location": location(city, 1),
            }
        },
    )
    staff = street_staff(api, city, 1)
    found = await api.gql(
        "query($t: String!) { request(ticket: $t) { id } }",
        {"t": submitted["submitRequest"]["ticket"]},
        staff,
    )
    promote = f"""mutation($r: ID!) {{ promoteRequestToDemand(requestId: $r, households: 3) {{ __typename
      ... on DemandPayload {{ demand {{ {DEMAND} requestId }} }} {FIELDS} }} }}"""
    made = (await api.gql(promote, {"r": found["request"]["id"]}, staff))["promoteRequestToDemand"]
    assert made["__typename"] == "DemandPayload", made
    assert (made["demand"]["source"], made["demand"]["requestId"]) == ("REQUEST", found["request"]["id"])
    assert made["demand"]["station"]["code"] == city.stations[1].code
    twice = (await api.gql(promote, {"r": found["request"]["id"]}, staff))["promoteRequestToDemand"]
    assert twice["code"] == "CONFLICT"
    sibling = street_staff(api, city, 2)
    outside = (await api.gql(promote, {"r": found["request"]["id"]}, sibling))["promoteRequestToDemand"]
    assert outside["code"] == "NOT_FOUND"


def _count(owner_dsn: str, city: City) -> int:
    (row,) = select_rows(
        owner_dsn, "SELECT count(*) FROM demands WHERE tenant_id = %s", city.tenant.tenant_id
    )
    return int(row[0])


async def test_a_survey_csv_keeps_good_lines_and_names_the_bad_ones(
    api: Api, city: City, owner_dsn: str
) -> None:
    staff = street_staff(api, city, 0)
    code = city.stations[0].code
    sheet = (
        "站点编码,需求类别,需求内容,需求类型,涉及户数,紧急程度,来源\n"
        f"{code},elderly_care,老年助餐,基础,30,紧急,问卷\n"
        f"{code},astrology,看星星,,1,,\n"
        f"{city.stations[2].code},elderly_care,别的街道,,1,,\n"
        f"{code},elderly_care,户数不对,,很多,,\n"
        f"{code},elderly_care,多了一列,,1,,,多余\n"
        f"{code},parking,停车难,个性,8,一般,议事会\n"
    )
    before = _count(owner_dsn, city)
    dry = (await api.gql(IMPORT, {"csv": sheet, "dry": True}, staff))["importDemands"]
    assert dry["result"]["created"] == 2 and len(dry["result"]["refused"]) == 4
    assert _count(owner_dsn, city) == before, "a dry run keeps nothing"

    done = (await api.gql(IMPORT, {"csv": sheet, "dry": False}, staff))["importDemands"]
    refused = {r["line"]: r["reason"] for r in done["result"]["refused"]}
    assert done["result"]["created"] == 2 and sorted(refused) == [3, 4, 5, 6]
    assert "astrology" in refused[3] and "outside your scope" in refused[4]
    assert "很多" in refused[5] and "cells" in refused[6]
    assert _count(owner_dsn, city) == before + 2

    gb = base64.b64encode(
        sheet.splitlines()[0].encode("gb18030") + b"\n" + f"{code},culture,书屋,,2,,走访\n".encode("gb18030")
    )
    read = (await api.gql(IMPORT, {"b64": gb.decode(), "dry": True}, staff))["importDemands"]
    assert read["result"]["encoding"] == "gb18030" and read["result"]["created"] == 1

    headless = (await api.gql(IMPORT, {"csv": "站点编码,需求内容\nx,y\n", "dry": False}, staff))[
        "importDemands"
    ]
    assert (headless["code"], headless["field"]) == ("INVALID_INPUT", "csv")
    assert "需求类别" in headless["message"]
    garbage = (await api.gql(IMPORT, {"b64": "不是", "dry": False}, staff))["importDemands"]
    assert garbage["code"] == "INVALID_INPUT"
    undecodable = base64.b64encode(b"\xff\xfe\xfa\x00bad").decode()
    bytes_ = (await api.gql(IMPORT, {"b64": undecodable, "dry": False}, staff))["importDemands"]
    assert bytes_["code"] == "INVALID_INPUT"
    assert _count(owner_dsn, city) == before + 2


async def test_bad_input_gets_clear_errors_and_keeps_nothing(api: Api, city: City, owner_dsn: str) -> None:
    staff = street_staff(api, city, 0)
    street = street_id(owner_dsn, city, 0)
    before = _count(owner_dsn, city)
    far = await demand(api, staff, city, 0, location={"lon": 117.2, "lat": 39.1, "crs": "gcj02"})
    assert (far["code"], far["field"]) == ("INVALID_INPUT", "location") and "km" in far["message"]
    near = await demand(api, staff, city, 0, location={"lon": city.point(0)[0], "lat": city.point(0)[1]})
    assert near["__typename"] == "DemandPayload", near
    unknown = await demand(api, staff, city, 0, category="astrology")
    assert (unknown["code"], unknown["field"]) == ("INVALID_INPUT", "category")
    negative = await demand(api, staff, city, 0, households=-2)
    assert negative["field"] == "households"
    sibling_station = await demand(api, staff, city, 2)
    assert sibling_station["code"] == "NOT_FOUND"
    assert _count(owner_dsn, city) == before + 1

    def made(**given: Any) -> dict[str, Any]:
        return {
            "name": "x",
            "ownerKind": "ENTERPRISE",
            "offer": "FUNDING",
            "skills": ["law"],
            "monthlyCapacity": 1,
            "nodeId": street,
            **given,
        }

    for given, field in (
        ({"monthlyCapacity": -1}, "monthlyCapacity"),
        ({"skills": ["astrology"]}, "skills"),
        ({"skills": []}, "skills"),
        ({"ownerPrincipal": "bob"}, "ownerPrincipal"),
        ({"name": " "}, "name"),
    ):
        answer = (await api.gql(CREATE_RESOURCE, {"input": made(**given)}, staff))["createResource"]
        assert (answer["code"], answer["field"]) == ("INVALID_INPUT", field), (given, answer)
    liaison = api.token(city.tenant, ["station_liaison"], [city.stations[0].scope], sub="user:7799")
    refused = (await api.gql(CREATE_RESOURCE, {"input": made()}, liaison))["createResource"]
    assert refused["code"] == "FORBIDDEN"


async def test_another_district_neither_sees_nor_changes_the_double_list(
    api: Api, city: City, owner_dsn: str
) -> None:
    staff = street_staff(api, city, 1)
    street = street_id(owner_dsn, city, 1)
    kept = await resource(api, staff, street, [station_id(city, 1)], skills=["education"], monthlyCapacity=2)
    wanted = await demand(api, staff, city, 1, category="culture")
    ran = (await api.gql(RUN, {"n": station_id(city, 1)}, staff))["runMatching"]
    (match,) = [m for m in ran["matches"] if m["demandId"] == wanted["demand"]["id"]]

    sibling = api.token(city.tenant, ["district_staff"], [city.stations[2].district_scope], sub="user:7798")
    for global_id in (kept["id"], wanted["demand"]["id"], match["id"]):
        seen = await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": global_id}, sibling)
        assert seen["node"] is None, global_id
    lists = await api.gql(
        "{ demands { edges { node { id } } } resources { edges { node { id } } }"
        " matches { edges { node { id } } } }",
        token=sibling,
    )
    ids = {e["node"]["id"] for key in ("demands", "resources", "matches") for e in lists[key]["edges"]}
    assert not ids & {kept["id"], wanted["demand"]["id"], match["id"]}

    accepted = (await api.gql(ACCEPT, {"id": match["id"], "unit": "x", "deadline": _deadline()}, sibling))[
        "acceptMatch"
    ]
    assert accepted["code"] == "NOT_FOUND"
    # A deputy who is not the owner, in a sibling station, neither.
    stranger = api.token(city.tenant, ["deputy"], [city.stations[2].scope], sub="user:7797")
    declined = (await api.gql(DECLINE, {"id": match["id"], "reason": "x"}, stranger))["declineMatch"]
    assert declined["code"] == "NOT_FOUND"
    served = (await api.gql(SERVE, {"r": kept["id"], "s": station_id(city, 2)}, sibling))[
        "setResourceStation"
    ]
    assert served["code"] == "NOT_FOUND"
    run = (await api.gql(RUN, {"n": street}, sibling))["runMatching"]
    assert run["code"] == "NOT_FOUND"
    (state,) = select_rows(owner_dsn, "SELECT state FROM matches WHERE id = %s", _key(match["id"]))
    assert state == ("proposed",)


async def test_the_double_list_pages_cost_the_same_statements_however_long(
    api: Api, city: City, owner_dsn: str
) -> None:
    staff = street_staff(api, city, 3)
    street = street_id(owner_dsn, city, 3)

    async def add_some() -> None:
        for _ in range(2):
            await resource(api, staff, street, [station_id(city, 3)], skills=["environment"])
            await demand(api, staff, city, 3, category="environment")
        await api.gql(RUN, {"n": street}, staff)

    async def statements() -> tuple[int, int]:
        with api.count_statements() as seen:
            data = await api.gql(
                f"{{ demands(first: 100) {{ totalCount edges {{ node {{ {DEMAND} }} }} }}"
                f" resources(first: 100) {{ totalCount edges {{ node {{ {RESOURCE} }} }} }}"
                f" matches(first: 100) {{ totalCount edges {{ node {{ {MATCH} }} }} }} }}",
                token=staff,
            )
        rows = sum(len(data[key]["edges"]) for key in ("demands", "resources", "matches"))
        return rows, len(seen)

    await add_some()
    few, few_statements = await statements()
    await add_some()
    more, more_statements = await statements()
    assert more > few
    assert more_statements == few_statements, (few_statements, more_statements)


def test_the_app_role_reads_no_double_list_without_a_context(app_dsn: str) -> None:
    with psycopg.connect(app_dsn) as conn:
        for table in ("demands", "resources", "resource_stations", "matches", "match_runs"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
