"""The six-party joint meeting as a workflow.

Its states, steps and who may take each are declared once below (MEETING, INVITATION, ACTION). A step
locks the meeting row, checks the machine, changes the rows, records the step (history + audit chain),
schedules or cancels its deadlines (timers), and asks for one `meetings.announce` task through the outbox;
that task sends each party its notice, exactly once (meeting_notices is unique by source).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import Conflict, InvalidInput, NotFound
from services.meetings import repository
from services.meetings.models import MEETING_STATES, PARTY_KINDS, ActionItem, Invitation, Meeting
from services.notifications.dispatch import notify
from services.outbox.service import enqueue
from services.timers import service as timers
from services.timers.models import Timer
from services.workflow.machine import SYSTEM, IllegalTransition, NotAllowed, StateMachine, step
from services.workflow.models import WorkflowEvent
from services.workflow.service import history, record
from tenants.context import PRINCIPAL_PATTERN, TenantContext, scope_is_within

# --- the workflow, declared in one place ------------------------------------------------------------

ORGANISERS = frozenset({"station_liaison", "street_staff", "district_staff", "city_admin"})
INVITEE = "invitee"  # the principal an invitation names
ASSIGNEE = "assignee"  # the principal an action item names
BEFORE_HOLDING = ("proposed", "inviting", "confirmed")

MEETING = StateMachine(
    "meeting",
    MEETING_STATES,
    [
        step("propose", (), "proposed", ORGANISERS),
        step("invite", ("proposed", "inviting"), "inviting", ORGANISERS),
        step("confirm", ("inviting",), "confirmed", ORGANISERS),
        step("reschedule", BEFORE_HOLDING, "inviting", ORGANISERS, note=True),
        step("cancel", BEFORE_HOLDING, "cancelled", ORGANISERS, note=True),
        step("hold", ("confirmed",), "held", ORGANISERS),
        step("record_minutes", ("held",), "minuted", ORGANISERS),
        step("tally", ("minuted",), "voted", ORGANISERS),
        step("assign_actions", ("voted",), "supervising", ORGANISERS),
        step("close", ("voted", "supervising"), "closed", ORGANISERS, note=True),
    ],
)
# Replies are taken while the meeting waits for them or is confirmed (a party may still withdraw).
REPLY_STATES = ("inviting", "confirmed")
INVITATION = StateMachine(
    "meeting_invitation",
    ("invited", "confirmed", "declined"),
    [
        step("accept", ("invited",), "confirmed", {INVITEE, *ORGANISERS}),
        step("decline", ("invited", "confirmed"), "declined", {INVITEE, *ORGANISERS}),
        step("remind", ("invited",), "invited", {SYSTEM}),
        step("escalate", ("invited",), "invited", {SYSTEM}),
        step("reinvite", ("invited", "confirmed"), "invited", ORGANISERS),
        step("vote", ("invited", "confirmed"), "confirmed", {INVITEE}),
    ],
)
ACTION = StateMachine(
    "meeting_action",
    ("open", "done"),
    [
        step("assign", ("open",), "open", ORGANISERS),
        step("progress", ("open",), "open", {ASSIGNEE, *ORGANISERS}, note=True),
        step("remind", ("open",), "open", {SYSTEM}),
        step("overdue", ("open",), "open", {SYSTEM}),
        step("complete", ("open",), "done", {ASSIGNEE, *ORGANISERS}),
    ],
)

# Deadlines (timers rows, fired by the beat's sweep).
REPLY_REMINDER = "meeting.reply_reminder"
REPLY_DEADLINE = "meeting.reply_deadline"
ACTION_REMINDER = "meeting.action_reminder"
ACTION_OVERDUE = "meeting.action_overdue"
REPLY_TIMERS = (REPLY_REMINDER, REPLY_DEADLINE)
ACTION_TIMERS = (ACTION_REMINDER, ACTION_OVERDUE)
REMINDER_HOURS = (48, 24)
DEFAULT_REPLY_WINDOW = timedelta(hours=72)

ANNOUNCE_TASK = "meetings.announce"
VOTES = ("yes", "no", "abstain")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who takes a step: the caller's tenant context and roles."""

    context: TenantContext
    roles: frozenset[str]

    @property
    def principal(self) -> str:
        return self.context.principal

    @property
    def tenant_id(self) -> int:
        return self.context.tenant_id

    def covers(self, scope: str) -> bool:
        return any(scope_is_within(scope, own) for own in self.context.scopes)


def system_actor(tenant_id: int) -> Actor:
    return Actor(TenantContext.whole_tenant(tenant_id, "system:meetings"), frozenset({SYSTEM}))


def actor_kinds(actor: Actor, scope: str, owner: str | None = None) -> set[str]:
    """Roles count only over the meeting's station; the named party is `invitee`/`assignee`."""
    kinds = set(actor.roles & ORGANISERS) if actor.covers(scope) else set()
    if SYSTEM in actor.roles:
        kinds.add(SYSTEM)
    if owner is not None and owner == actor.principal:
        kinds |= {INVITEE, ASSIGNEE}
    return kinds


