"""Road graphs: shortest paths on a hand-made graph, snapping, I/O, the synthetic city."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.geo import haversine_m
from simulators.roads import (
    DATA_DIR,
    NoRouteError,
    RoadGraph,
    load_packaged,
    strongly_connected_components,
    synthetic_city,
)

KMH = 1 / 3.6


def tiny() -> RoadGraph:
    """0 -> 1 -> 2 on slow streets (500 m at 30 km/h = 60 s each), 0 -> 3 -> 2 on a fast
    arterial (700 m at 70 km/h = 36 s each), 2 -> 0 back (1000 m at 30), 4 unreachable."""
    coords = [(60.0, 25.0), (60.0, 25.01), (60.0, 25.02), (60.005, 25.01), (61.0, 26.0)]
    edges = [
        (0, 1, 500.0, "residential", 30 * KMH, False),
        (1, 2, 500.0, "residential", 30 * KMH, False),
        (0, 3, 700.0, "arterial", 70 * KMH, False),
        (3, 2, 700.0, "arterial", 70 * KMH, False),
        (2, 0, 1000.0, "residential", 30 * KMH, False),
    ]
    return RoadGraph("tiny", coords, edges)


@pytest.mark.parametrize(
    ("src", "dst", "nodes", "cost"),
    [
        (0, 2, (0, 3, 2), 72.0),  # the longer arterial is faster
        (0, 1, (0, 1), 60.0),
        (2, 1, (2, 0, 1), 180.0),  # one-way streets force the way round
        (3, 1, (3, 2, 0, 1), 36.0 + 120.0 + 60.0),
        (1, 1, (1,), 0.0),
    ],
)
def test_shortest_path_by_travel_time(
    src: int, dst: int, nodes: tuple[int, ...], cost: float
) -> None:
    route = tiny().shortest_path(src, dst)
    assert route.nodes == nodes
    assert route.cost == pytest.approx(cost)
    assert len(route.edges) == len(nodes) - 1


def test_shortest_path_with_a_custom_weight() -> None:
    route = tiny().shortest_path(0, 2, weight=lambda e: e.length_m)
    assert route.nodes == (0, 1, 2)
    assert route.cost == 1000.0


def test_unreachable_node_raises() -> None:
    with pytest.raises(NoRouteError):
        tiny().shortest_path(0, 4)
    with pytest.raises(LookupError):  # NoRouteError is a LookupError
        tiny().shortest_path(4, 0)


def test_largest_strongly_connected_component() -> None:
    g = tiny()
    assert sorted(map(sorted, strongly_connected_components(g))) == [[0, 1, 2, 3], [4]]
    core = g.largest_strongly_connected()
    assert core.node_count == 4
    assert len(core.edges) == 5
    assert core.shortest_path(0, 2).nodes == (0, 3, 2)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    g = tiny()
    path = tmp_path / "tiny.graph.json.gz"
    g.save(path)
    again = RoadGraph.load(path)
    assert again.to_dict() == g.to_dict()
    copy = tmp_path / "copy.graph.json.gz"
    again.save(copy)
    assert copy.read_bytes() == path.read_bytes()  # no timestamp in the gzip header


def test_load_rejects_other_formats() -> None:
    with pytest.raises(ValueError, match="fieldtrack-roads/1"):
        RoadGraph.from_dict({"format": "something-else"})


CITY = synthetic_city(5, 1.5)


@settings(max_examples=60, deadline=None)
@given(st.floats(-0.02, 0.02), st.floats(-0.04, 0.04))
def test_nearest_node_matches_brute_force(dlat: float, dlon: float) -> None:
    lat, lon = 60.25 + dlat, 25.05 + dlon  # inside, near and well outside the city
    best = min(range(CITY.node_count), key=lambda n: haversine_m(lat, lon, *CITY.coords[n]))
    found = CITY.nearest_node(lat, lon)
    assert haversine_m(lat, lon, *CITY.coords[found]) == pytest.approx(
        haversine_m(lat, lon, *CITY.coords[best])
    )


def test_synthetic_city_is_deterministic_per_seed() -> None:
    assert synthetic_city(5, 1.5).to_dict() == CITY.to_dict()
    assert synthetic_city(6, 1.5).to_dict() != CITY.to_dict()


def test_synthetic_city_shape() -> None:
    city = synthetic_city(1, 3.0)
    classes = {e.road_class for e in city.edges}
    assert classes == {"arterial", "secondary", "residential"}
    speeds: dict[str, set[float]] = {cls: set() for cls in classes}
    for e in city.edges:
        speeds[e.road_class].add(round(e.speed_mps * 3.6))
    assert speeds == {"arterial": {70}, "secondary": {40, 50}, "residential": {30}}
    assert len(strongly_connected_components(city)) == 1
    lat0, lon0, lat1, _lon1 = city.bounds()
    assert 2.8 < haversine_m(lat0, lon0, lat1, lon0) / 1000 < 3.2
    # One-way residential streets exist (edges without their reverse).
    pairs = {(e.u, e.v) for e in city.edges}
    assert any((e.v, e.u) not in pairs for e in city.edges)
    for e in random.Random(1).sample(city.edges, 50):
        assert e.length_m == pytest.approx(haversine_m(*city.coords[e.u], *city.coords[e.v]))


def test_packaged_helsinki_network() -> None:
    path = DATA_DIR / "helsinki.graph.json.gz"
    assert path.stat().st_size < 2_000_000
    g = load_packaged("helsinki")
    assert g.attribution == "© OpenStreetMap contributors, ODbL 1.0"
    assert g.node_count > 1000
    assert len(strongly_connected_components(g)) == 1
    lat0, lon0, lat1, lon1 = g.bounds()
    assert 60.16 < lat0 < lat1 < 60.18 and 24.93 < lon0 < lon1 < 24.96
    assert {round(e.speed_mps * 3.6) for e in g.edges} <= {20, 30, 40, 50}
    assert all(0 < e.length_m < 500 and math.isfinite(e.length_m) for e in g.edges)


def test_unknown_packaged_network() -> None:
    with pytest.raises(FileNotFoundError, match="helsinki"):
        load_packaged("atlantis")
