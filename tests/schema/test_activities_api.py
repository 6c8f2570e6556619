"""Duty activities over GraphQL, as a street committee and a deputy on a phone would use them: a report,
check-ins inside and outside the station (GCJ-02 accepted), impossible travel, verification; a reception
day announced ahead, residents told, registering and rating it; a poor average opens a rectification item.
Other districts neither read nor verify; residents see announcements, not records."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from geo.crs import CRS, from_wgs84
from schema.relay import decode_id, encode_id
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tenants.roles import Role
from tests.helpers import Api, audit_actions, create_station_user, notices_asked, select_rows
from tests.requests_city import City, build_city

_users = itertools.count(1)
FIELDS = "... on Error { code message field }"
ACTIVITY = (
    "id kind state title topics outsideBoundary impossibleTravel verificationNote householdsVisited"
    " checkins { lon lat crs outsideMeters speedKmh outsideBoundary impossibleTravel }"
    " ratings { count average } rectifications { id reason state }"
)
REPORT = f"""
mutation($input: ActivityInput!) {{ reportActivity(input: $input) {{ __typename
  ... on ActivityPayload {{ activity {{ {ACTIVITY} }} }} {FIELDS} }} }}"""
ANNOUNCE = f"""
mutation($input: ActivityInput!) {{ announceReceptionDay(input: $input) {{ __typename
  ... on ActivityPayload {{ activity {{ {ACTIVITY} }} }} {FIELDS} }} }}"""
CHECK_IN = f"""
mutation($id: ID!, $location: LocationInput!, $at: DateTime) {{
  checkIn(id: $id, location: $location, at: $at) {{ __typename
  ... on CheckinPayload {{ warnings checkin {{ outsideBoundary impossibleTravel outsideMeters speedKmh }}
    activity {{ outsideBoundary impossibleTravel }} }} {FIELDS} }} }}"""
VERIFY = f"""
mutation($id: ID!, $verdict: Verdict!, $note: String) {{
  verifyActivity(id: $id, verdict: $verdict, note: $note) {{
  __typename ... on ActivityPayload {{ activity {{ state verificationNote }} }} {FIELDS} }} }}"""
REGISTER = f"""
mutation($id: ID!, $topic: String) {{ registerForReceptionDay(id: $id, topic: $topic) {{ __typename
  ... on RegistrationPayload {{ registration {{ topic }} }} {FIELDS} }} }}"""
RATE = f"""
mutation($id: ID!, $score: Int!) {{ rateActivity(id: $id, score: $score) {{ __typename
  ... on RatingPayload {{ average }} {FIELDS} }} }}"""


@pytest.fixture(scope="module")
async def city(database: Database) -> City:
    return await build_city(database, "dutycity")


def _street(owner_dsn: str, city: City, k: int) -> str:
    (row,) = select_rows(
        owner_dsn,
        "SELECT id FROM streets WHERE tenant_id = %s AND scope = %s::ltree",
        city.tenant.tenant_id,
        city.stations[k].street_scope,
    )
    return str(encode_id("Street", int(row[0])))


def staff_of(api: Api, city: City, k: int) -> str:
    return api.token(city.tenant, ["street_staff"], [city.stations[k].street_scope], sub=f"user:{6600 + k}")


async def linked_deputy(api: Api, city: City, owner_dsn: str, k: int) -> tuple[str, str]:
    """A deputy with an account, kept by station k's street and linked to it: (deputy id, token)."""
    principal = f"user:{6700 + next(_users)}"
    staff = staff_of(api, city, k)
    made = await api.gql(
        "mutation($input: CreateDeputyInput!) { createDeputy(input: $input) {"
        " ... on DeputyPayload { deputy { id } } } }",
        {
            "input": {
                "name": "代表",
                "level": "DISTRICT",
                "termStart": "2022-01-01",
                "nodeId": _street(owner_dsn, city, k),
                "principal": principal,
            }
        },
        staff,
    )
    deputy_id = made["createDeputy"]["deputy"]["id"]
    linked = await api.gql(
        "mutation($d: ID!, $s: ID!) { linkDeputyToStation(deputyId: $d, stationId: $s) { __typename } }",
        {"d": deputy_id, "s": encode_id("Station", city.stations[k].id)},
        staff,
    )
    assert linked["linkDeputyToStation"]["__typename"] == "DeputyPayload"
    return deputy_id, api.token(city.tenant, ["deputy"], [city.stations[k].scope], sub=principal)