@dataclass(frozen=True, slots=True)
class Party:
    kind: str
    principal: str
    name: str


@dataclass(frozen=True, slots=True)
class NewAction:
    kind: str
    principal: str
    title: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Proposal:
    station_id: int
    topic: str
    proposed_times: Sequence[datetime]
    agenda: str = ""
    place: str | None = None
    video_link: str | None = None
    reply_deadline: datetime | None = None
    request_ids: Sequence[int] = ()
    required_kinds: Sequence[str] | None = None
    min_kinds: int | None = None
    pass_numerator: int = 1
    pass_denominator: int = 2


# --- rules ---------------------------------------------------------------------------------------------


def quorum_missing(meeting: Meeting) -> list[str]:
    """Why the quorum rule does not hold (empty when it does)."""
    represented = set(meeting.represented_kinds)
    problems = [f"no confirmed {kind}" for kind in meeting.required_kinds if kind not in represented]
    if len(represented) < meeting.min_kinds:
        problems.append(f"{len(represented)} of the {meeting.min_kinds} party kinds needed have confirmed")
    return problems


def resolution_passes(yes: int, no: int, abstain: int, numerator: int, denominator: int) -> bool:
    """Passed when the yes votes reach the threshold share of the votes cast (abstentions count as
    cast) and outnumber the no votes; a tie never passes."""
    cast = yes + no + abstain
    return cast > 0 and yes * denominator >= numerator * cast and yes > no


def street_scope(station_scope: str) -> str:
    return station_scope.rsplit(".", 1)[0]


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidInput("times need a time zone (e.g. 2026-12-01T09:00:00+08:00)", field=field)
    return value.astimezone(UTC)


def _text(value: str | None, field: str, limit: int, *, required: bool = True) -> str:
    cleaned = (value or "").strip()
    if required and not cleaned:
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(cleaned) > limit:
        raise InvalidInput(f"{field} is longer than {limit} characters", field=field)
    return cleaned


def _party(party: Party, field: str) -> Party:
    if party.kind not in PARTY_KINDS:
        raise InvalidInput(f"{party.kind!r} is not a party kind", field=field)
    if not PRINCIPAL_PATTERN.fullmatch(party.principal):
        raise InvalidInput(f"{party.principal!r} is not a principal such as user:42", field=field)
    return Party(party.kind, party.principal, _text(party.name, field, 100))


def _times(
    times: Sequence[datetime], deadline: datetime | None, now: datetime
) -> tuple[list[datetime], datetime]:
    if not times:
        raise InvalidInput("propose at least one time", field="proposedTimes")
    proposed = [_aware(t, "proposedTimes") for t in times]
    if any(t <= now for t in proposed):
        raise InvalidInput("proposed times must lie in the future", field="proposedTimes")
    reply_by = _aware(deadline, "replyDeadline") if deadline else proposed[0] - DEFAULT_REPLY_WINDOW
    if reply_by > proposed[0]:
        raise InvalidInput("the reply deadline must come before the meeting", field="replyDeadline")
    if reply_by <= now:
        raise InvalidInput("the reply deadline must lie in the future", field="replyDeadline")
    return proposed, reply_by


def _check_step(
    machine: StateMachine, name: str, state: str, kinds: Iterable[str], note: str | None = None
) -> str:
    return machine.check(name, state, kinds, note).target


# --- recording, notices, timers -------------------------------------------------------------------------


async def _record(
    session: AsyncSession,
    machine: StateMachine,
    meeting: Meeting,
    *,
    subject_id: int,
    name: str,
    from_state: str | None,
    to_state: str,
    actor: Actor,
    title: str,
    to: Iterable[str] = (),
    staff: str | None = None,
    note: str | None = None,
    extra: dict[str, Any] | None = None,
) -> int:
    """Record a step; its notices go to the principals in `to` and the staff of scope `staff`."""
    event = await record(
        session,
        machine,
        tenant_id=meeting.tenant_id,
        subject_id=subject_id,
        scope=meeting.scope,
        step=name,
        from_state=from_state,
        to_state=to_state,
        actor=actor.principal,
        note=note,
        payload={
            "meeting_id": meeting.id,
            "kind": f"{machine.name}.{name}",
            "title": title,
            "to": sorted(set(to)),
            "staff": staff,
            **(extra or {}),
        },
    )
    await session.flush()
    return event.id


async def _announce(session: AsyncSession, meeting: Meeting, event_ids: Sequence[int], actor: Actor) -> None:
    """Ask for the notices of these steps, after the commit. The outbox row lies where the actor can see
    it: the unit of work marks it sent under the actor's own context once it is published (a row it could
    not see would stay unsent, and the relay would send it a second time)."""
    if event_ids:
        await enqueue(
            session,
            tenant_id=meeting.tenant_id,
            scope=meeting.scope if actor.covers(meeting.scope) else actor.context.scopes[0],
            task=ANNOUNCE_TASK,
            kwargs={"meeting_id": meeting.id, "event_ids": list(event_ids)},
        )


