"""The double list at work: stations keep their demand list (by hand, from a request, or a survey's CSV),
staff keep the resource list, a batch run proposes the best assignment under capacity, the resource's owner
accepts (a project with an owner, a responsible unit and a deadline) or declines with a reason, and the
project closes with its outcome and the residents' rating. Every change is audited."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from geoalchemy2 import WKBElement
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from geo.crs import parse_crs, to_wgs84
from services.audit.service import append as audit
from services.csv_table import CsvFileError, decode, read_rows
from services.deputies import points
from services.deputies import repository as deputies
from services.deputies.service import MANAGERS, PRINCIPAL, check_skills, clean_text, keeps, require
from services.errors import Conflict, DomainError, InvalidInput
from services.matching import repository
from services.matching.models import (
    DEMAND_KINDS,
    OFFERS,
    OWNER_KINDS,
    SOURCES,
    URGENCIES,
    Demand,
    Match,
    MatchRun,
    Resource,
    ResourceStation,
)
from services.matching.optimiser import Candidate, greedy, optimal
from services.matching.scoring import HALF_DISTANCE_METERS, Scores, scores
from services.reach import not_found
from services.requests.models import Request, RequestSettings
from services.unit_of_work import atomic
from services.workflow.machine import IllegalTransition
from tenants.context import TenantContext, scope_is_within
from tenants.models import Station
from tenants.roles import Role

# Who keeps a station's demand list: the station's liaison and deputies, and staff above them.
DEMAND_KEEPERS = MANAGERS | {Role.STATION_LIAISON.value, Role.DEPUTY.value}
# A demand's point farther than this from its station is a typo or the wrong coordinate system.
MAX_POINT_OFFSET_METERS = 5_000.0
# A resource farther than this from a demand is not proposed for it.
MAX_MATCH_DISTANCE_METERS = 10_000.0
# A closed project rated at or above this satisfied the residents (the rating threshold of requests).
SATISFIED_AT = 80
MAX_IMPORT_ROWS = 10_000
MAX_CAPACITY = 10_000
MAX_HOUSEHOLDS = 100_000

IMPORT_COLUMNS: dict[str, tuple[str, ...]] = {
    "station": ("station", "站点编码"),
    "category": ("category", "需求类别"),
    "title": ("title", "需求内容"),
    "kind": ("kind", "需求类型"),
    "households": ("households", "涉及户数"),
    "urgency": ("urgency", "紧急程度"),
    "source": ("source", "来源"),
    "detail": ("detail", "说明"),
    "lon": ("lon", "经度"),
    "lat": ("lat", "纬度"),
    "crs": ("crs", "坐标系"),
}
IMPORT_REQUIRED = ("station", "category", "title")
# The Chinese words a survey sheet uses for our codes.
WORDS = {
    "基础": "basic",
    "基础需求": "basic",
    "个性": "personalised",
    "个性需求": "personalised",
    "一般": "normal",
    "紧急": "urgent",
    "特急": "critical",
    "问卷": "survey",
    "入户调查": "survey",
    "议事会": "forum",
    "居民议事会": "forum",
    "走访": "visit",
}


@dataclass(frozen=True, slots=True)
class DemandInput:
    station_id: int
    category: str
    title: str
    kind: str | None = None  # the category's kind when not given
    households: int = 1
    urgency: str = "normal"
    source: str = "visit"
    detail: str = ""
    lon: float | None = None
    lat: float | None = None
    crs: str = "wgs84"


async def _record(
    session: AsyncSession, actor: TenantContext, action: str, subject: str, scope: str, **payload: object
) -> None:
    await audit(
        session,
        tenant_id=actor.tenant_id,
        actor=actor.principal,
        action=action,
        subject=subject,
        scope=scope,
        payload=payload,
    )


def _point(data: DemandInput) -> tuple[float, float] | None:
    if data.lon is None and data.lat is None:
        return None
    if data.lon is None or data.lat is None:
        raise InvalidInput("a location needs both longitude and latitude", field="location")
    lon, lat = float(data.lon), float(data.lat)
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidInput(f"({lon}, {lat}) is not a longitude/latitude pair", field="location")
    try:
        crs = parse_crs(data.crs)
    except ValueError as error:
        raise InvalidInput(str(error), field="crs") from None
    return to_wgs84(lon, lat, crs)


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    value = WORDS.get(value.strip(), value.strip().lower())
    if value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}", field=name)
    return value


async def create_demand(
    session: AsyncSession,
    actor: TenantContext,
    kinds: frozenset[str],
    data: DemandInput,
    *,
    request: Request | None = None,
) -> Demand:
    require(kinds, DEMAND_KEEPERS, "keep the demand list")
    station = await deputies.station(session, actor.tenant_id, data.station_id)
    if station is None or not keeps(actor, station.scope):
        raise not_found("station", "stationId")
    if station.retired_at is not None:
        raise InvalidInput("the station is retired", field="stationId")
    category = await repository.category_by_code(session, actor.tenant_id, data.category.strip())
    if category is None or category.retired_at is not None:
        raise InvalidInput(f"unknown request category {data.category!r}", field="category")
    source = "request" if request is not None else _choice(data.source, SOURCES, "source")
    if source == "request" and request is None:
        raise InvalidInput("a demand from a request is made by promoting the request", field="source")
    if not 0 <= data.households <= MAX_HOUSEHOLDS:
        raise InvalidInput(f"households must be between 0 and {MAX_HOUSEHOLDS}", field="households")
    point = _point(data)
    if point is not None:
        away = await repository.distance_to_station(session, actor.tenant_id, station.id, *point)
        if away is not None and away > MAX_POINT_OFFSET_METERS:
            raise InvalidInput(
                f"({data.lon}, {data.lat}) ({data.crs}) lies {away / 1000:.1f} km from the station: check "
                "the point and its coordinate system",
                field="location",
            )
    geom: WKBElement | str | None = request.geom if request is not None else None
    if point is not None:
        geom = f"SRID=4326;POINT({point[0]} {point[1]})"
    row = Demand(
        tenant_id=actor.tenant_id,
        scope=station.scope,
        station_id=station.id,
        category_id=category.id,
        kind=_choice(data.kind, DEMAND_KINDS, "kind") if data.kind else category.kind,
        title=clean_text(data.title, 200, "title", required=True),
        detail=clean_text(data.detail, 4000, "detail") or "",
        households=data.households,
        urgency=_choice(data.urgency, URGENCIES, "urgency"),
        source=source,
        request_id=request.id if request is not None else None,
        geom=geom,
        created_by=actor.principal,
    )
    session.add(row)
    await session.flush()
    await _record(
        session, actor, "demand.created", f"demand:{row.id}", row.scope, source=source, category=category.code
    )
    return row


async def promote_request(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], request_id: int, households: int
) -> Demand:
    """Put a routed request on its station's demand list (once)."""
    request = await session.scalar(
        select(Request).where(Request.tenant_id == actor.tenant_id, Request.id == request_id)
    )
    if request is None or not keeps(actor, request.scope):
        raise not_found("request", "requestId")
    if request.station_id is None:
        raise InvalidInput("the request has not been routed to a station yet", field="requestId")
    if await repository.demand_of_request(session, actor.tenant_id, request_id) is not None:
        raise Conflict("the request is on the demand list already", field="requestId")
    codes = {row.id: code for code, row in (await repository.categories(session, actor.tenant_id)).items()}
    data = DemandInput(
        station_id=request.station_id,
        category=codes[request.category_id],
        title=request.description[:200],
        households=households,
        source="request",
    )
    return await create_demand(session, actor, kinds, data, request=request)


