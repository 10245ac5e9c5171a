"""Alert rules, re-optimisation gating and customer notifications, as exact event tables."""

from __future__ import annotations

from dataclasses import replace
from math import degrees

import pytest

from eta.delay import (
    Alert,
    AlertState,
    DelayConfig,
    Notification,
    NotifyState,
    ReoptCandidate,
    ReoptState,
    StopAnchor,
    customer_notifications,
    decide,
    evaluate,
    near_any_site,
    reopt_candidate,
    track_stop,
)
from eta.estimate import JobEta, TourStop
from eta.geo import EARTH_RADIUS_M

T = 1_700_467_200.0
LAT0, LON0 = 60.17, 24.94
TECH = "tech-1"


def lat_at(m: float) -> float:
    return LAT0 + degrees(m / EARTH_RADIUS_M)


def stop(
    job: str,
    state: str = "planned",
    *,
    we: float | None = None,
    dur: float = 600.0,
    arrived: float | None = None,
    at_m: float = 0.0,
) -> TourStop:
    return TourStop(
        job_id=job,
        lat=lat_at(at_m),
        lon=LON0,
        window_start=None,
        window_end=None if we is None else T + we,
        planned_duration_s=dur,
        state=state,
        arrived_at=None if arrived is None else T + arrived,
    )


def eta(job: str, at: float, p: float = 0.0, we: float | None = None) -> JobEta:
    e = T + at
    return JobEta(job, e, e - 60, e + 120, e + 600, 0.0 if we is None else at - we, p, 600.0)


# -- alerts ----------------------------------------------------------------------------

# One evaluate call: (now, etas, stops, last_fix, stopped_since, near_site, expected events)
# with events as (alert, job_id, severity, cleared); all times relative to T.
Step = tuple[
    float,
    list[JobEta],
    list[TourStop],
    float | None,
    float | None,
    bool,
    list[tuple[str, str | None, str, bool]],
]