def activity_input(city: City, k: int, deputy_id: str, **given: Any) -> dict[str, Any]:
    return {
        "deputyId": deputy_id,
        "stationId": encode_id("Station", city.stations[k].id),
        "kind": "VISIT",
        "title": "走访独居老人",
        "startsAt": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
        "householdsVisited": 5,
        **given,
    }


def _ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


async def test_a_deputy_checks_in_inside_and_outside_and_staff_verify(
    api: Api, city: City, owner_dsn: str
) -> None:
    deputy_id, deputy = await linked_deputy(api, city, owner_dsn, 0)
    reported = (await api.gql(REPORT, {"input": activity_input(city, 0, deputy_id)}, deputy))[
        "reportActivity"
    ]
    assert reported["__typename"] == "ActivityPayload", reported
    activity = reported["activity"]
    assert (activity["state"], activity["householdsVisited"]) == ("REPORTED", 5)

    lon, lat = from_wgs84(*city.point(0), CRS.GCJ02)
    inside = (
        await api.gql(
            CHECK_IN,
            {"id": activity["id"], "location": {"lon": lon, "lat": lat, "crs": "gcj02"}, "at": _ago(50)},
            deputy,
        )
    )["checkIn"]
    assert inside["__typename"] == "CheckinPayload", inside
    assert inside["warnings"] == [] and inside["checkin"]["outsideMeters"] == 0
    # One minute later, three kilometres away in another station: outside, and faster than 60 km/h.
    far_lon, far_lat = city.point(3)
    away = (
        await api.gql(
            CHECK_IN,
            {"id": activity["id"], "location": {"lon": far_lon, "lat": far_lat}, "at": _ago(49)},
            deputy,
        )
    )["checkIn"]
    assert away["checkin"]["outsideBoundary"] and away["checkin"]["impossibleTravel"], away
    assert away["checkin"]["speedKmh"] > 60 and len(away["warnings"]) == 2
    assert away["activity"] == {"outsideBoundary": True, "impossibleTravel": True}

    out_lon, out_lat = city.outside
    refused = (
        await api.gql(CHECK_IN, {"id": activity["id"], "location": {"lon": out_lon, "lat": out_lat}}, deputy)
    )["checkIn"]
    assert (refused["code"], refused["field"]) == ("INVALID_INPUT", "location")
    future = (
        await api.gql(
            CHECK_IN,
            {"id": activity["id"], "location": {"lon": far_lon, "lat": far_lat}, "at": _ago(-60)},
            deputy,
        )
    )["checkIn"]
    assert (future["code"], future["field"]) == ("INVALID_INPUT", "at")
    unknown_crs = (
        await api.gql(
            CHECK_IN, {"id": activity["id"], "location": {"lon": lon, "lat": lat, "crs": "mars"}}, deputy
        )
    )["checkIn"]
    assert unknown_crs["field"] == "crs"

    staff = staff_of(api, city, 0)
    bare = (await api.gql(VERIFY, {"id": activity["id"], "verdict": "VERIFIED"}, staff))["verifyActivity"]
    assert (bare["code"], bare["field"]) == ("INVALID_INPUT", "note"), "a flagged check-in needs a note"
    own = (await api.gql(VERIFY, {"id": activity["id"], "verdict": "VERIFIED", "note": "x"}, deputy))[
        "verifyActivity"
    ]
    assert own["code"] == "FORBIDDEN"
    done = (
        await api.gql(
            VERIFY, {"id": activity["id"], "verdict": "VERIFIED", "note": "走访记录与居民核对属实"}, staff
        )
    )["verifyActivity"]
    assert done["activity"]["state"] == "VERIFIED", done
    again = (await api.gql(VERIFY, {"id": activity["id"], "verdict": "REJECTED", "note": "x"}, staff))[
        "verifyActivity"
    ]
    assert again["code"] == "ILLEGAL_TRANSITION"
    seen = await api.gql(
        f"query($id: ID!) {{ node(id: $id) {{ ... on Activity {{ {ACTIVITY} }} }} }}",
        {"id": activity["id"]},
        deputy,
    )
    assert [c["crs"] for c in seen["node"]["checkins"]] == ["GCJ02", "WGS84"]
    assert abs(seen["node"]["checkins"][0]["lon"] - city.point(0)[0]) < 1e-4, "stored in WGS84"
    key = int(select_rows(owner_dsn, "SELECT max(id) FROM activities")[0][0])
    assert await audit_actions(owner_dsn, city.tenant.tenant_id, f"activity:{key}") == [
        "activity.reported",
        "activity.checked_in",
        "activity.checked_in",
        "activity.verified",
    ]


