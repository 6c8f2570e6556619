"""The work order's states, its steps and who may take each one: the only place they are declared."""

from __future__ import annotations

from services.workflow.machine import SYSTEM, StateMachine, step
from tenants.roles import Role

SUBMITTED, ACCEPTED, ASSIGNED, IN_PROGRESS = "submitted", "accepted", "assigned", "in_progress"
RESOLVED, CLOSED, RETURNED, REOPENED, MERGED, REJECTED = (
    "resolved",
    "closed",
    "returned",
    "reopened",
    "merged",
    "rejected",
)
STATES = (SUBMITTED, ACCEPTED, ASSIGNED, IN_PROGRESS, RESOLVED, CLOSED, RETURNED, REOPENED, MERGED, REJECTED)
# Still waiting for someone to act: counted as open, swept for deadlines, offered as duplicates.
OPEN_STATES = frozenset({SUBMITTED, ACCEPTED, ASSIGNED, IN_PROGRESS, RETURNED, REOPENED})
# Not yet answered (the response deadline still runs).
UNANSWERED = frozenset({SUBMITTED, RETURNED})

# Actor kinds besides roles: the resident who submitted it, and whoever it is assigned to.
SUBMITTER, ASSIGNEE = "submitter", "assignee"
DISPATCHERS = (Role.CITY_ADMIN, Role.DISTRICT_STAFF, Role.STREET_STAFF)
STAFF = (*DISPATCHERS, Role.STATION_LIAISON)
# Whoever it is assigned to (a deputy a routing rule named, a grid worker) handles what is theirs.
HANDLERS = (*STAFF, ASSIGNEE)

# Levels of "small matters in the community, big ones to the deputy, hard ones to the departments".
LEVELS = ("station", "deputy", "department")

REQUEST = StateMachine(
    "request",
    STATES,
    [
        step("accept", {SUBMITTED, RETURNED}, ACCEPTED, HANDLERS),
        step("assign", {ACCEPTED, REOPENED}, ASSIGNED, STAFF),
        step("reassign", {ASSIGNED, IN_PROGRESS}, ASSIGNED, STAFF, note=True),
        # From ACCEPTED too: a request routed to its assignee is accepted by them and needs no assigning.
        step("start", {ACCEPTED, ASSIGNED}, IN_PROGRESS, HANDLERS),
        step("resolve", {ASSIGNED, IN_PROGRESS}, RESOLVED, HANDLERS, note=True),
        # A station (or the assignee) sends back what is not its to handle; a dispatcher routes it again.
        step("return", {SUBMITTED, ACCEPTED, ASSIGNED, IN_PROGRESS}, RETURNED, HANDLERS, note=True),
        # By hand (a dispatcher), or by the system once new grid cells cover the point.
        step("reroute", {SUBMITTED, RETURNED}, SUBMITTED, (*DISPATCHERS, SYSTEM)),
        step("merge", OPEN_STATES, MERGED, STAFF, note=True),
        step("reject", {SUBMITTED, ACCEPTED, RETURNED}, REJECTED, STAFF, note=True),
        # Only the submitter's rating (or the beat job, when none comes) ends or reopens a resolution.
        step("close", {RESOLVED}, CLOSED, (SUBMITTER, SYSTEM)),
        step("reopen", {RESOLVED}, REOPENED, (SUBMITTER, SYSTEM), note=True),
        step("escalate", OPEN_STATES, ASSIGNED, (SYSTEM, *DISPATCHERS), note=True),
    ],
)

# The mutation that takes each step: what `availableSteps` names. A rating closes or reopens.
MUTATIONS = {
    "accept": "acceptRequest",
    "assign": "assignRequest",
    "reassign": "assignRequest",
    "start": "startRequest",
    "resolve": "resolveRequest",
    "return": "returnRequest",
    "reroute": "rerouteRequest",
    "merge": "mergeRequest",
    "reject": "rejectRequest",
    "close": "rateRequest",
    "reopen": "rateRequest",
    "escalate": "escalateRequest",
}
# Steps whose note is addressed to the submitter, so shown publicly unless marked otherwise; the notes of
# the other steps are the staff's own unless marked public.
PUBLIC_NOTE_STEPS = frozenset({"resolve", "reject"})


def mutations_for(steps: list[str]) -> list[str]:
    return list(dict.fromkeys(MUTATIONS[name] for name in steps if name in MUTATIONS))
