"""Three-level mediation over GraphQL: staff, the station's deputy and the applicant with their own tokens;
success rates compared with counts kept by the test; other stations neither see nor act."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from schema.relay import encode_id
from tenants.context import TenantContext
from tenants.db import Database
from tenants.models import Station, Street
from tests.helpers import Api, TenantInfo, create_station_user

_people = itertools.count(40000)
FIELDS = "... on Error { code message field }"
CASE = "id state level mediator departments agreement"


async def street_with_stations(
    database: Database, tenant: TenantInfo, position: int
) -> tuple[int, list[tuple[int, str]]]:
    async with database.scoped(TenantContext.whole_tenant(tenant.tenant_id, "system:test")) as session:
        rows = (
            await session.execute(
                select(Station.id, Station.scope, Station.street_id).where(
                    Station.tenant_id == tenant.tenant_id
                )
            )
        ).all()
        streets = (await session.scalars(select(Street.id).where(Street.tenant_id == tenant.tenant_id))).all()
    street_id = sorted(streets)[position]
    return street_id, sorted((r[0], r[1]) for r in rows if r[2] == street_id)


async def open_case(api: Api, token: str, station_id: int, applicant: str | None = None, **extra: Any) -> Any:
    data = await api.gql(
        "mutation($input: OpenMediationCaseInput!) { openMediationCase(input: $input) { __typename"
        f" ... on MediationCasePayload {{ case {{ {CASE} }} }} {FIELDS} }} }}",
        {
            "input": {
                "stationId": encode_id("Station", station_id),
                "caseType": "NEIGHBOURS",
                "description": "噪音扰民",
                "parties": [
                    {"name": "王一", "role": "APPLICANT", "principal": applicant},
                    {"name": "赵二", "role": "RESPONDENT"},
                ],
                **extra,
            }
        },
        token,
    )
    return data["openMediationCase"]


async def outcome(api: Api, token: str, case_id: str, **given: Any) -> Any:
    data = await api.gql(
        "mutation($input: MediationOutcomeInput!) { recordMediationOutcome(input: $input) { __typename"
        f" ... on MediationCasePayload {{ case {{ {CASE} }} }} {FIELDS} }} }}",
        {"input": {"caseId": case_id, **given}},
        token,
    )
    return data["recordMediationOutcome"]


async def test_a_case_climbs_to_the_deputy_who_settles_it(
    api: Api, database: Database, alpha: TenantInfo
) -> None:
    street_id, [(station_id, station), (_, sibling)] = await street_with_stations(database, alpha, -3)
    async with database.scoped(TenantContext.whole_tenant(alpha.tenant_id, "system:test")) as session:
        user = await create_station_user(
            session, alpha.tenant_id, station, f"apideputy{next(_people)}", "代表", password="unused"
        )
    deputy_sub = f"user:{user.id}"
    staff = api.token(alpha, ["station_liaison"], [station], sub="user:920")
    deputy = api.token(alpha, ["deputy"], [station], sub=deputy_sub)
    applicant_sub = f"user:{next(_people)}"
    applicant = api.token(alpha, ["resident"], [station], sub=applicant_sub)

    assert (await open_case(api, applicant, station_id))["code"] == "FORBIDDEN"
    bad = await open_case(api, staff, station_id, deadlines=[{"level": 4, "hours": 3}])
    assert (bad["code"], bad["field"]) == ("INVALID_INPUT", "deadlines")
    case = (await open_case(api, staff, station_id, applicant_sub))["case"]
    assert (case["state"], case["level"], case["mediator"]) == ("LEVEL1", 1, "user:920")

    sitting = await api.gql(
        "mutation($input: MediationSessionInput!) { recordMediationSession(input: $input) { __typename"
        f" ... on MediationSessionPayload {{ sessionId }} {FIELDS} }} }}",
        {
            "input": {
                "caseId": case["id"],
                "heldOn": "2026-11-20",
                "participants": ["王一", "赵二"],
                "notes": "未果",
            }
        },
        staff,
    )
    assert sitting["recordMediationSession"]["__typename"] == "MediationSessionPayload"
    moved = await outcome(api, staff, case["id"], agreed=False, note="双方分歧较大")
    assert (moved["case"]["state"], moved["case"]["mediator"]) == ("LEVEL2", deputy_sub)
    settled = await outcome(api, deputy, case["id"], agreed=True, agreement="晚十点后不再施工")
    assert settled["case"]["state"] == "RESOLVED" and settled["case"]["agreement"] == "晚十点后不再施工"
    assert (await outcome(api, staff, case["id"], agreed=False))["code"] == "ILLEGAL_TRANSITION"

    detail = await api.gql(
        f'{{ mediationCase(id: "{case["id"]}") {{ parties {{ name role }}'
        " levels { level outcome mediator sessions { notes } } history { step } } }",
        token=staff,
    )
    levels = detail["mediationCase"]["levels"]
    assert [(lv["level"], lv["outcome"], lv["mediator"]) for lv in levels] == [
        (1, "FAILED", "user:920"),
        (2, "AGREEMENT", deputy_sub),
    ]
    assert levels[0]["sessions"] == [{"notes": "未果"}]
    assert [s["step"] for s in detail["mediationCase"]["history"]] == [
        "open",
        "record_session",
        "escalate_to_deputy",
        "settle",
    ]
    # The applicant follows their case and sees their own party entry, no levels and no history.
    own = await api.gql(
        f'{{ mediationCase(id: "{case["id"]}") {{ state parties {{ name }} levels {{ level }}'
        " history { step } } }",
        token=applicant,
    )
    assert own["mediationCase"] == {
        "state": "RESOLVED",
        "parties": [{"name": "王一"}],
        "levels": [],
        "history": [],
    }

    # Another station's staff and another resident see nothing and change nothing.
    intruder = api.token(alpha, ["station_liaison"], [sibling], sub="user:921")
    stranger = api.token(alpha, ["resident"], [station], sub=f"user:{next(_people)}")
    for token in (intruder, stranger):
        seen = await api.gql(f'{{ mediationCase(id: "{case["id"]}") {{ id }} }}', token=token)
        assert seen["mediationCase"] is None
    withdrawn = await api.gql(
        f'mutation {{ withdrawMediationCase(caseId: "{case["id"]}", reason: "x") {{ {FIELDS} }} }}',
        token=intruder,
    )
    assert withdrawn["withdrawMediationCase"]["code"] == "NOT_FOUND"
    assert (await open_case(api, intruder, station_id))["code"] in {"NOT_FOUND", "OUT_OF_SCOPE"}
    del street_id


async def test_mediation_stats_match_counts_kept_independently(
    api: Api, database: Database, alpha: TenantInfo
) -> None:
    street_id, stations = await street_with_stations(database, alpha, -4)
    started = datetime.now(UTC) - timedelta(seconds=1)
    expected: dict[int, list[int]] = {1: [0, 0], 2: [0, 0], 3: [0, 0]}  # level: [agreements, concluded]
    per_station: dict[str, int] = {}
    for index, (station_id, station) in enumerate(stations):
        staff = api.token(alpha, ["station_liaison"], [station], sub=f"user:93{index}")
        for failures in [0, 1, 3] if index == 0 else [2, 0]:
            case = (await open_case(api, staff, station_id))["case"]
            per_station[station] = per_station.get(station, 0) + 1
            for level in range(1, 4):
                expected[level][1] += 1
                if failures >= level:
                    await outcome(
                        api, staff, case["id"], agreed=False, deputy="user:1", departments=["区信访办"]
                    )
                    if level == 3:
                        break
                else:
                    await outcome(api, staff, case["id"], agreed=True, agreement="和解")
                    expected[level][0] += 1
                    break
    street_staff = api.token(alpha, ["street_staff"], [stations[0][1].rsplit(".", 1)[0]], sub="user:939")
    data = await api.gql(
        "query($node: ID, $from: DateTime!, $to: DateTime!) {"
        " mediationStats(nodeId: $node, from: $from, to: $to) {"
        " byLevel { level started concluded agreements failed timeouts successRate }"
        " byScope { scope name levels { level started } } } }",
        {
            "node": encode_id("Street", street_id),
            "from": started.isoformat(),
            "to": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
        },
        street_staff,
    )
    stats = data["mediationStats"]
    got = {row["level"]: [row["agreements"], row["concluded"]] for row in stats["byLevel"]}
    assert got == expected
    for row in stats["byLevel"]:
        agreements, concluded = expected[row["level"]]
        assert row["successRate"] == agreements / concluded
    assert {
        s["scope"]: next(lv["started"] for lv in s["levels"] if lv["level"] == 1) for s in stats["byScope"]
    } == (per_station)
    refused = await api.post(
        '{ mediationStats(from: "2026-01-02T00:00:00+08:00", to: "2026-01-01T00:00:00+08:00")'
        " { byLevel { level } } }",
        token=street_staff,
    )
    assert refused.json()["errors"][0]["extensions"]["code"] == "INVALID_INPUT"


async def test_a_list_of_cases_costs_the_same_statements_however_long(
    api: Api, database: Database, alpha: TenantInfo
) -> None:
    _, stations = await street_with_stations(database, alpha, -5)
    station_id, station = stations[0]
    staff = api.token(alpha, ["station_liaison"], [station], sub="user:950")
    query = (
        "{ mediationCases(first: 50) { id parties { name role } levels { level sessions { notes } } "
        "history { step } } }"
    )

    async def statements_for_list() -> tuple[int, int]:
        with api.count_statements() as statements:
            data = await api.gql(query, token=staff)
        return len(data["mediationCases"]), len(statements)

    for _ in range(2):
        await open_case(api, staff, station_id)
    few, few_statements = await statements_for_list()
    for _ in range(3):
        await open_case(api, staff, station_id)
    more, more_statements = await statements_for_list()
    assert more == few + 3
    assert more_statements == few_statements, (few_statements, more_statements)
