"""Every mutation of the schema, tried from a sibling scope and from another city: nothing changes, and the
answer for a sibling's row is the answer for a row that does not exist.

Driven by the schema itself: each mutation's arguments are filled from their GraphQL types, every id in them
is given a row of the other district (and, for mutations that take several ids, the caller's own row for the
first and a sibling's for the rest), and the same call is made with ids that exist nowhere. A new mutation
is covered the day it is added; one that no caller here can tell apart from a missing row, or that changes a
single row of the city, fails this test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
)

from deploy.seed import seed_synthetic
from schema.relay import decode_id, encode_id
from schema.schema import build_schema
from tenants.db import Database
from tenants.roles import Role
from tests.helpers import Api, TenantInfo
from tests.requests_city import City, StationInfo, build_city

# Mutations that act on no existing row: signing in, and submitting a request (a hotline operator of one
# district takes a caller's request about any place; intake routes it, and the receipt is checked in the
# requests tests).
NOT_ON_ROWS = {"login", "submitRequest"}
MISSING_KEY = 987_654_321
# The type of an id argument, by its name; `id` itself is found by asking the API (below).
ID_TYPES: dict[str, tuple[str, ...]] = {
    "stationId": ("Station",),
    "streetId": ("Street",),
    "districtId": ("District",),
    "intoId": ("Request",),
    "requestId": ("Request",),
    "requestIds": ("Request",),
    "meetingId": ("Meeting",),
    "invitationId": ("MeetingInvitation",),
    "attendeeInvitationIds": ("MeetingInvitation",),
    "actionItemId": ("MeetingActionItem",),
    "deliberationId": ("Deliberation",),
    "registrationIds": ("DeliberationRegistration",),
    "caseId": ("MediationCase",),
    "nodeId": ("District", "Street", "Station"),
    "scopeNodeId": ("District", "Street", "Station"),
    "ids": ("Notification",),
    "deputyId": ("Deputy",),
    "volunteerId": ("DeputyVolunteer",),
    "resourceId": ("Resource",),
    "entryId": ("PointEntry",),
}
GLOBAL_TYPES = (
    "City",
    "District",
    "Street",
    "Station",
    "GridCell",
    "Request",
    "Meeting",
    "MeetingInvitation",
    "MeetingActionItem",
    "Deliberation",
    "DeliberationRegistration",
    "MediationCase",
    "Notification",
    "WebhookEndpoint",
    "WebhookDelivery",
    "Deputy",
    "DeputyVolunteer",
    "Demand",
    "Resource",
    "Match",
    "Activity",
    "Rectification",
    "PointEntry",
    "DeputyWarning",
)
# Ids that are plain numbers rather than global ids.
PLAIN_TYPES = ("RoutingRule",)
SECRETS = ("13900000001", "13900000002", "13900000003", "受害人")


# --- the city: rows in district B, the caller in district A ---------------------------------------------


@dataclass
class Rows:
    """Rows by type: the sibling district's, the caller's own, and the other tenant's."""

    sibling: dict[str, list[str]] = field(default_factory=dict)
    own: dict[str, list[str]] = field(default_factory=dict)
    tickets: list[str] = field(default_factory=list)


def _gid(type_name: str, key: int) -> str:
    return str(encode_id(type_name, key)) if type_name not in PLAIN_TYPES else str(key)


def _missing(type_name: str, slot: int = 0) -> str:
    return _gid(type_name, MISSING_KEY + slot)


async def _ok(api: Api, token: str, mutation: str, variables: dict[str, Any]) -> None:
    response = await api.post(mutation, variables, token)
    body = response.json()
    assert response.status_code == 200 and not body.get("errors"), body
    (result,) = body["data"].values()
    assert "code" not in result, result


def doc(name: str, **arguments: str) -> str:
    """A mutation document taking `arguments` (name: GraphQL type) that answers its type or error."""
    declared = ", ".join(f"${arg}: {kind}" for arg, kind in arguments.items())
    passed = ", ".join(f"{arg}: ${arg}" for arg in arguments)
    return f"mutation({declared}) {{ {name}({passed}) {{ __typename ... on Error {{ code message }} }} }}"


SUBMIT = doc("submitRequest", input="SubmitRequestInput!")


