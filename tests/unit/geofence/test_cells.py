"""Keys, covers and resolution choice: the facts the index's exactness rests on."""

from __future__ import annotations

import h3.api.basic_int as h3
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence import cells
from geofence.geodesy import LocalProjection, haversine_m
from geofence.shapes import Fence, circle_fence, fence_from_geojson
from tests.unit.geofence.places import ORIGIN, offset, square

lats = st.floats(-84.0, 84.0, allow_nan=False)
lons = st.floats(-179.0, 179.0, allow_nan=False)  # fences never cross the antimeridian


@given(lats, lons, st.integers(0, 15))
def test_key_is_the_h3_ancestor_of_the_leaf(lat: float, lon: float, res: int) -> None:
    leaf = cells.leaf_of(lat, lon)
    assert cells.key_of(leaf, res) == h3.cell_to_parent(leaf, res)
    assert cells.resolution_of(cells.key_of(leaf, res)) == res


@settings(max_examples=300)
@given(lats, lons, st.integers(5, 12))
def test_keys_stick_out_of_their_hexagon_by_less_than_the_margin(
    lat: float, lon: float, res: int
) -> None:
    """U(K) lies within 0.18 x circumradius of K's hexagon; the covers assume 0.3."""
    key = cells.point_key(lat, lon, res)
    assert h3.grid_distance(key, cells.cell_of(lat, lon, res)) <= 1
    clat, clon = h3.cell_to_latlng(key)
    proj = LocalProjection(clon, clat)
    boundary = h3.cell_to_boundary(key)
    hexagon = shapely.Polygon([proj.point(vlat, vlon) for vlat, vlon in boundary])
    radius = max(haversine_m(clat, clon, vlat, vlon) for vlat, vlon in boundary)
    outside = shapely.distance(hexagon, shapely.Point(proj.point(lat, lon)))
    assert outside <= 0.18 * radius


SITE = circle_fence("site", *ORIGIN, 150.0)
ZONE = fence_from_geojson(
    "zone", {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon",
             "coordinates": [square(1_000), square(300, (200, 0))]}}
)  # fmt: skip


def point_keys(lat: float, lon: float) -> set[int]:
    leaf = cells.leaf_of(lat, lon)
    return {cells.key_of(leaf, r) for r in cells.LADDER}


BIG = circle_fence("big", *ORIGIN, 1_300.0)  # starts at res 8: keys at two levels
COVERS = {fence.fence_id: cells.place(fence.geometry) for fence in (SITE, ZONE, BIG)}


@pytest.mark.parametrize("fence", [SITE, ZONE, BIG], ids=["site", "zone-with-hole", "big"])
@settings(max_examples=300, deadline=None)
@given(north=st.floats(-1_500, 1_500), east=st.floats(-1_500, 1_500))
def test_cover_classifies_points_correctly(fence: Fence, north: float, east: float) -> None:
    found = COVERS[fence.fence_id]
    lat, lon = offset(north, east)
    keys = point_keys(lat, lon)
    covered = bool(shapely.covers(fence.geometry, shapely.Point(lon, lat)))
    if keys & found.interior:
        assert covered
    if covered:
        assert keys & (found.interior | found.border)


@pytest.mark.parametrize("fence", [SITE, ZONE, BIG], ids=["site", "zone-with-hole", "big"])
@settings(max_examples=300, deadline=None)
@given(north=st.floats(-1_500, 1_500), east=st.floats(-1_500, 1_500))
def test_halo_reaches_points_near_the_fence(fence: Fence, north: float, east: float) -> None:
    """Any point within half a halo of the fence finds it at one of its keys (crossed())."""
    found = COVERS[fence.fence_id]
    lat, lon = offset(north, east)
    proj = LocalProjection.around(fence.geometry)
    point = shapely.Point(proj.point(lat, lon))
    if shapely.distance(proj.to_metres(fence.geometry), point) <= cells.HALO_M / 2:
        assert point_keys(lat, lon) & (found.interior | found.border | found.halo)


def test_cover_sets_are_disjoint() -> None:
    found = COVERS["big"]
    assert not (found.interior & found.border or found.interior & found.halo)
    assert not found.border & found.halo
    assert {cells.resolution_of(k) for k in found.border | found.halo} == {10}
    assert found.levels == {8, 10}


def test_single_resolution_cover() -> None:
    interior, border = cells.cover(ZONE.geometry, 9)
    assert {cells.resolution_of(k) for k in interior | border} == {9}
    assert interior and border and not interior & border


SIZES = [(10.0, {10}), (150.0, {10}), (1_000.0, {8, 10}), (8_000.0, {6, 8, 10})]


@pytest.mark.parametrize(("radius", "levels"), SIZES)
def test_big_fences_keep_their_interior_coarse(radius: float, levels: set[int]) -> None:
    found = cells.place(circle_fence("c", *ORIGIN, radius).geometry)
    assert found.levels == levels
    assert {cells.resolution_of(k) for k in found.border} == {cells.FINE_RES}


def test_refinement_stops_at_the_cell_cap() -> None:
    found = cells.place(circle_fence("c", *ORIGIN, 24_000.0).geometry, start=6, finest=10)
    assert {cells.resolution_of(k) for k in found.border} == {10}
    assert len(found) <= 2 * cells.MAX_CELLS


def test_long_thin_corridor() -> None:
    end = offset(0, 40_000)
    road = fence_from_geojson("road", {"type": "Feature", "properties": {"width_m": 10},
        "geometry": {"type": "LineString", "coordinates": [
            [ORIGIN[1], ORIGIN[0]], [end[1], end[0]]]}})  # fmt: skip
    found = cells.place(road.geometry)
    assert found.levels == {10}
    assert not found.interior  # 10 m wide: no hexagon fits inside
    assert len(found.border) < 1_000


def test_tables() -> None:
    assert cells.EDGE_M[10] == pytest.approx(75.86, abs=0.01)
    assert cells.AREA_M2[10] == pytest.approx(15_047.5, abs=1.0)
    assert cells.LADDER == (6, 8, 10) and cells.HALO_M == 100.0


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize(
    "cell",
    [
        h3.latlng_to_cell(*ORIGIN, 10),  # a hexagon
        h3.latlng_to_cell(*ORIGIN, 7),
        next(c for c in h3.get_pentagons(9)),  # pentagons skip a digit: h3's own answer
    ],
)
def test_descendants_are_h3s_children(cell: int, depth: int) -> None:
    res = cells.resolution_of(cell)
    children, parents = cells.descendants([cell, cell], res, depth)
    expected = sorted(int(c) for c in h3.cell_to_children(cell, res + depth))
    assert sorted(children[parents == 0].tolist()) == expected
    assert sorted(children[parents == 1].tolist()) == expected


def test_sub_slot_is_the_leaf_digits_below_the_key() -> None:
    """Every point of a sub-cell maps to its slot, and the 343 sub-cells to distinct slots."""
    key = h3.latlng_to_cell(*ORIGIN, 10)
    seen = set()
    for child in h3.cell_to_children(key, 10 + cells.SUB_DEPTH):
        slot = cells.sub_slot(child, 10)
        for leaf in h3.cell_to_children(child, 15)[::7]:  # a sample of its points
            assert cells.sub_slot(leaf, 10) == slot
        seen.add(slot)
    assert len(seen) == 7**cells.SUB_DEPTH and max(seen) < cells.SLOTS
