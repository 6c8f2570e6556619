"""A deliberation council over GraphQL, as staff and residents use it with their own tokens; other
stations' staff and residents neither see nor act."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from schema.relay import encode_id
from tenants.context import TenantContext
from tenants.db import Database
from tenants.models import Station
from tests.helpers import Api, TenantInfo

_people = itertools.count(30000)

FIELDS = "... on Error { code message field }"
DELIBERATION = "id state capacity result { attendees yes no abstain quorumMet passed approvalShare }"


async def stations(database: Database, tenant: TenantInfo) -> list[tuple[int, str]]:
    """(id, scope) of two stations of one street and one of another street."""
    async with database.scoped(TenantContext.whole_tenant(tenant.tenant_id, "system:test")) as session:
        rows = (
            await session.execute(
                select(Station.id, Station.scope).where(Station.tenant_id == tenant.tenant_id)
            )
        ).all()
    by_street: dict[str, list[tuple[int, str]]] = {}
    for station_id, scope in sorted(rows, key=lambda r: r[1]):
        by_street.setdefault(scope.rsplit(".", 1)[0], []).append((station_id, scope))
    streets = [s for s in by_street.values() if len(s) >= 2]
    return [streets[-2][0], streets[-2][1], streets[-1][0]]


def resident(api: Api, tenant: TenantInfo, scope: str) -> str:
    return api.token(tenant, ["resident"], [scope], sub=f"user:{next(_people)}")


PROPOSE = (
    "mutation($input: ProposeDeliberationInput!) { proposeDeliberation(input: $input) { __typename"
    f" ... on DeliberationPayload {{ deliberation {{ {DELIBERATION} }} }} {FIELDS} }} }}"
)


def proposal(station_id: int, topic: str, capacity: int, quorum: int) -> dict[str, Any]:
    """The input of a council at the station meeting in three hours (registration closes in two, voting
    in five)."""
    now = datetime.now(UTC)
    return {
        "nodeId": encode_id("Station", station_id),
        "topic": topic,
        "meetingAt": (now + timedelta(hours=3)).isoformat(),
        "registrationDeadline": (now + timedelta(hours=2)).isoformat(),
        "votingClosesAt": (now + timedelta(hours=5)).isoformat(),
        "capacity": capacity,
        "quorum": quorum,
    }


async def propose(api: Api, token: str, fields: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = (await api.gql(PROPOSE, {"input": fields}, token))["proposeDeliberation"]
    return result


async def register(api: Api, token: str, deliberation_id: str, **groups: Any) -> dict[str, Any]:
    details = {"ageBand": "AGE_45_59", "tenure": "OWNER", "residency": "LONG_TERM", **groups}
    data = await api.gql(
        "mutation($input: RegisterForDeliberationInput!) { registerForDeliberation(input: $input) {"
        f" __typename ... on DeliberationRegistrationPayload {{ registration {{ id status }} }}"
        f" {FIELDS} }} }}",
        {"input": {"deliberationId": deliberation_id, "displayName": "居民", **details}},
        token,
    )
    result: dict[str, Any] = data["registerForDeliberation"]
    return result


async def step(api: Api, token: str, name: str, deliberation_id: str, extra: str = "") -> dict[str, Any]:
    data = await api.gql(
        f'mutation {{ {name}(id: "{deliberation_id}"{extra}) {{ __typename'
        f" ... on DeliberationPayload {{ deliberation {{ {DELIBERATION} }} }} {FIELDS} }} }}",
        token=token,
    )
    result: dict[str, Any] = data[name]
    return result


async def test_a_council_run_by_staff_and_residents(api: Api, database: Database, alpha: TenantInfo) -> None:
    (station_id, station), (_, sibling), (_, elsewhere) = await stations(database, alpha)
    staff = api.token(alpha, ["station_liaison"], [station], sub="user:910")
    proposed = await propose(api, staff, proposal(station_id, "3号楼加装电梯", capacity=2, quorum=2))
    deliberation = proposed["deliberation"]
    key = deliberation["id"]
    assert (deliberation["state"], deliberation["capacity"], deliberation["result"]) == ("OPEN", 2, None)

    first, second, third = (resident(api, alpha, station) for _ in range(3))
    statuses = [(await register(api, t, key))["registration"]["status"] for t in (first, second, third)]
    assert statuses == ["REGISTERED", "REGISTERED", "WAITLISTED"]
    again = await register(api, first, key)
    assert again["code"] == "CONFLICT"
    listed = await api.gql("{ deliberations { id topic myRegistration { status } } }", token=third)
    assert [(d["id"], d["myRegistration"]["status"]) for d in listed["deliberations"] if d["id"] == key] == [
        (key, "WAITLISTED")
    ]
    seen_by_resident = await api.gql(
        f'{{ deliberation(id: "{key}") {{ registrations {{ status }} }} }}', token=third
    )
    assert seen_by_resident["deliberation"]["registrations"] == [{"status": "WAITLISTED"}]

    withdrawn = await api.gql(
        f'mutation {{ withdrawFromDeliberation(deliberationId: "{key}") {{ __typename'
        f" ... on DeliberationRegistrationPayload {{ registration {{ status }} }} {FIELDS} }} }}",
        token=second,
    )
    assert withdrawn["withdrawFromDeliberation"]["registration"]["status"] == "CANCELLED"
    promoted = await api.gql(
        f'{{ deliberation(id: "{key}") {{ myRegistration {{ status }} }} }}', token=third
    )
    assert promoted["deliberation"]["myRegistration"]["status"] == "REGISTERED"

    # A resident may not steer the workflow; a step out of order is refused with its code.
    assert (await step(api, first, "closeDeliberationRegistration", key))["code"] == "FORBIDDEN"
    assert (await step(api, staff, "openDeliberationVoting", key))["code"] == "ILLEGAL_TRANSITION"
    assert (await step(api, staff, "closeDeliberationRegistration", key))["deliberation"]["state"] == "CLOSED"
    seats = await api.gql(f'{{ deliberation(id: "{key}") {{ registrations {{ id status }} }} }}', token=staff)
    seated = [r["id"] for r in seats["deliberation"]["registrations"] if r["status"] == "REGISTERED"]
    assert len(seated) == 2
    ids = ", ".join(f'"{r}"' for r in seated)
    await step(api, staff, "markDeliberationAttendance", key, f", registrationIds: [{ids}]")
    await step(api, staff, "openDeliberationVoting", key)
    for token, choice in ((first, "YES"), (third, "YES")):
        voted = await api.gql(
            f'mutation {{ castDeliberationVote(deliberationId: "{key}", choice: {choice}) {{ __typename'
            f" ... on DeliberationVotePayload {{ choice }} {FIELDS} }} }}",
            token=token,
        )
        assert voted["castDeliberationVote"] == {"__typename": "DeliberationVotePayload", "choice": choice}
    twice = await api.gql(
        f'mutation {{ castDeliberationVote(deliberationId: "{key}", choice: NO)'
        " { ... on Error { code } } }",
        token=first,
    )
    assert twice["castDeliberationVote"] == {"code": "CONFLICT"}
    not_seated = await api.gql(
        f'mutation {{ castDeliberationVote(deliberationId: "{key}", choice: NO)'
        " { ... on Error { code } } }",
        token=second,
    )
    assert not_seated["castDeliberationVote"] == {"code": "FORBIDDEN"}

    tallied = await step(api, staff, "closeDeliberationVoting", key)
    assert tallied["deliberation"]["result"] == {
        "attendees": 2,
        "yes": 2,
        "no": 0,
        "abstain": 0,
        "quorumMet": True,
        "passed": True,
        "approvalShare": 1.0,
    }
    hidden = await api.gql(f'{{ deliberation(id: "{key}") {{ result {{ passed }} }} }}', token=first)
    assert hidden["deliberation"]["result"] is None  # not yet published
    await step(api, staff, "publishDeliberation", key)
    shown = await api.gql(f'{{ deliberation(id: "{key}") {{ state result {{ passed }} }} }}', token=first)
    assert shown["deliberation"] == {"state": "PUBLISHED", "result": {"passed": True}}

    report = await api.gql(
        f'{{ deliberation(id: "{key}") {{ diversity {{ registrants voters thresholdPercent'
        " groups { dimension group registrantShare } warnings { dimension group among } }"
        " history { step } } }",
        token=staff,
    )
    diversity = report["deliberation"]["diversity"]
    assert (diversity["registrants"], diversity["voters"], diversity["thresholdPercent"]) == (2, 2, 60)
    assert {"dimension": "tenure", "group": "owner", "among": "registrants"} in diversity["warnings"]
    steps = [s["step"] for s in report["deliberation"]["history"]]
    assert steps[0] == "propose" and steps[-1] == "publish"

    # Another station: its staff and its residents neither see nor act.
    intruder = api.token(alpha, ["station_liaison"], [sibling], sub="user:911")
    assert (await api.gql(f'{{ deliberation(id: "{key}") {{ id }} }}', token=intruder))[
        "deliberation"
    ] is None
    assert (await step(api, intruder, "cancelDeliberation", key, ', reason: "x"'))["code"] == "NOT_FOUND"
    for scope in (sibling, elsewhere):
        outsider = resident(api, alpha, scope)
        assert (await api.gql(f'{{ deliberation(id: "{key}") {{ id }} }}', token=outsider))[
            "deliberation"
        ] is None
        assert (await register(api, outsider, key))["code"] == "NOT_FOUND"
    foreign = await propose(api, intruder, proposal(station_id, "越权", capacity=2, quorum=1))
    assert foreign["code"] in {"NOT_FOUND", "OUT_OF_SCOPE"}


async def test_bad_proposals_are_typed_errors(api: Api, database: Database, alpha: TenantInfo) -> None:
    (station_id, station), _, _ = await stations(database, alpha)
    staff = api.token(alpha, ["station_liaison"], [station], sub="user:912")
    now = datetime.now(UTC)
    base = proposal(station_id, "议题", capacity=10, quorum=5)
    for change, field in (
        ({"quorum": 11}, "quorum"),
        ({"approvalNumerator": 4, "approvalDenominator": 3}, "approval"),
        ({"registrationDeadline": (now - timedelta(hours=1)).isoformat()}, "registrationDeadline"),
        ({"capturePercent": 0}, "capturePercent"),
        ({"nodeId": "bm90IGFuIGlk"}, "nodeId"),
    ):
        refused = await propose(api, staff, {**base, **change})
        assert refused["code"] == "INVALID_INPUT", change
        assert refused["field"] == field


async def test_a_list_of_deliberations_costs_the_same_statements_however_long(
    api: Api, database: Database, alpha: TenantInfo
) -> None:
    async with database.scoped(TenantContext.whole_tenant(alpha.tenant_id, "system:test")) as session:
        rows = (
            await session.execute(
                select(Station.id, Station.scope).where(Station.tenant_id == alpha.tenant_id)
            )
        ).all()
    station_id, station = sorted(rows, key=lambda r: r[1])[0]
    staff = api.token(alpha, ["station_liaison"], [station], sub="user:913")

    async def propose_one() -> None:
        done = await propose(api, staff, proposal(station_id, "楼道照明改造", capacity=20, quorum=2))
        assert done["__typename"] == "DeliberationPayload"

    async def statements_for_list() -> tuple[int, int]:
        with api.count_statements() as statements:
            data = await api.gql(
                "{ deliberations { id registrations { status } history { step } } }", token=staff
            )
        return len(data["deliberations"]), len(statements)

    for _ in range(2):
        await propose_one()
    few, few_statements = await statements_for_list()
    for _ in range(3):
        await propose_one()
    more, more_statements = await statements_for_list()
    assert more == few + 3
    assert more_statements == few_statements, (few_statements, more_statements)
