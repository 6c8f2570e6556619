"""Six-party joint meetings end to end, as their participants would run them: staff and parties with their
own tokens over GraphQL, a real worker sending the notices; other stations' people kept out; quorum and
threshold edges; cancel and reschedule before holding; illegal steps as typed errors."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schema.relay import decode_id, encode_id
from services.meetings.service import resolution_passes
from tenants.db import Database
from tests.helpers import Api, MeetingEffects, TenantInfo, scalar, seed_stations, wait_for

KINDS = [
    "DEPUTY",
    "PARTY_ORGANISATION",
    "RESIDENTS_COMMITTEE",
    "OWNERS_COMMITTEE",
    "SOCIAL_ORGANISATION",
    "ENTERPRISE",
]
MEETING_FIELDS = "id state round representedKinds quorumMissing topic"
ERRORS = "__typename ... on Error { code message field }"
PAYLOADS = {
    "MeetingResult": f"{ERRORS} ... on MeetingPayload {{ meeting {{ {MEETING_FIELDS} }} }}",
    "MeetingInvitationResult": f"{ERRORS} ... on MeetingInvitationPayload {{ invitation {{ id state vote }} "
    f"meeting {{ {MEETING_FIELDS} }} }}",
    "MeetingActionItemResult": f"{ERRORS} ... on MeetingActionItemPayload "
    f"{{ actionItem {{ id state progress }} meeting {{ {MEETING_FIELDS} }} }}",
}
RESULT_OF = {
    "replyToMeetingInvitation": "MeetingInvitationResult",
    "castMeetingVote": "MeetingInvitationResult",
    "reportActionItemProgress": "MeetingActionItemResult",
    "completeMeetingActionItem": "MeetingActionItemResult",
}


def payload(name: str) -> str:
    return PAYLOADS[RESULT_OF.get(name, "MeetingResult")]


class Town:
    """A tenant of its own with two stations: the meeting's, and another one."""

    def __init__(self, info: TenantInfo, stations: list[tuple[int, str]]) -> None:
        self.info = info
        (self.station_id, self.scope), (self.other_id, self.other_scope) = stations[0], stations[1]


@pytest.fixture(scope="module")
async def town(database: Database, owner_dsn: str) -> Town:
    info, stations = await seed_stations(database, owner_dsn, "meettown", streets=2, stations=1, seed=3)
    return Town(info, stations)


def liaison(api: Api, town: Town) -> str:
    return api.token(town.info, ["station_liaison"], [town.scope], sub="user:liaison1")


def party_token(api: Api, town: Town, principal: str, role: str = "resident") -> str:
    # A party sits outside the station: a deputy of the other station, or a resident-like account.
    scopes = [town.other_scope] if role != "resident" else [town.info.scope]
    return api.token(town.info, [role], scopes, sub=principal)


def parties(prefix: str) -> list[dict[str, str]]:
    return [
        {"kind": kind, "principal": f"user:{prefix}{n}", "name": f"{kind}-{n}"}
        for n, kind in enumerate(KINDS)
    ]


async def mutate(api: Api, name: str, fields: dict[str, Any], token: str) -> dict[str, Any]:
    """The payload of mutation `name` given `fields` as its input."""
    data = await api.gql(
        f"mutation($input: {api.input_type(name)}) {{ {name}(input: $input) {{ {payload(name)} }} }}",
        {"input": fields},
        token,
    )
    result: dict[str, Any] = data[name]
    return result


async def step(api: Api, name: str, meeting_id: str, token: str) -> dict[str, Any]:
    data = await api.gql(
        f"mutation($id: ID!) {{ {name}(meetingId: $id) {{ {payload(name)} }} }}", {"id": meeting_id}, token
    )
    result: dict[str, Any] = data[name]
    return result


async def propose(api: Api, town: Town, token: str, **extra: Any) -> str:
    start = datetime.now(UTC) + timedelta(days=5)
    result = await mutate(
        api,
        "proposeMeeting",
        {
            "stationId": encode_id("Station", town.station_id),
            "topic": "加装电梯协调",
            "agenda": "1. 方案 2. 费用分摊",
            "place": "社区会议室",
            "proposedTimes": [start.isoformat(), (start + timedelta(days=1)).isoformat()],
            "replyDeadline": (start - timedelta(days=2)).isoformat(),
            **extra,
        },
        token,
    )
    assert result["__typename"] == "MeetingPayload", result
    assert result["meeting"]["state"] == "PROPOSED"
    meeting_id: str = result["meeting"]["id"]
    return meeting_id