@dataclass
class ImportReport:
    encoding: str
    dry_run: bool
    created: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


def _integer(raw: str, name: str, default: int) -> int:
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"{name} {raw!r} is not a whole number", field=name) from None


def _coordinate(raw: str, name: str) -> float | None:
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(f"{name} {raw!r} is not a number", field=name) from None


async def import_demands(
    session: AsyncSession,
    actor: TenantContext,
    kinds: frozenset[str],
    data: bytes,
    *,
    encoding: str = "auto",
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Demands from a survey's or a forum's CSV: every row checked on its own (a bad row is reported
    with its line and reason, the good ones are kept, each in its own savepoint). `dry_run` checks and
    keeps nothing. Raises CsvFileError when the file as a whole is unreadable."""
    require(kinds, DEMAND_KEEPERS, "keep the demand list")
    text_, used = decode(data, encoding)
    rows = read_rows(text_, IMPORT_COLUMNS, IMPORT_REQUIRED)
    if len(rows) > MAX_IMPORT_ROWS:
        raise CsvFileError(f"the file has {len(rows)} rows; import at most {MAX_IMPORT_ROWS} at a time")
    stations = {
        s.code: s.id
        for s in await session.scalars(select(Station).where(Station.tenant_id == actor.tenant_id))
    }
    report = ImportReport(used, dry_run)
    for done, row in enumerate(rows, start=1):
        try:
            if row.problem is not None:
                raise InvalidInput(row.problem)
            values = row.values
            if any("\x00" in value for value in values.values()):
                raise InvalidInput("a cell holds a NUL character, which cannot be stored")
            station_id = stations.get(values["station"])
            if station_id is None:
                raise InvalidInput(f"station {values['station']!r} does not exist or lies outside your scope")
            demand = DemandInput(
                station_id=station_id,
                category=values["category"],
                title=values["title"],
                kind=values.get("kind") or None,
                households=_integer(values.get("households", ""), "households", 1),
                urgency=values.get("urgency") or "normal",
                source=values.get("source") or "survey",
                detail=values.get("detail", ""),
                lon=_coordinate(values.get("lon", ""), "lon"),
                lat=_coordinate(values.get("lat", ""), "lat"),
                crs=values.get("crs") or "wgs84",
            )
            async with atomic(session):
                made = await create_demand(session, actor, kinds, demand)
                if dry_run:
                    raise _DryRun
            report.created.append(made.id)
        except _DryRun:
            report.created.append(0)
        except DomainError as error:
            report.refused.append((row.line, error.message))
        if progress is not None:
            progress(done, len(rows))
    return report


class _DryRun(Exception):
    """Undoes a checked row's savepoint on a dry run."""


@dataclass(frozen=True, slots=True)
class ResourceInput:
    name: str
    owner_kind: str
    offer: str
    skills: tuple[str, ...]
    monthly_capacity: int
    description: str = ""
    owner_principal: str | None = None
    deputy_id: int | None = None


async def create_resource(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], scope: str, data: ResourceInput
) -> Resource:
    require(kinds, MANAGERS, "keep the resource list")
    if not keeps(actor, scope):
        raise not_found("the territory", "nodeId")
    owner_kind = _choice(data.owner_kind, OWNER_KINDS, "ownerKind")
    offer = _choice(data.offer, OFFERS, "offer")
    if not 0 <= data.monthly_capacity <= MAX_CAPACITY:
        raise InvalidInput(f"monthlyCapacity must be between 0 and {MAX_CAPACITY}", field="monthlyCapacity")
    if not data.skills:
        raise InvalidInput("name at least one skill the resource offers", field="skills")
    skills = await check_skills(session, actor.tenant_id, data.skills, "skills")
    owner = data.owner_principal
    if data.deputy_id is not None:
        deputy = await deputies.get(session, actor.tenant_id, data.deputy_id)
        if deputy is None:
            raise not_found("deputy", "deputyId")
        if owner_kind != "deputy":
            raise InvalidInput("a deputy's resource has ownerKind deputy", field="ownerKind")
        owner = owner or deputy.principal
    if owner is not None and not PRINCIPAL.fullmatch(owner):
        raise InvalidInput("ownerPrincipal must name a user account, as user:<id>", field="ownerPrincipal")
    row = Resource(
        tenant_id=actor.tenant_id,
        scope=scope,
        name=clean_text(data.name, 200, "name", required=True),
        owner_kind=owner_kind,
        offer=offer,
        skills=skills,
        monthly_capacity=data.monthly_capacity,
        description=clean_text(data.description, 4000, "description") or "",
        owner_principal=owner,
        deputy_id=data.deputy_id,
    )
    session.add(row)
    await session.flush()
    await _record(
        session, actor, "resource.created", f"resource:{row.id}", row.scope, name=row.name, skills=skills
    )
    return row


