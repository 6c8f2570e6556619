from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import FieldExtension

from schema.context import Info
from schema.errors import (
    STEP_ERRORS,
    Error,
    InvalidInputError,
    invalid_input,
)
from schema.matching.queries import demand_converter
from schema.matching.types import (
    Demand,
    DemandImport,
    DemandKind,
    DemandSource,
    Match,
    MatchRun,
    Offer,
    OwnerKind,
    RefusedLine,
    Resource,
    Urgency,
    match_of,
    resource_of,
    run_of,
)
from schema.mutations import parse_id, run_as_owner_or_staff, run_service
from schema.permissions import RequireRoles
from schema.territory import territory
from services.csv_table import CsvFileError
from services.deputies.service import MANAGERS
from services.errors import InvalidInput
from services.matching import repository, service
from services.matching.models import Demand as DemandRow
from services.matching.models import Match as MatchRow
from tenants.context import TenantContext
from tenants.roles import Role

KEEPERS_ONLY: list[FieldExtension] = [RequireRoles(*(Role(kind) for kind in sorted(service.DEMAND_KEEPERS)))]
MANAGERS_ONLY: list[FieldExtension] = [RequireRoles(*(Role(kind) for kind in sorted(MANAGERS)))]
MAX_CSV_CHARACTERS = 5_000_000


@strawberry.input
class LocationInput:
    lon: float
    lat: float
    crs: str = strawberry.field(default="wgs84", description="wgs84, gcj02 or bd09.")


@strawberry.input
class CreateDemandInput:
    station_id: strawberry.ID
    category: str = strawberry.field(description="A request category code.")
    title: str
    kind: DemandKind | None = strawberry.field(default=None, description="The category's kind if omitted.")
    households: int = 1
    urgency: Urgency = Urgency.NORMAL
    source: DemandSource = DemandSource.VISIT
    detail: str = ""
    location: LocationInput | None = None


@strawberry.input
class CreateResourceInput:
    name: str
    owner_kind: OwnerKind
    offer: Offer
    skills: list[str] = strawberry.field(description="Codes from deputySkills.")
    monthly_capacity: int
    node_id: strawberry.ID | None = strawberry.field(
        default=None, description="The District or Street that keeps it (its staff manage it); else the city."
    )
    description: str = ""
    owner_principal: str | None = strawberry.field(
        default=None, description="The account that accepts or declines its matches, as user:<id>."
    )
    deputy_id: strawberry.ID | None = None


@strawberry.type
class DemandPayload:
    demand: Demand


@strawberry.type
class DemandImportPayload:
    result: DemandImport


@strawberry.type
class ResourcePayload:
    resource: Resource


@strawberry.type
class MatchRunPayload:
    run: MatchRun
    matches: list[Match]


@strawberry.type
class MatchPayload:
    match: Match


_Errors = STEP_ERRORS
DemandResult = Annotated[DemandPayload | _Errors, strawberry.union("DemandResult")]
DemandImportResult = Annotated[DemandImportPayload | _Errors, strawberry.union("DemandImportResult")]
ResourceResult = Annotated[ResourcePayload | _Errors, strawberry.union("ResourceResult")]
MatchRunResult = Annotated[MatchRunPayload | _Errors, strawberry.union("MatchRunResult")]
MatchResult = Annotated[MatchPayload | _Errors, strawberry.union("MatchResult")]

MatchStep = Callable[[AsyncSession, TenantContext, frozenset[str], int], Awaitable[MatchRow]]


def _kinds(info: Info) -> frozenset[str]:
    return frozenset(role.value for role in info.context.require_principal().roles)


async def _demand_payload(session: AsyncSession, actor: TenantContext, row: DemandRow) -> DemandPayload:
    convert = await demand_converter(session, actor.tenant_id, [row])
    return DemandPayload(demand=convert(row))


