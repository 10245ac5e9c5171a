"""Fence building and validation: every FenceError reason, true-metre circles, corridors."""

from __future__ import annotations

import math
from typing import Any

import pytest
import shapely

from geofence.errors import FenceError
from geofence.geodesy import destination, haversine_m
from geofence.shapes import (
    Fence,
    circle_fence,
    circle_vertex_count,
    fence_from_geojson,
    fence_to_geojson,
)
from tests.unit.geofence.places import ORIGIN, offset, square

LAT, LON = ORIGIN


def feature(geometry: object, **props: object) -> dict[str, object]:
    return {"type": "Feature", "geometry": geometry, "properties": props}


def polygon(*rings: list[list[float]]) -> dict[str, object]:
    return {"type": "Polygon", "coordinates": list(rings)}


def point(lat: float = LAT, lon: float = LON) -> dict[str, object]:
    return {"type": "Point", "coordinates": [lon, lat]}


def covers(fence: Fence, lat: float, lon: float) -> bool:
    return bool(shapely.covers(fence.geometry, shapely.Point(lon, lat)))


def line(*positions: tuple[float, float]) -> dict[str, object]:
    return {"type": "LineString", "coordinates": [[lon, lat] for lat, lon in positions]}


SQUARE = polygon(square(100))
BOWTIE = [[24.94, 60.17], [24.95, 60.18], [24.95, 60.17], [24.94, 60.18], [24.94, 60.17]]
RING_10001 = [[LON + 0.01 * math.cos(a), LAT + 0.005 * math.sin(a)] for a in range(10_000)]
NEAR_POLE = [[24.0, 85.5], [24.1, 85.5], [24.1, 85.6], [24.0, 85.6], [24.0, 85.5]]
ACROSS_180 = [[179.99, 0.0], [-179.99, 0.0], [-179.99, 0.01], [179.99, 0.01], [179.99, 0.0]]

ID_REASON = "fence_id must be 1-64 characters of [A-Za-z0-9_.:-]"
RADIUS_REASON = "radius_m must be a number in (0, 50000]"
WIDTH_REASON = "width_m must be a number in (0, 10000]"
KIND_REASON = "kind must be one of depot, restricted, site, zone"
DWELL_REASON = "dwell_s must be null or a number in [0, 604800]"
TECH_REASON = "technician_ids must be null or a non-empty list of ids"
TOO_LARGE = "fence too large (> 50 km across)"