SCENARIOS: dict[str, list[Step]] = {
    "late risk: raise, dedupe, hysteresis, clear, re-raise critical, reached": [
        (
            0,
            [eta("A", 800, 0.6, 1000)],
            [stop("A", we=1000)],
            0,
            None,
            False,
            [("late_risk", "A", "warning", False)],
        ),
        (10, [eta("A", 810, 0.6, 1000)], [stop("A", we=1000)], 10, None, False, []),
        (20, [eta("A", 800, 0.45, 1000)], [stop("A", we=1000)], 20, None, False, []),
        (
            30,
            [eta("A", 700, 0.35, 1000)],
            [stop("A", we=1000)],
            30,
            None,
            False,
            [("late_risk", "A", "warning", True)],
        ),
        (
            40,
            [eta("A", 1200, 0.95, 1000)],
            [stop("A", we=1000)],
            40,
            None,
            False,
            [("late_risk", "A", "critical", False)],
        ),
        (
            50,
            [eta("A", 50)],
            [stop("A", "on_site", we=1000, arrived=50)],
            50,
            None,
            False,
            [("late_risk", "A", "critical", True)],
        ),
    ],
    "late risk: margin, threshold and windowless jobs": [
        (
            0,
            [eta("A", 699, 0.9, 1000), eta("B", 900, 0.49, 1000), eta("C", 5000, 1.0)],
            [stop("A", we=1000), stop("B", we=1000), stop("C")],
            0,
            None,
            False,
            [],
        ),
        (
            1,
            [eta("A", 701, 0.5, 1000), eta("B", 900, 0.5, 1000)],
            [stop("A", we=1000), stop("B", "en_route", we=1000)],
            0,
            None,
            False,
            [("late_risk", "A", "warning", False), ("late_risk", "B", "warning", False)],
        ),
        (
            2,
            [eta("B", 900, 0.5, 1000)],
            [stop("A", "cancelled", we=1000), stop("B", "en_route", we=1000)],
            0,
            None,
            False,
            [("late_risk", "A", "warning", True)],
        ),
    ],
    "overrun: strictly beyond plan x 1.2, cleared when done": [
        (0, [eta("A", -720)], [stop("A", "on_site", arrived=-720)], 0, None, False, []),
        (
            1,
            [eta("A", -720)],
            [stop("A", "on_site", arrived=-720)],
            1,
            None,
            False,
            [("overrun", "A", "warning", False)],
        ),
        (100, [eta("A", -720)], [stop("A", "resumed", arrived=-720)], 100, None, False, []),
        (
            200,
            [],
            [stop("A", "done", arrived=-720)],
            200,
            None,
            False,
            [("overrun", "A", "warning", True)],
        ),
    ],
    "stale device: silent 10 min while active, cleared by a fix": [
        (599, [eta("A", 900)], [stop("A", "en_route")], 0, None, False, []),
        (
            600,
            [eta("A", 900)],
            [stop("A", "en_route")],
            0,
            None,
            False,
            [("stale_device", "A", "critical", False)],
        ),
        (700, [eta("A", 900)], [stop("A", "en_route")], 0, None, False, []),
        (
            701,
            [eta("A", 900)],
            [stop("A", "en_route")],
            701,
            None,
            False,
            [("stale_device", "A", "critical", True)],
        ),
    ],
    "stale device: follows the active job, quiet when none or no fix yet": [
        (
            600,
            [eta("A", 900)],
            [stop("A", "on_site", arrived=0)],
            0,
            None,
            False,
            [("stale_device", "A", "critical", False)],
        ),
        (
            610,
            [eta("B", 900)],
            [stop("A", "done"), stop("B", "en_route")],
            0,
            None,
            False,
            [("stale_device", "A", "critical", True), ("stale_device", "B", "critical", False)],
        ),
        (
            620,
            [eta("B", 900)],
            [stop("A", "done"), stop("B")],
            0,
            None,
            False,
            [("stale_device", "B", "critical", True)],
        ),
        (5000, [eta("B", 900)], [stop("B", "en_route")], None, None, False, []),
        (5000, [eta("B", 900)], [stop("B", "paused", arrived=4900)], 0, None, False, []),
    ],
    "long stop: en route and away from sites only": [
        (899, [eta("A", 1900)], [stop("A", "en_route")], 899, 0, False, []),
        (
            900,
            [eta("A", 1900)],
            [stop("A", "en_route")],
            900,
            0,
            False,
            [("long_stop", "A", "info", False)],
        ),
        (
            950,
            [eta("A", 1900)],
            [stop("A", "en_route")],
            950,
            0,
            True,
            [("long_stop", "A", "info", True)],
        ),
        (2000, [eta("A", 1900)], [stop("A", "on_site", arrived=1990)], 2000, 0, False, []),
        (2100, [eta("A", 1900)], [stop("A", "en_route")], 2100, None, False, []),
    ],
    "long stop: only as long as fixes show it, silence after is stale_device's": [
        # One fix at 0, then nothing: 1800 s of silence is no evidence of a stop.
        (
            1800,
            [eta("A", 2900)],
            [stop("A", "en_route")],
            0,
            0,
            False,
            [("stale_device", "A", "critical", False)],
        ),
        # Fixes resume from the same spot, 900 s after the stop began: now it is one.
        (
            1810,
            [eta("A", 2900)],
            [stop("A", "en_route")],
            900,
            0,
            False,
            [("long_stop", "A", "info", False)],
        ),
    ],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_alert_scenarios(name: str) -> None:
    state = AlertState()
    raised: set[tuple[str, str | None]] = set()
    for now, etas, stops, last_fix, stopped, near, expected in SCENARIOS[name]:
        state, events = evaluate(
            T + now,
            TECH,
            etas,
            stops,
            None if last_fix is None else T + last_fix,
            None if stopped is None else T + stopped,
            near,
            state,
        )
        got = [(a.alert, a.job_id, a.severity, a.cleared) for a in events]
        assert got == expected, f"at {now}"
        assert all(a.ts == T + now and a.technician_id == TECH for a in events)
        for a in events:
            (raised.discard if a.cleared else raised.add)((a.alert, a.job_id))
        assert set(state.active) == raised


def test_alert_details_and_clear_reuses_them() -> None:
    etas = [eta("A", 1100, 0.7, 1000)]
    state, (raised,) = evaluate(T, TECH, etas, [stop("A", we=1000)], T, None, False, AlertState())
    assert raised.detail == {
        "eta": T + 1100,
        "eta_p90": T + 1220,
        "window_end": T + 1000,
        "delay_s": 100.0,
        "late_probability": 0.7,
    }
    same, none = evaluate(T + 5, TECH, etas, [stop("A", we=1000)], T, None, False, state)
    assert same is state and none == []
    _, (cleared,) = evaluate(T + 9, TECH, [], [stop("A", "done")], T, None, False, state)
    assert cleared == replace(raised, ts=T + 9, cleared=True)


def test_overrun_and_device_details() -> None:
    stops = [stop("A", "on_site", arrived=-1000, dur=600), stop("B", "en_route")]
    _, events = evaluate(T, TECH, [], stops, T - 700, T - 950, False, AlertState())
    assert [(a.alert, dict(a.detail)) for a in events] == [
        ("overrun", {"elapsed_s": 1000.0, "planned_duration_s": 600.0, "overrun_s": 400.0}),
        ("stale_device", {"last_fix_ts": T - 700, "silent_s": 700.0}),
    ]
    # B is en route but A is still being worked: the first active stop is A, so no long stop.
    _, events = evaluate(T, TECH, [], stops[1:], T, T - 950, False, AlertState())
    assert [(a.alert, dict(a.detail)) for a in events] == [
        ("long_stop", {"stopped_since": T - 950, "stopped_s": 950.0})
    ]


# -- stops and sites -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "moved_m", "expected_since"),
    [
        (None, 0.0, 100.0),
        (StopAnchor(LAT0, LON0, 0.0), 49.0, 0.0),
        (StopAnchor(LAT0, LON0, 0.0), 51.0, 100.0),
    ],
)
def test_track_stop(anchor: StopAnchor | None, moved_m: float, expected_since: float) -> None:
    got = track_stop(anchor, lat_at(moved_m), LON0, 100.0, 50.0)
    assert got.since == expected_since
    if expected_since == 100.0:
        assert (got.lat, got.lon) == (lat_at(moved_m), LON0)