def _location(city: City, k: int) -> dict[str, float]:
    lon, lat = city.point(k)
    return {"longitude": lon, "latitude": lat}


async def _requests(api: Api, city: City, admin: str, resident: str) -> None:
    code = city.tenant.code
    anonymous = {"category": "environment", "description": "垃圾桶满溢", "tenant": code}
    await _ok(
        api, "", SUBMIT, {"input": {**anonymous, "location": _location(city, 2), "contactPhone": SECRETS[0]}}
    )
    await _ok(
        api,
        resident,
        SUBMIT,
        {"input": {**anonymous, "tenant": None, "location": _location(city, 3), "contactPhone": SECRETS[1]}},
    )
    hotline = {**anonymous, "tenant": None, "channel": "HOTLINE", "contactName": SECRETS[3]}
    await _ok(
        api, admin, SUBMIT, {"input": {**hotline, "location": _location(city, 2), "contactPhone": SECRETS[2]}}
    )
    await _ok(api, "", SUBMIT, {"input": {**anonymous, "location": _location(city, 0)}})


async def _resolve(api: Api, admin: str, request_gid: str) -> None:
    await _ok(api, admin, doc("acceptRequest", id="ID!"), {"id": request_gid})
    await _ok(
        api,
        admin,
        doc("assignRequest", id="ID!", assignee="String"),
        {"id": request_gid, "assignee": "user:1"},
    )
    await _ok(api, admin, doc("startRequest", id="ID!"), {"id": request_gid})
    await _ok(
        api, admin, doc("resolveRequest", id="ID!", note="String!"), {"id": request_gid, "note": "已处理"}
    )


