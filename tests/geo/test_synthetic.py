"""Synthetic street, community and grid-cell polygons: deterministic partitions of their parents."""

from __future__ import annotations

import itertools

import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, box

from geo.synthetic import area_km2, grid_cells, is_village, partition, target_cell_km2

# About 8.5 km x 11 km in Beijing's urban core.
SQUARE = box(116.35, 39.85, 116.45, 39.95)
# A square with a thin slit from the top almost to the bottom: Voronoi cells straddling the slit come out
# in two parts, one on each side.
SLIT = Polygon(
    [
        (116.0, 40.0),
        (116.1, 40.0),
        (116.1, 40.1),
        (116.051, 40.1),
        (116.051, 40.01),
        (116.049, 40.01),
        (116.049, 40.1),
        (116.0, 40.1),
    ]
)
# A parent with a hole, and one made of a main part and a small island far from it.
HOLED = Polygon(
    [(116.0, 39.5), (116.3, 39.5), (116.3, 39.8), (116.0, 39.8)],
    [[(116.1, 39.6), (116.2, 39.6), (116.2, 39.7), (116.1, 39.7)]],
)
ISLANDS = MultiPolygon([box(117.0, 40.0, 117.1, 40.08), box(117.3, 40.2, 117.31, 40.21)])


def _assert_partition(parent: Polygon | MultiPolygon, pieces: list[MultiPolygon]) -> None:
    """Valid, non-empty, non-overlapping pieces whose union is the parent.

    Areas are planar in lon/lat, as the database's geometry type sees them (a geodesic area would differ
    wherever a piece adds a vertex on one of the parent's long edges).
    """
    for piece in pieces:
        assert isinstance(piece, MultiPolygon)
        assert not piece.is_empty
        assert piece.is_valid, shapely.is_valid_reason(piece)
    union = shapely.union_all(pieces)
    assert union.area == pytest.approx(parent.area, rel=1e-6)
    assert shapely.symmetric_difference(union, parent).area <= 1e-9 * parent.area
    assert sum(p.area for p in pieces) == pytest.approx(parent.area, rel=1e-6)
    tree = shapely.STRtree(pieces)
    for i, j in tree.query(pieces, predicate="intersects").T:
        if i < j:
            assert shapely.intersection(pieces[i], pieces[j]).area <= 1e-12 * parent.area
    assert sum(area_km2(p) for p in pieces) == pytest.approx(area_km2(parent), rel=1e-3)


def _wkb(pieces: list[MultiPolygon]) -> list[bytes]:
    return [shapely.to_wkb(p) for p in pieces]


@pytest.mark.parametrize("n", [2, 3, 7, 25, 120])
def test_a_partition_covers_the_parent_without_overlaps(n: int) -> None:
    pieces = partition(SQUARE, n, seed=42)
    assert len(pieces) == n
    _assert_partition(SQUARE, pieces)


def test_the_same_arguments_give_byte_identical_pieces() -> None:
    first = partition(SQUARE, 30, seed=7)
    second = partition(SQUARE, 30, seed=7)
    assert _wkb(first) == _wkb(second)
    assert _wkb(first) != _wkb(partition(SQUARE, 30, seed=8))
    cells = grid_cells(HOLED, target_km2=20.0, seed=3)
    assert _wkb(cells) == _wkb(grid_cells(HOLED, target_km2=20.0, seed=3))


def test_any_integer_is_a_seed() -> None:
    assert len(partition(SQUARE, 4, seed=-1)) == 4
    assert len(partition(SQUARE, 4, seed=110101001001)) == 4


def test_one_piece_is_the_parent_itself() -> None:
    [piece] = partition(SQUARE, 1, seed=1)
    assert piece.equals(SQUARE)
    [piece] = partition(ISLANDS, 1, seed=1)
    assert shapely.to_wkb(piece) == shapely.to_wkb(ISLANDS)


def test_pieces_are_of_similar_size() -> None:
    areas = sorted(area_km2(p) for p in partition(SQUARE, 40, seed=5))
    mean = sum(areas) / len(areas)
    assert areas[0] > 0.3 * mean
    assert areas[-1] < 2.0 * mean


@pytest.mark.parametrize("n", [2, 3, 10])
def test_a_parent_with_islands_gives_non_empty_pieces(n: int) -> None:
    pieces = partition(ISLANDS, n, seed=9)
    assert len(pieces) == n
    _assert_partition(ISLANDS, pieces)
    # The small island belongs to exactly one piece, whole.
    island = ISLANDS.geoms[1]
    owners = [p for p in pieces if p.intersection(island).area > 0]
    assert len(owners) == 1
    assert owners[0].intersection(island).area == pytest.approx(island.area, rel=1e-9)