async def refused_proposal(
    api: Api, token: str, station_id: int, days: int = 5, **given: Any
) -> tuple[str, str]:
    """The code and field of a proposal that is refused (`place` None leaves the place out)."""
    proposal = {
        "stationId": encode_id("Station", station_id),
        "topic": "t",
        "place": "p",
        "proposedTimes": [(datetime.now(UTC) + timedelta(days=days)).isoformat()],
        **given,
    }
    answer = await mutate(api, "proposeMeeting", {k: v for k, v in proposal.items() if v is not None}, token)
    return answer["code"], answer["field"]


async def invite(api: Api, meeting_id: str, token: str, invited: list[dict[str, str]]) -> dict[str, Any]:
    return await mutate(api, "inviteMeetingParties", {"meetingId": meeting_id, "parties": invited}, token)


async def my_invitation(api: Api, token: str, meeting_id: str) -> str:
    data = await api.gql("{ myMeetingInvitations { id meetingId state } }", token=token)
    (found,) = [i for i in data["myMeetingInvitations"] if i["meetingId"] == meeting_id]
    invitation_id: str = found["id"]
    return invitation_id


async def reply(api: Api, token: str, invitation_id: str, accept: bool, **extra: Any) -> dict[str, Any]:
    return await mutate(
        api, "replyToMeetingInvitation", {"invitationId": invitation_id, "accept": accept, **extra}, token
    )


REPLY_TIMERS = (
    "SELECT count(*) FROM timers WHERE tenant_id = %s AND subject_id = %s AND kind LIKE 'meeting.reply%%'"
)
PENDING_TIMERS = REPLY_TIMERS + " AND cancelled_at IS NULL"


