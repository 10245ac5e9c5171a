"""The learned travel-time model: prior fallback, learning, blending, spread, persistence."""

from __future__ import annotations

import json
import math
from datetime import datetime
from math import degrees, exp, sqrt
from pathlib import Path
from zoneinfo import ZoneInfo

import h3.api.basic_int as h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eta.geo import EARTH_RADIUS_M, haversine_m
from eta.speeds import (
    LocalClock,
    ModelConfig,
    RouteLeg,
    SnapshotError,
    SpeedModel,
    SpeedPrior,
    hour_of_week,
)

LAT0, LON0 = 60.17, 24.94
MONDAY_8H = 1_700_467_200.0  # 2023-11-20 08:00:00 UTC, a Monday


def north(m: float) -> float:
    """Latitude ``m`` metres north of LAT0 along the meridian."""
    return LAT0 + degrees(m / EARTH_RADIUS_M)


def shuttle(model: SpeedModel, n: int, speed: float, t0: float = MONDAY_8H) -> float:
    """``n`` pairs of 10-s fixes back and forth over the same 150 m; returns the end time."""
    step = speed * 10.0
    t = t0
    for i in range(n):
        a, b = (0.0, step) if i % 2 == 0 else (step, 0.0)
        model.observe(north(a), LON0, t, north(b), LON0, t + 10.0)
        t += 10.0
    return t


@pytest.mark.parametrize(
    ("ts", "tz", "expected"),
    [
        (0.0, 0, 72),  # 1970-01-01 was a Thursday
        (4 * 86400.0, 0, 0),  # Monday 00:00
        (MONDAY_8H, 0, 8),
        (MONDAY_8H + 3599.0, 0, 8),
        (4 * 86400.0 - 1.0, 0, 167),  # Sunday 23:59:59
        (7 * 86400.0 - 1.0, 0, 71),  # Wednesday 23:59:59
        (0.0, 3600, 73),
        (4 * 86400.0, -3600, 167),
    ],
)
def test_hour_of_week(ts: float, tz: int, expected: int) -> None:
    assert hour_of_week(ts, tz) == expected


def test_prior_travel_time_is_distance_times_detour_over_speed() -> None:
    model = SpeedModel()
    tt = model.travel_time(LAT0, LON0, north(2000.0), LON0, MONDAY_8H)
    t = 2000.0 * 1.35 / 8.3
    assert tt.mean_s == pytest.approx(t)
    assert tt.distance_m == pytest.approx(2700.0)
    # noise 0.5, prior mean 0.3, detour 0.15, stops 0.1: all relative to t
    assert tt.sd_s == pytest.approx(t * sqrt(0.5**2 + 0.3**2 + 0.15**2 + 0.1**2))
    assert tt.p10_s < tt.mean_s < tt.p90_s


def test_zero_length_leg_takes_no_time() -> None:
    tt = SpeedModel().travel_time(LAT0, LON0, LAT0, LON0, MONDAY_8H)
    assert (tt.mean_s, tt.p10_s, tt.p90_s, tt.sd_s, tt.distance_m) == (0.0, 0.0, 0.0, 0.0, 0.0)


def test_area_override_by_res5_parent() -> None:
    area = h3.int_to_str(h3.cell_to_parent(h3.latlng_to_cell(LAT0, LON0, 8), 5))
    model = SpeedModel(SpeedPrior(speed_mps=10.0, detour_factor=1.0, area_speeds={area: 20.0}))
    assert model.travel_time(LAT0, LON0, north(1000.0), LON0, 0.0).mean_s == pytest.approx(50.0)
    far = model.travel_time(10.0, 10.0, 10.0 + degrees(1000.0 / EARTH_RADIUS_M), 10.0, 0.0)
    assert far.mean_s == pytest.approx(100.0)