def _future(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def _ok_with_input(api: Api, token: str, name: str, fields: dict[str, Any]) -> None:
    """Mutation `name` given `fields` as its input, which must succeed."""
    await _ok(api, token, doc(name, input=api.input_type(name)), {"input": fields})


def _latest(owner_dsn: str, table: str, tenant_id: int, where: str = "true", n: int = 1) -> list[int]:
    with psycopg.connect(owner_dsn) as conn:
        rows = conn.execute(
            f"SELECT id FROM {table} WHERE tenant_id = %s AND {where} ORDER BY id DESC LIMIT {n}",
            (tenant_id,),
        ).fetchall()
    return sorted(int(row[0]) for row in rows)


async def _populate(api: Api, owner_dsn: str, city: City) -> Rows:
    tenant = city.tenant
    t = tenant.tenant_id
    a, b = city.stations[0], city.stations[2]
    admin = api.token(tenant, ["city_admin"], sub="operator:setup")
    victim = api.token(tenant, ["resident"], [city.stations[3].scope], sub="user:9001")
    rows = Rows()

    await _requests(api, city, admin, victim)
    with psycopg.connect(owner_dsn) as conn:
        requests = conn.execute(
            "SELECT id, ticket, scope::text FROM requests WHERE tenant_id = %s ORDER BY id", (t,)
        ).fetchall()
    sibling_requests = [r for r in requests if r[2].startswith(b.district_scope + ".")]
    own_requests = [r for r in requests if r[2].startswith(a.district_scope + ".")]
    rows.tickets = [r[1] for r in requests]
    for request_id, _, _ in sibling_requests[1:]:
        await _resolve(api, admin, _gid("Request", request_id))

    # Meetings: the sibling's all the way to supervision, the caller's own confirmed.
    kinds = ["DEPUTY", "PARTY_ORGANISATION", "RESIDENTS_COMMITTEE"]
    party = {
        kind: api.token(tenant, ["grid_worker"], [city.stations[3].scope], sub=f"user:{9100 + n}")
        for n, kind in enumerate(kinds)
    }
    for station, chosen in ((b, kinds), (a, kinds[:1])):
        await _ok_with_input(
            api,
            admin,
            "proposeMeeting",
            {
                "stationId": _gid("Station", station.id),
                "topic": "停车难",
                "proposedTimes": [_future(10)],
                "place": "社区议事厅",
                "requiredKinds": chosen,
                "minKinds": len(chosen),
            },
        )
        (meeting_id,) = _latest(owner_dsn, "meetings", t)
        meeting = _gid("Meeting", meeting_id)
        parties = [
            {"kind": kind, "principal": f"user:{9100 + n}", "name": f"代表{n}"}
            for n, kind in enumerate(chosen)
        ]
        await _ok_with_input(api, admin, "inviteMeetingParties", {"meetingId": meeting, "parties": parties})
        invitations = _latest(
            owner_dsn, "meeting_invitations", t, f"meeting_id = {meeting_id}", n=len(chosen)
        )
        for invitation_id, kind in zip(invitations, chosen, strict=True):
            await _ok_with_input(
                api,
                party[kind],
                "replyToMeetingInvitation",
                {"invitationId": _gid("MeetingInvitation", invitation_id), "accept": True},
            )
        await _ok(api, admin, doc("confirmMeeting", meetingId="ID!"), {"meetingId": meeting})
        target = rows.sibling if station is b else rows.own
        target["Meeting"] = [meeting]
        target["MeetingInvitation"] = [_gid("MeetingInvitation", i) for i in invitations]
        if station is not b:
            continue
        attendees = [_gid("MeetingInvitation", i) for i in invitations]
        await _ok_with_input(
            api, admin, "holdMeeting", {"meetingId": meeting, "attendeeInvitationIds": attendees}
        )
        await _ok_with_input(
            api,
            admin,
            "recordMeetingMinutes",
            {"meetingId": meeting, "minutes": "纪要", "resolution": "决议"},
        )
        for invitation, kind in zip(attendees, chosen, strict=True):
            await _ok_with_input(
                api, party[kind], "castMeetingVote", {"invitationId": invitation, "vote": "YES"}
            )
        await _ok(api, admin, doc("tallyMeetingVotes", meetingId="ID!"), {"meetingId": meeting})
        await _ok_with_input(
            api,
            admin,
            "assignMeetingActionItems",
            {
                "meetingId": meeting,
                "items": [{"kind": "DEPUTY", "assignee": "user:9100", "title": "划线", "dueAt": _future(20)}],
            },
        )
        rows.sibling["MeetingActionItem"] = [
            _gid("MeetingActionItem", i) for i in _latest(owner_dsn, "meeting_actions", t)
        ]

    async def one_at_each_station(
        mutation: str, fields: Callable[[StationInfo], dict[str, Any]], table: str, type_name: str
    ) -> None:
        """`mutation` by the admin at the sibling station and at the caller's own; the rows it makes."""
        for station in (b, a):
            await _ok_with_input(api, admin, mutation, fields(station))
            (row_id,) = _latest(owner_dsn, table, t)
            (rows.sibling if station is b else rows.own)[type_name] = [_gid(type_name, row_id)]

    # Deliberations: one put to each station; the victim registers for the sibling's.
    await one_at_each_station(
        "proposeDeliberation",
        lambda station: {
            "nodeId": _gid("Station", station.id),
            "topic": "加装电梯",
            "meetingAt": _future(10),
            "registrationDeadline": _future(5),
            "votingClosesAt": _future(11),
            "capacity": 20,
            "quorum": 1,
        },
        "deliberations",
        "Deliberation",
    )
    resident_b = api.token(tenant, ["resident"], [b.scope], sub="user:9002")
    await _ok_with_input(
        api,
        resident_b,
        "registerForDeliberation",
        {
            "deliberationId": rows.sibling["Deliberation"][0],
            "displayName": "王",
            "ageBand": "AGE_30_44",
            "tenure": "OWNER",
            "residency": "LONG_TERM",
        },
    )
    rows.sibling["DeliberationRegistration"] = [
        _gid("DeliberationRegistration", i) for i in _latest(owner_dsn, "deliberation_registrations", t)
    ]

    # Mediation: a case at each station, the sibling's with a session.
    await one_at_each_station(
        "openMediationCase",
        lambda station: {
            "stationId": _gid("Station", station.id),
            "caseType": "NEIGHBOURS",
            "description": "漏水",
            "parties": [
                {"name": SECRETS[3], "role": "APPLICANT"},
                {"name": "李", "role": "RESPONDENT"},
            ],
        },
        "mediation_cases",
        "MediationCase",
    )
    await _ok_with_input(
        api,
        admin,
        "recordMediationSession",
        {
            "caseId": rows.sibling["MediationCase"][0],
            "heldOn": datetime.now(UTC).date().isoformat(),
            "notes": "调解",
        },
    )

    # Routing, webhooks and notices of district B.
    district_b = _gid("District", b.district_id)
    await _ok_with_input(
        api,
        admin,
        "setRoutingRule",
        {
            "nodeId": district_b,
            "category": "environment",
            "responsible": "DEPARTMENT",
            "department": "区城管委",
        },
    )
    rows.sibling["RoutingRule"] = [str(i) for i in _latest(owner_dsn, "routing_rules", t)]
    await _ok_with_input(
        api,
        admin,
        "createWebhookEndpoint",
        {"name": "district-b", "url": "https://hooks.example.com/b", "scopeNodeId": district_b},
    )
    (endpoint_id,) = _latest(owner_dsn, "webhook_endpoints", t)
    with psycopg.connect(owner_dsn) as conn:
        conn.execute(
            "INSERT INTO webhook_deliveries (tenant_id, endpoint_id, scope, source, kind, status, attempts) "
            "VALUES (%s, %s, %s::ltree, 'sibling-test', 'request.submitted', 'dead', 8)",
            (t, endpoint_id, b.district_scope),
        )
        conn.execute(
            "INSERT INTO notifications (tenant_id, scope, kind, title, source) "
            "VALUES (%s, %s::ltree, 'request.submitted', '新诉求', 'sibling-test-staff')",
            (t, b.district_scope),
        )
        conn.execute(
            "INSERT INTO notifications (tenant_id, scope, kind, title, source, owner_principal) "
            "VALUES (%s, %s::ltree, 'request.accepted', '已受理', 'sibling-test-victim', 'user:9001')",
            (t, b.scope),
        )
    rows.sibling["WebhookEndpoint"] = [_gid("WebhookEndpoint", endpoint_id)]
    rows.sibling["WebhookDelivery"] = [
        _gid("WebhookDelivery", i) for i in _latest(owner_dsn, "webhook_deliveries", t)
    ]
    rows.sibling["Notification"] = [
        _gid("Notification", i) for i in _latest(owner_dsn, "notifications", t, n=2)
    ]

    # Deputies: one kept by each station's street, linked to it, with a volunteer.
    for station in (b, a):
        street = _gid("Street", _street_id(owner_dsn, t, station.street_scope))
        await _ok_with_input(
            api,
            admin,
            "createDeputy",
            {"nodeId": street, "name": "代表", "level": "DISTRICT", "termStart": "2022-01-01"},
        )
        (deputy_id,) = _latest(owner_dsn, "deputies", t)
        deputy = _gid("Deputy", deputy_id)
        await _ok(
            api,
            admin,
            doc("linkDeputyToStation", deputyId="ID!", stationId="ID!"),
            {"deputyId": deputy, "stationId": _gid("Station", station.id)},
        )
        await _ok_with_input(api, admin, "addDeputyVolunteer", {"deputyId": deputy, "name": "志愿者"})
        (volunteer_id,) = _latest(owner_dsn, "deputy_volunteers", t)
        target = rows.sibling if station is b else rows.own
        target["Deputy"] = [deputy]
        target["DeputyVolunteer"] = [_gid("DeputyVolunteer", volunteer_id)]

        # The double list: a resource of the street serving the station, a demand there, their match.
        station_gid = _gid("Station", station.id)
        resource_input = {
            "nodeId": street,
            "name": "资源",
            "ownerKind": "DEPUTY",
            "offer": "SKILL",
            "skills": ["environment"],
            "monthlyCapacity": 5,
            "ownerPrincipal": station.deputy,
        }
        await _ok_with_input(api, admin, "createResource", resource_input)
        (resource_id,) = _latest(owner_dsn, "resources", t)
        resource = _gid("Resource", resource_id)
        await _ok(
            api,
            admin,
            doc("setResourceStation", resourceId="ID!", stationId="ID!"),
            {"resourceId": resource, "stationId": station_gid},
        )
        demand_input = {"stationId": station_gid, "category": "environment", "title": "需求"}
        await _ok_with_input(api, admin, "createDemand", demand_input)
        (demand_id,) = _latest(owner_dsn, "demands", t)
        await _ok(api, admin, doc("runMatching", nodeId="ID"), {"nodeId": station_gid})
        (match_id,) = _latest(owner_dsn, "matches", t, f"demand_id = {demand_id}")
        activity_input = {
            "deputyId": deputy,
            "stationId": station_gid,
            "kind": "VISIT",
            "title": "走访",
            "startsAt": _future(-0.1),
        }
        await _ok_with_input(api, admin, "reportActivity", activity_input)
        (activity_id,) = _latest(owner_dsn, "activities", t)
        with psycopg.connect(owner_dsn) as conn:
            conn.execute(
                "INSERT INTO rectifications (tenant_id, scope, subject, reason) "
                "VALUES (%s, %s::ltree, %s, '整改')",
                (t, station.scope, f"activity:{activity_id}"),
            )
        (rectification_id,) = _latest(owner_dsn, "rectifications", t)
        with psycopg.connect(owner_dsn) as conn:
            conn.execute(
                "INSERT INTO point_entries (tenant_id, scope, deputy_id, event, points, source_kind, "
                "source_id, earned_at, created_by) "
                "VALUES (%s, %s::ltree, %s, 'activity.visit', 2, 'activity', %s, now(), 'test')",
                (t, station.scope, decode_id(deputy)[1], activity_id),
            )
        (entry_id,) = _latest(owner_dsn, "point_entries", t)
        target["PointEntry"] = [_gid("PointEntry", entry_id)]
        with psycopg.connect(owner_dsn) as conn:
            conn.execute(
                "INSERT INTO deputy_warnings (tenant_id, scope, deputy_id, level, first_week, last_week) "
                "SELECT tenant_id, scope, id, 'blue', current_date, current_date FROM deputies "
                "WHERE tenant_id = %s AND id = %s",
                (t, decode_id(deputy)[1]),
            )
        (warning_id,) = _latest(owner_dsn, "deputy_warnings", t)
        target["DeputyWarning"] = [_gid("DeputyWarning", warning_id)]
        target["Activity"] = [_gid("Activity", activity_id)]
        target["Rectification"] = [_gid("Rectification", rectification_id)]
        target["Resource"] = [resource]
        target["Demand"] = [_gid("Demand", demand_id)]
        target["Match"] = [_gid("Match", match_id)]

    rows.sibling["Request"] = [_gid("Request", r[0]) for r in sibling_requests]
    rows.own["Request"] = [_gid("Request", r[0]) for r in own_requests]
    rows.sibling["District"] = [district_b]
    rows.sibling["Street"] = [_gid("Street", _street_id(owner_dsn, t, b.street_scope))]
    rows.sibling["Station"] = [_gid("Station", b.id)]
    rows.sibling["GridCell"] = [_gid("GridCell", b.grid_cell_id)]
    rows.own["District"] = [_gid("District", a.district_id)]
    rows.own["Street"] = [_gid("Street", _street_id(owner_dsn, t, a.street_scope))]
    rows.own["Station"] = [_gid("Station", a.id)]
    return rows


def _street_id(owner_dsn: str, tenant_id: int, scope: str) -> int:
    with psycopg.connect(owner_dsn) as conn:
        found = conn.execute(
            "SELECT id FROM streets WHERE tenant_id = %s AND scope = %s::ltree", (tenant_id, scope)
        ).fetchone()
    assert found is not None
    return int(found[0])


# --- filling arguments from the schema ------------------------------------------------------------------


def _unwrap(kind: GraphQLInputType) -> tuple[GraphQLInputType, bool, bool]:
    """(named type, required, a list)."""
    required = isinstance(kind, GraphQLNonNull)
    if isinstance(kind, GraphQLNonNull):
        kind = kind.of_type
    listed = isinstance(kind, GraphQLList)
    if isinstance(kind, GraphQLList):
        kind = kind.of_type
        if isinstance(kind, GraphQLNonNull):
            kind = kind.of_type
    return kind, required, listed


STRINGS = {
    "tenant": "sibling",
    "url": "https://hooks.example.com/x",
    "assignee": "user:1",
    "mediator": "user:1",
    "principal": "user:1",
    "deputy": "user:1",
    "code": "zz1",
    "category": "environment",
    "timezone": "Asia/Shanghai",
    "department": "区城管委",
    "ticket": "20260101-000001",
}
INTS = {"score": 5, "year": 2030, "capacity": 10, "quorum": 1, "level": 1, "passDenominator": 2}


def _scalar(name: str, kind: GraphQLScalarType, city: City) -> Any:
    lon, lat = city.point(2)
    if kind.name == "String":
        return STRINGS.get(name, "测试说明")
    if kind.name == "Int":
        return INTS.get(name, 1)
    if kind.name == "Float":
        return {"longitude": lon, "latitude": lat, "lon": lon, "lat": lat}.get(name, 1.0)
    if kind.name == "Boolean":
        return True
    if kind.name == "DateTime":
        return _future({"dueAt": 20, "registrationDeadline": 5, "replyDeadline": 5}.get(name, 10))
    if kind.name == "Date":
        return "2030-01-01"
    if kind.name == "JSON":
        square = [
            [lon - 0.001, lat - 0.001],
            [lon + 0.001, lat - 0.001],
            [lon + 0.001, lat + 0.001],
            [lon - 0.001, lat + 0.001],
            [lon - 0.001, lat - 0.001],
        ]
        return {"type": "Polygon", "coordinates": [square]}
    raise AssertionError(f"no value for scalar {kind.name} ({name})")


@dataclass(frozen=True)
class IdSlot:
    path: tuple[str, ...]
    listed: bool


def fill(kind: GraphQLInputType, name: str, city: City, path: tuple[str, ...], slots: list[IdSlot]) -> Any:
    named, _, listed = _unwrap(kind)
    if isinstance(named, GraphQLScalarType) and named.name == "ID":
        slots.append(IdSlot(path, listed))
        return None  # set per call
    if isinstance(named, GraphQLInputObjectType):
        value = {
            field_name: fill(field.type, field_name, city, (*path, field_name), slots)
            for field_name, field in named.fields.items()
            if isinstance(field.type, GraphQLNonNull) or _holds_id(field.type)
        }
    elif isinstance(named, GraphQLEnumType):
        value = next(iter(named.values))
    else:
        assert isinstance(named, GraphQLScalarType)
        value = _scalar(name, named, city)
    return [value] if listed else value


def _holds_id(kind: GraphQLInputType, depth: int = 0) -> bool:
    named, _, _ = _unwrap(kind)
    if isinstance(named, GraphQLScalarType):
        return named.name == "ID"
    if isinstance(named, GraphQLInputObjectType) and depth < 3:
        return any(_holds_id(f.type, depth + 1) for f in named.fields.values())
    return False


def _put(variables: dict[str, Any], slot: IdSlot, value: str) -> None:
    target: Any = variables
    for step in slot.path[:-1]:
        target = target[step]
        if isinstance(target, list):
            target = target[0]
    target[slot.path[-1]] = [value] if slot.listed else value


@dataclass(frozen=True)
class Mutation:
    name: str
    document: str
    base: dict[str, Any]
    slots: list[IdSlot]


def mutations(api: Api, city: City) -> list[Mutation]:
    schema = build_schema(api.config)._schema
    found = []
    mutation_type = schema.mutation_type
    assert mutation_type is not None
    for name, definition in mutation_type.fields.items():
        if name in NOT_ON_ROWS:
            continue
        slots: list[IdSlot] = []
        base = {arg: fill(spec.type, arg, city, (arg,), slots) for arg, spec in definition.args.items()}
        declared = ", ".join(f"${arg}: {spec.type}" for arg, spec in definition.args.items())
        passed = ", ".join(f"{arg}: ${arg}" for arg in definition.args)
        header = f"mutation({declared})" if declared else "mutation"
        call = f"{name}({passed})" if passed else name
        document = f"{header} {{ {call} {{ __typename ... on Error {{ code message field }} }} }}"
        found.append(Mutation(name, document, base, slots))
    return found


# --- the probe ----------------------------------------------------------------------------------------------


# The worker updates these rows' delivery state (attempts, retries, sent) whenever it runs: a mutation shows
# there by adding rows, so only which rows exist is compared.
WORKER_TABLES = frozenset({"outbox", "webhook_deliveries"})


def _row(table: str) -> str:
    return "x.id::text" if table in WORKER_TABLES else "x::text"


def _fingerprint(owner_dsn: str, tenant_id: int) -> dict[str, str]:
    """A digest of every row of the tenant, table by table (as the owner, past row-level security)."""
    with psycopg.connect(owner_dsn) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_attribute a "
                "WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) ORDER BY 1"
            )
        ]
        union = " UNION ALL ".join(
            f"SELECT '{table}', md5(coalesce(string_agg(md5({_row(table)}), ',' "
            f"ORDER BY md5({_row(table)})), '')) "
            f"FROM {table} x WHERE tenant_id = %(t)s"
            for table in tables
        )
        return {str(name): str(digest) for name, digest in conn.execute(union, {"t": tenant_id})}


