"""Importing boundaries from a GeoJSON FeatureCollection: every feature checked on its own, none dropped
silently; a report of what was stored, repaired, refused, sticks out of its parent or overlaps a sibling."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from geo.boundaries import BoundaryLevel, add_grid_cell, find_node
from geo.crs import CRS
from geo.validation import GeometryRefused, validate_polygonal
from services.errors import DomainError, NotFound
from services.geography.service import set_node_boundary
from services.unit_of_work import atomic, unit_of_work
from tenants.context import TenantContext
from tenants.db import Database

BATCH = 100  # features per transaction; each feature has its own savepoint inside it


@dataclass
class FeatureOutcome:
    index: int
    code: str | None
    stored: bool
    reason: str = ""
    repairs: list[str] = field(default_factory=list)
    created: bool = False


@dataclass
class ImportReport:
    outcomes: list[FeatureOutcome] = field(default_factory=list)
    outside_parent: list[tuple[str, float]] = field(default_factory=list)
    overlaps: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def refused(self) -> list[FeatureOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.stored]

    @property
    def stored(self) -> int:
        return sum(outcome.stored for outcome in self.outcomes)

    @property
    def repaired(self) -> int:
        return sum(bool(outcome.repairs) for outcome in self.outcomes)


class NotAFeatureCollection(ValueError):
    pass


def features_of(document: Any) -> list[Any]:
    if isinstance(document, Mapping) and document.get("type") == "FeatureCollection":
        features = document.get("features")
        if isinstance(features, list):
            return features
        raise NotAFeatureCollection("the FeatureCollection has no list of features")
    if isinstance(document, Mapping) and document.get("type") == "Feature":
        return [document]
    raise NotAFeatureCollection("the file is not a GeoJSON FeatureCollection or Feature")


@dataclass(frozen=True)
class ImportOptions:
    level: BoundaryLevel
    crs: CRS
    match_on: str = "code"
    repair: bool = False
    srid: int | None = None
    sticking_out_m2: float = 1_000.0
    source: str = "import"
    synthetic: bool = False


async def import_boundaries(
    database: Database,
    actor: TenantContext,
    features: Sequence[Any],
    options: ImportOptions,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    report = ImportReport()
    for start in range(0, len(features), BATCH):
        async with unit_of_work(database, actor) as session:
            for index in range(start, min(start + BATCH, len(features))):
                report.outcomes.append(await _one(session, actor, index, features[index], options, report))
        if progress:
            progress(min(BATCH, len(features) - start))
    return report


async def _one(
    session: AsyncSession,
    actor: TenantContext,
    index: int,
    feature: Any,
    options: ImportOptions,
    report: ImportReport,
) -> FeatureOutcome:
    number, level = index + 1, options.level
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        return FeatureOutcome(number, None, False, "it is not a GeoJSON Feature")
    properties = feature.get("properties") or {}
    code = properties.get(options.match_on) if isinstance(properties, Mapping) else None
    if code is None or str(code).strip() == "":
        return FeatureOutcome(
            number, None, False, f"it has no {options.match_on!r} property to match a {level.value}"
        )
    code = str(code).strip()
    try:
        validated = validate_polygonal(feature, repair=options.repair, srid=options.srid, crs=options.crs)
    except GeometryRefused as refused:
        hint = " (--repair would fix it)" if refused.repairable else ""
        return FeatureOutcome(number, code, False, refused.reason + hint)
    try:
        async with atomic(session):
            created = False
            if (
                level is BoundaryLevel.GRID
                and await find_node(session, actor.tenant_id, level, code=code) is None
            ):
                await _create_cell(session, actor, properties, code)
                created = True
            result = await set_node_boundary(
                session,
                actor,
                level,
                validated,
                code=code,
                source=options.source,
                synthetic=options.synthetic,
            )
    except DomainError as error:
        return FeatureOutcome(number, code, False, error.message)
    if result.outside_parent_square_meters and result.outside_parent_square_meters > options.sticking_out_m2:
        report.outside_parent.append((code, result.outside_parent_square_meters))
    report.overlaps.extend((code, overlap.code, overlap.square_meters) for overlap in result.overlaps)
    return FeatureOutcome(number, code, True, repairs=result.repairs, created=created)


async def _create_cell(
    session: AsyncSession,
    actor: TenantContext,
    properties: Mapping[str, Any],
    code: str,
) -> None:
    """A grid cell the file names but the tenant lacks is created under the station the feature names."""
    station_code = properties.get("station")
    if not station_code:
        raise _missing(
            f"grid cell {code} does not exist and the feature names no 'station' to create it under"
        )
    station = await find_node(session, actor.tenant_id, BoundaryLevel.STATION, code=str(station_code))
    if station is None:
        raise _missing(f"no station with code {station_code} is visible to you")
    await add_grid_cell(
        session,
        tenant_id=actor.tenant_id,
        station_id=station.id,
        station_scope=station.scope,
        code=code,
        name=str(properties.get("name") or code),
        geometry=None,
    )


def _missing(message: str) -> DomainError:
    return NotFound(message)