async def announce(session: AsyncSession, tenant_id: int, meeting_id: int, event_ids: Sequence[int]) -> int:
    """The fan-out of recorded steps: one notice per recipient, each sent once however often this runs."""
    meeting = await repository.meeting(session, tenant_id, meeting_id, lock="share")
    if meeting is None:
        return 0
    sent = 0
    for event in await repository.events(session, tenant_id, event_ids):
        payload = event.payload
        if payload.get("meeting_id") != meeting_id:
            continue
        recipients: list[tuple[str | None, str]] = [(p, meeting.scope) for p in payload.get("to", [])]
        if payload.get("staff"):
            recipients.append((None, str(payload["staff"])))
        for recipient, scope in recipients:
            source = f"meeting:{meeting_id}:event:{event.id}:{recipient or 'staff'}"
            kind = str(payload.get("kind", event.workflow))
            if not await repository.add_notice(
                session,
                tenant_id=tenant_id,
                meeting_id=meeting_id,
                scope=meeting.scope,
                event_id=event.id,
                kind=kind,
                recipient=recipient,
                source=source,
            ):
                continue
            await notify(
                session,
                tenant_id=tenant_id,
                scope=scope,
                kind=kind,
                title=str(payload.get("title", meeting.topic))[:300],
                body=event.note or "",
                recipient=recipient,
                source=source,
                payload={"meeting_id": meeting_id, "event_id": event.id, "step": event.step},
            )
            sent += 1
    return sent


async def _schedule_reply_timers(session: AsyncSession, meeting: Meeting, now: datetime) -> None:
    base = f"meeting:{meeting.id}:r{meeting.round}"
    common: dict[str, Any] = {
        "tenant_id": meeting.tenant_id,
        "scope": meeting.scope,
        "subject_id": meeting.id,
    }
    for hours in REMINDER_HOURS:
        due = meeting.reply_deadline - timedelta(hours=hours)
        if due > now:
            await timers.schedule(
                session,
                **common,
                kind=REPLY_REMINDER,
                key=f"{base}:remind{hours}h",
                due_at=due,
                payload={"round": meeting.round, "hours": hours},
            )
    await timers.schedule(
        session,
        **common,
        kind=REPLY_DEADLINE,
        key=f"{base}:deadline",
        due_at=meeting.reply_deadline,
        payload={"round": meeting.round},
    )


@asynccontextmanager
async def within_meeting(session: AsyncSession, actor: Actor, meeting: Meeting) -> AsyncIterator[None]:
    """A party outside the station acts on its own invitation or action item, which row-level security
    has just shown it. The step's writes (its rows, the history, the audit link, the outbox) belong to
    the station, so they run with the station's scope added to the caller's; the caller's scopes are
    restored right after, for whatever else the request reads."""
    if actor.covers(meeting.scope):
        yield
        return
    widened = TenantContext(actor.tenant_id, (*actor.context.scopes, meeting.scope), actor.principal)
    connection = await session.connection()
    await connection.exec_driver_sql(widened.set_local_statement())
    try:
        yield
    finally:
        await connection.exec_driver_sql(actor.context.set_local_statement())


async def _meeting(session: AsyncSession, actor: Actor, meeting_id: int, lock: bool = True) -> Meeting:
    found = await repository.meeting(session, actor.tenant_id, meeting_id, "update" if lock else None)
    if found is None:
        raise NotFound(f"meeting {meeting_id} does not exist or is not visible to you", field="id")
    return found


def _active(invitations: Iterable[Invitation]) -> list[Invitation]:
    return [i for i in invitations if i.state != "declined"]


def _touch(meeting: Meeting, state: str) -> None:
    meeting.state = state
    meeting.updated_at = func.now()


async def _refresh_represented(session: AsyncSession, meeting: Meeting) -> list[Invitation]:
    invitations = await repository.invitations(session, meeting.tenant_id, [meeting.id])
    meeting.represented_kinds = sorted({i.party_kind for i in invitations if i.state == "confirmed"})
    return invitations


# --- the steps -------------------------------------------------------------------------------------------


