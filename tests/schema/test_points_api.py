"""The points ledger over GraphQL, as a street committee would use it: a verified visit earns the city's
points, a rejected report loses some, a request the deputy resolved to the submitter's satisfaction earns
more; a new rule holds from its day on and leaves old entries alone; corrections are new entries; the app
role cannot change or remove an entry; the leaderboard ranks ties alike; other streets see and correct
nothing."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from schema.relay import decode_id, encode_id
from services.celery_app import celery_app
from tenants.db import Database
from tests.helpers import Api, audit_actions, select_rows, wait_for
from tests.requests_city import City, build_city
from tests.schema.test_activities_api import REPORT, VERIFY, activity_input, linked_deputy, staff_of

FIELDS = "... on Error { code message field }"
POINTS = """
query($d: ID!, $first: Int, $after: String) { deputyPoints(deputyId: $d, first: $first, after: $after) {
  balance entries { totalCount pageInfo { hasNextPage endCursor }
    edges { node { id event points sourceKind sourceId ruleEffectiveFrom correctsId reason } } } } }"""
SAVE_RULE = f"""
mutation($event: String!, $points: Int!, $from: Date) {{
  savePointRule(event: $event, points: $points, effectiveFrom: $from) {{ __typename
  ... on PointRulePayload {{ rule {{ event points effectiveFrom }} }} {FIELDS} }} }}"""
CORRECT = f"""
mutation($id: ID!, $points: Int!, $reason: String!) {{
  correctPoints(entryId: $id, points: $points, reason: $reason) {{ __typename
  ... on PointEntryPayload {{ entry {{ id event points correctsId reason }} }} {FIELDS} }} }}"""
BOARD = """
query($node: ID, $period: LeaderboardPeriod!, $first: Int, $after: String) {
  pointsLeaderboard(nodeId: $node, period: $period, first: $first, after: $after) { periodStart periodEnd
    standings { totalCount pageInfo { hasNextPage endCursor }
      edges { node { rank points entries deputy { id } } } } } }"""


@pytest.fixture(scope="module")
async def city(database: Database) -> City:
    return await build_city(database, "pointcity")


async def verified_visit(
    api: Api, city: City, k: int, deputy_id: str, deputy: str, verdict: str = "VERIFIED"
) -> str:
    reported = await api.gql(REPORT, {"input": activity_input(city, k, deputy_id)}, deputy)
    activity_id = str(reported["reportActivity"]["activity"]["id"])
    note = None if verdict == "VERIFIED" else "无现场记录"
    done = await api.gql(
        VERIFY, {"id": activity_id, "verdict": verdict, "note": note}, staff_of(api, city, k)
    )
    assert done["verifyActivity"]["__typename"] == "ActivityPayload", done
    return activity_id


def _key(global_id: str) -> int:
    return decode_id(global_id)[1]


async def refused_code(api: Api, query: str, variables: dict[str, Any], token: str) -> str:
    """The code a refused operation answers with: a mutation's error payload, or a query's one error."""
    body = (await api.post(query, variables, token)).json()
    if body.get("errors"):
        (error,) = body["errors"]
        return str(error["extensions"]["code"])
    (payload,) = body["data"].values()
    return str(payload["code"])


async def entries(api: Api, deputy_id: str, token: str) -> dict[str, Any]:
    found: dict[str, Any] = (await api.gql(POINTS, {"d": deputy_id}, token))["deputyPoints"]
    return found


async def test_verified_work_earns_by_the_rule_of_its_day_and_corrections_are_new_entries(
    api: Api, city: City, owner_dsn: str, app_dsn: str
) -> None:
    deputy_id, deputy = await linked_deputy(api, city, owner_dsn, 0)
    staff = staff_of(api, city, 0)
    visit = await verified_visit(api, city, 0, deputy_id, deputy)
    await verified_visit(api, city, 0, deputy_id, deputy, verdict="REJECTED")
    mine = await entries(api, deputy_id, deputy)
    assert mine["balance"] == 0  # a visit's 2, a rejected report's -2
    events = {e["node"]["event"]: e["node"] for e in mine["entries"]["edges"]}
    assert set(events) == {"activity.visit", "activity.rejected"}
    assert (
        events["activity.visit"]["sourceId"] == visit
        and events["activity.visit"]["ruleEffectiveFrom"] is None
    )
    visit_entry = events["activity.visit"]["id"]
    assert await audit_actions(owner_dsn, city.tenant.tenant_id, f"point_entry:{_key(visit_entry)}") == [
        "points.awarded"
    ]

    admin = api.token(city.tenant, ["city_admin"])
    today = datetime.now(UTC).astimezone().date()
    past = await api.gql(SAVE_RULE, {"event": "activity.visit", "points": 4, "from": "2020-01-01"}, admin)
    assert (past["savePointRule"]["code"], past["savePointRule"]["field"]) == (
        "INVALID_INPUT",
        "effectiveFrom",
    )
    unknown = await api.gql(SAVE_RULE, {"event": "activity.nap", "points": 4}, admin)
    assert unknown["savePointRule"]["code"] == "INVALID_INPUT"
    huge = await api.gql(SAVE_RULE, {"event": "activity.visit", "points": 1000}, admin)
    assert huge["savePointRule"]["field"] == "points"
    saved = await api.gql(SAVE_RULE, {"event": "activity.visit", "points": 4}, admin)
    assert saved["savePointRule"]["rule"]["points"] == 4, saved
    assert await refused_code(api, SAVE_RULE, {"event": "activity.visit", "points": 9}, staff) == "FORBIDDEN"
    await verified_visit(api, city, 0, deputy_id, deputy)
    mine = await entries(api, deputy_id, deputy)
    visits = sorted(
        e["node"]["points"] for e in mine["entries"]["edges"] if e["node"]["event"] == "activity.visit"
    )
    assert visits == [2, 4] and mine["balance"] == 4
    used = await api.gql(SAVE_RULE, {"event": "activity.visit", "points": 5}, admin)
    assert used["savePointRule"]["code"] == "CONFLICT"
    later = await api.gql(
        SAVE_RULE,
        {"event": "activity.visit", "points": 5, "from": (today + timedelta(days=30)).isoformat()},
        admin,
    )
    assert later["savePointRule"]["__typename"] == "PointRulePayload"
    rules = (
        await api.gql("{ pointRules { rules { event points } scheduled { event points } } }", token=staff)
    )["pointRules"]
    assert {"event": "activity.visit", "points": 4} in rules["rules"]
    assert rules["scheduled"] == [{"event": "activity.visit", "points": 5}]

    no_reason = await api.gql(CORRECT, {"id": visit_entry, "points": -1, "reason": "  "}, staff)
    assert no_reason["correctPoints"]["field"] == "reason"
    zero = await api.gql(CORRECT, {"id": visit_entry, "points": 0, "reason": "x"}, staff)
    assert zero["correctPoints"]["field"] == "points"
    raise_own = {"id": visit_entry, "points": 5, "reason": "自己加分"}
    assert await refused_code(api, CORRECT, raise_own, deputy) == "FORBIDDEN"
    corrected = await api.gql(CORRECT, {"id": visit_entry, "points": -1, "reason": "走访户数重复计算"}, staff)
    entry = corrected["correctPoints"]["entry"]
    assert (entry["event"], entry["points"], entry["correctsId"]) == ("correction", -1, visit_entry)
    mine = await entries(api, deputy_id, deputy)
    assert mine["balance"] == 3 and mine["entries"]["totalCount"] == 4
    assert {e["node"]["points"] for e in mine["entries"]["edges"] if e["node"]["id"] == visit_entry} == {2}
    assert await audit_actions(owner_dsn, city.tenant.tenant_id, f"point_entry:{_key(entry['id'])}") == [
        "points.corrected"
    ]

    # The ledger is append-only for the app: with a context that sees the rows, changing one is refused.
    with psycopg.connect(app_dsn) as conn:
        conn.execute("SELECT set_config('app.tenant_id', %s, false)", (str(city.tenant.tenant_id),))
        conn.execute("SELECT set_config('app.scopes', %s, false)", (f"{{{city.tenant.scope}}}",))
        assert conn.execute("SELECT count(*) FROM point_entries").fetchone()[0] >= 4  # type: ignore[index]
        for statement in ("UPDATE point_entries SET points = 100", "DELETE FROM point_entries"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
            conn.execute("SELECT set_config('app.tenant_id', %s, false)", (str(city.tenant.tenant_id),))
            conn.execute("SELECT set_config('app.scopes', %s, false)", (f"{{{city.tenant.scope}}}",))


async def _assigned_request(api: Api, city: City, k: int, principal: str, resident: str) -> str:
    """A resident's request at station k, accepted and assigned to `principal` by the liaison; its id."""
    lon, lat = city.point(k)
    submitted = await api.gql(
        "mutation($input: SubmitRequestInput!) { submitRequest(input: $input) {"
        " ... on SubmitRequestPayload { ticket } } }",
        {
            "input": {
                "category": "environment",
                "description": "路灯不亮",
                "location": {"longitude": lon, "latitude": lat},
            }
        },
        resident,
    )
    ticket = submitted["submitRequest"]["ticket"]
    admin = api.token(city.tenant, ["city_admin"])
    found = await api.gql("query($t: String!) { request(ticket: $t) { id } }", {"t": ticket}, admin)
    request_id = str(found["request"]["id"])
    liaison = api.token(city.tenant, ["station_liaison"], [city.stations[k].scope], sub="user:7432")
    for step, extra in (("acceptRequest", ""), ("assignRequest", f', assignee: "{principal}"')):
        done = await api.gql(
            f"mutation($id: ID!) {{ {step}(id: $id{extra}) {{ __typename {FIELDS} }} }}",
            {"id": request_id},
            liaison,
        )
        assert done[step]["__typename"] == "RequestPayload", done
    return request_id