def _normalised(body: Any, replaced: list[str]) -> str:
    text = json.dumps(body, ensure_ascii=False, sort_keys=True)
    for value in sorted(set(replaced), key=len, reverse=True):
        text = text.replace(value, "<id>")
    return re.sub(r"\d+", "#", text)


@dataclass(frozen=True)
class Caller:
    name: str
    token: str
    other_city: bool = False


def _callers(api: Api, city: City, other: TenantInfo) -> list[Caller]:
    tenant, a = city.tenant, city.stations[0]
    return [
        Caller(
            "a city admin bound to district A",
            api.token(tenant, ["city_admin"], [a.district_scope], sub="operator:a1"),
        ),
        Caller(
            "district A's staff", api.token(tenant, ["district_staff"], [a.district_scope], sub="operator:a2")
        ),
        Caller(
            "a street of A's staff", api.token(tenant, ["street_staff"], [a.street_scope], sub="operator:a3")
        ),
        Caller(
            "a station of A's liaison", api.token(tenant, ["station_liaison"], [a.scope], sub="operator:a4")
        ),
        Caller("a deputy of A", api.token(tenant, ["deputy"], [a.scope], sub=a.deputy)),
        Caller("a resident of A", api.token(tenant, ["resident"], [a.scope], sub="user:9999")),
        Caller("another city's admin", api.token(other, ["city_admin"], sub="operator:o1"), other_city=True),
    ]


