"""Requests (诉求) as GraphQL types: staff see the work order, residents their own (where it went and its
public history, read through `schema.requests.loaders`), anyone holding a receipt its public progress."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from geoalchemy2.shape import to_shape
from shapely import Point

from schema.context import Info
from schema.hierarchy.types import Station, station_of
from schema.loaders import workflow_history
from schema.relay import Node, encode_id
from schema.requests.loaders import is_resident, submitter_view, survivor_rateable
from services.hierarchy.repository import Level
from services.requests import repository
from services.requests.config_cache import city_config
from services.requests.lifecycle import MERGED, REQUEST, RESOLVED, mutations_for
from services.requests.models import Request as RequestRow
from services.requests.models import RequestCategory as CategoryRow
from services.requests.progress import PublicProgress as ProgressRow
from services.requests.progress import agency_of, public_actor, public_note
from services.requests.service import Actor, for_caller


@strawberry.enum(
    description="Three-colour supervision: blue due soon, yellow overdue, red overdue after escalation."
)
class Supervision(Enum):
    NONE = "none"
    BLUE = "blue"
    YELLOW = "yellow"
    RED = "red"


@strawberry.enum
class RequestState(Enum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    RETURNED = "returned"
    REOPENED = "reopened"
    MERGED = "merged"
    REJECTED = "rejected"


@strawberry.enum
class Channel(Enum):
    APP = "app"
    HOTLINE = "hotline"
    OPEN311 = "open311"
    WECHAT = "wechat"
    VISIT = "visit"


@strawberry.enum(description="Who handles it: the community's station, a deputy, or a department.")
class Responsible(Enum):
    STATION = "station"
    DEPUTY = "deputy"
    DEPARTMENT = "department"


@strawberry.type(description="A kind of need in the city's taxonomy, with its deadlines in working days.")
class RequestCategory:
    code: str
    name: str
    kind: str = strawberry.field(description="basic (基本需求) or personalised (个性化需求)")
    response_days: int
    resolution_days: int

    @classmethod
    def of(cls, row: CategoryRow) -> RequestCategory:
        return cls(
            code=row.code,
            name=row.name,
            kind=row.kind,
            response_days=row.response_days,
            resolution_days=row.resolution_days,
        )


@strawberry.type(description="One step in a request's history.")
class RequestStep:
    at: datetime
    step: str
    from_state: str | None
    to_state: str
    actor: str
    note: str | None
    public: bool


@strawberry.type(description="An open request of the same category nearby: possibly the same problem.")
class DuplicateHint:
    ticket: str
    state: str
    distance_meters: float
    submitted_at: datetime


class RequestLoaders:
    """The city's categories, read once per GraphQL request."""

    def __init__(self, info: Info, tenant_id: int) -> None:
        self._categories: dict[int, CategoryRow] | None = None
        self._info = info
        self._tenant_id = tenant_id

    async def category(self, category_id: int) -> CategoryRow:
        if self._categories is None:
            async with self._info.context.db() as session:
                self._categories = await repository.categories_by_id(session, self._tenant_id)
        return self._categories[category_id]


def request_loaders(info: Info) -> RequestLoaders:
    loaders = info.context.domain_loaders.get("requests")
    if loaders is None:
        principal = info.context.require_principal()
        loaders = info.context.domain_loaders["requests"] = RequestLoaders(info, principal.tenant_id)
    assert isinstance(loaders, RequestLoaders)
    return loaders