@pytest.mark.parametrize(("moved_m", "expected"), [(1049.0, True), (1051.0, False)])
def test_near_any_site(moved_m: float, expected: bool) -> None:
    stops = [stop("A", "done", at_m=0.0), stop("B", at_m=1000.0)]
    assert near_any_site(lat_at(moved_m), LON0, stops, 50.0) is expected


# -- re-optimisation ---------------------------------------------------------------------

REOPT: list[tuple[float, str, float, bool]] = [
    (0, "late_risk", 100, True),  # first ever
    (100, "late_risk", 350, False),  # cool-down, gain 250 < 300
    (200, "late_risk", 400, True),  # gain 300
    (300, "overrun", 500, False),  # gain 100 since the last request
    (330, "cancelled", 0, True),  # bypasses the gain, 130 s > 60 s
    (350, "urgent_job", 0, False),  # but not the short cool-down
    (390, "urgent_job", 0, True),  # 60 s later
    (500, "late_risk", 299, False),  # gain measured from the urgent request (0)
    (1289, "stale_device", 0, False),  # 899 s
    (1290, "stale_device", 0, True),  # cool-down over
]


def test_reopt_cooldown_and_min_gain() -> None:
    state = ReoptState()
    for now, reason, lateness, fires in REOPT:
        before = state
        state, request = decide(T + now, TECH, ReoptCandidate(reason, ("A",), lateness), state)
        if fires:
            assert request is not None, now
            assert (request.reason, request.job_ids, request.predicted_lateness_s) == (
                reason,
                ("A",),
                lateness,
            )
            assert (request.technician_id, request.ts) == (TECH, T + now)
            assert state == ReoptState(T + now, lateness, reason)
        else:
            assert request is None, now
            assert state is before


def test_reopt_rejects_unknown_reason() -> None:
    with pytest.raises(ValueError, match="unknown re-optimisation reason"):
        ReoptCandidate("bored", (), 0.0)


def alert(kind: str, job: str | None, cleared: bool = False) -> Alert:
    return Alert(kind, TECH, job, "warning", T, cleared, {})


ETAS = [eta("A", 100, we=200), eta("B", 900, we=600), eta("C", 2000, we=1500)]


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ([], None),
        ([alert("long_stop", "A")], None),
        ([alert("late_risk", "B", cleared=True)], None),
        ([alert("late_risk", "C"), alert("late_risk", "B")], ("late_risk", ("C", "B"), 500.0)),
        ([alert("late_risk", "C"), alert("overrun", "A")], ("overrun", ("A", "B", "C"), 500.0)),
        ([alert("overrun", "B")], ("overrun", ("B", "C"), 500.0)),
        ([alert("overrun", "Z")], ("overrun", ("Z",), 0.0)),
        ([alert("stale_device", "A")], ("stale_device", ("A", "B", "C"), 500.0)),
        ([alert("late_risk", "A")], ("late_risk", ("A",), 0.0)),
    ],
)
def test_reopt_candidate(
    alerts: list[Alert], expected: tuple[str, tuple[str, ...], float] | None
) -> None:
    got = reopt_candidate(alerts, ETAS)
    if expected is None:
        assert got is None
    else:
        assert got == ReoptCandidate(*expected)


# -- customer notifications -------------------------------------------------------------