@pytest.mark.parametrize(
    "areas",
    [{h3.latlng_to_cell(LAT0, LON0, 8): 10.0}, {"not-a-cell": 10.0}, {"85089b2bfffffff": 0.0}],
)
def test_area_override_rejects_bad_areas(areas: dict[int | str, float]) -> None:
    with pytest.raises(ValueError):
        SpeedPrior(area_speeds=areas)


def test_one_observation_blends_level_by_level() -> None:
    prior = SpeedPrior(speed_mps=10.0, detour_factor=1.0)
    model = SpeedModel(prior, ModelConfig(live_tau_s=0.0))
    model.observe(LAT0, LON0, MONDAY_8H, north(150.0), LON0, MONDAY_8H + 10.0)
    mid = north(75.0)
    m1 = (5 * 10.0 + 15.0) / 6  # cell, all hours
    m2 = (5 * m1 + 15.0) / 6  # cell, hour of day
    m3 = (5 * m2 + 15.0) / 6  # cell, hour of week
    assert model.speed_at(mid, LON0, MONDAY_8H) == pytest.approx(m3)
    assert model.speed_at(mid, LON0, MONDAY_8H + 86400.0) == pytest.approx(m2)  # Tuesday 8h
    assert model.speed_at(mid, LON0, MONDAY_8H + 3600.0) == pytest.approx(m1)  # Monday 9h
    assert model.speed_at(10.0, 10.0, MONDAY_8H) == 10.0  # never seen: the prior


def test_live_level_weighs_fresh_data_and_decays() -> None:
    model = SpeedModel(SpeedPrior(speed_mps=10.0, detour_factor=1.0))
    model.observe(LAT0, LON0, MONDAY_8H, north(150.0), LON0, MONDAY_8H + 10.0)
    m1 = (5 * 10.0 + 15.0) / 6
    m3 = (5 * ((5 * m1 + 15.0) / 6) + 15.0) / 6
    base = 5.0 + 1.0
    for age, live in [(0.0, 4.0), (900.0, 4.0 * exp(-1.0)), (-5.0, 4.0)]:
        at = MONDAY_8H + 10.0 + age
        expected = (base * m3 + live * 15.0) / (base + live)
        assert model.speed_at(north(75.0), LON0, at) == pytest.approx(expected)


def test_saturated_cell_reaches_the_observed_speed_up_to_the_prior_share() -> None:
    model = SpeedModel(SpeedPrior(speed_mps=10.0, detour_factor=1.0), ModelConfig(live_tau_s=0))
    shuttle(model, 200, 20.0)
    cap = 50.0  # 1 / alpha: an EWMA never counts more than its memory
    m = 10.0
    for _ in range(3):
        m = (5 * m + cap * 20.0) / (5 + cap)
    assert model.speed_at(north(100.0), LON0, MONDAY_8H) == pytest.approx(m)
    assert model.cell_count == 1


def test_fast_fixes_shrink_travel_times_there_only() -> None:
    model = SpeedModel(SpeedPrior(speed_mps=8.0, detour_factor=1.0))
    before = model.travel_time(LAT0, LON0, north(3000.0), LON0, MONDAY_8H + 600.0)
    t = MONDAY_8H
    for i in range(300):  # 20 m/s along the meridian, 200 m every 10 s
        model.observe(north(i * 200.0 % 3000), LON0, t, north(i * 200.0 % 3000 + 200), LON0, t + 10)
        t += 10.0
    after = model.travel_time(LAT0, LON0, north(3000.0), LON0, MONDAY_8H + 600.0)
    assert after.mean_s < 0.6 * before.mean_s
    assert after.mean_s > 3000.0 / 20.0
    elsewhere = model.travel_time(10.0, 10.0, 10.03, 10.0, MONDAY_8H)
    assert elsewhere.mean_s == pytest.approx(haversine_m(10.0, 10.0, 10.03, 10.0) / 8.0)