async def propose(
    session: AsyncSession, actor: Actor, proposal: Proposal, now: datetime | None = None
) -> Meeting:
    moment = now or datetime.now(UTC)
    station = await repository.station(session, actor.tenant_id, proposal.station_id)
    if station is None or station.retired_at is not None:
        raise NotFound(
            f"station {proposal.station_id} does not exist or is not visible to you", field="stationId"
        )
    target = MEETING.transitions["propose"].target
    if MEETING.transitions["propose"].actors.isdisjoint(actor_kinds(actor, station.scope)):
        raise NotAllowed(
            "only the station's liaison or the street, district or city staff may propose a meeting"
        )
    topic = _text(proposal.topic, "topic", 300)
    place = _text(proposal.place, "place", 300, required=False) or None
    video = _text(proposal.video_link, "videoLink", 500, required=False) or None
    if place is None and video is None:
        raise InvalidInput("give a place or a video link", field="place")
    if video is not None and not video.startswith(("https://", "http://")):
        raise InvalidInput("the video link must be an http(s) URL", field="videoLink")
    times, reply_by = _times(proposal.proposed_times, proposal.reply_deadline, moment)
    required = list(
        dict.fromkeys(proposal.required_kinds if proposal.required_kinds is not None else PARTY_KINDS)
    )
    for kind in required:
        if kind not in PARTY_KINDS:
            raise InvalidInput(f"{kind!r} is not a party kind", field="requiredKinds")
    min_kinds = proposal.min_kinds if proposal.min_kinds is not None else max(len(required), 1)
    if not max(len(required), 1) <= min_kinds <= len(PARTY_KINDS):
        raise InvalidInput(
            f"minKinds must lie between {max(len(required), 1)} and {len(PARTY_KINDS)}", field="minKinds"
        )
    if not 0 < proposal.pass_numerator <= proposal.pass_denominator <= 100:
        raise InvalidInput(
            "the pass threshold must be a fraction above 0 and at most 1", field="passThreshold"
        )
    request_ids = sorted(set(proposal.request_ids))
    if request_ids:
        missing = set(request_ids) - await repository.visible_request_ids(
            session, actor.tenant_id, request_ids
        )
        if missing:
            raise InvalidInput(
                f"requests {sorted(missing)} do not exist or are not visible", field="requestIds"
            )
    meeting = Meeting(
        tenant_id=actor.tenant_id,
        scope=station.scope,
        station_id=station.id,
        topic=topic,
        agenda=_text(proposal.agenda, "agenda", 10_000, required=False),
        place=place,
        video_link=video,
        request_ids=request_ids,
        proposed_times=times,
        starts_at=times[0],
        reply_deadline=reply_by,
        state=target,
        round=1,
        required_kinds=required,
        min_kinds=min_kinds,
        represented_kinds=[],
        participant_principals=[],
        pass_numerator=proposal.pass_numerator,
        pass_denominator=proposal.pass_denominator,
        organiser=actor.principal,
    )
    session.add(meeting)
    await session.flush()
    await _record(
        session,
        MEETING,
        meeting,
        subject_id=meeting.id,
        name="propose",
        from_state=None,
        to_state="proposed",
        actor=actor,
        title=f"六方联席会议提议：{topic}",
    )
    return meeting


async def invite(
    session: AsyncSession,
    actor: Actor,
    meeting_id: int,
    parties: Sequence[Party],
    now: datetime | None = None,
) -> Meeting:
    moment = now or datetime.now(UTC)
    meeting = await _meeting(session, actor, meeting_id)
    target = _check_step(MEETING, "invite", meeting.state, actor_kinds(actor, meeting.scope))
    if not parties:
        raise InvalidInput("invite at least one party", field="parties")
    if meeting.reply_deadline <= moment:
        raise Conflict("the reply deadline has passed: reschedule the meeting first", field="id")
    cleaned = [_party(p, "parties") for p in parties]
    existing = {
        i.owner_principal for i in await repository.invitations(session, actor.tenant_id, [meeting.id])
    }
    seen: set[str] = set()
    for party in cleaned:
        if party.principal in existing or party.principal in seen:
            raise InvalidInput(f"{party.principal} is already invited", field="parties")
        seen.add(party.principal)
    created = [
        Invitation(
            tenant_id=meeting.tenant_id,
            meeting_id=meeting.id,
            scope=meeting.scope,
            party_kind=party.kind,
            owner_principal=party.principal,
            name=party.name,
            state="invited",
            round=meeting.round,
        )
        for party in cleaned
    ]
    session.add_all(created)
    meeting.participant_principals = [*meeting.participant_principals, *(p.principal for p in cleaned)]
    from_state = meeting.state
    _touch(meeting, target)
    await session.flush()
    await _schedule_reply_timers(session, meeting, moment)
    event = await _record(
        session,
        MEETING,
        meeting,
        subject_id=meeting.id,
        name="invite",
        from_state=from_state,
        to_state=target,
        actor=actor,
        title=f"邀请参加六方联席会议：{meeting.topic}（{meeting.starts_at:%Y-%m-%d %H:%M} UTC，"
        f"{meeting.reply_deadline:%Y-%m-%d %H:%M} UTC 前回复）",
        to=[i.owner_principal for i in created],
        extra={"invitations": [i.id for i in created]},
    )
    await _announce(session, meeting, [event], actor)
    return meeting


