"""Duty activities over GraphQL: reports, reception days, phone check-ins, verification, registrations,
ratings and the rectification items they open."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from enum import Enum
from typing import Annotated, Any, TypeVar

import strawberry
from geoalchemy2.shape import to_shape
from graphql import GraphQLError
from shapely import Point
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import FieldExtension

from schema.context import Info
from schema.deputies.queries import territory_of
from schema.deputies.types import Deputy, deputy_of
from schema.errors import (
    STEP_ERRORS,
    Error,
    NotFoundError,
    from_domain,
)
from schema.loaders import children
from schema.matching.mutations import LocationInput
from schema.mutations import parse_id, run_apart, run_service
from schema.permissions import SIGNED_IN, RequireRoles, RequireWholeCity
from schema.relay import Connection, Node, connection, encode_id, id_page
from schema.territory import resident_homes
from services.deputies import activities, five_ones, repository
from services.deputies import models as rows
from services.deputies.service import MANAGERS
from services.errors import DomainError
from services.reach import not_found
from services.rectifications import service as rectifications
from services.rectifications.models import Rectification as RectificationRow
from tenants.context import TenantContext
from tenants.roles import Role

T = TypeVar("T")
# Who reads activities and their evidence: staff, liaisons and deputies; a resident sees announcements.
READERS = frozenset(role for role in Role if role is not Role.RESIDENT)
RECORDERS: list[FieldExtension] = [RequireRoles(Role.DEPUTY, *(Role(kind) for kind in sorted(MANAGERS)))]
STAFF_ONLY: list[FieldExtension] = [RequireRoles(*(Role(kind) for kind in sorted(MANAGERS)))]


@strawberry.enum
class ActivityKind(Enum):
    VISIT = "visit"
    RECEPTION = "reception"
    POLICY_TALK = "policy_talk"
    RESEARCH = "research"
    PROBLEM_SOLVED = "problem_solved"
    DUTY_REPORT = "duty_report"
    MEETING = "meeting"
    DELIBERATION = "deliberation"
    MEDIATION = "mediation"


@strawberry.enum
class ActivityState(Enum):
    PLANNED = "planned"
    REPORTED = "reported"
    VERIFIED = "verified"
    REJECTED = "rejected"
    MORE_REQUESTED = "more_requested"


@strawberry.enum
class Verdict(Enum):
    VERIFIED = "verified"
    REJECTED = "rejected"
    MORE = "more"


@strawberry.type(description="A check-in from the deputy's phone, in WGS84, with what the server found.")
class ActivityCheckin:
    checked_in_at: datetime
    lon: float
    lat: float
    crs: str
    outside_meters: float | None
    speed_kmh: float | None
    outside_boundary: bool
    impossible_travel: bool


def checkin_of(row: rows.ActivityCheckin) -> ActivityCheckin:
    point = to_shape(row.geom)
    assert isinstance(point, Point)
    return ActivityCheckin(
        checked_in_at=row.checked_in_at,
        lon=round(point.x, 7),
        lat=round(point.y, 7),
        crs=row.crs,
        outside_meters=row.outside_meters,
        speed_kmh=row.speed_kmh,
        outside_boundary=row.outside_boundary,
        impossible_travel=row.impossible_travel,
    )


@strawberry.type
class ActivityRatings:
    count: int
    average: float | None


@strawberry.type(description="A rectification item (整改), open until staff close it with a note.")
class Rectification(Node):
    subject: str
    reason: str
    state: str
    note: str | None
    created_at: datetime
    closed_at: datetime | None


def rectification_of(row: RectificationRow) -> Rectification:
    return Rectification(
        id=encode_id("Rectification", row.id),
        subject=row.subject,
        reason=row.reason,
        state=row.state,
        note=row.note,
        created_at=row.created_at,
        closed_at=row.closed_at,
    )


@strawberry.type(description="A duty activity (履职活动) of a deputy at a station.")
class Activity(Node):
    key: strawberry.Private[int]
    tenant_id: strawberry.Private[int]
    deputy_id: strawberry.ID
    station_id: strawberry.ID
    kind: ActivityKind
    title: str
    topics: list[str]
    starts_at: datetime
    households_visited: int
    request_id: strawberry.ID | None
    match_id: strawberry.ID | None
    linked: str | None
    photo_urls: list[str]
    minutes: str
    attendees: int
    state: ActivityState
    verification_note: str | None
    verified_by: str | None
    verified_at: datetime | None
    outside_boundary: bool
    impossible_travel: bool

    @strawberry.field
    async def checkins(self, info: Info) -> list[ActivityCheckin]:
        tenant_id = self.tenant_id

        async def load_many(session: AsyncSession, ids: list[int]) -> Sequence[Any]:
            return await repository.checkins_of(session, tenant_id, ids)

        loader = children(info, "activity:checkins", load_many, lambda row: int(row.activity_id))
        return [checkin_of(row) for row in await loader.load(self.key)]

    @strawberry.field
    async def ratings(self, info: Info) -> ActivityRatings:
        tenant_id = self.tenant_id

        async def load_many(session: AsyncSession, ids: list[int]) -> Sequence[Any]:
            found = await repository.ratings_of(session, tenant_id, ids)
            return [(key, n, mean) for key, (n, mean) in found.items()]

        loader = children(info, "activity:ratings", load_many, lambda row: int(row[0]))
        found = await loader.load(self.key)
        return (
            ActivityRatings(count=found[0][1], average=round(found[0][2], 1))
            if found
            else ActivityRatings(count=0, average=None)
        )

    @strawberry.field(description="Rectification items this activity opened.")
    async def rectifications(self, info: Info) -> list[Rectification]:
        tenant_id = self.tenant_id

        async def load_many(session: AsyncSession, ids: list[int]) -> Sequence[Any]:
            return await rectifications.open_items(session, tenant_id, [f"activity:{key}" for key in ids])

        loader = children(
            info, "activity:rectifications", load_many, lambda row: int(row.subject.split(":")[1])
        )
        return [rectification_of(row) for row in await loader.load(self.key)]


def _gid(type_name: str, key: int | None) -> strawberry.ID | None:
    return encode_id(type_name, key) if key is not None else None


def activity_of(row: rows.Activity) -> Activity:
    return Activity(
        id=encode_id("Activity", row.id),
        key=row.id,
        tenant_id=row.tenant_id,
        deputy_id=encode_id("Deputy", row.deputy_id),
        station_id=encode_id("Station", row.station_id),
        kind=ActivityKind(row.kind),
        title=row.title,
        topics=list(row.topics),
        starts_at=row.starts_at,
        households_visited=row.households_visited,
        request_id=_gid("Request", row.request_id),
        match_id=_gid("Match", row.match_id),
        linked=row.linked,
        photo_urls=list(row.photo_urls),
        minutes=row.minutes,
        attendees=row.attendees,
        state=ActivityState(row.state),
        verification_note=row.verification_note,
        verified_by=row.verified_by,
        verified_at=row.verified_at,
        outside_boundary=row.outside_boundary,
        impossible_travel=row.impossible_travel,
    )


@strawberry.type(description="A reception day (代表接待日) as residents see it.")
class ReceptionDay:
    id: strawberry.ID
    title: str
    topics: list[str]
    starts_at: datetime


@strawberry.type
class ActivityRegistration:
    id: strawberry.ID
    activity_id: strawberry.ID
    topic: str | None
    slot: str | None


def _reads_activities(info: Info) -> bool:
    return bool(set(info.context.require_principal().roles) & READERS)


async def load_activity(info: Info, key: int) -> Activity | None:
    if not _reads_activities(info):
        return None
    tenant_id = info.context.require_principal().tenant_id
    async with info.context.db() as session:
        row = await repository.activity(session, tenant_id, key)
    return activity_of(row) if row is not None else None


@strawberry.type
class ActivitiesQuery:
    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="Activities of the stations you may see (a deputy: also their own anywhere), by id.",
    )
    async def activities(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        deputy_id: strawberry.ID | None = None,
        state: ActivityState | None = None,
    ) -> Connection[Activity]:
        if not _reads_activities(info):
            raise GraphQLError(
                "residents see reception days, not activity records", extensions={"code": "FORBIDDEN"}
            )
        size, after_id = id_page(first, after)
        deputy = None
        if deputy_id is not None:
            try:
                deputy = parse_id(deputy_id, "deputyId", "Deputy")[1]
            except DomainError as error:
                raise GraphQLError(
                    str(error), extensions={"code": "INVALID_INPUT", "field": "deputyId"}
                ) from None
        wanted = state.value if state is not None else None
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            found = await repository.activities(
                session, tenant_id, after=after_id, limit=size + 1, deputy_id=deputy, state=wanted
            )
            total = await repository.count_activities(session, tenant_id, deputy, wanted)
        return connection(
            found[:size],
            activity_of,
            total=total,
            has_next=len(found) > size,
            has_previous=after_id is not None,
            cursor_of=lambda row: str(row.id),
        )

    @strawberry.field(permission_classes=SIGNED_IN, description="Reception days announced at a station.")
    async def reception_days(self, info: Info, station_id: strawberry.ID) -> list[ReceptionDay]:
        try:
            key = parse_id(station_id, "stationId", "Station")[1]
        except DomainError as error:
            raise GraphQLError(
                str(error), extensions={"code": "INVALID_INPUT", "field": "stationId"}
            ) from None
        principal = info.context.require_principal()
        now = datetime.now(UTC)
        found: list[rows.Activity] = []
        if principal.roles == {Role.RESIDENT}:
            for home in resident_homes(principal):
                async with info.context.config.database.scoped(home) as session:
                    found += await repository.receptions(session, principal.tenant_id, key, now)
        else:
            async with info.context.db() as session:
                found = await repository.receptions(session, principal.tenant_id, key, now)
        return [
            ReceptionDay(
                id=encode_id("Activity", r.id), title=r.title, topics=list(r.topics), starts_at=r.starts_at
            )
            for r in found
        ]


@strawberry.input
class ActivityInput:
    deputy_id: strawberry.ID
    station_id: strawberry.ID
    kind: ActivityKind
    title: str
    starts_at: datetime
    topics: list[str] = strawberry.field(default_factory=list)
    households_visited: int = 0
    request_id: strawberry.ID | None = None
    match_id: strawberry.ID | None = None
    linked: str | None = strawberry.field(
        default=None, description="What it was part of: meeting:<id>, deliberation:<id>, mediation_case:<id>."
    )
    photo_urls: list[str] = strawberry.field(default_factory=list)
    minutes: str = ""
    attendees: int = 0


@strawberry.input
class EvidenceInput:
    photo_urls: list[str] = strawberry.field(default_factory=list)
    minutes: str = ""
    attendees: int = 0
    households_visited: int = 0


@strawberry.type
class ActivityPayload:
    activity: Activity


@strawberry.type
class CheckinPayload:
    checkin: ActivityCheckin
    activity: Activity
    warnings: list[str]


@strawberry.type
class RegistrationPayload:
    registration: ActivityRegistration


@strawberry.type
class RatingPayload:
    activity_id: strawberry.ID
    average: float


@strawberry.type
class RectificationPayload:
    rectification: Rectification


_Errors = STEP_ERRORS
ActivityResult = Annotated[ActivityPayload | _Errors, strawberry.union("ActivityResult")]
CheckinResult = Annotated[CheckinPayload | _Errors, strawberry.union("CheckinResult")]
RegistrationResult = Annotated[RegistrationPayload | _Errors, strawberry.union("RegistrationResult")]
RatingResult = Annotated[RatingPayload | _Errors, strawberry.union("ActivityRatingResult")]
RectificationResult = Annotated[RectificationPayload | _Errors, strawberry.union("RectificationResult")]

Step = Callable[[AsyncSession, TenantContext, frozenset[str]], Awaitable[rows.Activity]]


def _kinds(info: Info) -> frozenset[str]:
    return frozenset(role.value for role in info.context.require_principal().roles)


async def _activity_step(info: Info, step: Step) -> Any:
    kinds = _kinds(info)

    async def work(session: AsyncSession, actor: TenantContext) -> ActivityPayload:
        return ActivityPayload(activity=activity_of(await step(session, actor, kinds)))

    return await run_service(info, work)


def _activity_input(given: ActivityInput) -> activities.ActivityInput:
    def key(value: strawberry.ID | None, field: str, type_name: str) -> int | None:
        return parse_id(value, field, type_name)[1] if value is not None else None

    return activities.ActivityInput(
        deputy_id=parse_id(given.deputy_id, "deputyId", "Deputy")[1],
        station_id=parse_id(given.station_id, "stationId", "Station")[1],
        kind=given.kind.value,
        title=given.title,
        starts_at=given.starts_at,
        topics=tuple(given.topics),
        households_visited=given.households_visited,
        request_id=key(given.request_id, "requestId", "Request"),
        match_id=key(given.match_id, "matchId", "Match"),
        linked=given.linked,
        photo_urls=tuple(given.photo_urls),
        minutes=given.minutes,
        attendees=given.attendees,
    )


async def _at_home(info: Info, work: Callable[[AsyncSession, TenantContext], Awaitable[T]]) -> T | Error:
    """A resident's step, in each of their homes in turn until one holds the activity (their own
    transaction sees no station); anyone else's in their own transaction."""
    principal = info.context.require_principal()
    if principal.roles != {Role.RESIDENT}:
        return await run_service(info, work)
    answer: T | Error = from_domain(not_found("activity"))
    for home in resident_homes(principal):

        async def step(session: AsyncSession, context: TenantContext = home) -> T:
            return await work(session, context)

        answer = await run_apart(info, home, step)
        if not isinstance(answer, NotFoundError):
            break
    return answer