async def kept_resource(session: AsyncSession, actor: TenantContext, resource_id: int) -> Resource:
    row = await repository.resource(session, actor.tenant_id, resource_id)
    if row is None or not keeps(actor, row.scope):
        raise not_found("resource", "resourceId")
    return row


async def serve_station(
    session: AsyncSession,
    actor: TenantContext,
    kinds: frozenset[str],
    resource_id: int,
    station_id: int,
    *,
    serves: bool = True,
) -> Resource:
    """Say the resource serves (or no longer serves) a station inside its keeper's territory."""
    require(kinds, MANAGERS, "keep the resource list")
    resource = await kept_resource(session, actor, resource_id)
    station = await deputies.station(session, actor.tenant_id, station_id)
    if station is None or not keeps(actor, station.scope):
        raise not_found("station", "stationId")
    if not scope_is_within(station.scope, resource.scope):
        raise InvalidInput(
            "the station lies outside the territory that keeps this resource", field="stationId"
        )
    link = await repository.resource_station(session, actor.tenant_id, resource_id, station_id)
    if serves and link is None:
        session.add(
            ResourceStation(
                tenant_id=actor.tenant_id, resource_id=resource_id, station_id=station_id, scope=station.scope
            )
        )
    elif not serves and link is not None:
        await session.delete(link)
    else:
        return resource
    await session.flush()
    action = "resource.station_added" if serves else "resource.station_removed"
    await _record(session, actor, action, f"resource:{resource.id}", resource.scope, station=station_id)
    return resource