async def reply(
    session: AsyncSession,
    actor: Actor,
    invitation_id: int,
    *,
    accept: bool,
    reason: str | None = None,
    substitute: Party | None = None,
    now: datetime | None = None,
) -> tuple[Invitation, Meeting]:
    """A party confirms or declines; a decline may name a substitute of the same kind, who is invited."""
    moment = now or datetime.now(UTC)
    found = await repository.invitation(session, actor.tenant_id, invitation_id)
    if found is None:
        raise NotFound(f"invitation {invitation_id} does not exist or is not yours", field="invitationId")
    visible = await _meeting(session, actor, found.meeting_id, lock=False)
    async with within_meeting(session, actor, visible):
        meeting = await _meeting(session, actor, found.meeting_id)
        invitation = await repository.invitation(session, actor.tenant_id, invitation_id, "update")
        assert invitation is not None
        if meeting.state not in REPLY_STATES:
            raise IllegalTransition(f"replies are closed: the meeting is {meeting.state}")
        kinds = actor_kinds(actor, meeting.scope, invitation.owner_principal)
        name = "accept" if accept else "decline"
        from_state = invitation.state
        target = _check_step(INVITATION, name, from_state, kinds)
        if substitute is not None and accept:
            raise InvalidInput("only a decline names a substitute", field="substitute")
        invitation.state = target
        invitation.replied_at = moment
        invitation.reason = _text(reason, "reason", 2000, required=False) or None
        substitute_row: Invitation | None = None
        if substitute is not None:
            sub = _party(Party(invitation.party_kind, substitute.principal, substitute.name), "substitute")
            if sub.principal in meeting.participant_principals:
                raise InvalidInput(f"{sub.principal} is already invited", field="substitute")
            substitute_row = Invitation(
                tenant_id=meeting.tenant_id,
                meeting_id=meeting.id,
                scope=meeting.scope,
                party_kind=invitation.party_kind,
                owner_principal=sub.principal,
                name=sub.name,
                state="invited",
                round=meeting.round,
                substitute_for_id=invitation.id,
            )
            session.add(substitute_row)
            meeting.participant_principals = [*meeting.participant_principals, sub.principal]
        await session.flush()
        await _refresh_represented(session, meeting)
        meeting.updated_at = func.now()
        lost = meeting.state == "confirmed" and bool(quorum_missing(meeting))
        verb = "确认参加" if accept else "不能参加"
        events = [
            await _record(
                session,
                INVITATION,
                meeting,
                subject_id=invitation.id,
                name=name,
                from_state=from_state,
                to_state=target,
                actor=actor,
                note=invitation.reason,
                title=f"{invitation.name}（{invitation.party_kind}）{verb}：{meeting.topic}"
                + ("；法定人数已不足" if lost else ""),
                staff=meeting.scope,
            )
        ]
        if substitute_row is not None:
            events.append(
                await _record(
                    session,
                    INVITATION,
                    meeting,
                    subject_id=substitute_row.id,
                    name="reinvite",
                    from_state=None,
                    to_state="invited",
                    actor=actor,
                    title=f"代{invitation.name}参加六方联席会议：{meeting.topic}",
                    to=[substitute_row.owner_principal],
                    extra={"substitute_for": invitation.id},
                )
            )
        await _announce(session, meeting, events, actor)
    return invitation, meeting


async def _meeting_step(
    session: AsyncSession,
    actor: Actor,
    meeting: Meeting,
    name: str,
    *,
    title: str,
    to: Iterable[str],
    note: str | None = None,
    staff: bool = True,
    extra: dict[str, Any] | None = None,
) -> None:
    from_state = meeting.state
    target = _check_step(MEETING, name, from_state, actor_kinds(actor, meeting.scope), note)
    _touch(meeting, target)
    await session.flush()
    event = await _record(
        session,
        MEETING,
        meeting,
        subject_id=meeting.id,
        name=name,
        from_state=from_state,
        to_state=target,
        actor=actor,
        note=note,
        title=title,
        to=to,
        staff=meeting.scope if staff else None,
        extra=extra,
    )
    await _announce(session, meeting, [event], actor)


async def confirm(session: AsyncSession, actor: Actor, meeting_id: int) -> Meeting:
    meeting = await _meeting(session, actor, meeting_id)
    MEETING.check("confirm", meeting.state, actor_kinds(actor, meeting.scope))
    invitations = await _refresh_represented(session, meeting)
    missing = quorum_missing(meeting)
    if missing:
        raise Conflict("the quorum rule does not hold: " + "; ".join(missing), field="quorum")
    meeting.confirmed_at = func.now()
    await _meeting_step(
        session,
        actor,
        meeting,
        "confirm",
        title=f"六方联席会议确定召开：{meeting.topic}（{meeting.starts_at:%Y-%m-%d %H:%M} UTC）",
        to=[i.owner_principal for i in _active(invitations)],
    )
    return meeting


async def reschedule(
    session: AsyncSession,
    actor: Actor,
    meeting_id: int,
    *,
    proposed_times: Sequence[datetime],
    reply_deadline: datetime | None,
    reason: str,
    now: datetime | None = None,
) -> Meeting:
    """New times, a new round: every party still in is asked again; the old round's deadlines are void."""
    moment = now or datetime.now(UTC)
    meeting = await _meeting(session, actor, meeting_id)
    MEETING.check("reschedule", meeting.state, actor_kinds(actor, meeting.scope), reason)
    times, reply_by = _times(proposed_times, reply_deadline, moment)
    await timers.cancel(
        session, tenant_id=meeting.tenant_id, subject_id=meeting.id, kinds=REPLY_TIMERS, now=moment
    )
    invitations = await repository.invitations(session, meeting.tenant_id, [meeting.id], lock="update")
    meeting.round += 1
    meeting.proposed_times, meeting.starts_at, meeting.reply_deadline = times, times[0], reply_by
    meeting.confirmed_at = None
    for invitation in _active(invitations):
        invitation.state, invitation.round = "invited", meeting.round
        invitation.replied_at = invitation.escalated_at = None
    meeting.represented_kinds = []
    await _meeting_step(
        session,
        actor,
        meeting,
        "reschedule",
        note=reason.strip(),
        title=f"六方联席会议改期：{meeting.topic}，新时间 {meeting.starts_at:%Y-%m-%d %H:%M} UTC，"
        f"请于 {meeting.reply_deadline:%Y-%m-%d %H:%M} UTC 前重新回复",
        to=[i.owner_principal for i in _active(invitations)],
        extra={"round": meeting.round},
    )
    await _schedule_reply_timers(session, meeting, moment)
    return meeting


