"""Meetings and mediation from a sibling scope: the staff of a sibling station, street or district try every
mutation of both on a meeting or case outside their scope, and a party of a meeting tries another party's
invitation and action item. Each answer is NOT_FOUND, worded as for a row that does not exist, and nothing
changes: no row, no step, no audit link, no outbox message. The party path widens its scopes, so the check
that refuses it (`services.reach`) is pinned also where row-level security would let the row through."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.utils.str_converters import to_camel_case

from schema.mediation.mutations import MediationMutation
from schema.meetings.mutations import MeetingsMutation
from schema.relay import decode_id, encode_id
from services.errors import NotFound
from services.meetings import service
from services.meetings.service import Actor
from tenants.context import TenantContext
from tenants.db import Database
from tests.helpers import Api, TenantInfo, seed_stations
from tests.services.test_meetings import Town, invite, mutate, my_invitation, parties, propose, reply

SOON = (datetime.now(UTC) + timedelta(days=20)).isoformat()
ERRORS = "__typename ... on Error { code message field }"
# Every mutation of both modules: its arguments and their types, and its variables with the ids it acts on
# as {placeholders}. The first placeholder names the row whose absence it reports.
CALLS: dict[str, tuple[dict[str, str], str]] = {
    "proposeMeeting": (
        {"input": "ProposeMeetingInput!"},
        '{"input": {"stationId": "{station}", "topic": "t", "place": "p", "proposedTimes": ["{soon}"]}}',
    ),
    "inviteMeetingParties": (
        {"input": "InvitePartiesInput!"},
        '{"input": {"meetingId": "{inviting}", "parties": [{"kind": "ENTERPRISE", "principal": "user:x1", '
        '"name": "x"}]}}',
    ),
    "replyToMeetingInvitation": (
        {"input": "MeetingReplyInput!"},
        '{"input": {"invitationId": "{pending}", "accept": true}}',
    ),
    "confirmMeeting": ({"meetingId": "ID!"}, '{"meetingId": "{inviting}"}'),
    "rescheduleMeeting": (
        {"input": "RescheduleMeetingInput!"},
        '{"input": {"meetingId": "{inviting}", "proposedTimes": ["{soon}"], "reason": "r"}}',
    ),
    "cancelMeeting": (
        {"input": "CancelMeetingInput!"},
        '{"input": {"meetingId": "{inviting}", "reason": "r"}}',
    ),
    "holdMeeting": (
        {"input": "HoldMeetingInput!"},
        '{"input": {"meetingId": "{inviting}", "attendeeInvitationIds": ["{pending}"]}}',
    ),
    "recordMeetingMinutes": (
        {"input": "RecordMinutesInput!"},
        '{"input": {"meetingId": "{inviting}", "minutes": "m", "resolution": "r"}}',
    ),
    "castMeetingVote": (
        {"input": "MeetingVoteInput!"},
        '{"input": {"invitationId": "{voter}", "vote": "NO"}}',
    ),
    "tallyMeetingVotes": ({"meetingId": "ID!"}, '{"meetingId": "{supervised}"}'),
    "assignMeetingActionItems": (
        {"input": "AssignActionItemsInput!"},
        '{"input": {"meetingId": "{supervised}", "items": [{"kind": "DEPUTY", "assignee": "user:x2", '
        '"title": "t", "dueAt": "{soon}"}]}}',
    ),
    "reportActionItemProgress": (
        {"input": "MeetingActionItemNoteInput!"},
        '{"input": {"actionItemId": "{item}", "note": "n"}}',
    ),
    "completeMeetingActionItem": (
        {"input": "MeetingActionItemNoteInput!"},
        '{"input": {"actionItemId": "{item}"}}',
    ),
    "closeMeeting": (
        {"input": "CloseMeetingInput!"},
        '{"input": {"meetingId": "{supervised}", "report": "r"}}',
    ),
    "openMediationCase": (
        {"input": "OpenMediationCaseInput!"},
        '{"input": {"stationId": "{station}", "caseType": "NEIGHBOURS", "description": "d", "parties": '
        '[{"name": "a", "role": "APPLICANT"}, {"name": "b", "role": "RESPONDENT"}]}}',
    ),
    "recordMediationSession": (
        {"input": "MediationSessionInput!"},
        '{"input": {"caseId": "{case}", "heldOn": "2026-11-20", "notes": "n"}}',
    ),
    "recordMediationOutcome": (
        {"input": "MediationOutcomeInput!"},
        '{"input": {"caseId": "{case}", "agreed": false, "note": "n"}}',
    ),
    "assignMediator": (
        {"caseId": "ID!", "mediator": "String!"},
        '{"caseId": "{case}", "mediator": "user:x3"}',
    ),
    "withdrawMediationCase": ({"caseId": "ID!", "reason": "String!"}, '{"caseId": "{case}", "reason": "r"}'),
}
# The node type of each kind of id.
KINDS = {
    "station": "Station",
    "inviting": "Meeting",
    "supervised": "Meeting",
    "pending": "MeetingInvitation",
    "voter": "MeetingInvitation",
    "item": "MeetingActionItem",
    "case": "MediationCase",
}
NOWHERE = 987_654_321


@dataclass
class City:
    info: TenantInfo
    station: tuple[int, str]
    sibling_station: str
    sibling_street: str
    sibling_district: str

    @property
    def town(self) -> Town:
        return Town(self.info, [self.station, (0, self.sibling_station)])


@pytest.fixture(scope="module")
async def city(database: Database, owner_dsn: str) -> City:
    info, stations = await seed_stations(
        database, owner_dsn, "reachtown", districts=2, streets=2, stations=2, seed=5, order_by="scope"
    )
    scopes = [scope for _, scope in stations]
    home = scopes[0]
    street, district = home.rsplit(".", 1)[0], home.rsplit(".", 2)[0]
    return City(
        info,
        stations[0],
        sibling_station=next(s for s in scopes if s != home and s.startswith(street + ".")),
        sibling_street=next(
            s.rsplit(".", 1)[0]
            for s in scopes
            if s.startswith(district + ".") and not s.startswith(street + ".")
        ),
        sibling_district=next(s.rsplit(".", 2)[0] for s in scopes if not s.startswith(district + ".")),
    )


def snapshot(owner_dsn: str, tenant_id: int) -> dict[str, Any]:
    """All a step writes, in the tenant: its rows, its history and audit links, the messages it asks for."""
    tables = (
        "meetings",
        "meeting_invitations",
        "meeting_actions",
        "mediation_cases",
        "mediation_levels",
        "mediation_sessions",
        "mediation_parties",
        "timers",
    )
    queries = {
        table: f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM {table} t "
        "WHERE tenant_id = %s"
        for table in tables
    }
    queries["workflow_events"] = "SELECT count(*) FROM workflow_events WHERE tenant_id = %s"
    queries["audit_log"] = "SELECT count(*) FROM audit_log WHERE tenant_id = %s"
    # What steps ask for themselves (a worker's fan-out of earlier steps adds their notices later).
    queries["outbox"] = (
        "SELECT count(*) FROM outbox WHERE tenant_id = %s "
        "AND (task = 'meetings.announce' OR kwargs->>'source' LIKE 'mediation:%%')"
    )
    with psycopg.connect(owner_dsn) as conn:
        return {name: conn.execute(sql, (tenant_id,)).fetchone() for name, sql in queries.items()}


async def call(api: Api, name: str, ids: dict[str, str], token: str) -> dict[str, Any]:
    arguments, variables = CALLS[name]
    for key, value in ids.items():
        variables = variables.replace("{" + key + "}", value)
    declared = ", ".join(f"${n}: {t}" for n, t in arguments.items())
    passed = ", ".join(f"{n}: ${n}" for n in arguments)
    data = await api.gql(
        f"mutation({declared}) {{ {name}({passed}) {{ {ERRORS} }} }}", json.loads(variables), token
    )
    result: dict[str, Any] = data[name]
    return result


def reported(name: str) -> str:
    """The kind of row whose absence a mutation reports: the first it names."""
    variables = CALLS[name][1]
    return min((variables.index("{" + k + "}"), k) for k in KINDS if "{" + k + "}" in variables)[1]


def test_every_mutation_of_meetings_and_mediation_is_tried() -> None:
    declared = {
        to_camel_case(field.python_name)
        for mutations in (MeetingsMutation, MediationMutation)
        for field in mutations.__strawberry_definition__.fields  # type: ignore[union-attr]
    }
    assert declared == set(CALLS)


async def meeting_with_parties(api: Api, city: City, staff: str, prefix: str) -> tuple[str, dict[str, str]]:
    """A meeting of the city's station inviting six parties, each a deputy of the sibling station."""
    meeting_id = await propose(api, city.town, staff)
    invited = parties(prefix)
    assert (await invite(api, meeting_id, staff, invited))["meeting"]["state"] == "INVITING"
    sibling = [city.sibling_station]
    return meeting_id, {
        p["principal"]: api.token(city.info, ["deputy"], sibling, sub=p["principal"]) for p in invited
    }


