"""Great-circle helpers against exact and published distances."""

from __future__ import annotations

from math import pi

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eta.geo import EARTH_RADIUS_M, bearing_deg, haversine_m, points_along

DEG_M = EARTH_RADIUS_M * pi / 180.0


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((60.0, 25.0), (60.0, 25.0), 0.0),
        ((0.0, 0.0), (1.0, 0.0), DEG_M),
        ((0.0, 0.0), (0.0, 1.0), DEG_M),
        ((0.0, 0.0), (90.0, 0.0), EARTH_RADIUS_M * pi / 2),
        ((0.0, 0.0), (0.0, 180.0), EARTH_RADIUS_M * pi),
        ((10.0, 179.5), (10.0, -179.5), haversine_m(10.0, -0.5, 10.0, 0.5)),
        ((-33.0, 151.0), (-34.0, 151.0), DEG_M),
    ],
)
def test_haversine_exact(a: tuple[float, float], b: tuple[float, float], expected: float) -> None:
    assert haversine_m(*a, *b) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "published_m"),
    [
        ((48.8566, 2.3522), (51.5074, -0.1278), 343_500.0),  # Paris - London
        ((40.6413, -73.7781), (51.4700, -0.4543), 5_540_000.0),  # JFK - LHR
    ],
)
def test_haversine_published(
    a: tuple[float, float], b: tuple[float, float], published_m: float
) -> None:
    assert haversine_m(*a, *b) == pytest.approx(published_m, rel=0.002)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0.0, 0.0), (1.0, 0.0), 0.0),
        ((0.0, 0.0), (0.0, 1.0), 90.0),
        ((1.0, 0.0), (0.0, 0.0), 180.0),
        ((0.0, 1.0), (0.0, 0.0), 270.0),
        ((0.0, 179.5), (0.0, -179.5), 90.0),
        ((48.8566, 2.3522), (51.5074, -0.1278), 330.021),
    ],
)
def test_bearing(a: tuple[float, float], b: tuple[float, float], expected: float) -> None:
    assert bearing_deg(*a, *b) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize(
    ("a", "b", "n", "expected"),
    [
        ((0.0, 0.0), (2.0, 4.0), 1, [(1.0, 2.0)]),
        ((0.0, 0.0), (4.0, 8.0), 2, [(1.0, 2.0), (3.0, 6.0)]),
        ((0.0, 179.0), (0.0, -179.0), 2, [(0.0, 179.5), (0.0, -179.5)]),
    ],
)
def test_points_along(
    a: tuple[float, float],
    b: tuple[float, float],
    n: int,
    expected: list[tuple[float, float]],
) -> None:
    got = points_along(*a, *b, n)
    assert got == [pytest.approx(p) for p in expected]


def test_points_along_needs_a_point() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        points_along(0.0, 0.0, 1.0, 1.0, 0)


lat = st.floats(-89.0, 89.0)
lon = st.floats(-180.0, 180.0)


@given(lat, lon, lat, lon)
def test_haversine_symmetric_and_bounded(a1: float, o1: float, a2: float, o2: float) -> None:
    d = haversine_m(a1, o1, a2, o2)
    assert d == pytest.approx(haversine_m(a2, o2, a1, o1), abs=1e-6)
    assert 0.0 <= d <= EARTH_RADIUS_M * pi + 1e-6
    assert 0.0 <= bearing_deg(a1, o1, a2, o2) < 360.0