INVALID: list[tuple[str, str, object, str]] = [
    ("id-chars", "bad id!", feature(SQUARE), ID_REASON),
    ("id-empty", "", feature(SQUARE), ID_REASON),
    ("id-long", "x" * 65, feature(SQUARE), ID_REASON),
    ("not-feature", "f", {"type": "FeatureCollection", "features": []}, "not a GeoJSON Feature"),
    ("not-mapping", "f", [SQUARE], "not a GeoJSON Feature"),
    ("bare-geometry", "f", SQUARE, "not a GeoJSON Feature"),
    (
        "props-list",
        "f",
        {"type": "Feature", "geometry": SQUARE, "properties": [1]},
        "properties must be an object or null",
    ),
    ("no-geometry", "f", feature(None), "feature has no geometry"),
    ("no-coordinates", "f", feature({"type": "Polygon"}), "feature has no geometry"),
    (
        "collection",
        "f",
        feature({"type": "GeometryCollection", "coordinates": []}),
        "unsupported geometry type 'GeometryCollection'",
    ),
    (
        "multipoint",
        "f",
        feature({"type": "MultiPoint", "coordinates": [[LON, LAT]]}, radius_m=5),
        "unsupported geometry type 'MultiPoint'",
    ),
    ("lon-string", "f", feature(point() | {"coordinates": ["24.9", LAT]}, radius_m=50),
     "coordinate is not a number"),
    ("lat-bool", "f", feature(point() | {"coordinates": [LON, True]}, radius_m=50),
     "coordinate is not a number"),
    ("lat-nan", "f", feature(point(lat=math.nan), radius_m=50), "coordinate is not finite"),
    ("lon-inf", "f", feature(point(lon=math.inf), radius_m=50), "coordinate is not finite"),
    ("null-island", "f", feature(point(0.0, 0.0), radius_m=50),
     "a circle at lat=0, lon=0 is almost certainly a missing location"),
    ("alt-nan", "f", feature(point() | {"coordinates": [LON, LAT, math.nan]}, radius_m=50),
     "coordinate is not finite"),
    ("one-number", "f", feature(point() | {"coordinates": [LON]}, radius_m=50),
     "position must be [lon, lat] or [lon, lat, alt]"),
    ("lat-91", "f", feature(point(lat=91.0), radius_m=50), "latitude out of range"),
    ("lon-181", "f", feature(point(lon=181.0), radius_m=50), "longitude out of range"),
    ("ring-open", "f", feature(polygon([*square(100)[:-1], square(100)[1]])),
     "polygon ring is not closed"),
    ("ring-3", "f", feature(polygon(square(100)[:3])), "polygon ring has fewer than 4 positions"),
    ("ring-number", "f", feature({"type": "Polygon", "coordinates": [5]}),
     "polygon ring must be a list of positions"),
    ("no-rings", "f", feature({"type": "Polygon", "coordinates": []}), "polygon has no rings"),
    ("multi-empty", "f", feature({"type": "MultiPolygon", "coordinates": []}),
     "multipolygon has no polygons"),
    ("bowtie", "f", feature(polygon(BOWTIE)), "self-intersecting polygon"),
    ("multi-overlap", "f",
     feature({"type": "MultiPolygon", "coordinates": [[square(100)], [square(100, (50, 50))]]}),
     "self-intersecting polygon"),
    ("hole-outside", "f", feature(polygon(square(100), square(20, (500, 0)))),
     "invalid polygon: hole lies outside shell"),
    ("polygon-60km", "f", feature(polygon(square(30_000))), TOO_LARGE),
    ("circle-30km", "f", feature(point(), radius_m=30_000), TOO_LARGE),
    ("corridor-60km", "f", feature(line(offset(0, 0), offset(60_000, 0)), width_m=10), TOO_LARGE),
    ("vertices", "f", feature(polygon([*RING_10001, RING_10001[0]])),
     "too many vertices (> 10000)"),
    ("line-vertices", "f", feature({"type": "LineString", "coordinates": RING_10001 * 2},
                                   width_m=5), "too many vertices (> 10000)"),
    ("pole", "f", feature(polygon(NEAR_POLE)), "fence too close to a pole (|lat| > 85)"),
    ("circle-pole", "f", feature(point(lat=84.999), radius_m=500),
     "fence too close to a pole (|lat| > 85)"),
    ("antimeridian", "f", feature(polygon(ACROSS_180)), "fence crosses the antimeridian"),
    ("radius-missing", "f", feature(point()), RADIUS_REASON),
    ("radius-zero", "f", feature(point(), radius_m=0), RADIUS_REASON),
    ("radius-negative", "f", feature(point(), radius_m=-5), RADIUS_REASON),
    ("radius-string", "f", feature(point(), radius_m="100"), RADIUS_REASON),
    ("radius-nan", "f", feature(point(), radius_m=math.nan), RADIUS_REASON),
    ("radius-huge", "f", feature(point(), radius_m=60_000), RADIUS_REASON),
    ("radius-bigint", "f", feature(point(), radius_m=10**400), RADIUS_REASON),
    ("width-missing", "f", feature(line(offset(0, 0), offset(100, 0))), WIDTH_REASON),
    ("width-zero", "f", feature(line(offset(0, 0), offset(100, 0)), width_m=0), WIDTH_REASON),
    ("width-huge", "f", feature(line(offset(0, 0), offset(100, 0)), width_m=20_000), WIDTH_REASON),
    ("line-one-place", "f", feature(line(offset(0, 0), offset(0, 0)), width_m=10),
     "linestring needs at least 2 distinct positions"),
    ("line-number", "f", feature({"type": "LineString", "coordinates": 5}, width_m=10),
     "linestring must be a list of positions"),
    ("kind-unknown", "f", feature(SQUARE, kind="house"), KIND_REASON),
    ("kind-number", "f", feature(SQUARE, kind=1), KIND_REASON),
    ("dwell-negative", "f", feature(SQUARE, dwell_s=-1), DWELL_REASON),
    ("dwell-string", "f", feature(SQUARE, dwell_s="60"), DWELL_REASON),
    ("dwell-bool", "f", feature(SQUARE, dwell_s=True), DWELL_REASON),
    ("dwell-nan", "f", feature(SQUARE, dwell_s=math.nan), DWELL_REASON),
    ("dwell-week-plus", "f", feature(SQUARE, dwell_s=604_801), DWELL_REASON),
    ("techs-empty", "f", feature(SQUARE, technician_ids=[]), TECH_REASON),
    ("techs-string", "f", feature(SQUARE, technician_ids="t1"), TECH_REASON),
    ("techs-number", "f", feature(SQUARE, technician_ids=[1]), TECH_REASON),
    ("techs-bad-id", "f", feature(SQUARE, technician_ids=["a b"]), TECH_REASON),
]  # fmt: skip