def run_notify(
    steps: list[tuple[float, float | None, list[JobEta], list[TourStop]]],
) -> list[list[tuple[str, str]]]:
    state = NotifyState()
    out = []
    for now, pos_m, etas, stops in steps:
        position = None if pos_m is None else (lat_at(pos_m), LON0)
        state, sent = customer_notifications(T + now, TECH, position, etas, stops, state)
        assert all(isinstance(n, Notification) and n.ts == T + now for n in sent)
        out.append([(n.notification, n.job_id) for n in sent])
    return out


def test_arriving_soon_by_eta_once() -> None:
    stops = [stop("A", "en_route", at_m=5000), stop("B", at_m=9000)]
    got = run_notify(
        [
            (0, 0, [eta("A", 601), eta("B", 2000)], stops),
            (10, 0, [eta("A", 611), eta("B", 2000)], stops),
            (20, 0, [eta("A", 620), eta("B", 2000)], stops),
            (30, 0, [eta("A", 530), eta("B", 2000)], stops),
        ]
    )
    assert got == [[], [], [("arriving_soon", "A")], []]


def test_arriving_soon_by_distance_only_when_driving_there() -> None:
    driving = [stop("A", "en_route", at_m=1000)]
    working = [stop("W", "on_site", arrived=-60, at_m=0), stop("A", at_m=500)]
    assert run_notify([(0, 10.0, [eta("A", 900)], driving)]) == [[("arriving_soon", "A")]]
    assert run_notify([(0, -10.0, [eta("A", 900)], driving)]) == [[]]
    assert run_notify([(0, None, [eta("A", 900)], driving)]) == [[]]
    got = run_notify(
        [
            (0, 0.0, [eta("W", -60), eta("A", 1200)], working),
            (600, 0.0, [eta("W", -60), eta("A", 599)], working),
        ]
    )
    assert got == [[], [("arriving_soon", "A")]]
    # Near but not on the way (last night's position, or waiting for a window): by ETA only.
    planned = [stop("A", at_m=500)]
    assert run_notify([(0, 0.0, [eta("A", 9000)], planned)]) == [[]]
    assert run_notify([(0, 0.0, [eta("A", 590)], planned)]) == [[("arriving_soon", "A")]]


def test_arriving_soon_detail() -> None:
    _, (n,) = customer_notifications(
        T, TECH, (LAT0, LON0), [eta("A", 300)], [stop("A", at_m=2000)], NotifyState()
    )
    assert dict(n.detail) == pytest.approx({"eta": T + 300, "eta_p90": T + 420, "distance_m": 2000})


def test_delayed_once_per_job_and_state_pruned() -> None:
    stops = [stop("A", "en_route", we=500, at_m=9000), stop("B", we=1500, at_m=20000)]
    state = NotifyState()
    state, sent = customer_notifications(
        T, TECH, (LAT0, LON0), [eta("A", 700, 0.8, 500), eta("B", 1400, 0.49, 1500)], stops, state
    )
    assert [(n.notification, n.job_id, dict(n.detail)) for n in sent] == [
        ("delayed", "A", {"eta": T + 700, "window_end": T + 500, "delay_s": 200.0})
    ]
    state, sent = customer_notifications(
        T + 60,
        TECH,
        (LAT0, LON0),
        [eta("A", 700, 0.9, 500), eta("B", 1400, 0.5, 1500)],
        stops,
        state,
    )
    assert [(n.notification, n.job_id) for n in sent] == [("delayed", "B")]
    assert state.sent == {("delayed", "A"), ("delayed", "B")}
    done = [replace(stops[0], state="done"), stops[1]]
    state, sent = customer_notifications(
        T + 120, TECH, (LAT0, LON0), [eta("B", 1400, 0.6, 1500)], done, state
    )
    assert sent == []
    assert state.sent == {("delayed", "B")}


def test_custom_thresholds() -> None:
    cfg = DelayConfig(late_margin_s=0.0, late_probability=0.2, arriving_soon_s=60.0)
    _, events = evaluate(
        T,
        TECH,
        [eta("A", 990, 0.3, 1000)],
        [stop("A", we=1000)],
        T,
        None,
        False,
        AlertState(),
        cfg,
    )
    assert events == []
    _, events = evaluate(
        T,
        TECH,
        [eta("A", 1001, 0.3, 1000)],
        [stop("A", we=1000)],
        T,
        None,
        False,
        AlertState(),
        cfg,
    )
    assert [(a.alert, a.severity) for a in events] == [("late_risk", "warning")]
    _, sent = customer_notifications(T, TECH, None, [eta("A", 61)], [stop("A")], NotifyState(), cfg)
    assert sent == []