async def meeting_step(api: Api, name: str, meeting_id: str, token: str) -> str:
    data = await api.gql(
        f"mutation($id: ID!) {{ {name}(meetingId: $id) {{ ... on MeetingPayload {{ meeting {{ state }} }} }} "
        "}",
        {"id": meeting_id},
        token,
    )
    state: str = data[name]["meeting"]["state"]
    return state


async def run_to_minutes(api: Api, staff: str, meeting_id: str, tokens: dict[str, str]) -> list[str]:
    """Every party accepts and attends; the minutes are recorded. The invitations, in order."""
    for token in tokens.values():
        await reply(api, token, await my_invitation(api, token, meeting_id), True)
    assert await meeting_step(api, "confirmMeeting", meeting_id, staff) == "CONFIRMED"
    listed = await api.gql(
        "query($id: ID!) { meeting(id: $id) { invitations { id } } }", {"id": meeting_id}, staff
    )
    attendees = [i["id"] for i in listed["meeting"]["invitations"]]
    held = await mutate(
        api, "holdMeeting", {"meetingId": meeting_id, "attendeeInvitationIds": attendees}, staff
    )
    assert held["meeting"]["state"] == "HELD", held
    minutes = {"meetingId": meeting_id, "minutes": "纪要", "resolution": "决议"}
    minuted = await mutate(api, "recordMeetingMinutes", minutes, staff)
    assert minuted["meeting"]["state"] == "MINUTED"
    return attendees