@pytest.mark.parametrize(("fence_id", "feat", "reason"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])  # fmt: skip
def test_invalid_features_are_refused_with_a_reason(
    fence_id: str, feat: object, reason: str
) -> None:
    with pytest.raises(FenceError) as caught:
        fence_from_geojson(fence_id, feat)
    assert caught.value.reason == reason
    assert str(caught.value) == reason
    assert isinstance(caught.value, ValueError)


CIRCLE_INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("lat", {"lat": 95.0}, "latitude out of range"),
    ("lon", {"lon": -200.0}, "longitude out of range"),
    ("nan", {"lat": math.nan}, "coordinate is not finite"),
    ("radius", {"radius_m": 0.0}, RADIUS_REASON),
    ("kind", {"kind": "home"}, KIND_REASON),
    ("dwell", {"dwell_s": -3.0}, DWELL_REASON),
    ("techs", {"technician_ids": frozenset()}, TECH_REASON),
    ("id", {"fence_id": "a/b"}, ID_REASON),
]


@pytest.mark.parametrize(("change", "reason"), [c[1:] for c in CIRCLE_INVALID],
                         ids=[c[0] for c in CIRCLE_INVALID])  # fmt: skip
def test_circle_fence_validates_its_arguments(change: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {"fence_id": "job-1", "lat": LAT, "lon": LON, "radius_m": 100.0}
    with pytest.raises(FenceError) as caught:
        circle_fence(**(args | change))
    assert caught.value.reason == reason


@pytest.mark.parametrize("lat", [60.0, 0.0, -45.0, 84.0])
def test_circle_radius_is_true_metres(lat: float) -> None:
    """A point 99 m from the centre is inside a 100 m circle, 101 m is outside, any bearing."""
    fence = circle_fence("site", lat, 24.94, 100.0)
    for bearing in range(0, 360, 5):
        for dist, inside in ((99.0, True), (101.0, False)):
            plat, plon = destination(lat, 24.94, bearing, dist)
            assert haversine_m(lat, 24.94, plat, plon) == pytest.approx(dist, abs=1e-6)
            assert covers(fence, plat, plon) is inside


@pytest.mark.parametrize(("radius", "vertices"), [(5.0, 64), (100.0, 64), (1_000.0, 141),
                                                  (25_000.0, 703)])  # fmt: skip
def test_circle_vertex_count_keeps_within_a_quarter_metre(radius: float, vertices: int) -> None:
    assert circle_vertex_count(radius) == vertices
    error = radius * (1 - math.cos(math.pi / vertices)) / (1 + math.cos(math.pi / vertices))
    assert error <= 0.25 or vertices == 64


def test_corridor_is_width_metres_wide_around_the_line() -> None:
    a, b = offset(0, -500), offset(0, 500)  # 1 km running east
    fence = fence_from_geojson("road", feature(line(a, b), width_m=40, kind="zone"))
    assert fence.size_m == 40.0
    for east in (-400.0, 0.0, 400.0):
        for north, inside in ((19.5, True), (-19.5, True), (20.5, False), (-20.5, False)):
            lat, lon = offset(north, east)
            assert covers(fence, lat, lon) is inside
    # Round ends: 19.5 m beyond the end on the axis is inside, 20.5 m is not.
    for east, inside in ((519.5, True), (520.5, False)):
        lat, lon = offset(0, east)
        assert covers(fence, lat, lon) is inside


def test_polygon_hole_is_outside() -> None:
    fence = fence_from_geojson("yard", feature(polygon(square(200), square(50))))
    hole_lat, hole_lon = offset(0, 0)
    ring_lat, ring_lon = offset(120, 0)
    assert not covers(fence, hole_lat, hole_lon)
    assert covers(fence, ring_lat, ring_lon)


def test_sizes() -> None:
    square_fence = fence_from_geojson("sq", feature(polygon(square(50))))  # 100 m x 100 m
    assert square_fence.size_m == pytest.approx(2 * math.sqrt(10_000 / math.pi), rel=0.01)
    assert circle_fence("c", LAT, LON, 75.0).size_m == 150.0


def test_properties_are_parsed_and_echoed() -> None:
    props = {"kind": "depot", "dwell_s": 30, "technician_ids": ["t2", "t1"], "name": "North"}
    fence = fence_from_geojson("d1", feature(SQUARE, **props))
    assert fence.kind == "depot"
    assert fence.dwell_s == 30.0
    assert fence.technician_ids == frozenset({"t1", "t2"})
    assert dict(fence.properties) == props
    default = fence_from_geojson("d2", {"type": "Feature", "geometry": SQUARE, "properties": None})
    assert (default.kind, default.dwell_s, default.technician_ids) == ("zone", None, None)


def test_altitude_is_accepted_and_dropped() -> None:
    fence = fence_from_geojson("p", feature({"type": "Point", "coordinates": [LON, LAT, 12.5]},
                                            radius_m=10))  # fmt: skip
    assert fence.source["coordinates"] == (LON, LAT)


ROUND_TRIP = [
    ("polygon", feature(SQUARE, kind="site", dwell_s=60.0)),
    ("hole", feature(polygon(square(200), square(50)))),
    ("multi", feature({"type": "MultiPolygon",
                       "coordinates": [[square(50)], [square(50, (400, 0))]]})),
    ("circle", feature(point(), radius_m=120.0, technician_ids=["t1"])),
    ("corridor", feature(line(offset(0, 0), offset(300, 300)), width_m=25.0, name="A1")),
]  # fmt: skip


@pytest.mark.parametrize("feat", [c[1] for c in ROUND_TRIP], ids=[c[0] for c in ROUND_TRIP])
def test_geojson_round_trip(feat: dict[str, object]) -> None:
    fence = fence_from_geojson("f1", feat)
    shown = fence_to_geojson(fence)
    assert shown["type"] == "Feature" and shown["id"] == "f1"
    assert shown["geometry"] == feat["geometry"]
    again = fence_from_geojson("f1", shown)
    assert again == fence
    assert shapely.equals_exact(again.geometry, fence.geometry, tolerance=0.0)


def test_circle_fence_shows_as_point_and_radius() -> None:
    fence = circle_fence("job-7", LAT, LON, 80.0, dwell_s=90.0, technician_ids=frozenset({"t9"}))
    assert fence_to_geojson(fence) == {
        "type": "Feature",
        "id": "job-7",
        "geometry": {"type": "Point", "coordinates": [LON, LAT]},
        "properties": {"radius_m": 80.0, "kind": "site", "dwell_s": 90.0, "technician_ids": ["t9"]},
    }


APPLIES: list[tuple[frozenset[str] | None, str | None, bool]] = [
    (None, None, True),
    (None, "t1", True),
    (frozenset({"t1"}), "t1", True),
    (frozenset({"t1"}), "t2", False),
    (frozenset({"t1"}), None, False),
]


@pytest.mark.parametrize(("ids", "technician", "expected"), APPLIES)
def test_fence_applies_to(
    ids: frozenset[str] | None, technician: str | None, expected: bool
) -> None:
    fence = Fence(fence_id="f", geometry=shapely.Point(0, 0).buffer(1), size_m=1.0,
                  technician_ids=ids)  # fmt: skip
    assert fence.applies_to(technician) is expected