async def _on_match(info: Info, global_id: str, step: MatchStep) -> MatchPayload | Error:
    """A step on a match: staff in their own transaction; the resource's owner in a context bounded to
    the match's station (schema.mutations.run_as_owner_or_staff)."""
    kinds = _kinds(info)

    async def work(session: AsyncSession, actor: TenantContext, key: int) -> MatchPayload:
        return MatchPayload(match=match_of(await step(session, actor, kinds, key)))

    return await run_as_owner_or_staff(info, global_id, "Match", repository.match, work)


def _csv_bytes(csv: str | None, csv_base64: str | None) -> bytes | InvalidInputError:
    """The file's bytes, given as text or as base64 (a file in GB18030 keeps its bytes that way)."""
    if (csv is None) == (csv_base64 is None):
        return invalid_input("give the file as csv (text) or csvBase64 (its bytes), one of them", "csv")
    if csv is not None:
        if len(csv) > MAX_CSV_CHARACTERS:
            return invalid_input(f"the file is longer than {MAX_CSV_CHARACTERS} characters", "csv")
        return csv.encode("utf-8", errors="surrogatepass")
    if len(csv_base64 or "") > MAX_CSV_CHARACTERS * 4 // 3:
        return invalid_input("the file is too large to import at once", "csvBase64")
    try:
        return base64.b64decode(csv_base64 or "", validate=True)
    except (binascii.Error, ValueError):
        return invalid_input("csvBase64 is not base64", "csvBase64")


