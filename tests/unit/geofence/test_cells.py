"""Keys, covers and resolution choice: the facts the index's exactness rests on."""

from __future__ import annotations

import math

import h3.api.basic_int as h3
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence import cells
from geofence.geodesy import LocalProjection, haversine_m
from geofence.shapes import circle_fence, fence_from_geojson
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


@pytest.mark.parametrize("fence", [SITE, ZONE], ids=["site", "zone-with-hole"])
@settings(max_examples=400, deadline=None)
@given(north=st.floats(-1_400, 1_400), east=st.floats(-1_400, 1_400))
def test_cover_classifies_points_correctly(fence: object, north: float, east: float) -> None:
    geometry = fence.geometry  # type: ignore[attr-defined]
    found = cells.place(geometry)
    lat, lon = offset(north, east)
    key = cells.point_key(lat, lon, found.res)
    covered = bool(shapely.covers(geometry, shapely.Point(lon, lat)))
    if key in found.interior:
        assert covered
    if covered:
        assert key in found.interior or key in found.border


@pytest.mark.parametrize("fence", [SITE, ZONE], ids=["site", "zone-with-hole"])
@settings(max_examples=300, deadline=None)
@given(north=st.floats(-1_400, 1_400), east=st.floats(-1_400, 1_400))
def test_halo_reaches_points_near_the_fence(fence: object, north: float, east: float) -> None:
    """Any point within half a halo of the fence finds it in its key (crossed() relies on it)."""
    geometry = fence.geometry  # type: ignore[attr-defined]
    found = cells.place(geometry)
    lat, lon = offset(north, east)
    proj = LocalProjection.around(geometry)
    distance = shapely.distance(proj.to_metres(geometry), shapely.Point(proj.point(lat, lon)))
    key = cells.point_key(lat, lon, found.res)
    if distance <= cells.halo_m(found.res) / 2:
        assert key in found.interior or key in found.border or key in found.halo


def test_cover_sets_are_disjoint_and_cover_returns_interior_and_border() -> None:
    found = cells.place(ZONE.geometry)
    assert not (found.interior & found.border or found.interior & found.halo)
    assert not found.border & found.halo
    assert cells.cover(ZONE.geometry, found.res) == (found.interior, found.border)
    assert len(found.interior) > 0  # a 2 km zone has cells needing no exact test


SIZES = [(10.0, 10), (150.0, 10), (1_500.0, 8), (8_000.0, 7), (24_000.0, 6)]


@pytest.mark.parametrize(("radius", "res"), SIZES)
def test_resolution_follows_fence_size(radius: float, res: int) -> None:
    fence = circle_fence("c", *ORIGIN, radius)
    found = cells.place(fence.geometry)
    assert found.res == res
    assert len(found) <= cells.MAX_CELLS


def test_thin_long_corridor_gets_coarse_cells() -> None:
    road = fence_from_geojson("road", {"type": "Feature", "properties": {"width_m": 10},
        "geometry": {"type": "LineString", "coordinates": [
            [ORIGIN[1], ORIGIN[0]], [offset(0, 40_000)[1], offset(0, 40_000)[0]]]}})  # fmt: skip
    found = cells.place(road.geometry)
    assert found.res < 10
    assert len(found) <= cells.TARGET_CELLS * 2


def test_edge_table_matches_h3() -> None:
    assert cells.EDGE_M[10] == pytest.approx(75.86, abs=0.01)
    assert math.isclose(cells.halo_m(10), cells.EDGE_M[10])
    assert cells.halo_m(13) == cells.HALO_MIN_M