async def cancel(
    session: AsyncSession, actor: Actor, meeting_id: int, *, reason: str, now: datetime | None = None
) -> Meeting:
    meeting = await _meeting(session, actor, meeting_id)
    MEETING.check("cancel", meeting.state, actor_kinds(actor, meeting.scope), reason)
    await timers.cancel(
        session, tenant_id=meeting.tenant_id, subject_id=meeting.id, kinds=REPLY_TIMERS, now=now
    )
    invitations = await repository.invitations(session, meeting.tenant_id, [meeting.id])
    meeting.cancel_reason = reason.strip()
    await _meeting_step(
        session,
        actor,
        meeting,
        "cancel",
        note=meeting.cancel_reason,
        title=f"六方联席会议取消：{meeting.topic}",
        to=[i.owner_principal for i in _active(invitations)],
    )
    return meeting


async def hold(
    session: AsyncSession,
    actor: Actor,
    meeting_id: int,
    attendee_ids: Sequence[int],
    now: datetime | None = None,
) -> Meeting:
    """The meeting took place; `attendee_ids` are the invitations whose parties attended."""
    meeting = await _meeting(session, actor, meeting_id)
    MEETING.check("hold", meeting.state, actor_kinds(actor, meeting.scope))
    invitations = await repository.invitations(session, meeting.tenant_id, [meeting.id], lock="update")
    by_id = {i.id: i for i in invitations}
    unknown = set(attendee_ids) - set(by_id)
    if unknown:
        raise InvalidInput(f"invitations {sorted(unknown)} are not of this meeting", field="attendeeIds")
    if not attendee_ids:
        raise InvalidInput("record at least one attendee", field="attendeeIds")
    present = set(attendee_ids)
    for invitation in invitations:
        invitation.attended = invitation.id in present
    await timers.cancel(
        session, tenant_id=meeting.tenant_id, subject_id=meeting.id, kinds=REPLY_TIMERS, now=now
    )
    meeting.held_at = now or func.now()
    await _meeting_step(
        session,
        actor,
        meeting,
        "hold",
        title=f"六方联席会议已召开：{meeting.topic}（出席 {len(present)} 方代表）",
        to=[by_id[i].owner_principal for i in present],
        extra={"attendees": sorted(present)},
    )
    return meeting


async def record_minutes(
    session: AsyncSession, actor: Actor, meeting_id: int, *, minutes: str, resolution: str
) -> Meeting:
    meeting = await _meeting(session, actor, meeting_id)
    MEETING.check("record_minutes", meeting.state, actor_kinds(actor, meeting.scope))
    meeting.minutes = _text(minutes, "minutes", 100_000)
    meeting.resolution = _text(resolution, "resolution", 10_000)
    attendees = [
        i for i in await repository.invitations(session, meeting.tenant_id, [meeting.id]) if i.attended
    ]
    await _meeting_step(
        session,
        actor,
        meeting,
        "record_minutes",
        title=f"会议纪要与决议草案已记录，请表决：{meeting.topic}",
        to=[i.owner_principal for i in attendees],
        staff=False,
    )
    return meeting


async def cast_vote(
    session: AsyncSession, actor: Actor, invitation_id: int, vote: str
) -> tuple[Invitation, Meeting]:
    """An attending party votes on the resolution (and may change its vote until the tally)."""
    if vote not in VOTES:
        raise InvalidInput(f"a vote is one of {', '.join(VOTES)}", field="vote")
    found = await repository.invitation(session, actor.tenant_id, invitation_id)
    if found is None:
        raise NotFound(f"invitation {invitation_id} does not exist or is not yours", field="invitationId")
    visible = await _meeting(session, actor, found.meeting_id, lock=False)
    async with within_meeting(session, actor, visible):
        meeting = await _meeting(session, actor, found.meeting_id)
        invitation = await repository.invitation(session, actor.tenant_id, invitation_id, "update")
        assert invitation is not None
        if meeting.state != "minuted":
            raise IllegalTransition(
                f"votes are taken once the minutes are recorded; the meeting is {meeting.state}"
            )
        kinds = actor_kinds(actor, meeting.scope, invitation.owner_principal)
        from_state = invitation.state
        target = _check_step(INVITATION, "vote", from_state, kinds)
        if not invitation.attended:
            raise IllegalTransition("only parties who attended the meeting vote")
        invitation.state, invitation.vote = target, vote
        await session.flush()
        await _record(
            session,
            INVITATION,
            meeting,
            subject_id=invitation.id,
            name="vote",
            from_state=from_state,
            to_state=target,
            actor=actor,
            title=f"{invitation.name} 已表决",
            extra={"vote": vote},
        )
    return invitation, meeting