def test_spread_narrows_with_consistent_data() -> None:
    model = SpeedModel(SpeedPrior(speed_mps=10.0, detour_factor=1.0))
    leg = (LAT0, LON0, north(150.0), LON0)
    thin = model.travel_time(*leg, MONDAY_8H)
    shuttle(model, 400, 10.0)
    rich = model.travel_time(*leg, MONDAY_8H)
    assert rich.sd_s / rich.mean_s < 0.5 * thin.sd_s / thin.mean_s
    assert rich.p10_s <= rich.mean_s <= rich.p90_s


@pytest.mark.parametrize(
    ("d_m", "dt", "why"),
    [
        (150.0, 601.0 * 1, "gap over 10 min"),
        (0.5, 0.5, "under 1 s"),
        (7000.0, 100.0, "70 m/s"),
        (8.0, 10.0, "0.8 m/s: a stop"),
        (4.0, 1.0, "4 m: jitter"),
        (150.0, -10.0, "out of order"),
    ],
)
def test_unusable_pairs_teach_nothing(d_m: float, dt: float, why: str) -> None:
    model = SpeedModel()
    model.observe(LAT0, LON0, MONDAY_8H, north(d_m), LON0, MONDAY_8H + dt)
    assert model.cell_count == 0, why


@pytest.mark.parametrize(
    ("trips", "expected"),
    [
        ([], 1.0),
        ([(1000.0, 1500.0, 600.0, 500.0)], (3 * 1.0 + 1.2) / 4),
        ([(1000.0, 1500.0, 600.0, None)], 1.0),  # no moving time: nothing to compare
        ([(1000.0, 1500.0, 600.0, 200.0)], 1.0),  # stopped 2/3 of the way: a break
        ([(1000.0, 1500.0, 600.0, 700.0)], 1.0),  # inconsistent
        ([(150.0, 300.0, 600.0, 500.0)], 1.0),  # too short to say
        ([(1000.0, 3500.0, 600.0, 500.0)], (3 * 1.0 + 1.2) / 4),  # loops still have stops
    ],
)
def test_stop_factor_learned_from_trips(
    trips: list[tuple[float, float, float, float | None]], expected: float
) -> None:
    model = SpeedModel(SpeedPrior(10.0, detour_factor=1.0))
    for trip in trips:
        model.observe_trip(*trip)
    assert model.stop_factor()[0] == pytest.approx(expected)
    leg = model.travel_time(LAT0, LON0, north(1000.0), LON0, MONDAY_8H)
    assert leg.mean_s == pytest.approx(100.0 * model.detour()[0] * expected)


@pytest.mark.parametrize(
    ("trips", "expected"),
    [
        ([], 1.35),
        ([(1000.0, 1500.0)], (3 * 1.35 + 1.5) / 4),
        ([(1000.0, 900.0)], (3 * 1.35 + 1.0) / 4),  # corner-cutting fixes: clipped to 1
        ([(150.0, 300.0)], 1.35),  # too short to say
        ([(1000.0, 3500.0)], 1.35),  # a loop, not a detour
        ([(1000.0, 1200.0), (2000.0, 3200.0)], (3 * 1.35 + 1.2 + 1.6) / 5),
    ],
)
def test_detour_learned_from_trips(trips: list[tuple[float, float]], expected: float) -> None:
    model = SpeedModel()
    for straight, travelled in trips:
        model.observe_trip(straight, travelled)
    assert model.detour()[0] == pytest.approx(expected)


class FixedRoute:
    def __init__(self, leg: RouteLeg | None) -> None:
        self.leg = leg

    def route(self, lat1: float, lon1: float, lat2: float, lon2: float) -> RouteLeg | None:
        return self.leg


def test_routing_prior_replaces_detour_and_prior_speed() -> None:
    model = SpeedModel(routing=FixedRoute(RouteLeg(3000.0, 150.0)))
    tt = model.travel_time(LAT0, LON0, north(2000.0), LON0, MONDAY_8H)
    assert tt.mean_s == pytest.approx(150.0)
    assert tt.distance_m == 3000.0
    assert tt.sd_s == pytest.approx(150.0 * sqrt(0.5**2 + 0.3**2 + 0.1**2))
    miss = SpeedModel(routing=FixedRoute(None)).travel_time(LAT0, LON0, north(2000.0), LON0, 0.0)
    assert miss == SpeedModel().travel_time(LAT0, LON0, north(2000.0), LON0, 0.0)


