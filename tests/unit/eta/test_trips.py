"""Following a drive fix by fix: path length, moving time, and what the model learns at the end."""

from __future__ import annotations

from math import degrees

import pytest

from eta.geo import EARTH_RADIUS_M
from eta.speeds import SpeedModel, SpeedPrior
from eta.trips import begin_trip, extend_trip, finish_trip

LAT0, LON0, T0 = 60.17, 24.94, 1_700_467_200.0


def north(m: float) -> float:
    return LAT0 + degrees(m / EARTH_RADIUS_M)


# (metres north, seconds after T0) of each further fix -> travelled_m, moving_s, last point
CASES: list[tuple[str, list[tuple[float, float]], float, float, tuple[float, float]]] = [
    ("driving", [(100, 10), (200, 20), (300, 30)], 300, 30, (300, 30)),
    ("jitter keeps the point", [(100, 10), (103, 20), (98, 30)], 100, 10, (100, 30)),
    ("creeping is distance, not moving", [(100, 10), (108, 20)], 108, 10, (108, 20)),
    ("older and same-time fixes ignored", [(100, 10), (500, 5), (400, 10)], 100, 10, (100, 10)),
    ("a long gap is distance only", [(100, 10), (1100, 700)], 1100, 10, (1100, 700)),
    ("a glitch is distance only", [(100, 10), (5000, 20)], 5000, 10, (5000, 20)),
]


@pytest.mark.parametrize(
    ("fixes", "travelled", "moving", "last"),
    [pytest.param(f, d, m, e, id=name) for name, f, d, m, e in CASES],
)
def test_extend_trip(
    fixes: list[tuple[float, float]], travelled: float, moving: float, last: tuple[float, float]
) -> None:
    trip = begin_trip(LAT0, LON0, T0)
    assert (trip.travelled_m, trip.moving_s, trip.duration_s) == (0.0, 0.0, 0.0)
    for m, dt in fixes:
        trip = extend_trip(trip, north(m), LON0, T0 + dt)
    assert trip.travelled_m == pytest.approx(travelled)
    assert trip.moving_s == moving
    assert trip.lat == pytest.approx(north(last[0]))
    assert trip.ts == T0 + last[1]
    assert (trip.start_lat, trip.start_lon, trip.start_ts) == (LAT0, LON0, T0)


def test_finish_trip_teaches_detour_and_stops() -> None:
    model = SpeedModel(SpeedPrior(10.0, detour_factor=1.0))
    trip = begin_trip(LAT0, LON0, T0)
    # 600 m north and back 100 m (a detour), then 60 s at a light, then 300 m more.
    for m, dt in [(300, 30), (600, 60), (500, 70), (500, 130), (800, 160)]:
        trip = extend_trip(trip, north(m), LON0, T0 + dt)
    done = finish_trip(model, trip, north(900), LON0, T0 + 170)
    assert (done.start_lat, done.start_lon, done.start_ts) == (LAT0, LON0, T0)
    assert done.lat == pytest.approx(north(900))
    assert (done.lon, done.ts, done.moving_s) == (LON0, T0 + 170, 110.0)
    assert done.travelled_m == pytest.approx(1100.0)
    assert done.straight_m == pytest.approx(900.0)
    assert model.detour()[0] == pytest.approx((3 * 1.0 + 1100 / 900) / 4)
    # The trip ran north: its direction learned the same ratio, the crossing one nothing.
    everywhere = model.detour()[0]
    assert done.bearing == pytest.approx(0.0)
    assert model.detour(0.0)[0] == pytest.approx((3 * everywhere + 1100 / 900) / 4)
    assert model.detour(90.0)[0] == pytest.approx(everywhere)
    assert model.stop_factor()[0] == pytest.approx((3 * 1.0 + 170 / 110) / 4)