async def _month_start(session: AsyncSession, tenant_id: int, now: datetime) -> datetime:
    zone = await session.scalar(
        select(RequestSettings.timezone).where(RequestSettings.tenant_id == tenant_id)
    )
    local = now.astimezone(ZoneInfo(zone or "Asia/Shanghai"))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class Weighed:
    """The pairs a run may use, their scores, and each resource's spare capacity this month."""

    pairs: list[repository.CandidatePair]
    distances: npt.NDArray[np.float64]
    found: Scores
    owners: dict[int, str | None]
    spare: dict[int, int]

    @property
    def candidates(self) -> list[Candidate]:
        totals = self.found.total.tolist()
        return [Candidate(p.demand_id, p.resource_id, t) for p, t in zip(self.pairs, totals, strict=True)]

    def terms(self, index: int) -> dict[str, float]:
        """The terms of one pair's score: what the match shows as its explanation."""
        return {**self.found.at(index).terms, "distanceMeters": round(float(self.distances[index]), 1)}


async def score_candidates(session: AsyncSession, tenant_id: int, scope: str, now: datetime) -> Weighed:
    """Every (open demand, resource) pair within reach the run may use, scored."""
    found = await repository.candidate_pairs(session, tenant_id, scope)
    records = await repository.resource_records(
        session,
        tenant_id,
        sorted({p.resource_id for p in found}),
        await _month_start(session, tenant_id, now),
    )

    def distance(pair: repository.CandidatePair) -> float:
        return HALF_DISTANCE_METERS if pair.distance_meters is None else pair.distance_meters

    pairs = [p for p in found if p.resource_id in records and distance(p) <= MAX_MATCH_DISTANCE_METERS]
    kept = [records[p.resource_id] for p in pairs]
    distances = np.array([distance(p) for p in pairs], dtype=np.float64)
    weighed = scores(
        fit=np.ones(len(pairs)),
        distance_meters=distances,
        load=[r.load for r in kept],
        capacity=[r.capacity for r in kept],
        satisfaction=[math.nan if r.satisfaction is None else r.satisfaction for r in kept],
    )
    owners = {key: r.owner for key, r in records.items()}
    spare = {key: max(0, r.capacity - r.load) for key, r in records.items()}
    return Weighed(pairs, distances, weighed, owners, spare)


async def run_matching(
    session: AsyncSession,
    actor: TenantContext,
    kinds: frozenset[str],
    scope: str,
    now: datetime | None = None,
) -> MatchRun:
    """Propose the best assignment of the territory's open demands to resources under capacity (an exact
    min-cost flow), one match per assigned demand, each with the terms of its score."""
    require(kinds, MANAGERS, "run the double list's matching")
    if not keeps(actor, scope):
        raise not_found("the territory", "nodeId")
    started = time.perf_counter()
    weighed = await score_candidates(session, actor.tenant_id, scope, now or datetime.now(UTC))
    candidates, spare = weighed.candidates, weighed.spare
    best = optimal(candidates, spare)
    baseline = greedy(candidates, spare)
    index_of = {(c.demand, c.resource): n for n, c in enumerate(candidates)}
    run = MatchRun(
        tenant_id=actor.tenant_id,
        scope=scope,
        started_by=actor.principal,
        demands=len({c.demand for c in candidates}),
        resources=len(spare),
        candidates=len(candidates),
        matched=len(best.pairs),
        total_score=best.total,
        greedy_score=baseline.total,
        seconds=0.0,
    )
    session.add(run)
    await session.flush()
    if best.pairs:
        await session.execute(
            insert(Match),
            [
                {
                    "tenant_id": actor.tenant_id,
                    "scope": weighed.pairs[n].demand_scope,
                    "demand_id": c.demand,
                    "resource_id": c.resource,
                    "run_id": run.id,
                    "owner_principal": weighed.owners[c.resource],
                    "score": c.score,
                    "terms": weighed.terms(n),
                }
                for c in best.pairs
                for n in (index_of[(c.demand, c.resource)],)
            ],
        )
        await session.execute(
            update(Demand)
            .where(Demand.tenant_id == actor.tenant_id, Demand.id.in_([c.demand for c in best.pairs]))
            .values(state="matched")
        )
    run.seconds = round(time.perf_counter() - started, 3)
    await session.flush()
    await _record(
        session,
        actor,
        "match_run.finished",
        f"match_run:{run.id}",
        scope,
        matched=run.matched,
        total=run.total_score,
        greedy=run.greedy_score,
    )
    return run


