"""Deputies over GraphQL: a street's staff keep records, link them to stations and build volunteer teams;
coverage and team sizes; requests reach the best-matching linked deputy, who can act on them; other
districts neither see nor change the records; bad input gets clear errors."""

from __future__ import annotations

import itertools
from typing import Any

import psycopg
import pytest

from schema.relay import encode_id
from tenants.db import Database
from tests.helpers import Api, select_rows
from tests.requests_city import City, build_city, location

_names = itertools.count(1)
FIELDS = "... on Error { code message field }"
DEPUTY = "id name level skills monthlyCapacity principal stations { code } volunteers { name }"
CREATE = f"""
mutation($input: CreateDeputyInput!) {{ createDeputy(input: $input) {{ __typename
  ... on DeputyPayload {{ deputy {{ {DEPUTY} }} }} {FIELDS} }} }}"""
LINK = f"""
mutation($d: ID!, $s: ID!) {{ linkDeputyToStation(deputyId: $d, stationId: $s) {{ __typename
  ... on DeputyPayload {{ deputy {{ {DEPUTY} }} }} {FIELDS} }} }}"""
VOLUNTEER = f"""
mutation($input: AddVolunteerInput!) {{ addDeputyVolunteer(input: $input) {{ __typename
  ... on DeputyVolunteerPayload {{ volunteer {{ id name }} deputy {{ volunteers {{ name }} }} }}
  {FIELDS} }} }}"""


@pytest.fixture(scope="module")
async def city(database: Database) -> City:
    return await build_city(database, "deputycity")


def street_staff(api: Api, city: City, k: int) -> str:
    return api.token(city.tenant, ["street_staff"], [city.stations[k].street_scope], sub=f"user:{8800 + k}")


async def street_id(owner_dsn: str, city: City, k: int) -> str:
    (row,) = select_rows(
        owner_dsn,
        "SELECT id FROM streets WHERE tenant_id = %s AND scope = %s::ltree",
        city.tenant.tenant_id,
        city.stations[k].street_scope,
    )
    return str(encode_id("Street", int(row[0])))


async def create(api: Api, token: str, **given: Any) -> dict[str, Any]:
    values = {"name": f"代表{next(_names)}", "level": "DISTRICT", "termStart": "2022-01-01", **given}
    result: dict[str, Any] = (await api.gql(CREATE, {"input": values}, token))["createDeputy"]
    return result


async def link(api: Api, token: str, deputy_id: str, station_id: int) -> dict[str, Any]:
    found = await api.gql(LINK, {"d": deputy_id, "s": encode_id("Station", station_id)}, token)
    result: dict[str, Any] = found["linkDeputyToStation"]
    return result


async def test_street_staff_keep_link_and_cover_their_stations(api: Api, city: City, owner_dsn: str) -> None:
    staff = street_staff(api, city, 0)
    street = await street_id(owner_dsn, city, 0)
    made = await create(api, staff, nodeId=street, skills=["law", "mediation"], monthlyCapacity=6)
    assert made["__typename"] == "DeputyPayload", made
    deputy = made["deputy"]
    assert deputy["skills"] == ["law", "mediation"] and deputy["stations"] == []

    linked = await link(api, staff, deputy["id"], city.stations[0].id)
    assert [s["code"] for s in linked["deputy"]["stations"]] == [city.stations[0].code]
    again = await link(api, staff, deputy["id"], city.stations[0].id)
    assert len(again["deputy"]["stations"]) == 1, "linking twice adds nothing"

    coverage = await api.gql(
        "query($n: ID) { deputyCoverage(nodeId: $n) { stations covered share uncovered { code } } }",
        {"n": street},
        staff,
    )
    assert coverage["deputyCoverage"] == {
        "stations": 2,
        "covered": 1,
        "share": 0.5,
        "uncovered": [{"code": city.stations[1].code}],
    }
    actions = [
        row[0]
        for row in select_rows(
            owner_dsn,
            "SELECT action FROM audit_log WHERE tenant_id = %s AND subject = %s ORDER BY seq",
            city.tenant.tenant_id,
            f"deputy:{_key(owner_dsn, city, deputy['name'])}",
        )
    ]
    assert actions == ["deputy.created", "deputy.linked"]


def _key(owner_dsn: str, city: City, name: str) -> int:
    (row,) = select_rows(
        owner_dsn, "SELECT id FROM deputies WHERE tenant_id = %s AND name = %s", city.tenant.tenant_id, name
    )
    return int(row[0])


