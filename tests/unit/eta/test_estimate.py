"""The tour cascade: travel, waiting for windows, on-site remaining time, overrun, spread."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from math import degrees, sqrt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eta.durations import PAUSE_PRIOR, DurationModel
from eta.estimate import (
    EstimateConfig,
    JobEta,
    TourStop,
    estimate_tour,
    onsite_elapsed_s,
    remaining_onsite_s,
)
from eta.geo import EARTH_RADIUS_M
from eta.speeds import SpeedModel, SpeedPrior
from eta.stats import lognormal_p10_p90

NOW = 1_700_467_200.0  # Monday 08:00 UTC
LAT0, LON0 = 60.17, 24.94

# 10 m/s straight lines, no spread: 1 km takes exactly 100 s.
EXACT = SpeedModel(
    SpeedPrior(10.0, detour_factor=1.0, speed_cv=0.0, mean_cv=0.0, detour_cv=0.0, stop_cv=0.0)
)
NO_SPREAD = EstimateConfig(onsite_cv=0.0)
# Same means, default spreads.
SPREAD = SpeedModel(SpeedPrior(10.0, detour_factor=1.0))


def at_km(km: float) -> tuple[float, float]:
    return LAT0 + degrees(km * 1000.0 / EARTH_RADIUS_M), LON0


def stop(
    job: str,
    km: float,
    state: str = "planned",
    *,
    ws: float | None = None,
    we: float | None = None,
    dur: float = 600.0,
    arrived: float | None = None,
    paused: float = 0.0,
    since: float | None = None,
) -> TourStop:
    lat, lon = at_km(km)
    return TourStop(
        job_id=job,
        lat=lat,
        lon=lon,
        window_start=None if ws is None else NOW + ws,
        window_end=None if we is None else NOW + we,
        planned_duration_s=dur,
        state=state,
        arrived_at=None if arrived is None else NOW + arrived,
        paused_s=paused,
        paused_since=None if since is None else NOW + since,
    )


# (job, eta, departure, delay_s, late_probability, remaining), times relative to NOW
Row = tuple[str, float, float, float, float, float]

CASCADE: list[tuple[str, float | None, list[TourStop], list[Row]]] = [
    (
        "travel then work, twice",
        0.0,
        [stop("A", 1), stop("B", 3, dur=1200)],
        [("A", 100, 700, 0, 0, 600), ("B", 900, 2100, 0, 0, 1200)],
    ),
    (
        "early arrival waits for the window",
        0.0,
        [stop("A", 1, ws=1000), stop("B", 3, dur=1200)],
        [("A", 100, 1600, 0, 0, 600), ("B", 1800, 3000, 0, 0, 1200)],
    ),
    (
        "window already open: no wait",
        0.0,
        [stop("A", 1, ws=-3600), stop("B", 3, dur=1200)],
        [("A", 100, 700, 0, 0, 600), ("B", 900, 2100, 0, 0, 1200)],
    ),
    (
        "signed delay: late and early",
        0.0,
        [stop("A", 1, we=50), stop("B", 3, we=1000)],
        [("A", 100, 700, 50, 1, 600), ("B", 900, 1500, -100, 0, 600)],
    ),
    (
        "on site: the rest of the planned time",
        1.0,
        [stop("A", 1, "on_site", arrived=-300), stop("B", 3)],
        [("A", -300, 300, 0, 0, 300), ("B", 500, 1100, 0, 0, 600)],
    ),
    (
        "on site past the plan: a floor of 60 s",
        1.0,
        [stop("A", 1, "on_site", arrived=-900), stop("B", 3)],
        [("A", -900, 60, 0, 0, 60), ("B", 260, 860, 0, 0, 600)],
    ),
    (
        "long job past the plan: a floor of 10 %",
        1.0,
        [stop("A", 1, "on_site", dur=3600, arrived=-4000), stop("B", 3)],
        [("A", -4000, 360, 0, 0, 360), ("B", 560, 1160, 0, 0, 600)],
    ),
    (
        "overrun cascades into a window end",
        1.0,
        [stop("A", 1, "on_site", dur=1800, arrived=-3000), stop("B", 3, we=300)],
        [("A", -3000, 180, 0, 0, 180), ("B", 380, 980, 80, 1, 600)],
    ),
    (
        "paused: pauses do not count as work",
        1.0,
        [stop("A", 1, "paused", dur=1200, arrived=-900, paused=120, since=-200), stop("B", 3)],
        [("A", -900, 620, 0, 0, 620), ("B", 820, 1420, 0, 0, 600)],
    ),
    (
        "resumed after a pause",
        1.0,
        [stop("A", 1, "resumed", dur=1200, arrived=-900, paused=300), stop("B", 3)],
        [("A", -900, 600, 0, 0, 600), ("B", 800, 1400, 0, 0, 600)],
    ),
    (
        "on site with no arrival time: arrived now",
        1.0,
        [stop("A", 1, "on_site")],
        [("A", 0, 600, 0, 0, 600)],
    ),
    (
        "en route from the current position",
        0.0,
        [stop("A", 2, "en_route")],
        [("A", 200, 800, 0, 0, 600)],
    ),
    (
        "done, cancelled and failed stops are skipped",
        0.0,
        [stop("A", 1, "done"), stop("B", 2, "cancelled"), stop("C", 9, "failed"), stop("D", 3)],
        [("D", 300, 900, 0, 0, 600)],
    ),
    (
        "no position: from the last visited site",
        None,
        [stop("A", 1, "done"), stop("B", 5, "cancelled"), stop("C", 3)],
        [("C", 200, 800, 0, 0, 600)],
    ),
    (
        "no position, nothing visited: no guess",
        None,
        [stop("A", 1), stop("B", 3)],
        [],
    ),
    (
        "no position but on site: the site is the origin",
        None,
        [stop("A", 1, "on_site", arrived=-300), stop("B", 3)],
        [("A", -300, 300, 0, 0, 300), ("B", 500, 1100, 0, 0, 600)],
    ),
]


@pytest.mark.parametrize(
    ("position_km", "stops", "expected"),
    [pytest.param(p, s, e, id=name) for name, p, s, e in CASCADE],
)
def test_cascade(position_km: float | None, stops: list[TourStop], expected: list[Row]) -> None:
    position = None if position_km is None else at_km(position_km)
    got = estimate_tour(NOW, position, stops, EXACT, NO_SPREAD)
    rows = [
        (
            e.job_id,
            e.eta - NOW,
            e.departure - NOW,
            e.delay_s,
            e.late_probability,
            e.remaining_onsite_s,
        )
        for e in got
    ]
    assert rows == [pytest.approx(r, abs=1e-6) for r in expected]
    assert all(e.eta_p10 == e.eta == e.eta_p90 for e in got)


def test_unknown_state_rejected() -> None:
    with pytest.raises(ValueError, match="unknown job state"):
        stop("A", 1, "arrived")


def test_negative_duration_rejected() -> None:
    with pytest.raises(ValueError, match="planned_duration_s"):
        stop("A", 1, dur=-1)


@pytest.mark.parametrize(
    ("s", "elapsed", "remaining"),
    [
        (stop("A", 1), 0.0, 600.0),
        (stop("A", 1, "on_site", arrived=-100), 100.0, 500.0),
        (stop("A", 1, "on_site", arrived=100), 0.0, 600.0),  # clock skew: never negative
        (stop("A", 1, "paused", arrived=-500, paused=50, since=-100), 350.0, 250.0),
        (stop("A", 1, "paused", arrived=-500, paused=50), 450.0, 150.0),
        (stop("A", 1, "on_site", dur=30, arrived=-100), 100.0, 30.0),  # floor capped at plan
        (stop("A", 1, "on_site", dur=0, arrived=-100), 100.0, 0.0),
    ],
)
def test_elapsed_and_remaining(s: TourStop, elapsed: float, remaining: float) -> None:
    assert onsite_elapsed_s(s, NOW) == elapsed
    assert remaining_onsite_s(s, NOW) == remaining


def test_spread_of_first_legs_is_exact() -> None:
    got = estimate_tour(NOW, at_km(0), [stop("A", 1), stop("B", 3, dur=1200)], SPREAD)
    rel2 = 0.5**2 + 0.3**2 + 0.15**2 + 0.1**2  # noise, prior mean, detour, stops
    sd_a = sqrt(rel2 * 100.0**2)
    sd_b = sqrt(rel2 * 100.0**2 + (0.25 * 600.0) ** 2 + rel2 * 200.0**2)
    for e, eta, sd in [(got[0], 100.0, sd_a), (got[1], 900.0, sd_b)]:
        p10, p90 = lognormal_p10_p90(eta, sd)
        assert e.eta - NOW == pytest.approx(eta)
        assert e.eta_p10 - NOW == pytest.approx(p10)
        assert e.eta_p90 - NOW == pytest.approx(p90)


def width(e: JobEta) -> float:
    return e.eta_p90 - e.eta_p10


def test_waiting_for_a_window_absorbs_spread() -> None:
    tour = [stop("A", 1), stop("B", 3), stop("C", 5)]
    plain = EstimateConfig(max_early_s=None)  # drives there at once, waits on site
    free = estimate_tour(NOW, at_km(0), tour, SPREAD, plain)
    waits = estimate_tour(NOW, at_km(0), [tour[0], stop("B", 3, ws=5000), tour[2]], SPREAD, plain)
    assert width(free[1]) == pytest.approx(width(waits[1]))
    assert width(waits[2]) < width(free[2])
    assert waits[2].eta - NOW == pytest.approx(5000 + 600 + 200)


@pytest.mark.parametrize(
    ("we", "low", "high"),
    [(-10.0, 1.0, 1.0), (100.0, 0.3, 0.5), (400.0, 0.0, 0.01), (20.0, 0.9, 1.0)],
)
def test_late_probability_follows_the_spread(we: float, low: float, high: float) -> None:
    (e,) = estimate_tour(NOW, at_km(0), [stop("A", 1, we=we)], SPREAD)
    assert low <= e.late_probability <= high


def test_on_site_late_probability_is_a_fact() -> None:
    late, on_time = (
        estimate_tour(NOW, at_km(1), [stop("A", 1, "on_site", arrived=-300, we=w)], SPREAD)[0]
        for w in (-600, 0)
    )
    assert (late.late_probability, on_time.late_probability) == (1.0, 0.0)
    assert late.eta_p10 == late.eta == late.eta_p90


STATES = ["planned", "en_route", "done", "cancelled", "failed"]
km = st.floats(0.0, 30.0)


@st.composite
def tours(draw: st.DrawFn) -> list[TourStop]:
    n = draw(st.integers(1, 8))
    stops = []
    for i in range(n):
        ws = draw(st.none() | st.floats(-7200, 20000))
        we = None if ws is None else ws + draw(st.floats(0, 14400))
        state = draw(st.sampled_from(STATES))
        stops.append(stop(f"J{i}", draw(km), state, ws=ws, we=we, dur=draw(st.floats(0, 7200))))
    if draw(st.booleans()):
        first = draw(st.sampled_from(["on_site", "paused", "resumed"]))
        arrived = draw(st.floats(-10000, 0))
        stops.insert(0, stop("S", draw(km), first, arrived=arrived, dur=draw(st.floats(0, 7200))))
    return stops


@settings(max_examples=200, deadline=None)
@given(tours(), st.none() | km)
def test_tour_properties(stops: list[TourStop], position_km: float | None) -> None:
    position = None if position_km is None else at_km(position_km)
    got: list[JobEta] = estimate_tour(NOW, position, stops, SPREAD)
    for e in got:
        assert e.eta_p10 <= e.eta <= e.eta_p90
        assert e.departure >= e.eta
        assert 0.0 <= e.late_probability <= 1.0
    assert all(a.eta <= b.eta for a, b in pairwise(got))
    assert all(a.departure <= b.eta for a, b in pairwise(got))
    remaining = [s.job_id for s in stops if s.state not in ("done", "cancelled", "failed")]
    assert [e.job_id for e in got] == remaining[: len(got)]
    if position is not None:
        assert len(got) == len(remaining)


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        # travel 100 s; to arrive 300 s before the window at +1000 it leaves at +600
        (stop("A", 1, ws=1000), [("A", 700, 1600), ("B", 1800, 2400)]),
        # already driving: arrives when it arrives
        (stop("A", 1, "en_route", ws=1000), [("A", 100, 1600), ("B", 1800, 2400)]),
        # late anyway: no reason to wait
        (stop("A", 1, ws=50), [("A", 100, 700), ("B", 900, 1500)]),
    ],
)
def test_max_early_leaves_later(first: TourStop, expected: list[tuple[str, float, float]]) -> None:
    cfg = EstimateConfig(onsite_cv=0.0, max_early_s=300.0)
    got = estimate_tour(NOW, at_km(0), [first, stop("B", 3)], EXACT, cfg)
    assert [(e.job_id, e.eta - NOW, e.departure - NOW) for e in got] == [
        pytest.approx(r) for r in expected
    ]


HOUR = 3600.0


def test_a_later_days_tour_is_not_driven_to_the_evening_before() -> None:
    # Day 10 (today): one job left, done by +1:10. Day 11: two jobs, the first window
    # opening 23 h from now. The technician leaves for it so as to arrive as it opens,
    # and the cascade goes on from there; today's ETAs are what they were alone.
    today = [replace(stop("A", 1, ws=0), day=10)]
    tomorrow = [
        replace(stop("B", 3, ws=23 * HOUR, we=24 * HOUR, dur=1800), day=11),
        replace(stop("C", 5, ws=23 * HOUR, we=26 * HOUR), day=11),
    ]
    got = estimate_tour(NOW, at_km(0), today + tomorrow, EXACT, NO_SPREAD, today=10)
    alone = estimate_tour(NOW, at_km(0), today, EXACT, NO_SPREAD, today=10)
    assert [(e.job_id, e.eta - NOW, e.departure - NOW) for e in got] == [
        ("A", 100, 700),
        ("B", 23 * HOUR, 23 * HOUR + 1800),
        ("C", 23 * HOUR + 2000, 23 * HOUR + 2600),
    ]
    assert got[0] == alone[0]
    # Today's tour over: tomorrow's first job is still not reached tonight.
    first = estimate_tour(NOW, at_km(0), tomorrow, EXACT, NO_SPREAD, today=10)
    assert first[0].eta - NOW == pytest.approx(23 * HOUR)
    # Without days (or on the day itself), the rule within a day: arrive no more than
    # max_early_s (15 min by default) before the window opens; unset, leave at once.
    plain = EstimateConfig(onsite_cv=0.0, max_early_s=None)
    for day in (None, 11):
        first = estimate_tour(NOW, at_km(0), tomorrow, EXACT, NO_SPREAD, today=day)
        assert first[0].eta - NOW == pytest.approx(23 * HOUR - 900)
        first = estimate_tour(NOW, at_km(0), tomorrow, EXACT, plain, today=day)
        assert first[0].eta - NOW == pytest.approx(300)


def test_a_day_running_late_spills_into_the_next() -> None:
    # Today's last job ends after tomorrow's first window opens: no waiting, leave at once.
    late = [replace(stop("A", 1, "on_site", arrived=-60, dur=30 * HOUR), day=10)]
    nxt = [replace(stop("B", 3, ws=HOUR, we=2 * HOUR), day=11)]
    a, b = estimate_tour(NOW, at_km(1), late + nxt, EXACT, NO_SPREAD, today=10)
    assert b.eta == pytest.approx(a.departure + 200)
    # A job left open from an earlier day is worked first, as the plain rule says.
    old = [replace(stop("Z", 1, ws=-20 * HOUR), day=9)]
    z, b = estimate_tour(NOW, at_km(0), old + nxt, EXACT, NO_SPREAD, today=10)
    assert [z.eta - NOW, b.eta - NOW] == pytest.approx([100, HOUR])


def test_a_technicians_pace_scales_their_on_site_times() -> None:
    # 1.5 x the plan: the job under way (600 s planned, 300 s done) has 600 s to go, the
    # next one takes 900 s; travel is untouched.
    tour = [stop("A", 1, "on_site", arrived=-300), stop("B", 3), stop("C", 5)]
    a, b, c = estimate_tour(NOW, at_km(1), tour, EXACT, NO_SPREAD, pace=1.5)
    assert (a.remaining_onsite_s, b.remaining_onsite_s) == (600.0, 900.0)
    assert [b.eta - NOW, c.eta - NOW] == pytest.approx([600 + 200, 600 + 200 + 900 + 200])
    plain = estimate_tour(NOW, at_km(1), tour, EXACT, NO_SPREAD)
    assert plain[1].eta - NOW == pytest.approx(300 + 200)


def test_a_technician_not_yet_set_off_leaves_when_predicted() -> None:
    tour = [stop("A", 1, we=1200), stop("B", 3)]
    # Predicted to set off in 10 min: the whole tour moves by it, the first leg's
    # travel time is taken at that hour.
    a, b = estimate_tour(NOW, at_km(0), tour, EXACT, NO_SPREAD, set_off=(NOW + 600, 0.0))
    assert [(e.job_id, e.eta - NOW, e.departure - NOW) for e in (a, b)] == [
        ("A", 700, 1300),
        ("B", 1500, 2100),
    ]
    assert a.delay_s == pytest.approx(-500)
    # A predicted start already past is "now"; its spread widens the bands of every job.
    now = estimate_tour(NOW, at_km(0), tour, EXACT, NO_SPREAD)
    assert estimate_tour(NOW, at_km(0), tour, EXACT, NO_SPREAD, set_off=(NOW - 60, 0.0)) == now
    wide = estimate_tour(NOW, at_km(0), tour, SPREAD, set_off=(NOW + 600, 300.0))
    narrow = estimate_tour(NOW, at_km(0), tour, SPREAD, set_off=(NOW + 600, 0.0))
    for w, n in zip(wide, narrow, strict=True):
        assert w.eta == n.eta and w.eta_p90 - w.eta_p10 > n.eta_p90 - n.eta_p10
    # Already driving, or a job under way: the technician has set off.
    for first in (stop("A", 1, "en_route"), stop("A", 0, "on_site", arrived=-60)):
        moving = [first, stop("B", 3)]
        assert estimate_tour(
            NOW, at_km(0), moving, EXACT, NO_SPREAD, set_off=(NOW + 600, 0.0)
        ) == estimate_tour(NOW, at_km(0), moving, EXACT, NO_SPREAD)


def overrunning_fleet() -> DurationModel:
    durations = DurationModel()
    for i in range(300):
        durations.observe_job(600.0, (1.6 if i % 4 == 0 else 1.0) * 600.0)
    return durations


def test_learned_durations_widen_the_spread_but_keep_the_plan() -> None:
    durations = overrunning_fleet()
    tour = [stop("A", 1, "on_site", arrived=-590), stop("B", 3)]
    plain = estimate_tour(NOW, at_km(1), tour, SPREAD)
    learned = estimate_tour(NOW, at_km(1), tour, SPREAD, durations=durations)
    assert [(e.eta, e.departure) for e in learned] == [(e.eta, e.departure) for e in plain]
    assert learned[1].eta_p90 - plain[1].eta_p90 > 45.0  # the overrun tail
    assert learned[1].late_probability >= plain[1].late_probability


def test_learned_durations_move_the_times_when_asked() -> None:
    durations = overrunning_fleet()
    tour = [stop("A", 1, "on_site", arrived=-700), stop("B", 3), stop("C", 5)]
    # Jobs not started take the median ratio; the one under way keeps "plan minus elapsed".
    cfg = EstimateConfig(learned_durations=True)
    a, b, c = estimate_tour(NOW, at_km(1), tour, SPREAD, cfg, durations)
    assert a.remaining_onsite_s == 60.0  # 100 s past its plan: the floor
    assert b.eta - NOW == pytest.approx(60.0 + 200.0)
    median_b = 600.0 * durations.median_ratio()
    assert b.remaining_onsite_s == pytest.approx(median_b)
    assert c.eta - b.eta == pytest.approx(median_b + 200.0)
    # The job under way takes its conditional median rest as well.
    cfg = EstimateConfig(learned_durations=True, learned_remaining=True)
    a, b, c = estimate_tour(NOW, at_km(1), tour, SPREAD, cfg, durations)
    rest = durations.remaining(600.0, 700.0)
    assert rest is not None
    assert a.remaining_onsite_s == pytest.approx(max(rest[0], 60.0))
    assert b.eta - NOW == pytest.approx(a.remaining_onsite_s + 200.0)
    assert c.eta - b.eta == pytest.approx(median_b + 200.0)


def test_learned_median_not_mean_for_jobs_not_started() -> None:
    durations = overrunning_fleet()  # three in four on plan, one in four at 1.6 x plan
    mean, _ = durations.ratio()
    # The tail pulls the mean up; the median stays with the jobs that keep to their plan.
    assert durations.median_ratio() < mean
    assert durations.median_ratio() == pytest.approx(1.0, abs=0.084)  # within a bin
    cfg = EstimateConfig(learned_durations=True)
    (a,) = estimate_tour(NOW, at_km(0), [stop("A", 1)], SPREAD, cfg, durations)
    assert a.departure - a.eta == pytest.approx(600.0 * durations.median_ratio())


def test_a_paused_job_waits_for_the_rest_of_its_pause() -> None:
    pauses = DurationModel(PAUSE_PRIOR)
    for _ in range(200):
        pauses.observe_job(600.0, 900.0)  # pauses have lasted 15 minutes
    a = stop("A", 1, "paused", dur=1200, arrived=-900, paused=120, since=-200)
    rest, _ = pauses.remaining(600.0, 200.0) or (0.0, 0.0)
    assert rest == pytest.approx(700.0, abs=40.0)  # of a pause that has lasted 200 s
    work = 1200 - (900 - 120 - 200)  # 580 s worked: 620 to go
    first, second = estimate_tour(NOW, at_km(1), [a, stop("B", 3)], EXACT, NO_SPREAD, None, pauses)
    assert first.departure == pytest.approx(NOW + rest + work)
    assert first.remaining_onsite_s == pytest.approx(rest + work)
    assert second.eta == pytest.approx(NOW + rest + work + 200.0)
    assert second.eta_p90 > second.eta  # the pause's spread reaches the next job
    # Resumed, or without a pause model: back to work now.
    assert remaining_onsite_s(a, NOW, NO_SPREAD) == work
    resumed = stop("A", 1, "resumed", dur=1200, arrived=-900, paused=320)
    assert remaining_onsite_s(resumed, NOW, NO_SPREAD, None, pauses) == work
    # A pause longer than any learned: it may end any moment.
    long = stop("A", 1, "paused", dur=1200, arrived=-90_000, paused=0, since=-80_000)
    assert remaining_onsite_s(long, NOW, NO_SPREAD, None, pauses) == 1200 * 0.1


def test_band_factors_scale_each_side_and_leave_the_rest() -> None:
    tour = [stop("A", 6, we=550)]
    (plain,) = estimate_tour(NOW, at_km(0), tour, SPREAD, NO_SPREAD)
    (scaled,) = estimate_tour(NOW, at_km(0), tour, SPREAD, NO_SPREAD, band=(0.5, 2.0))
    assert scaled.eta == plain.eta == NOW + 600
    assert scaled.eta - scaled.eta_p10 == pytest.approx(0.5 * (plain.eta - plain.eta_p10))
    assert scaled.eta_p90 - scaled.eta == pytest.approx(2.0 * (plain.eta_p90 - plain.eta))
    assert scaled.late_probability == plain.late_probability