async def test_a_meeting_from_proposal_to_closure(
    api: Api, town: Town, owner_dsn: str, worker: subprocess.Popen[bytes]
) -> None:
    staff = liaison(api, town)
    meeting_id = await propose(api, town, staff)
    invited = parties("e2e")
    result = await invite(api, meeting_id, staff, invited)
    assert result["meeting"]["state"] == "INVITING"
    tokens = {
        p["principal"]: party_token(
            api, town, p["principal"], "deputy" if p["kind"] == "DEPUTY" else "resident"
        )
        for p in invited
    }

    # Each party sees the meeting it is invited to, and of the invitations only its own.
    deputy = invited[0]["principal"]
    seen = await api.gql(
        "query($id: ID!) { meeting(id: $id) { topic place invitations { invitee } } }",
        {"id": meeting_id},
        tokens[deputy],
    )
    assert seen["meeting"]["topic"] == "加装电梯协调"
    assert [i["invitee"] for i in seen["meeting"]["invitations"]] == [deputy]
    listed = await api.gql("{ meetings { id } }", token=tokens[deputy])
    assert [m["id"] for m in listed["meetings"]] == [meeting_id]

    # Five accept; the enterprise declines and names a substitute, who accepts.
    for party in invited[:5]:
        answer = await reply(
            api,
            tokens[party["principal"]],
            await my_invitation(api, tokens[party["principal"]], meeting_id),
            True,
        )
        assert answer["invitation"]["state"] == "CONFIRMED", answer
    enterprise = invited[5]["principal"]
    declined = await reply(
        api,
        tokens[enterprise],
        await my_invitation(api, tokens[enterprise], meeting_id),
        False,
        reason="出差",
        substitute={"principal": "user:e2esub", "name": "副总"},
    )
    assert declined["invitation"]["state"] == "DECLINED"
    assert "no confirmed enterprise" in declined["meeting"]["quorumMissing"]
    substitute = party_token(api, town, "user:e2esub")
    answer = await reply(api, substitute, await my_invitation(api, substitute, meeting_id), True)
    assert answer["meeting"]["quorumMissing"] == []
    assert len(answer["meeting"]["representedKinds"]) == 6

    confirmed = await step(api, "confirmMeeting", meeting_id, staff)
    assert confirmed["meeting"]["state"] == "CONFIRMED", confirmed

    everyone = await api.gql(
        "query($id: ID!) { meeting(id: $id) { invitations { id invitee state } } }", {"id": meeting_id}, staff
    )
    attending = [i for i in everyone["meeting"]["invitations"] if i["state"] == "CONFIRMED"]
    assert len(attending) == 6
    held = await mutate(
        api,
        "holdMeeting",
        {"meetingId": meeting_id, "attendeeInvitationIds": [i["id"] for i in attending]},
        staff,
    )
    assert held["meeting"]["state"] == "HELD", held
    minuted = await mutate(
        api,
        "recordMeetingMinutes",
        {
            "meetingId": meeting_id,
            "minutes": "六方一致同意加装方案。",
            "resolution": "3 号楼加装电梯",
        },
        staff,
    )
    assert minuted["meeting"]["state"] == "MINUTED"
    votes = ["YES", "YES", "YES", "YES", "NO", "ABSTAIN"]
    for invitation, vote in zip(attending, votes, strict=True):
        token = tokens.get(invitation["invitee"]) or substitute
        cast = await mutate(api, "castMeetingVote", {"invitationId": invitation["id"], "vote": vote}, token)
        assert cast["invitation"]["vote"] == vote, cast
    tallied = await step(api, "tallyMeetingVotes", meeting_id, staff)
    assert tallied["meeting"]["state"] == "VOTED"
    outcome = await api.gql(
        "query($id: ID!) { meeting(id: $id) { passed votes { yes no abstain } } }", {"id": meeting_id}, staff
    )
    assert outcome["meeting"] == {"passed": True, "votes": {"yes": 4, "no": 1, "abstain": 1}}

    due = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    items = [
        {"kind": "ENTERPRISE", "assignee": "user:e2esub", "title": "电梯采购", "dueAt": due},
        {
            "kind": "OWNERS_COMMITTEE",
            "assignee": invited[3]["principal"],
            "title": "费用分摊公示",
            "dueAt": due,
        },
    ]
    assigned = await mutate(api, "assignMeetingActionItems", {"meetingId": meeting_id, "items": items}, staff)
    assert assigned["meeting"]["state"] == "SUPERVISING", assigned
    early = await mutate(api, "closeMeeting", {"meetingId": meeting_id, "report": "x"}, staff)
    assert early["__typename"] == "ConflictError"

    for principal, token in (
        ("user:e2esub", substitute),
        (invited[3]["principal"], tokens[invited[3]["principal"]]),
    ):
        mine = await api.gql(
            "query($id: ID!) { meeting(id: $id) { actionItems { id assignee } } }", {"id": meeting_id}, token
        )
        (item,) = mine["meeting"]["actionItems"]
        assert item["assignee"] == principal
        progress = await mutate(
            api, "reportActionItemProgress", {"actionItemId": item["id"], "note": "进行中"}, token
        )
        assert progress["actionItem"]["progress"] == "进行中", progress
        done = await mutate(api, "completeMeetingActionItem", {"actionItemId": item["id"]}, token)
        assert done["actionItem"]["state"] == "DONE", done

    closed = await mutate(
        api, "closeMeeting", {"meetingId": meeting_id, "report": "电梯已开工，各方任务完成。"}, staff
    )
    assert closed["meeting"]["state"] == "CLOSED", closed
    history = await api.gql(
        "query($id: ID!) { meeting(id: $id) { history { step toState actor } } }", {"id": meeting_id}, staff
    )
    assert [h["step"] for h in history["meeting"]["history"]] == [
        "propose",
        "invite",
        "confirm",
        "hold",
        "record_minutes",
        "tally",
        "assign_actions",
        "close",
    ]
    key = decode_id(meeting_id, "Meeting")[1]
    # Every step is in the audit chain: 8 meeting steps, 7 replies + 1 substitute invitation, 6 votes,
    # 2 assignments, 2 progress notes, 2 completions.
    audited = scalar(
        owner_dsn,
        "SELECT count(*) FROM audit_log WHERE tenant_id = %s AND subject LIKE 'meeting%%' "
        "AND payload->>'meeting_id' = %s",
        town.info.tenant_id,
        str(key),
    )
    assert audited == 8 + 8 + 6 + 2 + 2 + 2

    # Notices: the worker fans each step out once per recipient.
    expected = (
        6  # invitations
        + 7
        + 1  # replies to the staff, the substitute's invitation
        + 7  # confirmation: six parties and the staff
        + 7
        + 6
        + 7  # held, minutes (parties only), tally
        + 1
        + 2  # supervision starts (staff), each assignee
        + 4  # progress and completion, to the staff
        + 7  # closing
    )

    effects = MeetingEffects(owner_dsn, town.info.tenant_id, key)

    async def notices() -> int:
        return await asyncio.to_thread(effects.notices)

    await wait_for(lambda: _at_least(notices, expected))
    await asyncio.sleep(1.0)
    assert await notices() == expected
    assert effects.outbox_notices() == expected

    async def delivered() -> int:
        return await asyncio.to_thread(effects.delivered)

    # Each message was marked sent after it was published, the parties' too: nothing is left to relay.
    assert effects.unsent() == 0

    # In the inbox once each: the parties' own (owner_principal), the staff's by scope.
    await wait_for(lambda: _at_least(delivered, expected))
    assert await delivered() == expected
    to_substitute = effects.count(
        "notifications", "owner_principal = %s AND source LIKE %s", "user:e2esub", effects.sources
    )
    assert to_substitute == 1 + 1 + 3 + 1 + 1  # invited, confirmed, held/minutes/tally, action item, closed