def test_leg_cache_overflow_keeps_answers() -> None:
    model = SpeedModel(config=ModelConfig(leg_cache_size=2))
    legs = [(LAT0, LON0, north(500.0 * k), LON0) for k in range(1, 6)]
    first = [model.travel_time(*leg, MONDAY_8H) for leg in legs]
    assert [model.travel_time(*leg, MONDAY_8H) for leg in legs] == first


def trained() -> SpeedModel:
    model = SpeedModel(SpeedPrior(speed_mps=9.0))
    t = shuttle(model, 30, 12.0)
    shuttle(model, 30, 6.0, t + 86400.0 * 2 + 3600 * 5)
    model.observe(10.0, 10.0, 1000.0, 10.001, 10.0, 1010.0)
    model.observe_trip(2000.0, 2600.0)
    return model


def test_snapshot_round_trip_is_exact() -> None:
    model = trained()
    snap = json.loads(json.dumps(model.snapshot()))
    back = SpeedModel.restore(snap, SpeedPrior(speed_mps=9.0))
    assert back.snapshot() == model.snapshot()
    assert back.cell_count == model.cell_count == 2
    for at in (MONDAY_8H, MONDAY_8H + 86400 * 2 + 3600 * 6, 500.0):
        leg = (LAT0, LON0, north(5000.0), LON0 + 0.01, at)
        assert back.travel_time(*leg) == model.travel_time(*leg)


def test_save_and_load_atomically(tmp_path: Path) -> None:
    model = trained()
    path = tmp_path / "speeds.json"
    model.save(path)
    model.save(path)  # replacing an existing snapshot
    assert [p.name for p in tmp_path.iterdir()] == ["speeds.json"]
    assert SpeedModel.load(path).snapshot() == model.snapshot()


def test_load_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SpeedModel.load(tmp_path / "nope.json")
    assert SpeedModel.load(tmp_path / "nope.json", missing_ok=True).cell_count == 0


@pytest.mark.parametrize(
    ("mutate", "config"),
    [
        (lambda s: s.update(version=2), None),
        (lambda s: s.update(cell_res=9), ModelConfig()),
        (lambda s: s.pop("detour"), None),
        (lambda s: s["cells"].update({"zz": {}}), None),
        (lambda s: s.update(detour=[1.0, -2.0]), None),
        (lambda s: s.update(detour=[1.0, 1.0, -2.0]), None),
    ],
)
def test_restore_rejects(mutate: object, config: ModelConfig | None) -> None:
    snap = trained().snapshot()
    mutate(snap)  # type: ignore[operator]
    with pytest.raises(SnapshotError):
        SpeedModel.restore(snap, None, config)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_load_rejects_garbage(tmp_path: Path, text: str) -> None:
    path = tmp_path / "speeds.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SnapshotError):
        SpeedModel.load(path)


coords = st.tuples(st.floats(60.0, 60.3), st.floats(24.6, 25.2))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(coords, st.floats(1.0, 40.0), st.floats(1.0, 120.0)), max_size=30),
    coords,
    coords,
    st.floats(1.6e9, 1.8e9),
)
def test_spread_always_brackets_the_mean(
    moves: list[tuple[tuple[float, float], float, float]],
    a: tuple[float, float],
    b: tuple[float, float],
    at: float,
) -> None:
    model = SpeedModel()
    t = at - 7200.0
    for (lat, lon), speed, dt in moves:
        step = degrees(speed * dt / EARTH_RADIUS_M)
        model.observe(lat, lon, t, lat + step, lon, t + dt)
        t += dt
    tt = model.travel_time(*a, *b, at)
    assert 0.0 <= tt.p10_s <= tt.mean_s <= tt.p90_s


