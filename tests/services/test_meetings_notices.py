"""Each person gets each meeting notice once. A deputy linked to the meeting's station, or a liaison of the
station invited as a party, is both a party named by a step and one of the staff the step tells: its inbox
holds the staff's notice, so it gets no second, personal copy. Everyone else keeps their own."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from typing import Any

import pytest

from schema.relay import decode_id
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tenants.roles import Role
from tests.helpers import Api, MeetingEffects, create_station_user, seed_stations, wait_for
from tests.services.test_meetings import KINDS, Town, invite, my_invitation, propose, reply

PASSWORD = "notices-twice-no-more"
INBOX = "{ myNotifications(first: 100) { edges { node { kind personal payload } } } }"


@pytest.fixture(scope="module")
async def town(database: Database, owner_dsn: str) -> Town:
    info, stations = await seed_stations(database, owner_dsn, "noticetown", streets=1, stations=2, seed=11)
    return Town(info, stations)


async def member(database: Database, town: Town, username: str, role: Role) -> str:
    """A user of the station with a role there; the principal its sign-in gives it."""
    async with unit_of_work(
        database, TenantContext.whole_tenant(town.info.tenant_id, "system:test")
    ) as session:
        user = await create_station_user(
            session, town.info.tenant_id, town.scope, username, username, password=PASSWORD, role=role
        )
    return f"user:{user.id}"


async def sign_in(api: Api, town: Town, username: str) -> str:
    data = await api.gql(
        'mutation($u: String!, $p: String!) { login(tenant: "noticetown", username: $u, password: $p) {'
        " ... on LoginPayload { token } } }",
        {"u": username, "p": PASSWORD},
    )
    token: str = data["login"]["token"]
    return token


async def inbox(api: Api, token: str, meeting_key: int) -> list[dict[str, Any]]:
    edges = (await api.gql(INBOX, token=token))["myNotifications"]["edges"]
    return [e["node"] for e in edges if e["node"]["payload"].get("meeting_id") == meeting_key]


async def test_a_deputy_of_the_station_gets_each_meeting_notice_once(
    api: Api, town: Town, database: Database, owner_dsn: str, worker: subprocess.Popen[bytes]
) -> None:
    deputy = await member(database, town, "deputy-once", Role.DEPUTY)
    liaison = await member(database, town, "liaison-once", Role.STATION_LIAISON)
    # The deputy, the station's liaison as the party organisation's delegate, and four parties from outside.
    principals = [deputy, liaison, *(f"user:once{n}" for n in range(4))]
    invited = [
        {"kind": kind, "principal": principal, "name": f"{kind}-{n}"}
        for n, (kind, principal) in enumerate(zip(KINDS, principals, strict=True))
    ]
    organiser = api.token(town.info, ["station_liaison"], [town.scope], sub="user:organiser-once")
    tokens = {
        deputy: await sign_in(api, town, "deputy-once"),
        liaison: await sign_in(api, town, "liaison-once"),
        **{p: api.token(town.info, ["resident"], None, sub=p) for p in principals[2:]},
    }
    meeting_id = await propose(api, town, organiser)
    key = decode_id(meeting_id, "Meeting")[1]
    await invite(api, meeting_id, organiser, invited)
    for token in tokens.values():
        answer = await reply(api, token, await my_invitation(api, token, meeting_id), True)
        assert answer["invitation"]["state"] == "CONFIRMED", answer
    confirmed = await api.gql(
        "mutation($id: ID!) { confirmMeeting(meetingId: $id) {"
        " ... on MeetingPayload { meeting { state } } } }",
        {"id": meeting_id},
        organiser,
    )
    assert confirmed["confirmMeeting"]["meeting"]["state"] == "CONFIRMED"

    # Invitations: six. Replies: six, to the staff. Confirmation: the staff and the four outside parties.
    expected = 6 + 6 + 1 + 4

    effects = MeetingEffects(owner_dsn, town.info.tenant_id, key)

    async def delivered() -> bool:
        return await asyncio.to_thread(effects.delivered) >= expected

    await wait_for(delivered)
    await asyncio.sleep(1.0)  # nothing more comes
    assert effects.notices() == expected

    for principal in (deputy, liaison):
        notices = await inbox(api, tokens[principal], key)
        per_step = Counter(n["payload"]["event_id"] for n in notices)
        assert per_step and max(per_step.values()) == 1, notices
        # Its invitation its own; the replies and the confirmation as staff of the station.
        assert [(n["kind"], n["personal"]) for n in notices].count(("meeting.confirm", False)) == 1
        assert [n["kind"] for n in notices if n["personal"]] == ["meeting.invite"]
        assert len(notices) == 1 + 6 + 1
    for principal in principals[2:]:
        notices = await inbox(api, tokens[principal], key)
        assert sorted(n["kind"] for n in notices) == ["meeting.confirm", "meeting.invite"]
        assert all(n["personal"] for n in notices)