async def vote(api: Api, invitation_id: str, token: str) -> dict[str, Any]:
    return await mutate(api, "castMeetingVote", {"invitationId": invitation_id, "vote": "YES"}, token)


async def assign(api: Api, staff: str, meeting_id: str, assignees: list[str]) -> dict[str, str]:
    """Action items for the assignees, tallied first; their ids by assignee."""
    assert await meeting_step(api, "tallyMeetingVotes", meeting_id, staff) == "VOTED"
    items = [{"kind": "DEPUTY", "assignee": a, "title": f"跟进 {a}", "dueAt": SOON} for a in assignees]
    assigned = await mutate(api, "assignMeetingActionItems", {"meetingId": meeting_id, "items": items}, staff)
    assert assigned["meeting"]["state"] == "SUPERVISING", assigned
    listed = await api.gql(
        "query($id: ID!) { meeting(id: $id) { actionItems { id assignee } } }", {"id": meeting_id}, staff
    )
    return {item["assignee"]: item["id"] for item in listed["meeting"]["actionItems"]}


async def work_on(api: Api, name: str, item_id: str, token: str) -> dict[str, Any]:
    return await mutate(api, name, {"actionItemId": item_id, "note": "进展"}, token)


async def test_sibling_staff_change_nothing_of_a_meeting_or_case(
    api: Api, city: City, owner_dsn: str
) -> None:
    station_id, _ = city.station
    staff = api.token(city.info, ["station_liaison"], [city.station[1]], sub="user:reachliaison")
    # One meeting waits for its last reply; another is supervised, one of its parties yet to vote.
    inviting, waiting = await meeting_with_parties(api, city, staff, "rs1")
    supervised, voters = await meeting_with_parties(api, city, staff, "rs2")
    invitations = await run_to_minutes(api, staff, supervised, voters)
    for token in list(voters.values())[1:]:
        await vote(api, await my_invitation(api, token, supervised), token)
    items = await assign(api, staff, supervised, ["user:rs21"])
    opened = await api.gql(
        "mutation($input: OpenMediationCaseInput!) { openMediationCase(input: $input) { "
        "... on MediationCasePayload { case { id } } } }",
        json.loads(CALLS["openMediationCase"][1].replace("{station}", encode_id("Station", station_id))),
        staff,
    )
    ids = {
        "station": encode_id("Station", station_id),
        "inviting": inviting,
        "supervised": supervised,
        "pending": await my_invitation(api, waiting["user:rs15"], inviting),
        "voter": invitations[0],
        "item": items["user:rs21"],
        "case": opened["openMediationCase"]["case"]["id"],
        "soon": SOON,
    }
    nowhere = {**ids, **{kind: encode_id(node, NOWHERE) for kind, node in KINDS.items()}}
    intruders = {
        "station": api.token(
            city.info, ["station_liaison", "deputy"], [city.sibling_station], sub="user:rs90"
        ),
        "street": api.token(city.info, ["street_staff"], [city.sibling_street], sub="user:rs91"),
        "district": api.token(city.info, ["district_staff"], [city.sibling_district], sub="user:rs92"),
    }

    before = snapshot(owner_dsn, city.info.tenant_id)
    for sibling, token in intruders.items():
        for name in CALLS:
            answer = await call(api, name, ids, token)
            missing = await call(api, name, nowhere, token)
            kind = reported(name)
            key = str(decode_id(ids[kind], KINDS[kind])[1])
            assert answer["code"] == "NOT_FOUND", (sibling, name, answer)
            # Worded as for a row that does not exist.
            assert (answer["message"].replace(key, "#"), answer["field"]) == (
                missing["message"].replace(str(NOWHERE), "#"),
                missing["field"],
            ), (sibling, name)
    assert snapshot(owner_dsn, city.info.tenant_id) == before

    # The station's own staff take the same steps: the ids were worth refusing.
    for name in ("reportActionItemProgress", "recordMediationSession"):
        assert (await call(api, name, ids, staff))["__typename"].endswith("Payload"), name
    assert snapshot(owner_dsn, city.info.tenant_id) != before