@pytest.mark.parametrize("n", [2, 6, 30])
def test_a_parent_with_a_hole_leaves_the_hole_empty(n: int) -> None:
    pieces = partition(HOLED, n, seed=4)
    assert len(pieces) == n
    _assert_partition(HOLED, pieces)
    hole = Polygon(HOLED.interiors[0])
    assert all(p.intersection(hole).area <= 1e-12 for p in pieces)


@pytest.mark.parametrize(("n", "seed"), list(itertools.product([2, 3, 5, 8], range(3))))
def test_pieces_of_a_connected_parent_are_connected(n: int, seed: int) -> None:
    pieces = partition(SLIT, n, seed)
    assert len(pieces) == n
    _assert_partition(SLIT, pieces)
    for piece in pieces:
        # Leftover slivers from floating-point noise are allowed, but one part holds the piece's area.
        largest = max(piece.geoms, key=lambda p: p.area)
        assert largest.area >= piece.area * (1 - 1e-9)


def test_a_multipolygon_parent_may_be_cut_into_many_pieces() -> None:
    many = MultiPolygon([box(116 + i * 0.02, 40, 116 + i * 0.02 + 0.01, 40.01) for i in range(5)])
    pieces = partition(many, 12, seed=2)
    assert len(pieces) == 12
    _assert_partition(many, pieces)


def test_consecutive_pieces_are_mostly_neighbours() -> None:
    pieces = partition(SQUARE, 36, seed=11)
    touching = sum(a.buffer(1e-9).intersects(b) for a, b in itertools.pairwise(pieces))
    assert touching >= 0.75 * (len(pieces) - 1)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one piece"):
        partition(SQUARE, 0, seed=1)
    with pytest.raises(ValueError, match="empty"):
        partition(Polygon(), 2, seed=1)
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    with pytest.raises(ValueError, match="invalid"):
        partition(bowtie, 2, seed=1)
    with pytest.raises(TypeError, match="Point"):
        partition(Point(0, 0), 2, seed=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target_km2"):
        grid_cells(SQUARE, target_km2=0.0, seed=1)
    with pytest.raises(ValueError, match="community area"):
        target_cell_km2(-1.0, is_village=False)


def test_grid_cells_count_follows_the_target_size() -> None:
    community = box(116.40, 39.90, 116.41, 39.91)  # about 0.95 km²
    area = area_km2(community)
    assert area == pytest.approx(0.95, abs=0.01)
    cells = grid_cells(community, target_km2=0.1, seed=12)
    assert len(cells) == round(area / 0.1)
    _assert_partition(community, cells)
    assert len(grid_cells(community, target_km2=5.0, seed=12)) == 1


def test_grid_cells_of_a_village_and_of_an_urban_community() -> None:
    village = box(116.0, 40.3, 116.03, 40.32)  # about 5.7 km²
    cells = grid_cells(village, target_km2=target_cell_km2(area_km2(village), is_village=True), seed=1)
    assert len(cells) == 4
    _assert_partition(village, cells)
    urban = box(116.40, 39.90, 116.41, 39.906)  # about 0.57 km²
    target = target_cell_km2(area_km2(urban), is_village=False)
    assert 0.05 <= target <= 0.2
    cells = grid_cells(urban, target_km2=target, seed=1)
    assert 6 <= len(cells) <= 10
    _assert_partition(urban, cells)


def test_the_cell_size_rule() -> None:
    # Urban communities: about 8 cells of 0.05-0.2 km², at most 24 cells.
    assert target_cell_km2(0.1, is_village=False) == 0.05
    assert target_cell_km2(0.8, is_village=False) == pytest.approx(0.1)
    assert target_cell_km2(1.6, is_village=False) == pytest.approx(0.2)
    assert target_cell_km2(3.0, is_village=False) == 0.2
    assert target_cell_km2(12.0, is_village=False) == pytest.approx(0.5)
    # Villages: about 4 cells, none under 0.5 km².
    assert target_cell_km2(1.0, is_village=True) == 0.5
    assert target_cell_km2(8.0, is_village=True) == 2.0
    assert is_village("楼梓庄村委会")
    assert is_village("小红门村民委员会")
    assert is_village("西铁营村")
    assert not is_village("多福巷社区居委会")
    assert not is_village("小营股份经济合作社生活区")


def test_area_ignores_ring_orientation() -> None:
    clockwise = shapely.geometry.polygon.orient(HOLED, -1.0)
    assert area_km2(clockwise) == pytest.approx(area_km2(HOLED), rel=1e-12)
    assert area_km2(HOLED) == pytest.approx(
        area_km2(HOLED.exterior.convex_hull) - area_km2(Polygon(HOLED.interiors[0])), rel=1e-12
    )