async def test_a_rejected_or_sent_back_activity_and_bad_reports(api: Api, city: City, owner_dsn: str) -> None:
    deputy_id, deputy = await linked_deputy(api, city, owner_dsn, 1)
    staff = staff_of(api, city, 1)
    talk = (await api.gql(REPORT, {"input": activity_input(city, 1, deputy_id, kind="POLICY_TALK")}, deputy))[
        "reportActivity"
    ]["activity"]
    reasonless = (await api.gql(VERIFY, {"id": talk["id"], "verdict": "MORE"}, staff))["verifyActivity"]
    assert reasonless["field"] == "note"
    more = (await api.gql(VERIFY, {"id": talk["id"], "verdict": "MORE", "note": "请补充签到表"}, staff))[
        "verifyActivity"
    ]
    assert more["activity"]["state"] == "MORE_REQUESTED"
    evidence = await api.gql(
        "mutation($id: ID!, $input: EvidenceInput!) { addActivityEvidence(id: $id, input: $input) {"
        f" __typename ... on ActivityPayload {{ activity {{ state }} }} {FIELDS} }} }}",
        {"id": talk["id"], "input": {"photoUrls": ["https://photos.example.cn/1.jpg"], "attendees": 30}},
        deputy,
    )
    assert evidence["addActivityEvidence"]["activity"]["state"] == "REPORTED"
    rejected = (
        await api.gql(VERIFY, {"id": talk["id"], "verdict": "REJECTED", "note": "签到表不符"}, staff)
    )["verifyActivity"]
    assert rejected["activity"]["state"] == "REJECTED"

    before = select_rows(owner_dsn, "SELECT count(*) FROM activities")[0][0]
    for given, field in (
        ({"kind": "PROBLEM_SOLVED"}, "requestId"),
        ({"kind": "MEETING"}, "linked"),
        ({"kind": "RECEPTION"}, "kind"),
        ({"startsAt": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "startsAt"),
        ({"householdsVisited": -1}, "householdsVisited"),
        ({"photoUrls": ["ftp://x"]}, "photoUrls"),
        ({"title": " "}, "title"),
    ):
        answer = (await api.gql(REPORT, {"input": activity_input(city, 1, deputy_id, **given)}, deputy))[
            "reportActivity"
        ]
        assert (answer["code"], answer["field"]) == ("INVALID_INPUT", field), (given, answer)
    elsewhere = (await api.gql(REPORT, {"input": activity_input(city, 0, deputy_id)}, deputy))[
        "reportActivity"
    ]
    assert elsewhere["code"] == "NOT_FOUND", "a station outside the deputy's scope"
    assert select_rows(owner_dsn, "SELECT count(*) FROM activities")[0][0] == before


async def _resident(database: Database, city: City, k: int) -> str:
    context = TenantContext.whole_tenant(city.tenant.tenant_id, "system:test")
    n = next(_users)
    async with unit_of_work(database, context) as session:
        user = await create_station_user(
            session,
            city.tenant.tenant_id,
            city.stations[k].scope,
            f"resident{n}",
            "居民",
            password="pw-123456",
            role=Role.RESIDENT,
        )
    return f"user:{user.id}"


async def test_a_reception_day_is_announced_registered_rated_and_rectified(
    api: Api, city: City, owner_dsn: str, database: Database
) -> None:
    deputy_id, deputy = await linked_deputy(api, city, owner_dsn, 0)
    neighbour = await _resident(database, city, 0)
    resident = api.token(city.tenant, ["resident"], [city.stations[0].scope], sub=neighbour)
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    ahead = (datetime.now(UTC) + timedelta(days=4)).isoformat()
    reception = {"kind": "RECEPTION", "title": "代表接待日", "topics": ["加装电梯", "停车"]}
    early = (
        await api.gql(
            ANNOUNCE, {"input": activity_input(city, 0, deputy_id, startsAt=soon, **reception)}, deputy
        )
    )["announceReceptionDay"]
    assert (early["code"], early["field"]) == ("INVALID_INPUT", "startsAt") and "3 days" in early["message"]
    announced = (
        await api.gql(
            ANNOUNCE, {"input": activity_input(city, 0, deputy_id, startsAt=ahead, **reception)}, deputy
        )
    )["announceReceptionDay"]["activity"]
    assert announced["state"] == "PLANNED"
    key = int(select_rows(owner_dsn, "SELECT max(id) FROM activities")[0][0])
    told = await notices_asked(owner_dsn, city.tenant.tenant_id, f"activity:{key}")
    assert neighbour in [notice["recipient"] for notice in told]

    days = await api.gql(
        "query($s: ID!) { receptionDays(stationId: $s) { id title topics } }",
        {"s": encode_id("Station", city.stations[0].id)},
        resident,
    )
    assert announced["id"] in [d["id"] for d in days["receptionDays"]]
    wrong = (await api.gql(REGISTER, {"id": announced["id"], "topic": "养狗"}, resident))[
        "registerForReceptionDay"
    ]
    assert wrong["field"] == "topic"
    registered = (await api.gql(REGISTER, {"id": announced["id"], "topic": "停车"}, resident))[
        "registerForReceptionDay"
    ]
    assert registered["registration"]["topic"] == "停车"
    twice = (await api.gql(REGISTER, {"id": announced["id"]}, resident))["registerForReceptionDay"]
    assert twice["code"] == "CONFLICT"
    sibling = api.token(city.tenant, ["resident"], [city.stations[2].scope], sub="user:6690")
    far = (await api.gql(REGISTER, {"id": announced["id"]}, sibling))["registerForReceptionDay"]
    assert far["code"] == "NOT_FOUND"
    response = await api.post("{ activities { totalCount } }", token=resident)
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    hidden = await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": announced["id"]}, resident)
    assert hidden["node"] is None, "a resident reads announcements, not the record"

    visit = (await api.gql(REPORT, {"input": activity_input(city, 0, deputy_id)}, deputy))["reportActivity"][
        "activity"
    ]
    other = api.token(city.tenant, ["resident"], [city.stations[0].scope], sub="user:6691")
    assert (await api.gql(RATE, {"id": visit["id"], "score": 85}, resident))["rateActivity"]["average"] == 85
    assert (await api.gql(RATE, {"id": visit["id"], "score": 55}, other))["rateActivity"]["average"] == 70
    assert (await api.gql(RATE, {"id": visit["id"], "score": 90}, other))["rateActivity"][
        "code"
    ] == "CONFLICT"
    assert (await api.gql(RATE, {"id": visit["id"], "score": 101}, sibling))["rateActivity"][
        "code"
    ] == "NOT_FOUND"
    assert (await api.gql(RATE, {"id": visit["id"], "score": 100}, deputy))["rateActivity"][
        "code"
    ] == "FORBIDDEN"

    staff = staff_of(api, city, 0)
    seen = await api.gql(
        f"query($id: ID!) {{ node(id: $id) {{ ... on Activity {{ {ACTIVITY} }} }} }}",
        {"id": visit["id"]},
        staff,
    )
    assert seen["node"]["ratings"] == {"count": 2, "average": 70.0}
    (item,) = seen["node"]["rectifications"]
    assert item["state"] == "open" and "80" in item["reason"]
    close = (
        "mutation($id: ID!, $note: String!) { closeRectification(id: $id, note: $note) {"
        f" __typename ... on RectificationPayload {{ rectification {{ state }} }} {FIELDS} }} }}"
    )
    blank = (await api.gql(close, {"id": item["id"], "note": " "}, staff))["closeRectification"]
    assert blank["field"] == "note"
    sibling_staff = staff_of(api, city, 2)
    assert (await api.gql(close, {"id": item["id"], "note": "x"}, sibling_staff))["closeRectification"][
        "code"
    ] == "NOT_FOUND"
    closed = (await api.gql(close, {"id": item["id"], "note": "已回访整改"}, staff))["closeRectification"]
    assert closed["rectification"]["state"] == "closed"


async def test_another_district_neither_reads_nor_verifies(api: Api, city: City, owner_dsn: str) -> None:
    deputy_id, deputy = await linked_deputy(api, city, owner_dsn, 1)
    visit = (await api.gql(REPORT, {"input": activity_input(city, 1, deputy_id)}, deputy))["reportActivity"][
        "activity"
    ]
    sibling = api.token(city.tenant, ["district_staff"], [city.stations[2].district_scope], sub="user:6692")
    assert (await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": visit["id"]}, sibling))[
        "node"
    ] is None
    listed = await api.gql("{ activities { edges { node { id } } } }", token=sibling)
    assert visit["id"] not in [e["node"]["id"] for e in listed["activities"]["edges"]]
    verdict = (await api.gql(VERIFY, {"id": visit["id"], "verdict": "VERIFIED"}, sibling))["verifyActivity"]
    assert verdict["code"] == "NOT_FOUND"
    _, stranger = await linked_deputy(api, city, owner_dsn, 2)
    lon, lat = city.point(1)
    checked = (await api.gql(CHECK_IN, {"id": visit["id"], "location": {"lon": lon, "lat": lat}}, stranger))[
        "checkIn"
    ]
    assert checked["code"] == "NOT_FOUND"
    (state,) = select_rows(
        owner_dsn,
        "SELECT state FROM activities WHERE id = %s",
        decode_id(visit["id"])[1],
    )
    assert state == ("reported",)


async def test_the_activity_list_costs_the_same_statements_however_long(
    api: Api, city: City, owner_dsn: str
) -> None:
    deputy_id, deputy = await linked_deputy(api, city, owner_dsn, 3)
    lon, lat = city.point(3)

    async def add(n: int) -> None:
        for _ in range(n):
            made = (await api.gql(REPORT, {"input": activity_input(city, 3, deputy_id)}, deputy))[
                "reportActivity"
            ]
            await api.gql(
                CHECK_IN, {"id": made["activity"]["id"], "location": {"lon": lon, "lat": lat}}, deputy
            )

    async def statements() -> tuple[int, int]:
        with api.count_statements() as seen:
            data = await api.gql(
                f"{{ activities(first: 100) {{ edges {{ node {{ {ACTIVITY} }} }} }} }}", token=deputy
            )
        return len(data["activities"]["edges"]), len(seen)

    await add(2)
    few, few_statements = await statements()
    await add(3)
    more, more_statements = await statements()
    assert more == few + 3
    assert more_statements == few_statements, (few_statements, more_statements)


FIVE_ONES = """query($n: ID, $day: Date) { fiveOnes(nodeId: $n, asOf: $day) { deputies compliant share
  items { deputy { id } compliant owed { kind required done missing periodStart due } } } }"""
SAVE_RULE = """mutation($kind: ActivityKind!, $period: String!, $required: Int!) {
  saveFiveOnesRule(kind: $kind, period: $period, required: $required) { __typename
  ... on FiveOnesRulesPayload { rules { kind period required } } ... on Error { code field } } }"""


async def test_five_ones_count_verified_activities_and_follow_the_citys_rules(
    api: Api, city: City, owner_dsn: str
) -> None:
    deputy_id, deputy = await linked_deputy(api, city, owner_dsn, 2)
    staff = staff_of(api, city, 2)
    visit = (await api.gql(REPORT, {"input": activity_input(city, 2, deputy_id)}, deputy))["reportActivity"]
    verified = await api.gql(VERIFY, {"id": visit["activity"]["id"], "verdict": "VERIFIED"}, staff)
    assert verified["verifyActivity"]["activity"]["state"] == "VERIFIED"
    await api.gql(REPORT, {"input": activity_input(city, 2, deputy_id, kind="POLICY_TALK")}, deputy)

    async def mine(day: str | None = None) -> dict[str, Any]:
        data = await api.gql(FIVE_ONES, {"n": _street(owner_dsn, city, 2), "day": day}, staff)
        (item,) = [i for i in data["fiveOnes"]["items"] if i["deputy"]["id"] == deputy_id]
        return item  # type: ignore[no-any-return]

    item = await mine()
    owed = {o["kind"]: o for o in item["owed"]}
    assert set(owed) == {"VISIT", "POLICY_TALK", "RESEARCH", "PROBLEM_SOLVED", "DUTY_REPORT"}
    assert (owed["VISIT"]["done"], owed["VISIT"]["missing"]) == (1, 0)
    assert owed["POLICY_TALK"]["missing"] == 1, "an unverified talk counts for nothing"
    assert item["compliant"] is False
    last_year = (datetime.now(UTC).date() - timedelta(days=400)).isoformat()
    assert {o["kind"]: o["done"] for o in (await mine(last_year))["owed"]}["VISIT"] == 0

    admin = api.token(city.tenant, ["city_admin"], sub="user:6699")
    bound = api.token(city.tenant, ["city_admin"], [city.stations[0].district_scope], sub="user:6698")
    refused = await api.gql(SAVE_RULE, {"kind": "VISIT", "period": "month", "required": 2}, bound)
    assert refused["saveFiveOnesRule"]["code"] == "FORBIDDEN"
    bad = await api.gql(SAVE_RULE, {"kind": "VISIT", "period": "week", "required": 1}, admin)
    assert bad["saveFiveOnesRule"]["field"] == "period"
    for kind in ("POLICY_TALK", "RESEARCH", "PROBLEM_SOLVED", "DUTY_REPORT"):
        saved = await api.gql(SAVE_RULE, {"kind": kind, "period": "year", "required": 0}, admin)
        assert saved["saveFiveOnesRule"]["__typename"] == "FiveOnesRulesPayload", saved
    assert [r["kind"] for r in saved["saveFiveOnesRule"]["rules"]] == ["VISIT"]
    assert (await mine())["compliant"] is True
    raised = await api.gql(SAVE_RULE, {"kind": "VISIT", "period": "month", "required": 2}, admin)
    assert raised["saveFiveOnesRule"]["rules"] == [{"kind": "VISIT", "period": "month", "required": 2}]
    assert (await mine())["owed"][0]["missing"] == 1