async def test_a_deputys_requests_earn_when_satisfied_and_lose_when_overdue(
    api: Api, city: City, owner_dsn: str, worker: subprocess.Popen[bytes]
) -> None:
    deputy_id, deputy = await linked_deputy(api, city, owner_dsn, 1)
    ((principal,),) = select_rows(owner_dsn, "SELECT principal FROM deputies WHERE id = %s", _key(deputy_id))
    resident = api.token(city.tenant, ["resident"], [city.tenant.scope], sub="user:7431")
    request_id = await _assigned_request(api, city, 1, principal, resident)
    liaison = api.token(city.tenant, ["station_liaison"], [city.stations[1].scope], sub="user:7432")
    for step, extra in (("startRequest", ""), ("resolveRequest", ', note: "已修复"')):
        done = await api.gql(
            f"mutation($id: ID!) {{ {step}(id: $id{extra}) {{ __typename {FIELDS} }} }}",
            {"id": request_id},
            liaison,
        )
        assert done[step]["__typename"] == "RequestPayload", done
    rated = await api.gql(
        "mutation($id: ID!) { rateRequest(id: $id, score: 95, solved: true) { __typename } }",
        {"id": request_id},
        resident,
    )
    assert rated["rateRequest"]["__typename"] == "RequestPayload"
    mine = await entries(api, deputy_id, deputy)
    (earned,) = mine["entries"]["edges"]
    assert (earned["node"]["event"], earned["node"]["points"], earned["node"]["sourceId"]) == (
        "request.satisfied",
        3,
        request_id,
    )

    # Another, left to run past its resolution deadline: the worker's sweep escalates it, and it costs.
    late = await _assigned_request(api, city, 1, principal, resident)
    ((due,),) = select_rows(owner_dsn, "SELECT resolution_due_at FROM requests WHERE id = %s", _key(late))
    celery_app.send_task("timers.sweep", kwargs={"now": (due + timedelta(minutes=1)).isoformat()})

    async def penalised() -> list[tuple[Any, ...]] | None:
        found = select_rows(
            owner_dsn,
            "SELECT event, points FROM point_entries WHERE source_kind = 'request' AND source_id = %s",
            _key(late),
        )
        return found or None

    assert await wait_for(penalised) == [("request.overdue", -2)]