async def test_bad_input_gets_clear_errors_and_keeps_nothing(api: Api, city: City, owner_dsn: str) -> None:
    staff = street_staff(api, city, 0)
    street = await street_id(owner_dsn, city, 0)
    before = select_rows(
        owner_dsn, "SELECT count(*) FROM deputies WHERE tenant_id = %s", city.tenant.tenant_id
    )
    unknown = await create(api, staff, nodeId=street, skills=["law", "astrology"])
    assert (unknown["code"], unknown["field"]) == ("INVALID_INPUT", "skills")
    assert "'astrology'" in unknown["message"] and "law" in unknown["message"]
    negative = await create(api, staff, nodeId=street, monthlyCapacity=-1)
    assert (negative["code"], negative["field"]) == ("INVALID_INPUT", "monthlyCapacity")
    backwards = await create(api, staff, nodeId=street, termEnd="2021-01-01")
    assert backwards["field"] == "termEnd"
    phone = await create(api, staff, nodeId=street, phone="call me")
    assert phone["field"] == "phone"
    blank = await create(api, staff, nodeId=street, name="   ")
    assert blank["field"] == "name"
    after = select_rows(
        owner_dsn, "SELECT count(*) FROM deputies WHERE tenant_id = %s", city.tenant.tenant_id
    )
    assert after == before

    made = await create(api, staff, nodeId=street)
    elsewhere = await link(api, staff, made["deputy"]["id"], city.stations[2].id)
    assert elsewhere["code"] == "NOT_FOUND", "a station of another district is not the street's to link"
    liaison = api.token(city.tenant, ["station_liaison"], [city.stations[0].scope], sub="user:8890")
    refused = await create(api, liaison, nodeId=street)
    assert refused["code"] == "FORBIDDEN"


async def test_another_district_neither_sees_nor_changes_the_records(
    api: Api, city: City, owner_dsn: str
) -> None:
    staff = street_staff(api, city, 0)
    made = await create(api, staff, nodeId=await street_id(owner_dsn, city, 0))
    deputy_id = made["deputy"]["id"]
    sibling = api.token(city.tenant, ["district_staff"], [city.stations[2].district_scope], sub="user:8891")
    seen = await api.gql("query($id: ID!) { deputy(id: $id) { name } }", {"id": deputy_id}, sibling)
    assert seen["deputy"] is None
    listed = await api.gql("{ deputies { totalCount edges { node { id } } } }", token=sibling)
    assert deputy_id not in [e["node"]["id"] for e in listed["deputies"]["edges"]]

    missing = str(encode_id("Deputy", 987_654_321))
    own_station = city.stations[2].id
    answers = [await link(api, sibling, key, own_station) for key in (deputy_id, missing)]
    assert answers[0]["code"] == answers[1]["code"] == "NOT_FOUND"
    assert answers[0]["message"].replace(deputy_id, "?") == answers[1]["message"].replace(missing, "?")
    renamed = await api.gql(
        f'mutation($id: ID!) {{ updateDeputy(id: $id, input: {{name: "改名"}}) {{ __typename {FIELDS} }} }}',
        {"id": deputy_id},
        sibling,
    )
    assert renamed["updateDeputy"]["code"] == "NOT_FOUND"
    (row,) = select_rows(
        owner_dsn, "SELECT name FROM deputies WHERE id = %s", _key(owner_dsn, city, made["deputy"]["name"])
    )
    assert row[0] == made["deputy"]["name"]


async def test_team_sizes_outside_three_to_five_are_reported(api: Api, city: City, owner_dsn: str) -> None:
    staff = street_staff(api, city, 2)
    street = await street_id(owner_dsn, city, 2)
    made = await create(api, staff, nodeId=street)
    deputy_id = made["deputy"]["id"]

    async def reported() -> dict[str, int]:
        data = await api.gql(
            "query($n: ID) { deputyTeamSizes(nodeId: $n) { deputy { id } volunteers } }", {"n": street}, staff
        )
        return {item["deputy"]["id"]: item["volunteers"] for item in data["deputyTeamSizes"]}

    assert (await reported())[deputy_id] == 0
    for n in range(3):
        added = await api.gql(
            VOLUNTEER,
            {"input": {"deputyId": deputy_id, "name": f"志愿者{n}", "skills": ["education"]}},
            staff,
        )
        assert added["addDeputyVolunteer"]["__typename"] == "DeputyVolunteerPayload", added
    assert deputy_id not in await reported()
    bad = await api.gql(VOLUNTEER, {"input": {"deputyId": deputy_id, "name": "x", "skills": ["?"]}}, staff)
    assert bad["addDeputyVolunteer"]["code"] == "INVALID_INPUT"