async def tally(session: AsyncSession, actor: Actor, meeting_id: int) -> Meeting:
    meeting = await _meeting(session, actor, meeting_id)
    MEETING.check("tally", meeting.state, actor_kinds(actor, meeting.scope))
    attendees = [
        i for i in await repository.invitations(session, meeting.tenant_id, [meeting.id]) if i.attended
    ]
    counts = {choice: sum(1 for i in attendees if i.vote == choice) for choice in VOTES}
    meeting.votes_yes, meeting.votes_no, meeting.votes_abstain = (
        counts["yes"],
        counts["no"],
        counts["abstain"],
    )
    meeting.passed = resolution_passes(
        counts["yes"], counts["no"], counts["abstain"], meeting.pass_numerator, meeting.pass_denominator
    )
    verdict = "通过" if meeting.passed else "未通过"
    await _meeting_step(
        session,
        actor,
        meeting,
        "tally",
        title=f"决议{verdict}（赞成 {counts['yes']}，反对 {counts['no']}，弃权 {counts['abstain']}）："
        f"{meeting.topic}",
        to=[i.owner_principal for i in attendees],
        extra={"votes": counts, "passed": meeting.passed},
    )
    return meeting


async def assign_actions(
    session: AsyncSession,
    actor: Actor,
    meeting_id: int,
    items: Sequence[NewAction],
    now: datetime | None = None,
) -> Meeting:
    moment = now or datetime.now(UTC)
    meeting = await _meeting(session, actor, meeting_id)
    MEETING.check("assign_actions", meeting.state, actor_kinds(actor, meeting.scope))
    if not items:
        raise InvalidInput("assign at least one action item (or close the meeting)", field="items")
    created: list[ActionItem] = []
    for item in items:
        party = _party(Party(item.kind, item.principal, "-"), "items")
        due = _aware(item.due_at, "items")
        if due <= moment:
            raise InvalidInput("an action item's due date must lie in the future", field="items")
        created.append(
            ActionItem(
                tenant_id=meeting.tenant_id,
                meeting_id=meeting.id,
                scope=meeting.scope,
                party_kind=party.kind,
                owner_principal=party.principal,
                title=_text(item.title, "items", 300),
                due_at=due,
                state="open",
            )
        )
    session.add_all(created)
    new_principals = [
        a.owner_principal for a in created if a.owner_principal not in meeting.participant_principals
    ]
    meeting.participant_principals = [*meeting.participant_principals, *dict.fromkeys(new_principals)]
    await _meeting_step(
        session,
        actor,
        meeting,
        "assign_actions",
        title=f"六方联席会议进入督办：{meeting.topic}（{len(created)} 项任务）",
        to=[],
    )
    events = []
    for action in created:
        common: dict[str, Any] = {
            "tenant_id": meeting.tenant_id,
            "scope": meeting.scope,
            "subject_id": action.id,
        }
        reminder = action.due_at - timedelta(hours=24)
        if reminder > moment:
            await timers.schedule(
                session,
                **common,
                kind=ACTION_REMINDER,
                key=f"meeting-action:{action.id}:remind",
                due_at=reminder,
            )
        await timers.schedule(
            session,
            **common,
            kind=ACTION_OVERDUE,
            key=f"meeting-action:{action.id}:overdue",
            due_at=action.due_at,
        )
        events.append(
            await _record(
                session,
                ACTION,
                meeting,
                subject_id=action.id,
                name="assign",
                from_state=None,
                to_state="open",
                actor=actor,
                title=f"督办任务：{action.title}（{action.due_at:%Y-%m-%d} 前完成）",
                to=[action.owner_principal],
            )
        )
    await _announce(session, meeting, events, actor)
    return meeting


async def _action_step(
    session: AsyncSession, actor: Actor, action_id: int, name: str, note: str | None, now: datetime | None
) -> tuple[ActionItem, Meeting]:
    found = await repository.action(session, actor.tenant_id, action_id)
    if found is None:
        raise NotFound(f"action item {action_id} does not exist or is not yours", field="actionItemId")
    visible = await _meeting(session, actor, found.meeting_id, lock=False)
    async with within_meeting(session, actor, visible):
        meeting = await _meeting(session, actor, found.meeting_id)
        action = await repository.action(session, actor.tenant_id, action_id, "update")
        assert action is not None
        if meeting.state != "supervising":
            raise IllegalTransition(
                f"action items are worked on while the meeting is supervised; it is {meeting.state}"
            )
        kinds = actor_kinds(actor, meeting.scope, action.owner_principal)
        from_state = action.state
        target = _check_step(ACTION, name, from_state, kinds, note)
        cleaned = _text(note, "note", 4000, required=False) or None
        action.state = target
        if cleaned:
            action.progress = cleaned
        if target == "done":
            action.done_at = now or datetime.now(UTC)
            await timers.cancel(
                session, tenant_id=meeting.tenant_id, subject_id=action.id, kinds=ACTION_TIMERS, now=now
            )
        await session.flush()
        verb = "已完成" if target == "done" else "进展"
        event = await _record(
            session,
            ACTION,
            meeting,
            subject_id=action.id,
            name=name,
            from_state=from_state,
            to_state=target,
            actor=actor,
            note=cleaned,
            title=f"督办任务{verb}：{action.title}",
            staff=meeting.scope,
        )
        await _announce(session, meeting, [event], actor)
    return action, meeting