async def _at_least(probe: Any, n: int) -> bool:
    return bool(await probe() >= n)


async def test_another_station_cannot_see_or_act(api: Api, town: Town) -> None:
    staff = liaison(api, town)
    meeting_id = await propose(api, town, staff)
    invited = parties("iso")
    await invite(api, meeting_id, staff, invited)
    owner = party_token(api, town, invited[1]["principal"])
    invitation_id = await my_invitation(api, owner, meeting_id)

    outsider_staff = api.token(town.info, ["station_liaison"], [town.other_scope], sub="user:otherliaison")
    outsider_party = party_token(api, town, "user:notinvited")
    for token in (outsider_staff, outsider_party):
        seen = await api.gql(
            "query($id: ID!) { meeting(id: $id) { id } meetings { id } }", {"id": meeting_id}, token
        )
        assert seen == {"meeting": None, "meetings": []}
        as_node = await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": meeting_id}, token)
        assert as_node == {"node": None}
        answer = await reply(api, token, invitation_id, True)
        assert answer["code"] == "NOT_FOUND", answer
    for name in ("confirmMeeting", "tallyMeetingVotes"):
        refused = await step(api, name, meeting_id, outsider_staff)
        assert refused["code"] == "NOT_FOUND", refused
    cancelled = await mutate(api, "cancelMeeting", {"meetingId": meeting_id, "reason": "x"}, outsider_staff)
    assert cancelled["code"] == "NOT_FOUND"
    for reader in (staff, owner):
        node = await api.gql(
            "query($id: ID!) { node(id: $id) { id ... on Meeting { state } } }", {"id": meeting_id}, reader
        )
        assert node["node"] == {"id": meeting_id, "state": "INVITING"}
    # A party may not take the organiser's steps, even on a meeting it sees.
    forbidden = await step(api, "confirmMeeting", meeting_id, owner)
    assert forbidden["code"] == "FORBIDDEN"
    still = await api.gql("query($id: ID!) { meeting(id: $id) { state } }", {"id": meeting_id}, staff)
    assert still["meeting"]["state"] == "INVITING"


async def test_quorum_rule_default_and_configured(api: Api, town: Town) -> None:
    staff = liaison(api, town)
    meeting_id = await propose(api, town, staff)
    invited = parties("quo")
    await invite(api, meeting_id, staff, invited)
    for party in invited[:5]:
        token = party_token(api, town, party["principal"])
        await reply(api, token, await my_invitation(api, token, meeting_id), True)
    refused = await step(api, "confirmMeeting", meeting_id, staff)
    assert refused["__typename"] == "ConflictError" and refused["field"] == "quorum"
    assert "no confirmed enterprise" in refused["message"]

    # Two kinds required and three kinds in all: deputy + residents' committee + one more.
    configured = await propose(api, town, staff, requiredKinds=["DEPUTY", "RESIDENTS_COMMITTEE"], minKinds=3)
    invited = parties("cfg")
    await invite(api, configured, staff, invited)
    for index in (0, 2):  # deputy, residents' committee
        token = party_token(api, town, invited[index]["principal"])
        await reply(api, token, await my_invitation(api, token, configured), True)
    refused = await step(api, "confirmMeeting", configured, staff)
    assert refused["__typename"] == "ConflictError" and "2 of the 3" in refused["message"]
    token = party_token(api, town, invited[5]["principal"])
    await reply(api, token, await my_invitation(api, token, configured), True)
    assert (await step(api, "confirmMeeting", configured, staff))["meeting"]["state"] == "CONFIRMED"

    bad = await refused_proposal(
        api, staff, town.station_id, requiredKinds=["DEPUTY", "ENTERPRISE"], minKinds=1
    )
    assert bad == ("INVALID_INPUT", "minKinds")


def test_pass_threshold_edges() -> None:
    assert resolution_passes(1, 1, 0, 1, 2) is False  # a tie never passes
    assert resolution_passes(2, 1, 0, 2, 3) is True  # exactly two thirds
    assert resolution_passes(2, 0, 2, 2, 3) is False  # abstentions count as cast: 2 of 4
    assert resolution_passes(3, 1, 0, 2, 3) is True
    assert resolution_passes(0, 0, 0, 1, 2) is False  # nobody voted
    assert resolution_passes(1, 0, 1, 1, 2) is True  # half of the votes cast, and more yes than no
    assert resolution_passes(6, 0, 0, 1, 1) is True and resolution_passes(5, 0, 1, 1, 1) is False


