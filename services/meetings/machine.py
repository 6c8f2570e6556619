"""The six-party joint meeting, declared once: its states and steps and who may take each (MEETING, and
INVITATION and ACTION for the invitations and action items), who an actor is, and the rules and checks of
its input that every step shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.errors import InvalidInput
from services.meetings.models import MEETING_STATES, PARTY_KINDS, Meeting
from services.workflow.machine import SYSTEM, StateMachine, step
from tenants.context import PRINCIPAL_PATTERN, TenantContext, scope_is_within

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
        # The substitute a declining party (or the staff) names: a new invitation.
        step("reinvite", (), "invited", {INVITEE, *ORGANISERS}),
        step("vote", ("invited", "confirmed"), "confirmed", {INVITEE}),
    ],
)
ACTION = StateMachine(
    "meeting_action",
    ("open", "done"),
    [
        step("assign", (), "open", ORGANISERS),
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


# --- input ---------------------------------------------------------------------------------------------


def aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidInput("times need a time zone (e.g. 2026-12-01T09:00:00+08:00)", field=field)
    return value.astimezone(UTC)


def text(value: str | None, field: str, limit: int, *, required: bool = True) -> str:
    cleaned = (value or "").strip()
    if required and not cleaned:
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(cleaned) > limit:
        raise InvalidInput(f"{field} is longer than {limit} characters", field=field)
    return cleaned


def party(given: Party, field: str) -> Party:
    if given.kind not in PARTY_KINDS:
        raise InvalidInput(f"{given.kind!r} is not a party kind", field=field)
    if not PRINCIPAL_PATTERN.fullmatch(given.principal):
        raise InvalidInput(f"{given.principal!r} is not a principal such as user:42", field=field)
    return Party(given.kind, given.principal, text(given.name, field, 100))


def times(
    proposed: Sequence[datetime], deadline: datetime | None, now: datetime
) -> tuple[list[datetime], datetime]:
    if not proposed:
        raise InvalidInput("propose at least one time", field="proposedTimes")
    chosen = [aware(t, "proposedTimes") for t in proposed]
    if any(t <= now for t in chosen):
        raise InvalidInput("proposed times must lie in the future", field="proposedTimes")
    reply_by = aware(deadline, "replyDeadline") if deadline else chosen[0] - DEFAULT_REPLY_WINDOW
    if reply_by > chosen[0]:
        raise InvalidInput("the reply deadline must come before the meeting", field="replyDeadline")
    if reply_by <= now:
        raise InvalidInput("the reply deadline must lie in the future", field="replyDeadline")
    return chosen, reply_by