@strawberry.type
class MatchingMutation:
    @strawberry.mutation(extensions=KEEPERS_ONLY, description="Put an item on a station's demand list.")
    async def create_demand(self, info: Info, input: CreateDemandInput) -> DemandResult:
        kinds = _kinds(info)

        async def work(session: AsyncSession, actor: TenantContext) -> DemandPayload:
            where = input.location
            data = service.DemandInput(
                station_id=parse_id(input.station_id, "stationId", "Station")[1],
                category=input.category,
                title=input.title,
                kind=input.kind.value if input.kind is not None else None,
                households=input.households,
                urgency=input.urgency.value,
                source=input.source.value,
                detail=input.detail,
                lon=where.lon if where is not None else None,
                lat=where.lat if where is not None else None,
                crs=where.crs if where is not None else "wgs84",
            )
            return await _demand_payload(
                session, actor, await service.create_demand(session, actor, kinds, data)
            )

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=KEEPERS_ONLY, description="Put a routed request on its station's demand list (once)."
    )
    async def promote_request_to_demand(
        self, info: Info, request_id: strawberry.ID, households: int = 1
    ) -> DemandResult:
        kinds = _kinds(info)

        async def work(session: AsyncSession, actor: TenantContext) -> DemandPayload:
            key = parse_id(request_id, "requestId", "Request")[1]
            row = await service.promote_request(session, actor, kinds, key, households)
            return await _demand_payload(session, actor, row)

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=KEEPERS_ONLY,
        description="Demands in bulk from a survey's or a forum's CSV (columns station, category, title, "
        "kind, households, urgency, source, detail, lon, lat, crs, or their Chinese headers). Each line is "
        "checked on its own: bad lines are reported, good ones kept; `dryRun` keeps nothing.",
    )
    async def import_demands(
        self,
        info: Info,
        csv: str | None = None,
        csv_base64: str | None = None,
        dry_run: bool = False,
    ) -> DemandImportResult:
        kinds = _kinds(info)
        data = _csv_bytes(csv, csv_base64)
        if isinstance(data, InvalidInputError):
            return data

        async def work(session: AsyncSession, actor: TenantContext) -> DemandImportPayload:
            try:
                report = await service.import_demands(session, actor, kinds, data, dry_run=dry_run)
            except CsvFileError as error:
                raise InvalidInput(str(error), field="csv") from None
            return DemandImportPayload(
                result=DemandImport(
                    encoding=report.encoding,
                    dry_run=report.dry_run,
                    created=len(report.created),
                    refused=[RefusedLine(line=line, reason=reason) for line, reason in report.refused],
                )
            )

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=MANAGERS_ONLY, description="Put an item on the resource list.")
    async def create_resource(self, info: Info, input: CreateResourceInput) -> ResourceResult:
        kinds = _kinds(info)

        async def work(session: AsyncSession, actor: TenantContext) -> ResourcePayload:
            scope = await territory(
                session, actor, input.node_id, levels=("District", "Street"), whole_city="the city"
            )
            data = service.ResourceInput(
                name=input.name,
                owner_kind=input.owner_kind.value,
                offer=input.offer.value,
                skills=tuple(input.skills),
                monthly_capacity=input.monthly_capacity,
                description=input.description,
                owner_principal=input.owner_principal,
                deputy_id=(
                    parse_id(input.deputy_id, "deputyId", "Deputy")[1]
                    if input.deputy_id is not None
                    else None
                ),
            )
            return ResourcePayload(
                resource=resource_of(await service.create_resource(session, actor, kinds, scope, data))
            )

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=MANAGERS_ONLY,
        description="Say a resource serves a station (or, `serves: false`, no longer).",
    )
    async def set_resource_station(
        self, info: Info, resource_id: strawberry.ID, station_id: strawberry.ID, serves: bool = True
    ) -> ResourceResult:
        kinds = _kinds(info)

        async def work(session: AsyncSession, actor: TenantContext) -> ResourcePayload:
            row = await service.serve_station(
                session,
                actor,
                kinds,
                parse_id(resource_id, "resourceId", "Resource")[1],
                parse_id(station_id, "stationId", "Station")[1],
                serves=serves,
            )
            return ResourcePayload(resource=resource_of(row))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=MANAGERS_ONLY,
        description="Match the open demands of a territory (your whole city when omitted) to resources: "
        "the assignment of largest total score under each resource's spare capacity this month.",
    )
    async def run_matching(self, info: Info, node_id: strawberry.ID | None = None) -> MatchRunResult:
        kinds = _kinds(info)

        async def work(session: AsyncSession, actor: TenantContext) -> MatchRunPayload:
            scope = await territory(session, actor, node_id)
            run = await service.run_matching(session, actor, kinds, scope)
            made = await repository.matches_of_run(session, actor.tenant_id, run.id)
            return MatchRunPayload(run=run_of(run), matches=[match_of(row) for row in made])

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        description="The resource's owner (or staff for them) accepts a match: it becomes a project with "
        "an owner, a responsible unit and a deadline."
    )
    async def accept_match(
        self,
        info: Info,
        id: strawberry.ID,
        responsible_unit: str,
        deadline: date,
        project_owner: str | None = None,
    ) -> MatchResult:
        today = datetime.now(UTC).date()

        async def step(
            session: AsyncSession, actor: TenantContext, kinds: frozenset[str], key: int
        ) -> MatchRow:
            return await service.accept(
                session,
                actor,
                kinds,
                key,
                responsible_unit=responsible_unit,
                deadline=deadline,
                project_owner=project_owner,
                today=today,
            )

        return await _on_match(info, id, step)  # type: ignore[return-value]

    @strawberry.mutation(description="The resource's owner (or staff for them) declines a match, saying why.")
    async def decline_match(self, info: Info, id: strawberry.ID, reason: str) -> MatchResult:
        async def step(
            session: AsyncSession, actor: TenantContext, kinds: frozenset[str], key: int
        ) -> MatchRow:
            return await service.decline(session, actor, kinds, key, reason)

        return await _on_match(info, id, step)  # type: ignore[return-value]

    @strawberry.mutation(
        description="Close an accepted match's project with its outcome and the residents' rating."
    )
    async def close_project(self, info: Info, id: strawberry.ID, outcome: str, rating: int) -> MatchResult:
        async def step(
            session: AsyncSession, actor: TenantContext, kinds: frozenset[str], key: int
        ) -> MatchRow:
            return await service.close_project(session, actor, kinds, key, outcome=outcome, rating=rating)

        return await _on_match(info, id, step)  # type: ignore[return-value]