async def test_cancel_and_reschedule_before_holding(api: Api, town: Town, owner_dsn: str) -> None:
    staff = liaison(api, town)
    meeting_id = await propose(api, town, staff)
    invited = parties("rs")
    await invite(api, meeting_id, staff, invited)
    key = decode_id(meeting_id, "Meeting")[1]
    tokens = [party_token(api, town, p["principal"]) for p in invited]
    for token in tokens:
        await reply(api, token, await my_invitation(api, token, meeting_id), True)
    assert (await step(api, "confirmMeeting", meeting_id, staff))["meeting"]["state"] == "CONFIRMED"

    later = datetime.now(UTC) + timedelta(days=10)
    no_reason = await mutate(
        api,
        "rescheduleMeeting",
        {"meetingId": meeting_id, "proposedTimes": [later.isoformat()], "reason": " "},
        staff,
    )
    assert no_reason["code"] == "INVALID_INPUT" and no_reason["field"] == "note"
    moved = await mutate(
        api,
        "rescheduleMeeting",
        {"meetingId": meeting_id, "proposedTimes": [later.isoformat()], "reason": "区里检查"},
        staff,
    )
    assert moved["meeting"]["state"] == "INVITING" and moved["meeting"]["round"] == 2
    assert moved["meeting"]["representedKinds"] == []
    pending = scalar(owner_dsn, PENDING_TIMERS, town.info.tenant_id, key)
    cancelled = scalar(owner_dsn, REPLY_TIMERS + " AND cancelled_at IS NOT NULL", town.info.tenant_id, key)
    assert (pending, cancelled) == (3, 3)  # round 2: 48 h, 24 h, deadline; round 1's three void
    states = await api.gql(
        "query($id: ID!) { meeting(id: $id) { invitations { state round } } }", {"id": meeting_id}, staff
    )
    assert {(i["state"], i["round"]) for i in states["meeting"]["invitations"]} == {("INVITED", 2)}

    gone = await mutate(api, "cancelMeeting", {"meetingId": meeting_id, "reason": "议题已解决"}, staff)
    assert gone["meeting"]["state"] == "CANCELLED"
    assert scalar(owner_dsn, PENDING_TIMERS + " AND fired_at IS NULL", town.info.tenant_id, key) == 0
    again = await mutate(api, "cancelMeeting", {"meetingId": meeting_id, "reason": "x"}, staff)
    assert again["code"] == "ILLEGAL_TRANSITION"
    late = await reply(api, tokens[0], await my_invitation(api, tokens[0], meeting_id), False)
    assert late["code"] == "ILLEGAL_TRANSITION"


async def test_illegal_steps_are_typed_errors(api: Api, town: Town) -> None:
    staff = liaison(api, town)
    meeting_id = await propose(api, town, staff)
    held = await mutate(api, "holdMeeting", {"meetingId": meeting_id, "attendeeInvitationIds": []}, staff)
    assert held["__typename"] == "IllegalTransitionError" and "only from: confirmed" in held["message"]
    assert (await step(api, "tallyMeetingVotes", meeting_id, staff))["code"] == "ILLEGAL_TRANSITION"
    invited = parties("il")
    await invite(api, meeting_id, staff, invited)
    again = await invite(api, meeting_id, staff, invited[:1])
    assert again["code"] == "INVALID_INPUT"
    token = party_token(api, town, invited[0]["principal"])
    invitation_id = await my_invitation(api, token, meeting_id)
    vote = await mutate(api, "castMeetingVote", {"invitationId": invitation_id, "vote": "YES"}, token)
    assert vote["code"] == "ILLEGAL_TRANSITION"
    await reply(api, token, invitation_id, True)
    twice = await reply(api, token, invitation_id, True)
    assert twice["code"] == "ILLEGAL_TRANSITION" and "only from: invited" in twice["message"]
    # Someone else's invitation, seen by the staff, cannot be answered by another party.
    other = party_token(api, town, invited[1]["principal"])
    assert (await reply(api, other, invitation_id, False))["code"] == "NOT_FOUND"
    bad_id = await reply(api, token, meeting_id, True)
    assert bad_id["code"] == "INVALID_INPUT" and bad_id["field"] == "invitationId"
    assert await refused_proposal(api, staff, town.station_id, 3, place=None) == ("INVALID_INPUT", "place")
    assert await refused_proposal(api, staff, town.station_id, -1) == ("INVALID_INPUT", "proposedTimes")
    assert await refused_proposal(api, staff, town.other_id) == ("NOT_FOUND", "stationId")
