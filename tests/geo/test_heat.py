"""Heat maps and statistics against counts made in Python from the inserted rows, under RLS."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import h3
import pytest
from geoalchemy2.shape import from_shape
from shapely import Point, Polygon, box
from sqlalchemy import text

from deploy.seed import seed_synthetic
from geo import heat
from geo.heat import (
    Bucket,
    Dimension,
    HeatInputError,
    NodeLevel,
    NodeNotFound,
    NodeRef,
    Period,
    Window,
    h3_parent,
    h3_parent_masks,
    hexagon_geometry,
)
from services.hierarchy import repository
from services.hierarchy.repository import Level
from services.requests.models import Request
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tests.helpers import TenantInfo, add_square_cell

T0 = datetime(2026, 6, 1, tzinfo=UTC)
START, END = T0, T0 + timedelta(days=30)
CHANNELS = ("app", "hotline", "wechat", "visit", "open311")
CATEGORIES = ("environment", "parking", "safety", "elderly_care")
SHANGHAI = timedelta(hours=8)
# Satisfaction is out of 100; the city's threshold defaults to 80% of it.
THRESHOLD = 80


@dataclass
class Row:
    """What the test knows about one inserted request."""

    id: int
    scope: str
    district_id: int | None
    street_id: int | None
    grid_cell_id: int | None
    h3_cell: int | None
    category: str
    channel: str
    state: str
    overdue: bool
    rating: int | None
    solved: bool | None
    supervision: str
    submitted_at: datetime


@dataclass
class HeatCity:
    tenant: TenantInfo
    districts: list[tuple[int, str, str]]  # id, code, scope
    streets: list[tuple[int, str, str, int]]  # id, code, scope, district id
    cells: dict[int, Polygon]
    rows: list[Row]

    def rows_in(self, start: datetime = START, end: datetime = END, scope: str | None = None) -> list[Row]:
        inside = [r for r in self.rows if start <= r.submitted_at < end]
        if scope is not None:
            inside = [r for r in inside if r.scope == scope or r.scope.startswith(scope + ".")]
        return inside


async def build_heat_city(database: Database, code: str, seed: int = 3) -> HeatCity:
    """Two districts x two streets x two stations, two 0.01-degree cells a station, 400 requests."""
    result = await seed_synthetic(database, code, districts=2, streets=2, stations=2, seed=seed)
    tenant = TenantInfo(code, result.tenant_id)
    context = TenantContext.whole_tenant(tenant.tenant_id, "system:test")
    rng = random.Random(seed)
    async with unit_of_work(database, context) as session:
        nodes = {
            level: sorted(
                (
                    await repository.page_of_all(
                        session, level, tenant.tenant_id, repository.PageArgs(first=20)
                    )
                ).rows,
                key=lambda row: row.code,
            )
            for level in (Level.DISTRICT, Level.STREET, Level.STATION)
        }
        districts = [(row.id, row.code, row.scope) for row in nodes[Level.DISTRICT]]
        streets = [(row.id, row.code, row.scope, row.district_id) for row in nodes[Level.STREET]]
        street_of = {row.id: row for row in nodes[Level.STREET]}
        categories: dict[str, int] = dict(
            (
                await session.execute(
                    text("SELECT code, id FROM request_categories WHERE tenant_id = :t"),
                    {"t": tenant.tenant_id},
                )
            ).all()
        )
        cells: dict[int, Polygon] = {}
        cell_places: list[tuple[int, Any]] = []
        for i, station in enumerate(nodes[Level.STATION]):
            for j in range(2):
                west, south = 116.30 + (i % 4) * 0.03 + j * 0.01, 39.90 + (i // 4) * 0.05
                square = box(west, south, west + 0.01, south + 0.01)
                place = (station.id, station.scope)
                cell_id = await add_square_cell(
                    session, tenant.tenant_id, place, f"H-{i}-{j}", f"热{i}-{j}", square
                )
                cells[cell_id] = square
                cell_places.append((cell_id, station))
        rows: list[Row] = []
        for n in range(400):
            unrouted = n % 50 == 0
            cell_id, station = cell_places[rng.randrange(len(cell_places))]
            square = cells[cell_id]
            west, south, east, north = square.bounds
            lon = rng.uniform(west + 1e-4, east - 1e-4)
            lat = rng.uniform(south + 1e-4, north - 1e-4)
            street = street_of[station.street_id]
            state = rng.choice(heat.STATES)
            # Out of 100, some on the threshold (80) and just below it.
            rating = (
                rng.choice([None, 0, 20, 60, 79, 80, 95, 100]) if state in ("resolved", "closed") else None
            )
            solved = None if rating is None else rng.random() < 0.7
            # Mostly inside the window, some outside, a few exactly on its edges.
            if n % 40 == 1:
                submitted = START
            elif n % 40 == 2:
                submitted = END
            elif n % 40 == 3:
                submitted = END - timedelta(microseconds=1)
            else:
                submitted = START + timedelta(seconds=rng.uniform(-5, 35) * 86400)
            request = Request(
                tenant_id=tenant.tenant_id,
                ticket=f"{code}-{n}",
                scope=f"c{tenant.tenant_id}" if unrouted else station.scope,
                category_id=categories[rng.choice(CATEGORIES)],
                description="heat test",
                channel=rng.choice(CHANNELS),
                geom=from_shape(Point(lon, lat), srid=4326),
                h3_cell=int(h3.latlng_to_cell(lat, lon, 12), 16),
                grid_cell_id=None if unrouted else cell_id,
                station_id=None if unrouted else station.id,
                street_id=None if unrouted else street.id,
                district_id=None if unrouted else street.district_id,
                state=state,
                responsible="station",
                supervision=rng.choice(["none", "none", "blue", "yellow", "red"]),
                submitted_at=submitted,
                response_due_at=submitted + timedelta(days=1),
                resolution_due_at=submitted + timedelta(days=5),
                overdue=rng.random() < 0.2,
                rating=rating,
                solved=solved,
            )
            session.add(request)
            await session.flush()
            code_of = {v: k for k, v in categories.items()}
            rows.append(
                Row(
                    request.id,
                    request.scope,
                    request.district_id,
                    request.street_id,
                    request.grid_cell_id,
                    request.h3_cell,
                    code_of[request.category_id],
                    request.channel,
                    state,
                    request.overdue,
                    rating,
                    solved,
                    request.supervision,
                    submitted,
                )
            )
    return HeatCity(tenant, districts, streets, cells, rows)


@pytest.fixture(scope="module")
async def city(database: Database) -> HeatCity:
    return await build_heat_city(database, "heatville")


# Counting in Python.


def expected_buckets(rows: Iterable[Row], key: Callable[[Row], Any]) -> dict[Any, dict[str, Any]]:
    groups: dict[Any, list[Row]] = defaultdict(list)
    for row in rows:
        bucket = key(row)
        if bucket is not None:
            groups[bucket].append(row)
    return {bucket: measures(members) for bucket, members in groups.items()}


def measures(members: list[Row]) -> dict[str, Any]:
    rated = [r.rating for r in members if r.rating is not None]
    solved_known = [r.solved for r in members if r.solved is not None]
    return {
        "total": len(members),
        "overdue": sum(r.overdue for r in members),
        "resolved": sum(r.state in ("resolved", "closed") for r in members),
        "rated": len(rated),
        "satisfied": sum(rating >= THRESHOLD for rating in rated),
        "averageRating": round(sum(rated) / len(rated), 3) if rated else None,
        "solved": sum(bool(s) for s in solved_known),
        "solvedShare": round(sum(bool(s) for s in solved_known) / len(solved_known), 3)
        if solved_known
        else None,
        "categories": dict(Counter(r.category for r in members)),
        "states": dict(Counter(r.state for r in members)),
    }


def found_buckets(collection: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    assert collection["type"] == "FeatureCollection"
    found = {}
    for feature in collection["features"]:
        assert feature["type"] == "Feature"
        properties = feature["properties"]
        found[feature["id"]] = {name: properties[name] for name in measures([])}
    return found


def context_of(city: HeatCity, scope: str | None = None) -> TenantContext:
    if scope is None:
        return TenantContext.whole_tenant(city.tenant.tenant_id, "system:test")
    return TenantContext(city.tenant.tenant_id, (scope,), "operator:test")


def window(city: HeatCity, scope: str | None = None, **kwargs: Any) -> Window:
    scopes = (scope,) if scope else (city.tenant.scope,)
    values: dict[str, Any] = {"start": START, "end": END, **kwargs}
    return Window(city.tenant.tenant_id, scopes, **values)


# H3 arithmetic.


def test_the_parent_bits_are_h3s_parents() -> None:
    rng = random.Random(1)
    for _ in range(200):
        cell = h3.latlng_to_cell(rng.uniform(-80, 80), rng.uniform(-179, 179), 12)
        for resolution in range(heat.MIN_RESOLUTION, heat.MAX_RESOLUTION + 1):
            assert format(h3_parent(int(cell, 16), resolution), "x") == h3.cell_to_parent(cell, resolution)


async def test_postgresql_computes_the_same_parents(database: Database, city: HeatCity) -> None:
    cells = [row.h3_cell for row in city.rows[:50] if row.h3_cell is not None]
    async with database.scoped(context_of(city)) as session:
        for resolution in (5, 8, 11, 12):
            keep, bits = h3_parent_masks(resolution)
            found = (
                await session.execute(
                    text("SELECT (c & CAST(:keep AS bigint)) | CAST(:bits AS bigint) FROM unnest(:cells) c"),
                    {"keep": keep, "bits": bits, "cells": cells},
                )
            ).scalars()
            expected = [int(h3.cell_to_parent(format(c, "x"), resolution), 16) for c in cells]
            assert list(found) == expected


def test_hexagons_are_closed_counter_clockwise_polygons() -> None:
    cell = int(h3.latlng_to_cell(39.9, 116.4, 9), 16)
    geometry = hexagon_geometry(cell)
    ring = geometry["coordinates"][0]
    assert geometry["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) == 7
    polygon = Polygon(ring)
    assert polygon.exterior.is_ccw
    assert polygon.contains(Point(*reversed(h3.cell_to_latlng(format(cell, "x")))))


# Heat maps.


async def test_the_grid_heat_map_counts_what_python_counts(database: Database, city: HeatCity) -> None:
    async with database.scoped(context_of(city)) as session:
        collection = await heat.heatmap(session, window(city), Bucket.GRID_CELL)
    expected = expected_buckets(city.rows_in(), lambda r: r.grid_cell_id)
    assert found_buckets(collection) == expected
    assert len(expected) >= 10
    for feature in collection["features"]:
        shape = Polygon(feature["geometry"]["coordinates"][0][0])
        assert shape.symmetric_difference(city.cells[feature["id"]]).area < 1e-12
        assert feature["properties"]["code"].startswith("H-")


@pytest.mark.parametrize("resolution", [7, 10])
async def test_the_h3_heat_map_counts_what_python_counts(
    database: Database, city: HeatCity, resolution: int
) -> None:
    async with database.scoped(context_of(city)) as session:
        collection = await heat.heatmap(session, window(city), Bucket.H3, resolution)
    expected = expected_buckets(
        city.rows_in(), lambda r: h3.cell_to_parent(format(r.h3_cell, "x"), resolution)
    )
    assert found_buckets(collection) == expected
    for feature in collection["features"]:
        assert feature["properties"]["resolution"] == resolution
        assert h3.get_resolution(feature["id"]) == resolution
        assert feature["geometry"]["type"] == "Polygon"
    # The unrouted requests count in hexagons (they have a point) but in no grid cell.
    assert sum(b["total"] for b in expected.values()) == len(city.rows_in())


async def test_the_window_includes_its_start_and_excludes_its_end(database: Database, city: HeatCity) -> None:
    on_start = [r for r in city.rows if r.submitted_at == START]
    on_end = [r for r in city.rows if r.submitted_at == END]
    assert on_start and on_end
    async with database.scoped(context_of(city)) as session:
        collection = await heat.heatmap(session, window(city), Bucket.H3, 12)
        just_start = await heat.heatmap(
            session, window(city, start=START, end=START + timedelta(microseconds=1)), Bucket.H3, 12
        )
        just_end = await heat.heatmap(
            session, window(city, start=END, end=END + timedelta(microseconds=1)), Bucket.H3, 12
        )
    total = sum(f["properties"]["total"] for f in collection["features"])
    assert total == len(city.rows_in())
    assert sum(f["properties"]["total"] for f in just_start["features"]) == len(on_start)
    assert sum(f["properties"]["total"] for f in just_end["features"]) == len(on_end)


async def test_categories_and_states_filter(database: Database, city: HeatCity) -> None:
    categories, states = ("parking", "safety"), ("closed", "resolved", "submitted")
    async with database.scoped(context_of(city)) as session:
        collection = await heat.heatmap(
            session, window(city, categories=categories, states=states), Bucket.GRID_CELL
        )
    rows = [r for r in city.rows_in() if r.category in categories and r.state in states]
    assert found_buckets(collection) == expected_buckets(rows, lambda r: r.grid_cell_id)


async def test_a_district_sees_only_its_district(database: Database, city: HeatCity) -> None:
    district_id, _, scope = city.districts[0]
    other_id, _, _ = city.districts[1]
    async with database.scoped(context_of(city, scope)) as session:
        grid = await heat.heatmap(session, window(city, scope), Bucket.GRID_CELL)
        hexes = await heat.heatmap(session, window(city, scope), Bucket.H3, 8)
        with pytest.raises(NodeNotFound):
            await heat.heatmap(
                session,
                window(city, scope, node=NodeRef(NodeLevel.DISTRICT, other_id)),
                Bucket.GRID_CELL,
            )
    mine = city.rows_in(scope=scope)
    assert all(r.district_id == district_id for r in mine)
    assert found_buckets(grid) == expected_buckets(mine, lambda r: r.grid_cell_id)
    assert found_buckets(hexes) == expected_buckets(
        mine, lambda r: h3.cell_to_parent(format(r.h3_cell, "x"), 8)
    )
    assert sum(f["properties"]["total"] for f in hexes["features"]) == len(mine) < len(city.rows_in())


async def test_a_node_narrows_the_city(database: Database, city: HeatCity) -> None:
    street_id, _, scope, _ = city.streets[1]
    async with database.scoped(context_of(city)) as session:
        collection = await heat.heatmap(
            session, window(city, node=NodeRef(NodeLevel.STREET, street_id)), Bucket.GRID_CELL
        )
        city_node = await heat.heatmap(
            session,
            window(city, node=NodeRef(NodeLevel.CITY, city.tenant.tenant_id)),
            Bucket.GRID_CELL,
        )
        with pytest.raises(NodeNotFound):
            await heat.heatmap(session, window(city, node=NodeRef(NodeLevel.STREET, 10**9)), Bucket.GRID_CELL)
    assert found_buckets(collection) == expected_buckets(city.rows_in(scope=scope), lambda r: r.grid_cell_id)
    assert found_buckets(city_node) == expected_buckets(city.rows_in(), lambda r: r.grid_cell_id)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"start": END, "end": START}, "from"),
        ({"start": START, "end": START}, "from"),
        ({"start": START, "end": START + timedelta(days=367)}, "to"),
        ({"start": START.replace(tzinfo=None), "end": END}, "from"),
        ({"start": START, "end": END, "states": ("lost",)}, "states"),
    ],
)
def test_bad_windows_are_refused(arguments: dict[str, Any], field: str) -> None:
    with pytest.raises(HeatInputError) as refused:
        Window(1, ("c1",), **arguments)
    assert refused.value.field == field


@pytest.mark.parametrize("resolution", [None, 4, 13])
def test_resolutions_out_of_range_are_refused(resolution: int | None) -> None:
    with pytest.raises(HeatInputError, match="resolution"):
        heat.check_resolution(resolution)


# Statistics.


async def test_satisfied_counts_ratings_at_or_above_the_citys_threshold(
    database: Database, city: HeatCity
) -> None:
    """The same threshold reopens a request (services.requests) and counts it satisfied here."""
    assert heat.DEFAULT_RATING_THRESHOLD == THRESHOLD
    rated = [r.rating for r in city.rows_in() if r.rating is not None]
    session = database.open()
    try:
        await session.begin()
        await database.apply(session, context_of(city))
        stored = await session.scalar(
            text("SELECT rating_threshold FROM request_settings WHERE tenant_id = :t"),
            {"t": city.tenant.tenant_id},
        )
        assert stored == THRESHOLD  # the tenant's row has the default
        before = await heat.request_stats(session, window(city), [])
        await session.execute(
            text("UPDATE request_settings SET rating_threshold = 60 WHERE tenant_id = :t"),
            {"t": city.tenant.tenant_id},
        )
        after = await heat.request_stats(session, window(city), [])
    finally:
        await session.rollback()
        await session.close()
    assert before[0].satisfied == sum(rating >= THRESHOLD for rating in rated)
    assert after[0].satisfied == sum(rating >= 60 for rating in rated) > before[0].satisfied


async def test_stats_by_category_and_state(database: Database, city: HeatCity) -> None:
    async with database.scoped(context_of(city)) as session:
        rows = await heat.request_stats(session, window(city), [Dimension.CATEGORY, Dimension.STATE])
    expected = expected_buckets(city.rows_in(), lambda r: (r.category, r.state))
    found = {(row.keys[0].value, row.keys[1].value): row for row in rows}
    assert set(found) == set(expected)
    for key, row in found.items():
        want = expected[key]
        assert (row.count, row.overdue, row.resolved, row.rated, row.satisfied, row.average_rating) == (
            want["total"],
            want["overdue"],
            want["resolved"],
            want["rated"],
            want["satisfied"],
            want["averageRating"],
        )
    assert [k for k in found] == sorted(found)
    assert all(row.keys[0].name for row in rows)  # the category's name


async def test_stats_by_district_street_channel_and_supervision(database: Database, city: HeatCity) -> None:
    codes = {d[0]: d[1] for d in city.districts}
    street_codes = {s[0]: s[1] for s in city.streets}
    dimensions = [Dimension.DISTRICT, Dimension.STREET, Dimension.CHANNEL, Dimension.SUPERVISION]
    async with database.scoped(context_of(city)) as session:
        rows = await heat.request_stats(session, window(city), dimensions)
        total = await heat.request_stats(session, window(city), [])
    expected = Counter(
        (
            codes.get(r.district_id) if r.district_id else None,
            street_codes.get(r.street_id) if r.street_id else None,
            r.channel,
            r.supervision,
        )
        for r in city.rows_in()
    )
    assert {tuple(k.value for k in row.keys): row.count for row in rows} == dict(expected)
    assert [(row.keys, row.count) for row in total] == [((), len(city.rows_in()))]


@pytest.mark.parametrize("period", list(Period))
async def test_stats_by_period_in_the_tenants_time_zone(
    database: Database, city: HeatCity, period: Period
) -> None:
    async with database.scoped(context_of(city)) as session:
        rows = await heat.request_stats(session, window(city), [Dimension.PERIOD], period)

    def start_of(moment: datetime) -> str:
        local = (moment + SHANGHAI).date()
        if period is Period.WEEK:
            local -= timedelta(days=local.weekday())
        elif period is Period.MONTH:
            local = local.replace(day=1)
        return local.isoformat()

    expected = Counter(start_of(r.submitted_at) for r in city.rows_in())
    assert {row.keys[0].value: row.count for row in rows} == dict(expected)


async def test_stats_refuse_too_many_groups(database: Database, city: HeatCity) -> None:
    async with database.scoped(context_of(city)) as session:
        with pytest.raises(HeatInputError, match="more than 5 groups"):
            await heat.request_stats(session, window(city), [Dimension.CATEGORY, Dimension.STATE], max_rows=5)
        with pytest.raises(HeatInputError, match="twice"):
            await heat.request_stats(session, window(city), [Dimension.STATE, Dimension.STATE])


async def test_supervision_per_district_then_per_street(database: Database, city: HeatCity) -> None:
    tenant_id = city.tenant.tenant_id
    async with database.scoped(context_of(city)) as session:
        per_district = await heat.supervision_summary(session, tenant_id, [city.tenant.scope])
    district_id, _, district_scope = city.districts[0]
    async with database.scoped(context_of(city, district_scope)) as session:
        per_street = await heat.supervision_summary(
            session, tenant_id, [district_scope], start=START, end=END
        )

    def colours(rows: Iterable[Row]) -> tuple[int, int, int, int]:
        members = list(rows)
        count = Counter(r.supervision for r in members)
        return count["blue"], count["yellow"], count["red"], len(members)

    found = {row.code: (row.blue, row.yellow, row.red, row.total) for row in per_district}
    expected: dict[str | None, tuple[int, int, int, int]] = {
        code: colours(r for r in city.rows if r.district_id == d) for d, code, _ in city.districts
    }
    expected[None] = colours(r for r in city.rows if r.district_id is None)
    assert found == expected
    assert {row.level for row in per_district} == {"district", None}

    found = {row.code: (row.blue, row.yellow, row.red, row.total) for row in per_street}
    streets = [s for s in city.streets if s[3] == district_id]
    assert found == {
        code: colours(r for r in city.rows_in() if r.street_id == street_id)
        for street_id, code, _, _ in streets
    }
    assert {row.level for row in per_street} == {"street"}