def test_calibration_learns_from_whole_trips_and_survives_a_snapshot() -> None:
    model = SpeedModel()
    leg = (60.17, 24.94, 60.19, 24.96, 1_800_000_000.0)
    assert model.calibration() == 1.0
    for _ in range(200):  # trips keep taking 80 % of what the model predicted
        model.observe_trip(2000.0, 2700.0, predicted_s=1000.0, duration_s=800.0)
    # The learned log-ratio is shrunk towards 0 by the prior's weight (3 trips of 50).
    assert model.calibration() == pytest.approx(math.exp(50 / 53 * math.log(0.8)))
    raw = model.travel_mean_sd(*leg, calibrated=False)[0]
    assert model.travel_mean_sd(*leg)[0] == pytest.approx(raw * model.calibration())
    again = SpeedModel.restore(model.snapshot())
    assert again.calibration() == model.calibration()


def test_calibration_ignores_short_and_absurd_trips() -> None:
    model = SpeedModel()
    model.observe_trip(50.0, 60.0, predicted_s=10.0, duration_s=100.0)  # too short to teach
    assert model.calibration() == 1.0
    for _ in range(500):  # a 100x ratio is clamped to 3x
        model.observe_trip(2000.0, 2500.0, predicted_s=10.0, duration_s=1000.0)
    assert model.calibration() == pytest.approx(math.exp(50 / 53 * math.log(3.0)))


def east(m: float) -> float:
    """Longitude ``m`` metres east of LON0 along the parallel of LAT0."""
    return LON0 + degrees(m / (EARTH_RADIUS_M * math.cos(math.radians(LAT0))))


def test_detour_learned_per_direction() -> None:
    model = SpeedModel(SpeedPrior(10.0))
    for _ in range(10):
        model.observe_trip(1000.0, 1100.0, bearing=0.0)  # along the streets
        model.observe_trip(1000.0, 1400.0, bearing=90.0)  # across them
    everywhere = (3 * 1.35 + 20 * 1.25) / 23
    assert model.detour()[0] == pytest.approx(everywhere)
    north_south = (3 * everywhere + 10 * 1.1) / 13
    east_west = (3 * everywhere + 10 * 1.4) / 13
    assert model.detour(0.0)[0] == pytest.approx(north_south)
    assert model.detour(180.0)[0] == pytest.approx(north_south)  # A->B and B->A alike
    assert model.detour(269.0)[0] == pytest.approx(east_west)
    assert model.detour(45.0)[0] == pytest.approx(everywhere)  # no trips: all directions
    # Legs take the detour of their direction.
    up = model.travel_time(LAT0, LON0, north(2000.0), LON0, MONDAY_8H)
    across = model.travel_time(LAT0, LON0, LAT0, east(2000.0), MONDAY_8H)
    assert up.distance_m == pytest.approx(2000.0 * north_south, rel=1e-6)
    assert across.distance_m == pytest.approx(2000.0 * east_west, rel=1e-3)
    # Too short a leg to have a direction: the all-directions factor.
    short = model.travel_time(LAT0, LON0, north(150.0), LON0, MONDAY_8H)
    assert short.distance_m == pytest.approx(150.0 * everywhere, rel=1e-6)


def test_one_detour_for_all_directions_when_configured() -> None:
    model = SpeedModel(SpeedPrior(10.0), ModelConfig(detour_sectors=0))
    model.observe_trip(1000.0, 1100.0, bearing=0.0)
    assert model.detour(0.0) == model.detour()
    assert model.snapshot()["detour_sectors"] == []