async def report_progress(
    session: AsyncSession, actor: Actor, action_id: int, note: str, now: datetime | None = None
) -> tuple[ActionItem, Meeting]:
    return await _action_step(session, actor, action_id, "progress", note, now)


async def complete_action(
    session: AsyncSession, actor: Actor, action_id: int, note: str | None = None, now: datetime | None = None
) -> tuple[ActionItem, Meeting]:
    return await _action_step(session, actor, action_id, "complete", note, now)


async def close(session: AsyncSession, actor: Actor, meeting_id: int, *, report: str) -> Meeting:
    meeting = await _meeting(session, actor, meeting_id)
    MEETING.check("close", meeting.state, actor_kinds(actor, meeting.scope), report)
    open_items = [
        a for a in await repository.actions(session, meeting.tenant_id, [meeting.id]) if a.state != "done"
    ]
    if open_items:
        raise Conflict(f"{len(open_items)} action items are not done yet", field="id")
    meeting.closing_report = _text(report, "report", 100_000)
    meeting.closed_at = func.now()
    invitations = await repository.invitations(session, meeting.tenant_id, [meeting.id])
    await _meeting_step(
        session,
        actor,
        meeting,
        "close",
        note=meeting.closing_report,
        title=f"六方联席会议办结：{meeting.topic}",
        to=[i.owner_principal for i in _active(invitations)],
    )
    return meeting


# --- deadlines ---------------------------------------------------------------------------------------


async def on_reply_timer(session: AsyncSession, timer: Timer, now: datetime) -> None:
    """Remind, or at the deadline escalate to the street staff, every party that has not answered."""
    system = system_actor(timer.tenant_id)
    meeting = await repository.meeting(session, timer.tenant_id, timer.subject_id, "update")
    if meeting is None or meeting.state not in REPLY_STATES or meeting.round != timer.payload.get("round"):
        return
    escalate = timer.kind == REPLY_DEADLINE
    invitations = await repository.invitations(session, meeting.tenant_id, [meeting.id], lock="update")
    events = []
    for invitation in invitations:
        if invitation.state != "invited" or invitation.round != meeting.round:
            continue
        name = "escalate" if escalate else "remind"
        target = _check_step(INVITATION, name, invitation.state, {SYSTEM})
        if escalate:
            invitation.escalated_at = now
            title = f"{invitation.name}（{invitation.party_kind}）逾期未回复六方联席会议邀请：{meeting.topic}"
            to: list[str] = []
            staff: str | None = street_scope(meeting.scope)
        else:
            hours = timer.payload.get("hours")
            title = (
                f"请于 {meeting.reply_deadline:%Y-%m-%d %H:%M} UTC 前回复（剩 {hours} 小时）：{meeting.topic}"
            )
            to, staff = [invitation.owner_principal], None
        events.append(
            await _record(
                session,
                INVITATION,
                meeting,
                subject_id=invitation.id,
                name=name,
                from_state=invitation.state,
                to_state=target,
                actor=system,
                title=title,
                to=to,
                staff=staff,
                extra={"round": meeting.round, "timer": timer.key},
            )
        )
    await _announce(session, meeting, events, system)


async def on_action_timer(session: AsyncSession, timer: Timer, now: datetime) -> None:
    """Remind the assignee before the due date; past it, flag the item overdue and tell the street."""
    system = system_actor(timer.tenant_id)
    action = await repository.action(session, timer.tenant_id, timer.subject_id, "update")
    if action is None or action.state != "open":
        return
    meeting = await repository.meeting(session, timer.tenant_id, action.meeting_id, "update")
    if meeting is None or meeting.state != "supervising":
        return
    overdue = timer.kind == ACTION_OVERDUE
    name = "overdue" if overdue else "remind"
    target = _check_step(ACTION, name, action.state, {SYSTEM})
    if overdue:
        action.overdue = True
    event = await _record(
        session,
        ACTION,
        meeting,
        subject_id=action.id,
        name=name,
        from_state=action.state,
        to_state=target,
        actor=system,
        title=(f"督办任务逾期：{action.title}" if overdue else f"督办任务明天到期：{action.title}"),
        to=[action.owner_principal],
        staff=street_scope(meeting.scope) if overdue else None,
        extra={"timer": timer.key},
    )
    await _announce(session, meeting, [event], system)


async def meeting_history(session: AsyncSession, tenant_id: int, meeting_id: int) -> list[WorkflowEvent]:
    return await history(session, tenant_id, MEETING.name, meeting_id)