async def test_a_request_goes_to_the_best_matching_deputy_who_can_act_on_it(
    api: Api, city: City, owner_dsn: str
) -> None:
    staff = street_staff(api, city, 1)
    station = city.stations[1]
    street = await street_id(owner_dsn, city, 1)
    # The station's deputy account (tests.requests_city) gets a record with the fitting skill; a second
    # linked deputy teaches; a third fits too but is suspended.
    fitting = await create(api, staff, nodeId=street, skills=["law"], principal=station.deputy)
    teacher = await create(api, staff, nodeId=street, skills=["education"], principal="user:8897")
    suspended = await create(api, staff, nodeId=street, skills=["law", "mediation"], principal="user:8898")
    for made in (fitting, teacher, suspended):
        assert made["__typename"] == "DeputyPayload", made
        assert (await link(api, staff, made["deputy"]["id"], station.id))["__typename"] == "DeputyPayload"
    district = api.token(city.tenant, ["district_staff"], [station.district_scope], sub="user:8896")
    paused = await api.gql(
        f"mutation($d: ID!) {{ setDeputyRoutingSuspended(deputyId: $d, suspended: true) {{ __typename"
        f" ... on DeputyPayload {{ deputy {{ routingSuspendedAt }} }} {FIELDS} }} }}",
        {"d": suspended["deputy"]["id"]},
        district,
    )
    assert paused["setDeputyRoutingSuspended"]["deputy"]["routingSuspendedAt"] is not None
    admin = api.token(city.tenant, ["city_admin"])
    rule = await api.gql(
        "mutation($input: RoutingRuleInput!) { setRoutingRule(input: $input) { __typename } }",
        {
            "input": {
                "nodeId": encode_id("Station", station.id),
                "category": "disputes",
                "responsible": "DEPUTY",
            }
        },
        admin,
    )
    assert rule["setRoutingRule"]["__typename"] == "RoutingRulePayload"

    submitted = await api.gql(
        "mutation($input: SubmitRequestInput!) { submitRequest(input: $input) {"
        " ... on SubmitRequestPayload { ticket } } }",
        {
            "input": {
                "tenant": city.tenant.code,
                "category": "disputes",
                "description": "邻里纠纷",
                "location": location(city, 1),
            }
        },
    )
    ticket = submitted["submitRequest"]["ticket"]
    deputy = api.token(city.tenant, ["deputy"], [station.scope], sub=station.deputy)
    seen = await api.gql(
        "query($t: String!) { request(ticket: $t) { id assignee responsible availableSteps } }",
        {"t": ticket},
        deputy,
    )
    request = seen["request"]
    assert (request["assignee"], request["responsible"]) == (station.deputy, "DEPUTY")
    assert "acceptRequest" in request["availableSteps"]
    for step, extra in (("acceptRequest", ""), ("startRequest", ""), ("resolveRequest", ', note: "已调解"')):
        done = await api.gql(
            f"mutation($id: ID!) {{ {step}(id: $id{extra}) {{ __typename {FIELDS} }} }}",
            {"id": request["id"]},
            deputy,
        )
        assert done[step]["__typename"] == "RequestPayload", done


async def test_the_deputy_list_costs_the_same_statements_however_long(
    api: Api, city: City, owner_dsn: str
) -> None:
    staff = street_staff(api, city, 3)
    street = await street_id(owner_dsn, city, 3)

    async def add_one() -> None:
        made = await create(api, staff, nodeId=street, skills=["medicine"])
        await link(api, staff, made["deputy"]["id"], city.stations[3].id)
        await api.gql(VOLUNTEER, {"input": {"deputyId": made["deputy"]["id"], "name": "志愿者"}}, staff)

    async def statements_for_list() -> tuple[int, int]:
        with api.count_statements() as statements:
            data = await api.gql(
                "{ deputies(first: 100) { totalCount edges { node { name stations { code street { name } } "
                "volunteers { name } } } } }",
                token=staff,
            )
        return len(data["deputies"]["edges"]), len(statements)

    for _ in range(2):
        await add_one()
    few, few_statements = await statements_for_list()
    for _ in range(3):
        await add_one()
    more, more_statements = await statements_for_list()
    assert more == few + 3
    assert more_statements == few_statements, (few_statements, more_statements)


def test_the_app_role_cannot_read_deputies_without_a_context(app_dsn: str) -> None:
    with psycopg.connect(app_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM deputies").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM deputy_stations").fetchone() == (0,)