def test_calibration_depends_on_distance() -> None:
    model = SpeedModel()
    short, long = 1000.0, 4000.0
    for _ in range(10):  # short drives take 20 % longer than predicted, long ones 10 % less
        model.observe_trip(short, 1300.0, predicted_s=100.0, duration_s=120.0)
        model.observe_trip(long, 5200.0, predicted_s=400.0, duration_s=360.0)
    x1, x2 = math.log(short / 2000.0), math.log(long / 2000.0)
    y1, y2 = math.log(1.2), math.log(0.9)
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    vxx, cxy = ((x2 - x1) / 2) ** 2, (x2 - x1) * (y2 - y1) / 4
    intercept, slope = 20 * my / 23, 20 * cxy / (20 * vxx + 3)
    assert model.calibration() == pytest.approx(exp(intercept))
    assert model.calibration(short) == pytest.approx(exp(intercept + slope * (x1 - mx)))
    assert model.calibration(long) == pytest.approx(exp(intercept + slope * (x2 - mx)))
    # Not extrapolated beyond two standard deviations of the trips seen.
    far = exp(intercept + slope * 2 * sqrt(vxx))
    assert model.calibration(100_000.0) == pytest.approx(far)
    leg = (LAT0, LON0, north(long), LON0, MONDAY_8H)
    raw = model.travel_mean_sd(*leg, calibrated=False)[0]
    assert model.travel_mean_sd(*leg)[0] == pytest.approx(raw * model.calibration(long))
    again = SpeedModel.restore(json.loads(json.dumps(model.snapshot())))
    assert again.calibration(short) == pytest.approx(model.calibration(short))


def test_snapshot_keeps_directions_and_distance_calibration() -> None:
    model = SpeedModel()
    for i in range(30):
        model.observe_trip(
            1000.0 + 100 * i, 1500.0 + 100 * i, 100.0, 90.0, 110.0 + i, bearing=10.0 * i
        )
    back = SpeedModel.restore(model.snapshot())
    assert back.snapshot() == model.snapshot()
    for b in (0.0, 30.0, 100.0):
        assert back.detour(b) == model.detour(b)
    for d in (500.0, 2000.0, 9000.0):
        assert back.calibration(d) == model.calibration(d)


def test_older_snapshots_still_restore() -> None:
    """Before directions and distance: one detour, a flat calibration stored as a _Stat."""
    model = SpeedModel()
    for _ in range(200):
        model.observe_trip(2000.0, 2700.0, predicted_s=1000.0, duration_s=800.0)
    old = model.snapshot()
    del old["calib_x"], old["detour_sectors"]
    back = SpeedModel.restore(old)
    flat = math.exp(50 / 53 * math.log(0.8))
    assert back.calibration() == pytest.approx(flat)
    assert back.calibration(500.0) == pytest.approx(flat)  # no slope learned yet
    assert back.detour(90.0) == back.detour()
    del old["calib"]  # from before calibration
    assert SpeedModel.restore(old).calibration(500.0) == 1.0


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.update(calib_x=[0.0, -1.0, 0.0]),
        lambda s: s.update(calib_x=[0.0]),
        lambda s: s.update(detour_sectors=[[1.0, 1.2]] * 8),
    ],
)
def test_restore_rejects_bad_new_fields(mutate: object) -> None:
    snap = trained().snapshot()
    mutate(snap)  # type: ignore[operator]
    with pytest.raises(SnapshotError):
        SpeedModel.restore(snap)


def test_restore_relearns_sectors_of_another_layout() -> None:
    snap = trained().snapshot()
    snap["detour_sectors"] = [[5.0, 1.3, 0.01]] * 4  # saved with 4 sectors, now 8
    back = SpeedModel.restore(snap)
    assert back.detour(0.0) == back.detour()


HELSINKI = ZoneInfo("Europe/Helsinki")


def helsinki(month: int, day: int, hour: int) -> float:
    return datetime(2027, month, day, hour, 30, tzinfo=HELSINKI).timestamp()