def _key(global_id: str) -> int:
    return parse_id(global_id, "id", "Activity")[1]


@strawberry.type
class ActivitiesMutation:
    @strawberry.mutation(extensions=RECORDERS, description="Report a duty activity done, with its evidence.")
    async def report_activity(self, info: Info, input: ActivityInput) -> ActivityResult:
        now = datetime.now(UTC)

        async def step(session: AsyncSession, actor: TenantContext, kinds: frozenset[str]) -> rows.Activity:
            return await activities.report(session, actor, kinds, _activity_input(input), now)

        return await _activity_step(info, step)  # type: ignore[no-any-return]

    @strawberry.mutation(
        extensions=RECORDERS,
        description="Announce a reception day (代表接待日) ahead, with its topics; the station's residents "
        "are told.",
    )
    async def announce_reception_day(self, info: Info, input: ActivityInput) -> ActivityResult:
        now = datetime.now(UTC)

        async def step(session: AsyncSession, actor: TenantContext, kinds: frozenset[str]) -> rows.Activity:
            return await activities.announce_reception(session, actor, kinds, _activity_input(input), now)

        return await _activity_step(info, step)  # type: ignore[no-any-return]

    @strawberry.mutation(
        extensions=RECORDERS, description="Report a held reception day, or send the evidence asked for."
    )
    async def add_activity_evidence(
        self, info: Info, id: strawberry.ID, input: EvidenceInput
    ) -> ActivityResult:
        now = datetime.now(UTC)
        data = activities.Evidence(
            photo_urls=tuple(input.photo_urls),
            minutes=input.minutes,
            attendees=input.attendees,
            households_visited=input.households_visited,
        )

        async def step(session: AsyncSession, actor: TenantContext, kinds: frozenset[str]) -> rows.Activity:
            return await activities.add_evidence(session, actor, kinds, _key(id), data, now)

        return await _activity_step(info, step)  # type: ignore[no-any-return]

    @strawberry.mutation(
        extensions=[RequireRoles(Role.DEPUTY)],
        description="Check in at an activity from the phone: a point (WGS84, GCJ-02 or BD-09) and a time.",
    )
    async def check_in(
        self, info: Info, id: strawberry.ID, location: LocationInput, at: datetime | None = None
    ) -> CheckinResult:
        now = datetime.now(UTC)
        data = activities.CheckinInput(lon=location.lon, lat=location.lat, crs=location.crs, at=at)

        async def work(session: AsyncSession, actor: TenantContext) -> CheckinPayload:
            found = await activities.check_in(session, actor, _key(id), data, now)
            return CheckinPayload(
                checkin=checkin_of(found.checkin),
                activity=activity_of(found.activity),
                warnings=found.warnings,
            )

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=STAFF_ONLY,
        description="Street staff's verdict on a reported activity: verified, rejected (say why), or more "
        "evidence asked for (saying what).",
    )
    async def verify_activity(
        self, info: Info, id: strawberry.ID, verdict: Verdict, note: str | None = None
    ) -> ActivityResult:
        now = datetime.now(UTC)

        async def step(session: AsyncSession, actor: TenantContext, kinds: frozenset[str]) -> rows.Activity:
            return await activities.verify(session, actor, kinds, _key(id), verdict.value, note, now)

        return await _activity_step(info, step)  # type: ignore[no-any-return]

    @strawberry.mutation(description="Register for a reception day, ordering a topic or a time (点单).")
    async def register_for_reception_day(
        self, info: Info, id: strawberry.ID, topic: str | None = None, slot: str | None = None
    ) -> RegistrationResult:
        async def work(session: AsyncSession, actor: TenantContext) -> RegistrationPayload:
            row = await activities.register(session, actor, _key(id), topic, slot)
            return RegistrationPayload(
                registration=ActivityRegistration(
                    id=encode_id("ActivityRegistration", row.id),
                    activity_id=encode_id("Activity", row.activity_id),
                    topic=row.topic,
                    slot=row.slot,
                )
            )

        return await _at_home(info, work)  # type: ignore[return-value]

    @strawberry.mutation(description="A participant rates an activity (0-100), once.")
    async def rate_activity(
        self, info: Info, id: strawberry.ID, score: int, comment: str | None = None
    ) -> RatingResult:
        async def work(session: AsyncSession, actor: TenantContext) -> RatingPayload:
            row, mean = await activities.rate(session, actor, _key(id), score, comment)
            return RatingPayload(activity_id=encode_id("Activity", row.id), average=round(mean, 1))

        return await _at_home(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=STAFF_ONLY, description="Close a rectification item, saying what was put right."
    )
    async def close_rectification(self, info: Info, id: strawberry.ID, note: str) -> RectificationResult:
        async def work(session: AsyncSession, actor: TenantContext) -> RectificationPayload:
            row = await rectifications.close(session, actor, parse_id(id, "id", "Rectification")[1], note)
            return RectificationPayload(rectification=rectification_of(row))

        return await run_service(info, work)  # type: ignore[return-value]