async def test_a_party_cannot_act_on_another_partys_invitation_or_item(
    api: Api, city: City, owner_dsn: str, database: Database
) -> None:
    staff = api.token(city.info, ["station_liaison"], [city.station[1]], sub="user:reachliaison")
    meeting_id, tokens = await meeting_with_parties(api, city, staff, "pp")
    me, other = tokens["user:pp0"], tokens["user:pp1"]
    theirs = await my_invitation(api, other, meeting_id)
    # The party itself, in a transaction that sees the whole city (as no path of the API does): only the
    # reach check stands between it and another party's row.
    intruder = Actor(
        TenantContext(city.info.tenant_id, (city.sibling_station,), "user:pp0"), frozenset({"deputy"})
    )

    async def refused_even_seeing_all(
        attempt: Callable[[AsyncSession], Awaitable[object]], what: str, key: int
    ) -> None:
        async with database.scoped(TenantContext.whole_tenant(city.info.tenant_id, "system:test")) as session:
            with pytest.raises(NotFound) as refused:
                await attempt(session)
        assert refused.value.message == f"{what} {key} does not exist or lies outside your scope"

    their_key = decode_id(theirs, "MeetingInvitation")[1]
    before = snapshot(owner_dsn, city.info.tenant_id)
    for accept in (True, False):
        answer = await reply(api, me, theirs, accept)
        assert (answer["code"], answer["field"]) == ("NOT_FOUND", "invitationId"), answer
    await refused_even_seeing_all(
        lambda s: service.reply(s, intruder, their_key, accept=False), "invitation", their_key
    )
    assert snapshot(owner_dsn, city.info.tenant_id) == before

    await run_to_minutes(api, staff, meeting_id, tokens)
    before = snapshot(owner_dsn, city.info.tenant_id)
    answer = await vote(api, theirs, me)
    assert (answer["code"], answer["field"]) == ("NOT_FOUND", "invitationId"), answer
    await refused_even_seeing_all(
        lambda s: service.cast_vote(s, intruder, their_key, "no"), "invitation", their_key
    )
    assert snapshot(owner_dsn, city.info.tenant_id) == before

    for token in tokens.values():
        await vote(api, await my_invitation(api, token, meeting_id), token)
    their_item = (await assign(api, staff, meeting_id, ["user:pp0", "user:pp1"]))["user:pp1"]
    item_key = decode_id(their_item, "MeetingActionItem")[1]
    before = snapshot(owner_dsn, city.info.tenant_id)
    for name in ("reportActionItemProgress", "completeMeetingActionItem"):
        answer = await work_on(api, name, their_item, me)
        assert (answer["code"], answer["field"]) == ("NOT_FOUND", "actionItemId"), answer
    await refused_even_seeing_all(
        lambda s: service.report_progress(s, intruder, item_key, "进展"), "action item", item_key
    )
    await refused_even_seeing_all(
        lambda s: service.complete_action(s, intruder, item_key), "action item", item_key
    )
    assert snapshot(owner_dsn, city.info.tenant_id) == before

    # Each works on its own.
    done = await work_on(api, "completeMeetingActionItem", their_item, other)
    assert done["actionItem"]["state"] == "DONE", done
