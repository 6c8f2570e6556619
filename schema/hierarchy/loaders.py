"""Per-request DataLoaders: one SQL statement per level of a nested query, whatever its breadth."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from strawberry.dataloader import DataLoader

from geo.boundaries import BoundaryLevel, GridCellRow, current_geojson, grid_cells_of
from services.hierarchy import repository
from services.hierarchy.repository import Level, Page, PageArgs

if TYPE_CHECKING:
    from schema.context import Context


class HierarchyLoaders:
    def __init__(self, context: Context) -> None:
        self._context = context
        self._pages: dict[tuple[Level, PageArgs], DataLoader[int, Page]] = {}
        self._nodes: dict[Level, DataLoader[int, Any]] = {}
        self._city: tuple[Any] | None = None
        self._boundaries: dict[tuple[BoundaryLevel, float | None], DataLoader[int, Any]] = {}
        self._grid_cells: dict[int, DataLoader[int, list[GridCellRow]]] = {}

    @property
    def tenant_id(self) -> int:
        return self._context.require_principal().tenant_id

    def pages(self, level: Level, args: PageArgs) -> DataLoader[int, Page]:
        key = (level, args)
        if key not in self._pages:

            async def load(parent_ids: list[int]) -> Sequence[Page]:
                async with self._context.db() as session:
                    pages = await repository.pages_by_parent(session, level, self.tenant_id, parent_ids, args)
                nodes = self.nodes(level)
                for page in pages.values():
                    for row in page.rows:
                        nodes.prime(row.id, row)
                return [pages[parent_id] for parent_id in parent_ids]

            self._pages[key] = DataLoader(load_fn=load)
        return self._pages[key]

    def nodes(self, level: Level) -> DataLoader[int, Any]:
        if level not in self._nodes:

            async def load(ids: list[int]) -> Sequence[Any]:
                async with self._context.db() as session:
                    found = await repository.by_ids(session, level, self.tenant_id, ids)
                return [found.get(node_id) for node_id in ids]

            self._nodes[level] = DataLoader(load_fn=load)
        return self._nodes[level]

    def boundaries(self, level: BoundaryLevel, simplify: float | None) -> DataLoader[int, Any]:
        """GeoJSON geometries (parsed) of nodes' current boundaries, one statement per level and tolerance."""
        key = (level, simplify)
        if key not in self._boundaries:

            async def load(ids: list[int]) -> Sequence[Any]:
                async with self._context.db() as session:
                    found = await current_geojson(session, self.tenant_id, level, ids, simplify)
                return [json.loads(found[node_id]) if node_id in found else None for node_id in ids]

            self._boundaries[key] = DataLoader(load_fn=load)
        return self._boundaries[key]

    def grid_cells(self, first: int) -> DataLoader[int, list[GridCellRow]]:
        if first not in self._grid_cells:

            async def load(station_ids: list[int]) -> Sequence[list[GridCellRow]]:
                async with self._context.db() as session:
                    found = await grid_cells_of(session, self.tenant_id, station_ids, first)
                return [found[station_id] for station_id in station_ids]

            self._grid_cells[first] = DataLoader(load_fn=load)
        return self._grid_cells[first]

    def close(self) -> None:
        """Drop the loaders: their load functions refer back to this object, and a cycle holding a whole
        response would wait for the cyclic garbage collector."""
        self._pages.clear()
        self._nodes.clear()
        self._boundaries.clear()
        self._grid_cells.clear()
        self._city = None

    async def city(self) -> Any:
        """The caller's city row, fetched at most once per request."""
        if self._city is None:
            async with self._context.db() as session:
                self._city = (await repository.city(session, self.tenant_id),)
        return self._city[0]