@strawberry.type(description="What one rule of the five ones still wants of a deputy in the current period.")
class FiveOnesOwed:
    kind: ActivityKind
    period: str
    required: int
    done: int
    missing: int
    period_start: date
    due: date


@strawberry.type
class DeputyFiveOnes:
    deputy: Deputy
    compliant: bool
    owed: list[FiveOnesOwed]


@strawberry.type(description='The "five ones" (五个一) of a territory as of a day, from verified activities.')
class FiveOnesReport:
    as_of: date
    deputies: int
    compliant: int
    share: float
    items: list[DeputyFiveOnes]


@strawberry.type
class FiveOnesRule:
    kind: ActivityKind
    period: str
    required: int


@strawberry.type
class FiveOnesRulesPayload:
    rules: list[FiveOnesRule]


FiveOnesRulesResult = Annotated[FiveOnesRulesPayload | _Errors, strawberry.union("FiveOnesRulesResult")]


def _rule_of(rule: five_ones.Rule) -> FiveOnesRule:
    return FiveOnesRule(kind=ActivityKind(rule.kind), period=rule.period, required=rule.required)


@strawberry.type
class FiveOnesQuery:
    @strawberry.field(permission_classes=SIGNED_IN, description="The city's five-ones rules.")
    async def five_ones_rules(self, info: Info) -> list[FiveOnesRule]:
        async with info.context.db() as session:
            found = await five_ones.rules(session, info.context.require_principal().tenant_id)
        return [_rule_of(rule) for rule in found]

    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="Five-ones compliance of the deputies kept in a territory (your whole scope when "
        "omitted) as of a day (today by default): per deputy what is missing and by when, and the share "
        "compliant.",
    )
    async def five_ones(
        self, info: Info, node_id: strawberry.ID | None = None, as_of: date | None = None
    ) -> FiveOnesReport:
        if not _reads_activities(info):
            raise GraphQLError(
                "residents see reception days, not activity records", extensions={"code": "FORBIDDEN"}
            )
        scope = await territory_of(info, node_id)
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            day, found = await five_ones.compliance(session, tenant_id, scope, as_of)
            deputies = await repository.by_ids(session, tenant_id, [c.deputy_id for c in found])
        items = [
            DeputyFiveOnes(
                deputy=deputy_of(deputies[c.deputy_id]),
                compliant=c.compliant,
                owed=[
                    FiveOnesOwed(
                        kind=ActivityKind(o.kind),
                        period=o.period,
                        required=o.required,
                        done=o.done,
                        missing=o.missing,
                        period_start=o.period_start,
                        due=o.due,
                    )
                    for o in c.owed
                ],
            )
            for c in found
            if c.deputy_id in deputies
        ]
        compliant = sum(1 for item in items if item.compliant)
        return FiveOnesReport(
            as_of=day,
            deputies=len(items),
            compliant=compliant,
            share=round(compliant / len(items), 4) if items else 1.0,
            items=items,
        )


@strawberry.type
class FiveOnesMutation:
    @strawberry.mutation(
        extensions=[RequireRoles(Role.CITY_ADMIN), RequireWholeCity()],
        description="Set one of the city's five-ones rules: `required` verified activities of `kind` per "
        "`period` (month, quarter, half, year); 0 drops the rule.",
    )
    async def save_five_ones_rule(
        self, info: Info, kind: ActivityKind, period: str, required: int
    ) -> FiveOnesRulesResult:
        async def work(session: AsyncSession, actor: TenantContext) -> FiveOnesRulesPayload:
            found = await five_ones.save_rule(session, actor, kind.value, period, required)
            return FiveOnesRulesPayload(rules=[_rule_of(rule) for rule in found])

        return await run_service(info, work)  # type: ignore[return-value]