@dataclass
class Plan:
    """Calls of one mutation: each a pair of variables, with sibling rows and with missing ones."""

    mutation: Mutation
    pairs: list[tuple[dict[str, Any], dict[str, Any], list[str]]] = field(default_factory=list)


def _types_of(slot: IdSlot, accepted: dict[str, set[str]]) -> tuple[str, ...]:
    return ID_TYPES.get(slot.path[-1]) or tuple(sorted(accepted.get("/".join(slot.path), set())))


def plans(found: list[Mutation], rows: Rows, accepted: dict[str, dict[str, set[str]]]) -> Iterator[Plan]:
    for mutation in found:
        plan = Plan(mutation)
        slot_types = [_types_of(slot, accepted.get(mutation.name, {})) for slot in mutation.slots]
        if not mutation.slots:
            plan.pairs.append((mutation.base, mutation.base, []))
        # Every id a sibling's, one row at a time for the first slot.
        for first_type in slot_types[0] if slot_types else ():
            for first in rows.sibling.get(first_type, []):
                plan.pairs.append(_variables(mutation, rows.sibling, slot_types, first_type, first))
        # The caller's own row first, a sibling's for the rest.
        if len(mutation.slots) > 1:
            for first_type in slot_types[0]:
                for first in rows.own.get(first_type, [])[:1]:
                    plan.pairs.append(
                        _variables(mutation, rows.sibling, slot_types, first_type, first, own_first=True)
                    )
        yield plan