async def test_the_leaderboard_ranks_ties_alike_and_other_streets_see_nothing(
    api: Api, city: City, owner_dsn: str
) -> None:
    first_id, first = await linked_deputy(api, city, owner_dsn, 2)
    second_id, second = await linked_deputy(api, city, owner_dsn, 2)
    third_id, third = await linked_deputy(api, city, owner_dsn, 2)
    for deputy_id, token, visits in ((first_id, first, 2), (second_id, second, 2), (third_id, third, 1)):
        for _ in range(visits):
            await verified_visit(api, city, 2, deputy_id, token)
    staff = staff_of(api, city, 2)
    station = str(encode_id("Station", city.stations[2].id))
    board = (await api.gql(BOARD, {"node": station, "period": "MONTH"}, staff))["pointsLeaderboard"]
    ranked = [
        (e["node"]["deputy"]["id"], e["node"]["rank"], e["node"]["points"])
        for e in board["standings"]["edges"]
    ]
    rules = (await api.gql("{ pointRules { rules { event points } } }", token=staff))["pointRules"]["rules"]
    visit = next(r["points"] for r in rules if r["event"] == "activity.visit")
    tied = sorted([(first_id, 1, 2 * visit), (second_id, 1, 2 * visit)], key=lambda r: _key(r[0]))
    assert ranked == [*tied, (third_id, 3, visit)]
    page = (await api.gql(BOARD, {"node": station, "period": "MONTH", "first": 2}, staff))[
        "pointsLeaderboard"
    ]
    assert page["standings"]["pageInfo"]["hasNextPage"] is True
    rest = (
        await api.gql(
            BOARD,
            {
                "node": station,
                "period": "MONTH",
                "first": 2,
                "after": page["standings"]["pageInfo"]["endCursor"],
            },
            staff,
        )
    )["pointsLeaderboard"]
    assert rest["standings"]["edges"][0]["node"]["deputy"]["id"] == third_id
    assert rest["standings"]["totalCount"] == board["standings"]["totalCount"]
    year = (await api.gql(BOARD, {"node": station, "period": "YEAR"}, staff))["pointsLeaderboard"]
    assert year["periodStart"].endswith("-01-01") and year["periodEnd"].endswith("-12-31")

    # Another district's staff: the street is outside their sight; the entries and corrections too.
    other = next(
        k for k, s in enumerate(city.stations) if s.district_scope != city.stations[2].district_scope
    )
    foreign = api.token(city.tenant, ["street_staff"], [city.stations[other].street_scope], sub="user:7440")
    assert await refused_code(api, BOARD, {"node": station, "period": "MONTH"}, foreign) == "NOT_FOUND"
    theirs = (await api.gql(BOARD, {"period": "MONTH"}, foreign))["pointsLeaderboard"]
    seen = {e["node"]["deputy"]["id"] for e in theirs["standings"]["edges"] if e["node"]["deputy"]}
    assert not seen & {first_id, second_id, third_id}
    hidden = await entries(api, first_id, foreign)
    assert (hidden["balance"], hidden["entries"]["totalCount"]) == (0, 0)
    entry_id = (await entries(api, first_id, first))["entries"]["edges"][0]["node"]["id"]
    correction = await api.gql(CORRECT, {"id": entry_id, "points": 5, "reason": "越权"}, foreign)
    assert correction["correctPoints"]["code"] == "NOT_FOUND"
    # A deputy of another station sees their own entries, not those of this station's deputies.
    _, elsewhere = await linked_deputy(api, city, owner_dsn, 3)
    colleague = await entries(api, second_id, elsewhere)
    assert colleague["entries"]["totalCount"] == 0
    resident = api.token(city.tenant, ["resident"], [city.tenant.scope], sub="user:7441")
    assert await refused_code(api, BOARD, {"period": "MONTH"}, resident) == "FORBIDDEN"


async def test_the_ledger_lists_cost_the_same_statements_however_long(
    api: Api, city: City, owner_dsn: str
) -> None:
    deputy_id, deputy = await linked_deputy(api, city, owner_dsn, 3)
    for _ in range(4):
        await verified_visit(api, city, 3, deputy_id, deputy)
    staff = staff_of(api, city, 3)
    station = str(encode_id("Station", city.stations[3].id))
    lists = {
        "points": (POINTS, {"d": deputy_id}),
        "leaderboard": (BOARD, {"node": station, "period": "YEAR"}),
        "warnings": ("query($first: Int) { deputyWarnings(first: $first) { edges { node { id } } } }", {}),
    }
    for name, (query, variables) in lists.items():
        counts = []
        for first in (1, 4):
            with api.count_statements() as statements:
                await api.gql(query, {**variables, "first": first}, staff)
            counts.append(len(statements))
        assert counts[0] == counts[1], (name, counts)