def test_a_zone_clock_keeps_local_hours_across_dst() -> None:
    clock = LocalClock("Europe/Helsinki")
    # Monday 8:30 in Helsinki, in January (UTC+2) and in June (UTC+3): the same hour.
    winter, summer = helsinki(1, 11, 8), helsinki(6, 14, 8)
    assert clock.hour_of_week(winter) == clock.hour_of_week(summer) == 8
    assert hour_of_week(winter, 7200) == 8 and hour_of_week(summer, 7200) == 7  # fixed offset
    # The night the clocks go forward (Sunday 28 March 2027, 01:00 UTC: 03:00 -> 04:00).
    utc = ZoneInfo("UTC")
    before = datetime(2027, 3, 28, 0, 59, 59, tzinfo=utc).timestamp()
    assert (clock.hour_of_week(before), clock.hour_of_week(before + 1)) == (146, 148)
    # Quarter-hour offsets (Nepal, UTC+5:45) change hour on the quarter hour.
    kathmandu = LocalClock("Asia/Kathmandu")
    monday = datetime(2027, 1, 11, 9, 0, tzinfo=ZoneInfo("Asia/Kathmandu")).timestamp()
    assert (kathmandu.hour_of_week(monday - 0.5), kathmandu.hour_of_week(monday)) == (8, 9)


def test_rush_hour_learned_in_winter_is_at_the_same_local_hour_in_summer() -> None:
    def teach(model: SpeedModel) -> None:
        for week in range(4):  # winter Mondays: slow from 08:00 to 09:00 only
            for hour, speed in ((7, 12.0), (8, 3.0), (9, 12.0)):
                shuttle(model, 30, speed, helsinki(1, 4 + 7 * week, hour))

    zoned = SpeedModel(config=ModelConfig.for_zone("Europe/Helsinki"))
    fixed = SpeedModel(config=ModelConfig(tz_offset_s=7200))  # Helsinki's winter offset
    teach(zoned)
    teach(fixed)
    leg = (LAT0, LON0, north(150.0), LON0)

    def june(model: SpeedModel, hour: int) -> float:
        return model.travel_time(*leg, helsinki(6, 14, hour)).mean_s

    assert june(zoned, 8) > 1.5 * max(june(zoned, 7), june(zoned, 9))
    # A fixed offset puts the summer rush an hour late: 09:30 local is its 08:30.
    assert june(fixed, 9) > 1.5 * max(june(fixed, 8), june(fixed, 10))


def test_zones_of_one_offset_all_year_are_that_offset() -> None:
    assert ModelConfig.for_zone("UTC") == ModelConfig()
    assert ModelConfig.for_zone("Asia/Tokyo") == ModelConfig(tz_offset_s=9 * 3600)
    assert ModelConfig.for_zone("Europe/London") == ModelConfig(timezone="Europe/London")


def test_a_snapshot_of_another_clock_keeps_all_but_the_hours() -> None:
    utc = trained()
    snap = json.loads(json.dumps(utc.snapshot()))
    same = SpeedModel.restore(snap, SpeedPrior(speed_mps=9.0), ModelConfig())
    assert same.snapshot() == utc.snapshot()
    zoned = ModelConfig(timezone="Europe/Helsinki")
    moved = SpeedModel.restore(snap, SpeedPrior(speed_mps=9.0), zoned)
    assert moved.config == zoned and moved.cell_count == utc.cell_count
    cells = moved.snapshot()["cells"]
    assert all(c["hod"] == {} and c["how"] == {} for c in cells.values())
    assert [c["all"] for c in cells.values()] == [c["all"] for c in snap["cells"].values()]
    assert moved.snapshot()["detour"] == snap["detour"]
    # And back: a zoned snapshot restores whole into the same zone, without config too.
    again = json.loads(json.dumps(moved.snapshot()))
    assert SpeedModel.restore(again, SpeedPrior(speed_mps=9.0)).config.timezone == zoned.timezone
    assert SpeedModel.restore(again, SpeedPrior(speed_mps=9.0), zoned).snapshot() == again
    with pytest.raises(SnapshotError):
        SpeedModel.restore({**again, "timezone": "Mars/Olympus"}, None)
