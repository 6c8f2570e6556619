"""Deterministic synthetic polygons for streets, communities and grid cells.

Streets (街道/乡镇), communities (社区/村) and grid cells (网格) have no public boundaries, so the demo
generates them inside their real parents: a Voronoi partition of seeded points, relaxed by a few Lloyd
iterations so the pieces come out of similar size, each cell clipped to the parent. Everything here is a
pure function of its arguments on Shapely 2 geometries whose coordinates are lon/lat degrees; the same
arguments always give byte-identical WKB (with the same Shapely/GEOS and numpy versions).

How a partition is made (``partition``):

1. The parent is mapped to a local frame where one unit is one degree of latitude in both directions
   (longitudes scaled by cos(latitude) around the parent's centre), so cells are not stretched east-west.
2. Seeds: ``KMEANS_SAMPLES_PER_PIECE * n`` points are drawn uniformly inside the parent (rejection
   sampling in its bounding box, numpy's PCG64 generator seeded with ``seed``), and k-means over them
   (at most ``KMEANS_ITERATIONS`` rounds) gives ``n`` well-spread centres, each snapped to the nearest
   sample of its cluster so it lies inside the parent.
3. Lloyd relaxation: each centre moves to the centroid of its Voronoi cell clipped to the parent (to a
   point on the clipped cell's surface when the centroid falls outside the parent), ``LLOYD_ITERATIONS``
   times. On Beijing's districts cut into their streets the pieces' areas then vary by about 20 %
   (coefficient of variation), against about 60 % for plain random seeds.
4. The final Voronoi cells are mapped back to lon/lat and intersected with the parent itself, so the union
   of the pieces is the parent, up to floating-point noise where cell edges cross the parent's border.
5. A cell that the parent's shape cuts into several parts keeps the part holding its point; every other
   part goes to the piece it shares the longest border with (an island that borders nobody stays with its
   cell), so pieces are connected wherever the parent is.
6. Pieces are ordered in a serpentine over their points (bands from north to south, alternately west to
   east and east to west), so consecutive codes given in that order are neighbours on the map.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

__all__ = [
    "area_km2",
    "grid_cells",
    "is_village",
    "partition",
    "target_cell_km2",
]

LLOYD_ITERATIONS = 2
KMEANS_SAMPLES_PER_PIECE = 32
KMEANS_ITERATIONS = 20
# Cells per community are kept between these bounds by target_cell_km2's rule (see there).
COMMUNITY_CELL_KM2 = (0.05, 0.2)
COMMUNITY_CELLS_WANTED = 8
COMMUNITY_MAX_CELLS = 24
VILLAGE_MIN_CELL_KM2 = 0.5
VILLAGE_CELLS = 4
_MAX_SAMPLING_ROUNDS = 200
_GEOD = Geod(ellps="WGS84")

Area = Polygon | MultiPolygon
Coords = npt.NDArray[np.float64]


def area_km2(geom: BaseGeometry) -> float:
    """Geodesic area on the WGS84 ellipsoid of a (Multi)Polygon in lon/lat degrees, in km².

    Ring orientation does not matter (each ring's area is taken as positive, holes are subtracted). Edges
    are taken as geodesics, not as straight lines in lon/lat: for edges a few km long the difference is
    about 1e-4 of the area, which is why coverage is checked with planar areas, not with this.
    """
    total = 0.0
    for part in shapely.get_parts(geom):
        if not isinstance(part, Polygon) or part.is_empty:
            continue
        rings = [part.exterior, *part.interiors]
        areas = [abs(_GEOD.polygon_area_perimeter(*np.asarray(r.coords).T[:2])[0]) for r in rings]
        total += areas[0] - sum(areas[1:])
    return total / 1e6


def is_village(name: str) -> bool:
    """A rural village committee (村委会, 村民委员会, …村) rather than an urban community (社区)."""
    return name.endswith(("村委会", "村民委员会", "村"))


def target_cell_km2(community_area_km2: float, is_village: bool) -> float:
    """The grid-cell size to aim at inside one community, in km².

    - Urban communities (社区): area / 8, kept within 0.05-0.2 km², so a typical community of the urban
      core (0.4-1.6 km²) gets about 8 cells, smaller ones fewer cells of 0.05 km² (at least one), larger ones
      cells of 0.2 km²; but never more than 24 cells per community: a big suburban 社区 gets area / 24.
    - Rural villages (村): area / 4, at least 0.5 km², so a village of 2 km² or more has 4 cells and a
      smaller one 1-3 cells of about 0.5 km².
    """
    if community_area_km2 < 0 or not math.isfinite(community_area_km2):
        raise ValueError(f"community area must be a finite non-negative number, not {community_area_km2}")
    if is_village:
        return max(VILLAGE_MIN_CELL_KM2, community_area_km2 / VILLAGE_CELLS)
    low, high = COMMUNITY_CELL_KM2
    wanted = min(max(community_area_km2 / COMMUNITY_CELLS_WANTED, low), high)
    return max(wanted, community_area_km2 / COMMUNITY_MAX_CELLS)


def grid_cells(community: Area, *, target_km2: float, seed: int) -> list[MultiPolygon]:
    """Grid cells of about ``target_km2`` covering ``community`` without overlaps.

    A partition into ``max(1, round(area / target_km2))`` pieces (see ``partition``).
    """
    if not target_km2 > 0 or not math.isfinite(target_km2):
        raise ValueError(f"target_km2 must be a positive number, not {target_km2}")
    n = max(1, round(area_km2(_as_multipolygon(community)) / target_km2))
    return partition(community, n, seed)


def partition(parent: Area, n: int, seed: int) -> list[MultiPolygon]:
    """``n`` non-overlapping, valid, non-empty pieces whose union is ``parent`` (see the module's notes).

    The same arguments always give the same pieces, in the same order.
    """
    whole = _as_multipolygon(parent)
    if n < 1:
        raise ValueError(f"a partition needs at least one piece, not {n}")
    if n == 1:
        return [whole]
    frame = _Frame(whole)
    local = frame.forward(whole)
    shapely.prepare(local)
    rng = np.random.default_rng(seed % 2**64)
    points = _kmeans(_sample_inside(local, n * KMEANS_SAMPLES_PER_PIECE, rng), n, KMEANS_ITERATIONS)
    envelope = shapely.box(*local.bounds).buffer(max(_span(local), 1e-9), join_style="mitre")
    for _ in range(LLOYD_ITERATIONS):
        clipped = shapely.intersection(_voronoi(points, envelope), local)
        points = _relaxed(points, clipped, local)

    cells = frame.backward_array(_voronoi(points, envelope))
    pieces = [_polygons(shapely.intersection(cell, whole)) for cell in cells]
    anchors = frame.backward_points(points)
    merged = _absorb_fragments(pieces, anchors)
    result = [MultiPolygon(parts) for parts in merged]
    for i, piece in enumerate(result):
        if piece.is_empty:
            raise AssertionError(f"piece {i} of {n} is empty")  # every point lies inside its own piece
        if not piece.is_valid:
            result[i] = _valid(piece)
    return [result[i] for i in _serpentine(anchors)]


class _Frame:
    """Local frame: x = (lon - lon0) * cos(lat0), y = lat - lat0 (both in degrees of latitude)."""

    def __init__(self, geom: BaseGeometry) -> None:
        minx, miny, maxx, maxy = geom.bounds
        self.lon0 = (minx + maxx) / 2
        self.lat0 = (miny + maxy) / 2
        self.k = math.cos(math.radians(self.lat0))

    def _fwd(self, xy: Coords) -> Coords:
        return np.column_stack([(xy[:, 0] - self.lon0) * self.k, xy[:, 1] - self.lat0])

    def _bwd(self, xy: Coords) -> Coords:
        return np.column_stack([xy[:, 0] / self.k + self.lon0, xy[:, 1] + self.lat0])

    def forward(self, geom: MultiPolygon) -> MultiPolygon:
        return _transform(geom, self._fwd)

    def backward_array(self, geoms: npt.NDArray[np.object_]) -> list[BaseGeometry]:
        return list(shapely.transform(geoms, self._bwd))

    def backward_points(self, points: Coords) -> Coords:
        return self._bwd(points)


def _transform(geom: MultiPolygon, func: Callable[[Coords], Coords]) -> MultiPolygon:
    out = shapely.transform(geom, func)
    assert isinstance(out, MultiPolygon)
    return out


def _as_multipolygon(geom: Area) -> MultiPolygon:
    if isinstance(geom, Polygon):
        geom = MultiPolygon([geom])
    if not isinstance(geom, MultiPolygon):
        raise TypeError(f"expected a Polygon or MultiPolygon, not {type(geom).__name__}")
    if geom.is_empty:
        raise ValueError("cannot partition an empty polygon")
    if not geom.is_valid:
        raise ValueError(f"cannot partition an invalid polygon: {shapely.is_valid_reason(geom)}")
    if geom.area <= 0:
        raise ValueError("cannot partition a polygon of zero area")
    return geom


def _span(geom: BaseGeometry) -> float:
    minx, miny, maxx, maxy = geom.bounds
    return max(maxx - minx, maxy - miny)


def _sample_inside(local: MultiPolygon, n: int, rng: np.random.Generator) -> Coords:
    """``n`` points drawn uniformly from the interior of ``local``, in the order they were drawn."""
    minx, miny, maxx, maxy = local.bounds
    fill = max(local.area / max((maxx - minx) * (maxy - miny), 1e-300), 1e-3)
    found: list[Coords] = []
    count = 0
    for _ in range(_MAX_SAMPLING_ROUNDS):
        draw = rng.uniform((minx, miny), (maxx, maxy), size=(max(64, math.ceil(1.2 * (n - count) / fill)), 2))
        inside = draw[shapely.contains_xy(local, draw[:, 0], draw[:, 1])]
        found.append(inside)
        count += len(inside)
        if count >= n:
            return np.concatenate(found)[:n]
    raise ValueError(f"could not place {n} points inside the polygon; it is too thin")


def _kmeans(samples: Coords, n: int, iterations: int) -> Coords:
    """``n`` well-spread points: k-means (Lloyd on the samples) started from the first ``n`` samples.

    Each centre is then moved to the sample of its cluster nearest to it, so it lies inside the parent
    (a centroid of a non-convex cluster may not), and centres stay distinct.
    """
    centres = samples[:n].copy()
    labels = np.full(len(samples), -1, dtype=np.intp)
    for _ in range(iterations):
        previous, labels = labels, _nearest(samples, centres)
        if np.array_equal(previous, labels):
            break
        counts = np.bincount(labels, minlength=n).astype(np.float64)
        sums = np.stack([np.bincount(labels, weights=samples[:, axis], minlength=n) for axis in (0, 1)], 1)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    labels = _nearest(samples, centres)
    d2 = ((samples - centres[labels]) ** 2).sum(axis=1)
    snapped = centres.copy()
    order = np.lexsort((d2, labels))  # by cluster, nearest first
    first = np.unique(labels[order], return_index=True)
    snapped[first[0]] = samples[order[first[1]]]
    # A centre whose cluster came out empty keeps a sample of its own: the samples no centre took.
    missing = np.setdiff1d(np.arange(n), first[0])
    if len(missing):
        free = np.setdiff1d(np.arange(len(samples)), order[first[1]])
        snapped[missing] = samples[free[: len(missing)]]
    return snapped


def _nearest(samples: Coords, centres: Coords) -> npt.NDArray[np.intp]:
    """Index of the nearest centre of every sample, in chunks to bound memory."""
    chunk = max(1, 4_000_000 // max(len(centres), 1))
    out = np.empty(len(samples), dtype=np.intp)
    for start in range(0, len(samples), chunk):
        part = samples[start : start + chunk]
        dx = part[:, 0, None] - centres[None, :, 0]
        dy = part[:, 1, None] - centres[None, :, 1]
        out[start : start + chunk] = (dx * dx + dy * dy).argmin(axis=1)
    return out


def _voronoi(points: Coords, envelope: Polygon) -> npt.NDArray[np.object_]:
    """The Voronoi cells of ``points``, in the points' order."""
    diagram = shapely.voronoi_polygons(shapely.multipoints(points), extend_to=envelope, ordered=True)
    cells = shapely.get_parts(diagram)
    if len(cells) != len(points):
        raise AssertionError(f"{len(points)} points gave {len(cells)} Voronoi cells")
    return cells


def _relaxed(points: Coords, clipped: npt.NDArray[np.object_], local: MultiPolygon) -> Coords:
    """One Lloyd step: the centroid of each clipped cell, or a point on its surface if that is outside."""
    centroids = shapely.get_coordinates(shapely.centroid(clipped))
    empty = shapely.is_empty(clipped)
    if empty.any() or len(centroids) != len(points):
        return points  # cannot happen for points inside the parent; keep them rather than lose a cell
    inside = shapely.contains_xy(local, centroids[:, 0], centroids[:, 1])
    for i in np.flatnonzero(~inside):
        centroids[i] = shapely.get_coordinates(shapely.point_on_surface(clipped[i]))[0]
    if len(set(map(tuple, centroids.tolist()))) != len(centroids):
        return points
    return centroids


def _polygons(geom: BaseGeometry) -> list[Polygon]:
    return [p for p in shapely.get_parts(geom) if isinstance(p, Polygon) and not p.is_empty]


def _absorb_fragments(pieces: list[list[Polygon]], anchors: Coords) -> list[list[Polygon]]:
    """Give every part of a piece but the one holding its point to the neighbour it borders most."""
    kept: list[list[Polygon]] = []
    fragments: list[tuple[int, Polygon]] = []
    for i, parts in enumerate(pieces):
        if len(parts) <= 1:
            kept.append(list(parts))
            continue
        anchor = Point(anchors[i])
        main = min(range(len(parts)), key=lambda j: (parts[j].distance(anchor), -parts[j].area, j))
        kept.append([parts[main]])
        fragments.extend((i, p) for j, p in enumerate(parts) if j != main)
    if not fragments:
        return kept
    tree = shapely.STRtree([MultiPolygon(parts) if parts else Polygon() for parts in pieces])
    fragments.sort(key=lambda item: (-item[1].area, item[0]))
    for owner, fragment in fragments:
        best, best_length = owner, 0.0
        boundary = fragment.boundary
        for j in sorted(int(c) for c in tree.query(fragment)):
            if j == owner or not kept[j]:
                continue
            shared = shapely.intersection(boundary, MultiPolygon(kept[j]).boundary).length
            if shared > best_length:
                best, best_length = j, shared
        kept[best].append(fragment)
    return [_dissolved(parts) for parts in kept]


def _dissolved(parts: list[Polygon]) -> list[Polygon]:
    if len(parts) <= 1:
        return parts
    return _polygons(shapely.union_all(parts))


def _valid(piece: MultiPolygon) -> MultiPolygon:
    repaired = _polygons(shapely.make_valid(piece, method="structure", keep_collapsed=False))
    return MultiPolygon(repaired)


def _serpentine(anchors: Coords) -> list[int]:
    """Indices ordered in bands from north to south, alternately west->east and east->west."""
    n = len(anchors)
    bands = max(1, round(math.sqrt(n)))
    north_first = sorted(range(n), key=lambda i: (-anchors[i, 1], anchors[i, 0], i))
    order: list[int] = []
    for b in range(bands):
        band = north_first[b * n // bands : (b + 1) * n // bands]
        band.sort(key=lambda i: (anchors[i, 0], i), reverse=b % 2 == 1)
        order.extend(band)
    return order