def _decides(actor: TenantContext, kinds: frozenset[str], match: Match) -> bool:
    """The resource's owner, or staff whose territory holds the match."""
    return actor.principal == match.owner_principal or bool(kinds & MANAGERS and keeps(actor, match.scope))


async def _decidable(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], match_id: int
) -> Match:
    row = await repository.match(session, actor.tenant_id, match_id)
    if row is None or not _decides(actor, kinds, row):
        raise not_found("match", "id")
    return row


async def accept(
    session: AsyncSession,
    actor: TenantContext,
    kinds: frozenset[str],
    match_id: int,
    *,
    responsible_unit: str,
    deadline: date,
    project_owner: str | None,
    today: date,
) -> Match:
    """The owner takes the demand on: the match becomes a project with its owner, unit and deadline."""
    row = await _decidable(session, actor, kinds, match_id)
    if row.state != "proposed":
        raise IllegalTransition(f"a {row.state} match cannot be accepted")
    if deadline < today:
        raise InvalidInput("the deadline lies in the past", field="deadline")
    row.responsible_unit = clean_text(responsible_unit, 200, "responsibleUnit", required=True)
    row.project_owner = clean_text(project_owner, 100, "projectOwner") or actor.principal
    row.deadline = deadline
    row.state = "accepted"
    row.decided_by = actor.principal
    row.decided_at = datetime.now(UTC)
    await session.flush()
    await _record(
        session, actor, "match.accepted", f"match:{row.id}", row.scope, deadline=deadline.isoformat()
    )
    return row


async def decline(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], match_id: int, reason: str
) -> Match:
    """The owner cannot take it: the demand goes back on the list, and this resource is not proposed
    for it again."""
    row = await _decidable(session, actor, kinds, match_id)
    if row.state != "proposed":
        raise IllegalTransition(f"a {row.state} match cannot be declined")
    row.reason = clean_text(reason, 2000, "reason", required=True)
    row.state = "declined"
    row.decided_by = actor.principal
    row.decided_at = datetime.now(UTC)
    await _set_demand_state(session, actor.tenant_id, row.demand_id, "open")
    await session.flush()
    await _record(session, actor, "match.declined", f"match:{row.id}", row.scope, reason=row.reason)
    return row


async def close_project(
    session: AsyncSession,
    actor: TenantContext,
    kinds: frozenset[str],
    match_id: int,
    *,
    outcome: str,
    rating: int,
) -> Match:
    """The project is done: its outcome and the residents' rating (0-100)."""
    row = await _decidable(session, actor, kinds, match_id)
    if row.state != "accepted":
        raise IllegalTransition(f"a {row.state} match has no project to close")
    if not 0 <= rating <= 100:
        raise InvalidInput("rating must be between 0 and 100", field="rating")
    row.outcome = clean_text(outcome, 4000, "outcome", required=True)
    row.rating = rating
    row.state = "closed"
    row.closed_at = datetime.now(UTC)
    await _set_demand_state(session, actor.tenant_id, row.demand_id, "closed")
    await session.flush()
    await _record(session, actor, "match.closed", f"match:{row.id}", row.scope, rating=rating)
    earning = points.Earning(0, None, row.scope, "match.closed", "match", row.id, row.closed_at)
    await points.award_principal(session, actor.principal, actor.tenant_id, row.owner_principal, earning)
    return row


async def _set_demand_state(session: AsyncSession, tenant_id: int, demand_id: int, state: str) -> None:
    await session.execute(
        update(Demand).where(Demand.tenant_id == tenant_id, Demand.id == demand_id).values(state=state)
    )