def _variables(
    mutation: Mutation,
    sibling_rows: dict[str, list[str]],
    slot_types: list[tuple[str, ...]],
    first_type: str,
    first: str,
    *,
    own_first: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Variables with sibling ids, the same with ids that exist nowhere (one per slot), and every id used."""
    with_sibling = json.loads(json.dumps(mutation.base))
    with_missing = json.loads(json.dumps(mutation.base))
    used = [first]
    for index, (slot, types) in enumerate(zip(mutation.slots, slot_types, strict=True)):
        kind = first_type if index == 0 else next((t for t in types if sibling_rows.get(t)), types[0])
        others = [row for row in sibling_rows.get(kind, []) if row != first] or [_missing(kind, index)]
        sibling = first if index == 0 else others[-1]
        missing = first if index == 0 and own_first else _missing(kind, index)
        _put(with_sibling, slot, sibling)
        _put(with_missing, slot, missing)
        used += [sibling, missing]
    return with_sibling, with_missing, used


async def _accepted_types(api: Api, city: City, found: list[Mutation]) -> dict[str, dict[str, set[str]]]:
    """For each `id` slot the name does not type, the types the API takes there: asked with an id of each
    type that exists nowhere, by a caller holding every role over the whole city."""
    everyone = api.token(city.tenant, [role.value for role in Role], sub="operator:probe")
    accepted: dict[str, dict[str, set[str]]] = {}
    for mutation in found:
        for slot in mutation.slots:
            if slot.path[-1] in ID_TYPES:
                continue
            key = "/".join(slot.path)
            for type_name in (*GLOBAL_TYPES, *PLAIN_TYPES):
                variables = json.loads(json.dumps(mutation.base))
                for other in mutation.slots:
                    kind = (ID_TYPES.get(other.path[-1]) or ("Request",))[0]
                    _put(variables, other, _missing(kind))
                _put(variables, slot, _missing(type_name))
                body = (await api.post(mutation.document, variables, everyone)).json()
                text = json.dumps(body)
                if (
                    not re.search(r"is an? \w+ id, not an? ", text)
                    and "not an id this API issued" not in text
                ):
                    accepted.setdefault(mutation.name, {}).setdefault(key, set()).add(type_name)
    return accepted


@pytest.fixture(scope="module")
async def city(database: Database) -> City:
    return await build_city(database, "sibling")


@pytest.fixture(scope="module")
async def elsewhere(database: Database) -> TenantInfo:
    """Another city, whose admin may change it (the mutations that name no row do)."""
    seeded = await seed_synthetic(database, "elsewhere", districts=1, streets=1, stations=1, seed=5)
    return TenantInfo("elsewhere", seeded.tenant_id)


async def test_no_mutation_reaches_a_sibling_scope_or_another_city(
    api: Api, owner_dsn: str, city: City, elsewhere: TenantInfo
) -> None:
    rows = await _populate(api, owner_dsn, city)
    found = mutations(api, city)
    assert len(found) >= 50
    accepted = await _accepted_types(api, city, found)
    callers = _callers(api, city, elsewhere)
    changed: list[str] = []
    oracles: list[str] = []
    succeeded: list[str] = []
    calls = 0
    for plan in plans(found, rows, accepted):
        before = _fingerprint(owner_dsn, city.tenant.tenant_id)
        for caller in callers:
            for with_sibling, with_missing, ids in plan.pairs:
                sibling_body = (await api.post(plan.mutation.document, with_sibling, caller.token)).json()
                missing_body = sibling_body
                if ids:
                    missing_body = (await api.post(plan.mutation.document, with_missing, caller.token)).json()
                calls += 2 if ids else 1
                where = f"{plan.mutation.name} by {caller.name} with {with_sibling}"
                result = (sibling_body.get("data") or {}).get(plan.mutation.name)
                # Another city's admin may change their own city with a mutation that names no row.
                own_city = caller.other_city and not plan.mutation.slots
                if result is not None and "code" not in result and not own_city:
                    succeeded.append(where)
                if _normalised(sibling_body, ids) != _normalised(missing_body, ids):
                    oracles.append(f"{where}: {sibling_body} but for a missing row {missing_body}")
                text = json.dumps(sibling_body, ensure_ascii=False)
                leaked = [s for s in (*SECRETS, *rows.tickets) if s in text]
                if leaked:
                    oracles.append(f"{where} names {leaked}: {sibling_body}")
        after = _fingerprint(owner_dsn, city.tenant.tenant_id)
        changed += [
            f"{plan.mutation.name} changed {table}" for table in before if before[table] != after.get(table)
        ]
    assert calls > 1000
    assert succeeded == []
    assert changed == []
    assert oracles == [], "\n".join(oracles)