@strawberry.type(name="Request", description="A resident's request (诉求) as a work order.")
class WorkOrder(Node):
    row: strawberry.Private[RequestRow]
    ticket: str
    state: RequestState
    description: str
    channel: Channel
    address: str | None
    photo_urls: list[str]
    level: int = strawberry.field(description="0 community (station), 1 deputy, 2 department.")
    responsible: Responsible
    assignee: str | None
    department: str | None
    supervision: Supervision = strawberry.field(description="From the deadlines only.")
    overdue: bool
    escalations: int = strawberry.field(
        description="How often it went one level up: missed deadlines, dispatchers, a second bad rating."
    )
    submitted_at: datetime
    response_due_at: datetime
    resolution_due_at: datetime
    responded_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    rating: int | None
    solved: bool | None
    reopen_count: int
    unrouted: bool = strawberry.field(description="Outside every grid cell: waiting for manual routing.")
    contact_name: str | None = strawberry.field(
        description="Personal data: shown to staff and the submitter only."
    )
    contact_phone: str | None
    contact_email: str | None

    @strawberry.field(description="The point in WGS84, if one was given.")
    def longitude(self) -> float | None:
        point = _point(self.row)
        return point.x if point is not None else None

    @strawberry.field
    def latitude(self) -> float | None:
        point = _point(self.row)
        return point.y if point is not None else None

    @strawberry.field
    async def category(self, info: Info) -> RequestCategory:
        return RequestCategory.of(await request_loaders(info).category(self.row.category_id))

    async def _station_row(self, info: Info) -> object | None:
        if self.row.station_id is None:
            return None
        if is_resident(info):
            return (await submitter_view(info, self.row)).station
        found: object | None = await info.context.loaders.nodes(Level.STATION).load(self.row.station_id)
        return found

    @strawberry.field
    async def station(self, info: Info) -> Station | None:
        found = await self._station_row(info)
        return station_of(found) if found is not None else None

    @strawberry.field(description="Who answers for it: the department, else the station (Open311's agency).")
    async def agency_responsible(self, info: Info) -> str | None:
        found = await self._station_row(info)
        return agency_of(self.row, str(getattr(found, "name", "")) or None)

    @strawberry.field(
        description="Every step, internal notes included; to the submitting resident the public history "
        "(notes marked public, each other step in a fixed phrase)."
    )
    async def history(self, info: Info) -> list[RequestStep]:
        if is_resident(info):
            viewer = info.context.require_principal().sub
            return [
                RequestStep(
                    at=e.at,
                    step=e.step,
                    from_state=e.from_state,
                    to_state=e.to_state,
                    actor=public_actor(e.actor, viewer),
                    note=public_note(e.step, e.note, e.public, e.payload),
                    public=True,
                )
                for e in (await submitter_view(info, self.row)).steps
            ]
        events = await workflow_history(info, self.row.tenant_id, REQUEST.name).load(self.row.id)
        return [
            RequestStep(
                at=e.at,
                step=e.step,
                from_state=e.from_state,
                to_state=e.to_state,
                actor=e.actor,
                note=e.note,
                public=e.public,
            )
            for e in events
        ]

    @strawberry.field(
        description="Open requests of the same category nearby (inside the caller's scope): perhaps the same "
        "problem, to merge."
    )
    async def possible_duplicates(self, info: Info) -> list[DuplicateHint]:
        point = _point(self.row)
        if point is None:
            return []
        async with info.context.db() as session:
            config = await city_config(session, self.row.tenant_id)
            hints = await repository.possible_duplicates(
                session,
                self.row.tenant_id,
                category_id=self.row.category_id,
                lon=point.x,
                lat=point.y,
                now=self.row.submitted_at,
                radius_meters=config.settings.duplicate_radius_meters,
                window_hours=config.settings.duplicate_window_hours,
                exclude=self.row.id,
            )
        return [
            DuplicateHint(
                ticket=h.ticket,
                state=h.state,
                distance_meters=round(h.distance_meters, 1),
                submitted_at=h.submitted_at,
            )
            for h in hints
        ]

    @strawberry.field(description="The mutations the caller may call on it now (rateRequest for a rating).")
    async def available_steps(self, info: Info) -> list[str]:
        principal = info.context.require_principal()
        actor = Actor(principal.sub, frozenset(role.value for role in principal.roles), principal.scopes)
        steps = mutations_for(REQUEST.available(self.row.state, actor.kinds(self.row)))
        if self.row.state == RESOLVED and for_caller(actor, self.row) and "rateRequest" not in steps:
            steps.append("rateRequest")
        # Merged into another: its submitter rates the survivor's resolution.
        if self.row.state == MERGED and self.row.owner_principal == principal.sub and is_resident(info):
            follows = (await submitter_view(info, self.row)).follows
            if follows is not None and await survivor_rateable(info, follows):
                steps.append("rateRequest")
        return steps


def _point(row: RequestRow) -> Point | None:
    if row.geom is None:
        return None
    shape = to_shape(row.geom)
    assert isinstance(shape, Point)
    return shape


def work_order(row: RequestRow) -> WorkOrder:
    return WorkOrder(
        id=encode_id("Request", row.id),
        row=row,
        ticket=row.ticket,
        state=RequestState(row.state),
        description=row.description,
        channel=Channel(row.channel),
        address=row.address,
        photo_urls=list(row.photo_urls or []),
        level=row.level,
        responsible=Responsible(row.responsible),
        assignee=row.assignee,
        department=row.department,
        supervision=Supervision(row.supervision),
        overdue=row.overdue,
        escalations=row.escalations,
        submitted_at=row.submitted_at,
        response_due_at=row.response_due_at,
        resolution_due_at=row.resolution_due_at,
        responded_at=row.responded_at,
        resolved_at=row.resolved_at,
        closed_at=row.closed_at,
        rating=row.rating,
        solved=row.solved,
        reopen_count=row.reopen_count,
        unrouted=row.station_id is None,
        contact_name=row.contact_name,
        contact_phone=row.contact_phone,
        contact_email=row.contact_email,
    )


@strawberry.type(
    description="What the holder of a receipt (ticket and check code) may see: where the request went, its "
    "deadlines, its states, and of the notes only those marked public. Nothing personal."
)
class PublicProgress:
    ticket: str
    category: str
    state: RequestState
    closed: bool
    submitted_at: datetime
    response_due_at: datetime
    resolution_due_at: datetime
    station_name: str | None = strawberry.field(description="The station it was routed to.")
    agency_responsible: str | None = strawberry.field(description="The department, else the station.")
    steps: list[PublicStepView]
    merged_into: PublicProgress | None = strawberry.field(
        description="Merged: the request it is handled with, and its progress."
    )

    @classmethod
    def of(cls, found: ProgressRow) -> PublicProgress:
        return cls(
            ticket=found.ticket,
            category=found.category,
            state=RequestState(found.state),
            closed=found.closed,
            submitted_at=found.submitted_at,
            response_due_at=found.response_due_at,
            resolution_due_at=found.resolution_due_at,
            station_name=found.station,
            agency_responsible=found.agency,
            steps=[
                PublicStepView(at=s.at, step=s.step, state=RequestState(s.state), note=s.note)
                for s in found.steps
            ],
            merged_into=cls.of(found.merged_into) if found.merged_into is not None else None,
        )


@strawberry.type(name="PublicStep")
class PublicStepView:
    at: datetime
    step: str
    state: RequestState
    note: str = strawberry.field(description="The note if marked public, else what the step means.")
