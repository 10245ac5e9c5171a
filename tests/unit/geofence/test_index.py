"""FenceIndex answers exactly what brute force over all fences answers, and stays immutable."""

from __future__ import annotations

import math
import random

import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.index import FenceIndex
from geofence.shapes import Fence, circle_fence, fence_from_geojson
from tests.unit.geofence.places import offset, square

# Semantics: a point on the boundary is inside (shapely `covers`).


def brute_containing(fences: list[Fence], lat: float, lon: float) -> frozenset[str]:
    point = shapely.Point(lon, lat)
    return frozenset(f.fence_id for f in fences if shapely.covers(f.geometry, point))


def brute_crossed(fences: list[Fence], a: tuple[float, float], b: tuple[float, float]) -> set[str]:
    seg = shapely.LineString([(a[1], a[0]), (b[1], b[0])]) if a != b else shapely.Point(a[1], a[0])
    return {f.fence_id for f in fences if shapely.intersects(f.geometry, seg)}


def polygon_feature(ring: list[list[float]], *holes: list[list[float]]) -> dict[str, object]:
    return {"type": "Feature", "properties": {},
            "geometry": {"type": "Polygon", "coordinates": [ring, *holes]}}  # fmt: skip


def star(fid: str, north: float, east: float, radius: float, factors: list[float]) -> Fence:
    n = len(factors)
    ring = []
    for i, k in enumerate(factors):
        a = 2 * math.pi * i / n
        lat, lon = offset(north + radius * k * math.cos(a), east + radius * k * math.sin(a))
        ring.append([lon, lat])
    return fence_from_geojson(fid, polygon_feature([*ring, ring[0]]))


@st.composite
def fence_st(draw: st.DrawFn, fid: str) -> Fence:
    north, east = draw(st.floats(-2_000, 2_000)), draw(st.floats(-2_000, 2_000))
    shape = draw(st.sampled_from(["circle", "star", "zone", "corridor", "holed"]))
    if shape == "circle":
        lat, lon = offset(north, east)
        return circle_fence(fid, lat, lon, draw(st.floats(3, 900)), kind="site")
    if shape == "star":
        n = draw(st.integers(6, 50))
        factors = draw(st.lists(st.floats(0.4, 1.0), min_size=n, max_size=n))
        return star(fid, north, east, draw(st.floats(15, 900)), factors)
    if shape == "zone":  # big enough for a coarse resolution
        return star(fid, north, east, draw(st.floats(1_500, 5_000)), [1.0, 0.8] * 4)
    if shape == "corridor":
        ends = [offset(north, east), offset(north + draw(st.floats(-900, 900)), east + 700)]
        coords = [[lon, lat] for lat, lon in ends]
        return fence_from_geojson(fid, {"type": "Feature", "properties": {
            "width_m": draw(st.floats(4, 80))}, "geometry": {"type": "LineString",
            "coordinates": coords}})  # fmt: skip
    half = draw(st.floats(100, 700))
    # A hole of any size, anywhere inside: h3's polyfill once mishandled small ones.
    k = draw(st.floats(0.05, 0.8))
    room = 0.9 * half * (1 - k)
    dn, de = draw(st.floats(-room, room)), draw(st.floats(-room, room))
    return fence_from_geojson(
        fid,
        polygon_feature(square(half, (north, east)), square(half * k, (north + dn, east + de))),
    )


@st.composite
def fence_sets(draw: st.DrawFn) -> list[Fence]:
    count = draw(st.integers(1, 6))
    return [draw(fence_st(f"f{i}")) for i in range(count)]


def sample_points(fences: list[Fence], rng: random.Random, count: int) -> list[tuple[float, float]]:
    """Random points, points near each fence, and every fence's vertices (on the boundary)."""
    points = [offset(rng.uniform(-3_000, 3_000), rng.uniform(-3_000, 3_000)) for _ in range(count)]
    for fence in fences:
        minx, miny, maxx, maxy = fence.geometry.bounds
        for _ in range(count):
            points.append((rng.uniform(miny, maxy), rng.uniform(minx, maxx)))
        coords = shapely.get_coordinates(fence.geometry)
        points.extend((float(y), float(x)) for x, y in coords[:: max(1, len(coords) // 20)])
    return points


@settings(max_examples=60, deadline=None)
@given(fences=fence_sets(), seed=st.integers(0, 2**32))
def test_containing_matches_brute_force(fences: list[Fence], seed: int) -> None:
    index = FenceIndex.build(fences)
    for lat, lon in sample_points(fences, random.Random(seed), 40):
        assert index.containing(lat, lon) == brute_containing(fences, lat, lon)


@settings(max_examples=40, deadline=None)
@given(fences=fence_sets(), seed=st.integers(0, 2**32))
def test_crossed_matches_brute_force(fences: list[Fence], seed: int) -> None:
    index = FenceIndex.build(fences)
    rng = random.Random(seed)
    points = sample_points(fences, rng, 10)
    for a in points:
        b = rng.choice(points) if rng.random() < 0.7 else a
        assert index.crossed(*a, *b) == brute_crossed(fences, a, b)


# 15 examples (~0.7 s each: two index builds per example) keep the suite under its
# 5-minute budget; the brute-force tests above cover the queries more cheaply.
@settings(max_examples=15, deadline=None)
@given(
    first=fence_sets(),
    second=fence_sets(),
    drop=st.lists(st.integers(0, 5), max_size=3),
    seed=st.integers(0, 2**32),
)
def test_updates_equal_a_fresh_build(
    first: list[Fence], second: list[Fence], drop: list[int], seed: int
) -> None:
    """Add, replace (same ids, new shapes) and remove one at a time == build the result."""
    index = FenceIndex.build(first)
    for fence in second:
        index = index.with_fence(fence)
    final = {f.fence_id: f for f in [*first, *second]}
    for i in drop:
        index = index.without(f"f{i}")
        final.pop(f"f{i}", None)
    fresh = FenceIndex.build(final.values())
    assert dict(index.fences) == dict(fresh.fences)
    assert index.key_count() == fresh.key_count()
    assert index.resolutions() == fresh.resolutions()
    rng = random.Random(seed)
    points = sample_points(list(final.values()), rng, 30)
    for lat, lon in points:
        assert index.containing(lat, lon) == fresh.containing(lat, lon)
    for a in points[:40]:
        b = rng.choice(points)
        assert index.crossed(*a, *b) == fresh.crossed(*a, *b)


CITY = [
    circle_fence(f"c{i}", *offset(250 * (i % 9) - 1000, 230 * (i // 9) - 1000), 40 + 13 * i)
    for i in range(60)
] + [star(f"s{i}", 300 * i - 1500, 100 * i, 80 + 40 * i, [1.0, 0.5, 0.9, 0.6] * 3)
     for i in range(12)]  # fmt: skip
CITY_INDEX = FenceIndex.build(CITY)


@settings(max_examples=500)
@given(north=st.floats(-2_500, 2_500), east=st.floats(-2_500, 2_500))
def test_overlapping_city_matches_brute_force(north: float, east: float) -> None:
    lat, lon = offset(north, east)
    assert CITY_INDEX.containing(lat, lon) == brute_containing(CITY, lat, lon)


REGION = star("region", 0, 0, 12_000, [1.0, 0.7, 0.9, 0.8, 1.0, 0.6, 0.95, 0.75])
REGION_INDEX = FenceIndex.build([REGION])


@settings(max_examples=300)
@given(north=st.floats(-13_000, 13_000), east=st.floats(-13_000, 13_000))
def test_region_with_coarse_interior_matches_brute_force(north: float, east: float) -> None:
    assert REGION_INDEX.resolutions() == {6: 1, 8: 1, 10: 1}
    lat, lon = offset(north, east)
    assert REGION_INDEX.containing(lat, lon) == brute_containing([REGION], lat, lon)


SPIKY = star("spiky", 0, 0, 150.0, [1.0, 0.55] * 20)  # 40 vertices: res-10 cells need GEOS


def test_sub_cells_leave_exact_tests_to_a_narrow_band(monkeypatch: pytest.MonkeyPatch) -> None:
    """Points more than ~35 m from the boundary are answered without GEOS, although most
    of them lie in res-10 border keys (closer ones are tested exactly, by the edge they
    are near or by GEOS at a vertex), and every answer is brute force's."""
    import geofence.index as index_module
    from geofence import cells
    from geofence.placed import hits_xy as real

    calls: list[tuple[float, float]] = []

    def counting(geom: object, x: float, y: float) -> bool:
        calls.append((x, y))
        return real(geom, x, y)

    monkeypatch.setattr(index_module, "hits_xy", counting)
    index = FenceIndex.build([SPIKY])
    boundary = shapely.boundary(SPIKY.geometry)
    rng = random.Random(7)
    far = near = 0
    for _ in range(3_000):
        lat, lon = offset(rng.uniform(-200, 200), rng.uniform(-200, 200))
        before = len(calls)
        assert index.containing(lat, lon) == brute_containing([SPIKY], lat, lon)
        # a lower bound of the metres to the boundary (lon degrees: cos 60.17° > 0.49)
        gap = float(shapely.distance(boundary, shapely.Point(lon, lat))) * 111_195.0 * 0.49
        if gap > 35.0:
            far += 1
            assert len(calls) == before, f"GEOS called {gap:.0f} m from the boundary"
        else:
            near += 1
    assert far > 500 and near > 500  # both kinds of point were met
    # Without sub-cells, the same far points would be tested exactly.
    monkeypatch.setattr(cells, "SUB_MAX_CELLS", -1)
    coarse = FenceIndex.build([SPIKY])
    calls.clear()
    for _ in range(300):
        coarse.containing(*offset(rng.uniform(-60, 60), rng.uniform(-60, 60)))
    assert calls


def test_updates_leave_the_old_index_alone() -> None:
    site = circle_fence("a", *offset(0, 0), 100.0)
    before = FenceIndex.build([site])
    moved = before.with_fence(circle_fence("a", *offset(1_000, 0), 100.0))
    added = before.with_fence(circle_fence("b", *offset(0, 0), 50.0))
    gone = before.without("a")
    here = offset(0, 0)
    assert before.containing(*here) == {"a"}
    assert moved.containing(*here) == frozenset()
    assert moved.containing(*offset(1_000, 0)) == {"a"}
    assert added.containing(*here) == {"a", "b"}
    assert gone.containing(*here) == frozenset() and len(gone) == 0 and gone.key_count() == 0
    assert before.without("nope") is before
    assert len(before) == 1 and set(before.fences) == {"a"}


def test_boundary_points_are_inside() -> None:
    ring = square(100)
    index = FenceIndex.build([fence_from_geojson("sq", polygon_feature(ring))])
    for lon, lat in ring:
        assert index.containing(lat, lon) == {"sq"}
    (lon1, lat1), (lon2, lat2) = ring[0], ring[1]
    assert index.containing((lat1 + lat2) / 2, (lon1 + lon2) / 2) == brute_containing(
        [fence_from_geojson("sq", polygon_feature(ring))], (lat1 + lat2) / 2, (lon1 + lon2) / 2
    )


@pytest.mark.parametrize(("north", "expected"), [(0.0, 0.0), (99.0, 0.0), (150.0, 50.0),
                                                 (1_100.0, 1_000.0)])  # fmt: skip
def test_distance_outside_m(north: float, expected: float) -> None:
    index = FenceIndex.build([circle_fence("a", *offset(0, 0), 100.0)])
    assert index.distance_outside_m("a", *offset(north, 0)) == pytest.approx(expected, abs=0.5)


@settings(max_examples=300)
@given(
    fence=st.sampled_from(CITY),
    north=st.floats(-600, 600),
    east=st.floats(-600, 600),
    metres=st.floats(0, 300),
)
def test_outside_by_more_than_agrees_with_the_distance(
    fence: Fence, north: float, east: float, metres: float
) -> None:
    centre = fence.geometry.centroid
    lat, lon = offset(north, east, (centre.y, centre.x))
    distance = CITY_INDEX.distance_outside_m(fence.fence_id, lat, lon)
    if abs(distance - metres) > 1e-6:
        assert CITY_INDEX.outside_by_more_than(fence.fence_id, lat, lon, metres) is (
            distance > metres
        )


def test_distance_outside_unknown_fence_is_key_error() -> None:
    with pytest.raises(KeyError):
        CITY_INDEX.distance_outside_m("nope", *offset(0, 0))


@pytest.mark.parametrize(("lat", "lon"), [(91.0, 0.0), (0.0, 181.0), (math.nan, 0.0),
                                          (0.0, math.inf)])  # fmt: skip
def test_bad_coordinates_raise_value_error(lat: float, lon: float) -> None:
    with pytest.raises(ValueError):
        CITY_INDEX.containing(lat, lon)
    with pytest.raises(ValueError):
        CITY_INDEX.crossed(lat, lon, 60.0, 25.0)


@pytest.mark.parametrize("place", range(8))
def test_crossing_a_small_fence_between_distant_fixes(place: int) -> None:
    """Wherever the fence sits in its cell and the samples fall, a 5 m fence is found."""
    north, east = 9.0 * place, 23.0 * place
    index = FenceIndex.build([circle_fence("tiny", *offset(north, east), 5.0)])
    for shift in range(0, 90, 6):
        start, end = north - 800.0 - shift, north + 900.0 - shift
        for side, expected in ((0.0, {"tiny"}), (4.9, {"tiny"}), (-4.9, {"tiny"}), (6.0, set())):
            a, b = offset(start, east + side), offset(end, east + side)
            assert index.crossed(*a, *b) == expected


def test_crossed_skip_and_where() -> None:
    a = circle_fence("a", *offset(0, 0), 50.0)
    b = fence_from_geojson("b", {"type": "Feature", "properties": {"radius_m": 50.0,
        "technician_ids": ["t1"]}, "geometry": {"type": "Point",
        "coordinates": [offset(300, 0)[1], offset(300, 0)[0]]}})  # fmt: skip
    index = FenceIndex.build([a, b])
    start, end = offset(-500, 0), offset(800, 0)
    assert index.crossed(*start, *end) == {"a", "b"}
    assert index.crossed(*start, *end, skip={"a"}) == {"b"}
    assert index.crossed(*start, *end, where=lambda f: f.applies_to("t2")) == {"a"}
    assert index.covers("a", *offset(49, 0)) and not index.covers("a", *offset(51, 0))


def test_empty_index() -> None:
    index = FenceIndex.build([])
    assert len(index) == 0
    assert index.containing(*offset(0, 0)) == frozenset()
    assert index.crossed(*offset(0, 0), *offset(10, 10)) == frozenset()
    assert repr(index) == "FenceIndex(0 fences, 0 keys)"


def test_a_holed_zone_is_covered_around_its_hole() -> None:
    """Found by hypothesis: h3's "overlap" polyfill, given the hole, left out a res-8
    cell touching the fence, and points up to 140 m inside were answered "outside"."""
    ring = [
        (24.945512678888463, 60.160835811025905),
        (24.96994920758482, 60.16083254695867),
        (24.969960292337305, 60.17299135688869),
        (24.94551471923262, 60.17299462229646),
    ]
    hole = [
        (24.951622886495898, 60.163875119519716),
        (24.96384228115153, 60.163873487318554),
        (24.963846692976972, 60.16995289253774),
        (24.951625037219173, 60.169954525074026),
    ]
    fence = fence_from_geojson("f0", polygon_feature(
        [[x, y] for x, y in [*ring, ring[0]]], [[x, y] for x, y in [*hole, hole[0]]]))  # fmt: skip
    index = FenceIndex.build([fence])
    inside = [(60.163788364, 24.963395845), (60.162612570, 24.962569061),
              (60.163518289, 24.961328469), (60.163873487, 24.963842281)]  # fmt: skip
    for lat, lon in inside:
        assert index.containing(lat, lon) == brute_containing([fence], lat, lon) == {"f0"}
    for lat, lon in sample_points([fence], random.Random(0), 200):
        assert index.containing(lat, lon) == brute_containing([fence], lat, lon)


def sub_cells_by_slot(index: FenceIndex) -> dict[int, object]:
    """Key -> what each sub-cell slot answers (ids, checks by fence): the content of the
    entries, whatever the order of their groups."""
    out: dict[int, object] = {}
    for table in [*index._shards.values(), index._coarse]:
        for key, entry in table.items():
            slots, subs = entry[3], entry[4]
            by_slot = None
            if slots is not None and subs is not None:
                by_slot = tuple(
                    (subs[slots[s]][0], tuple(sorted(subs[slots[s]][1], key=lambda c: c[0])))
                    for s in range(len(slots))
                )
            out[key] = (entry[0], tuple(sorted(entry[1], key=lambda c: c[0])), entry[2], by_slot)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_updates_of_dense_overlapping_fences_equal_a_fresh_build(seed: int) -> None:
    """Dozens of job sites overlapping in a few hundred metres (a city centre's day), some
    premises among them: every key's sub-cells are cut by many fences, and updates edit
    them in place (splitting and merging groups, past 256 groups per key), which must
    leave exactly what a fresh build makes."""
    rng = random.Random(seed)
    fences = [
        circle_fence(f"job:{i}", *offset(rng.uniform(-150, 150), rng.uniform(-150, 150)),
                     rng.uniform(30, 150), kind="site")
        for i in range(60)
    ] + [star(f"s{i}", rng.uniform(-200, 200), rng.uniform(-200, 200), rng.uniform(40, 150),
              [rng.uniform(0.5, 1.0) for _ in range(8)]) for i in range(4)]  # fmt: skip
    rng.shuffle(fences)
    index = FenceIndex.build(fences[:5])
    for fence in fences[5:]:
        index = index.with_fence(fence)
    groups = [len(e[4]) for t in index._shards.values() for e in t.values() if e[4] is not None]
    assert max(groups) > 256  # two bytes per slot in the sub-cell map
    final = {f.fence_id: f for f in fences}
    for fence in rng.sample(fences, 20):
        index = index.without(fence.fence_id)
        del final[fence.fence_id]
    for fence in rng.sample(list(final.values()), 5):  # moved a little
        moved = circle_fence(fence.fence_id, *offset(rng.uniform(-250, 250), 0), 60.0)
        index = index.with_fence(moved)
        final[fence.fence_id] = moved
    fresh = FenceIndex.build(final.values())
    assert sub_cells_by_slot(index) == sub_cells_by_slot(fresh)
    assert index.resolutions() == fresh.resolutions()
    for _ in range(500):
        lat, lon = offset(rng.uniform(-400, 400), rng.uniform(-400, 400))
        assert index.containing(lat, lon) == brute_containing(list(final.values()), lat, lon)
