"""KPIs on a hand-made day of two technicians, every number worked out by hand."""

from __future__ import annotations

from datetime import timedelta, timezone
from math import degrees

import pytest

from eta.geo import EARTH_RADIUS_M
from eta.kpi import (
    EtaPrediction,
    FixRecord,
    JobRecord,
    KpiConfig,
    compute_kpis,
    eta_error,
    first_visit_completion,
    jobs_per_technician_day,
    km_driven,
    onsite_time,
    punctuality,
    sla_compliance,
)

DAY = 1_700_438_400.0  # Monday 2023-11-20 00:00 UTC
H = 3600.0


def at(hours: float, day: int = 0) -> float:
    return DAY + day * 86400.0 + hours * H


JOBS = [
    # on time; 10 min of pause
    JobRecord("J1", "t1", "done", at(8), at(10), at(9), at(10), paused_s=600),
    # late, needed two visits, finished after the window
    JobRecord("J2", "t1", "done", at(10), at(12), at(12.5), at(13.5), visits=2),
    JobRecord("J3", "t1", "cancelled", at(13), at(15), None, None),
    # early; a follow-up job J5 was booked on it the next day
    JobRecord("J4", "t2", "done", at(8), at(9), at(7.5), at(8.5)),
    JobRecord("J5", "t2", "done", None, None, at(9, 1), at(9.5, 1), follow_up_of="J4"),
    JobRecord("J6", "t2", "failed", at(14), at(16), at(15), at(15 + 1 / 3)),
    JobRecord("J7", "t1", "planned", at(16), at(18), None, None),
]


def test_punctuality() -> None:
    assert punctuality(JOBS) == {"arrivals": 4, "on_time": 2, "early": 1, "late": 1, "rate": 0.5}


@pytest.mark.parametrize(("grace", "met"), [(0.0, 2), (3 * H, 3), (1.5 * H, 3), (1.49 * H, 2)])
def test_sla_compliance(grace: float, met: int) -> None:
    assert sla_compliance(JOBS, grace) == {"due": 5, "met": met, "rate": met / 5}


@pytest.mark.parametrize(
    ("now", "due", "met"),
    [
        (None, 5, 2),  # a period that is over: J7, never done, missed its window
        (at(17), 4, 2),  # J7 still open within its window: not missed yet
        (at(18), 4, 2),  # ... up to its very end
        (at(18) + 1, 5, 2),  # then it is
        (at(11), 4, 2),  # finished jobs count whenever they finished
    ],
)
def test_sla_leaves_out_open_jobs_still_within_their_window(
    now: float | None, due: int, met: int
) -> None:
    assert sla_compliance(JOBS, 0.0, now) == {"due": due, "met": met, "rate": met / due}
    assert compute_kpis(JOBS, now=now)["sla"]["due"] == due


def test_onsite_time() -> None:
    assert onsite_time(JOBS) == {
        "total_s": pytest.approx(13200.0),
        "jobs": 5,
        "mean_per_job_s": pytest.approx(2640.0),
        "by_technician": {"t1": 6600.0, "t2": pytest.approx(6600.0)},
    }


def test_jobs_per_technician_day() -> None:
    assert jobs_per_technician_day(JOBS) == {
        "mean": pytest.approx(4 / 3),
        "technician_days": 3,
        "by_technician": {"t1": 2.0, "t2": 1.0},
    }
    # Sixteen hours east J4 (07:30-08:30 UTC) straddles local midnight: t2 works three days.
    shifted = jobs_per_technician_day(JOBS, timezone(timedelta(hours=16)))
    assert shifted["by_technician"] == {"t1": 2.0, "t2": 2 / 3}


def test_first_visit_completion() -> None:
    assert first_visit_completion(JOBS) == {"done": 3, "first_visit": 1, "rate": 1 / 3}


A, B, C = at(10), at(12), at(14)
PREDICTIONS = [
    EtaPrediction("J1", A - 2000, A + 120, A),  # 30 min, superseded by the next one
    EtaPrediction("J1", A - 1850, A + 60, A),  # 30 min: +60
    EtaPrediction("J1", A - 1700, A + 500, A),  # between horizons: unused
    EtaPrediction("J1", A - 650, A - 30, A),  # 10 min: -30
    EtaPrediction("J1", A - 500, A + 900, A),  # too late for 10 min
    EtaPrediction("J2", B - 1800, B - 300, B),  # 30 min: -300
    EtaPrediction("J2", B - 950, B + 400, B),  # superseded for 10 min by the next one
    EtaPrediction("J2", B - 900, B + 90, B),  # 10 min: +90
    EtaPrediction("J3", C - 2500, C, C),  # never moved again: stands at 30 and 10 min: 0
]

ETA_ERROR = {
    "30min": {"count": 3, "mae_s": 120.0, "p50_s": 60.0, "p90_s": 252.0, "bias_s": -80.0},
    "10min": {"count": 3, "mae_s": 40.0, "p50_s": 30.0, "p90_s": 78.0, "bias_s": 20.0},
}


def assert_eta_error(got: dict[str, dict[str, float]]) -> None:
    assert got.keys() == ETA_ERROR.keys()
    for horizon, stats in ETA_ERROR.items():
        assert got[horizon] == pytest.approx(stats), horizon


def test_eta_error() -> None:
    assert_eta_error(eta_error(PREDICTIONS))


def test_eta_error_scores_the_prediction_standing_however_old() -> None:
    """ETAs are re-published only when they move by 60 s: one published 50 min before
    arrival that never moved is what stood at T-30 and T-10, and is scored at both; a
    job whose first prediction came after T-10 is not scored at 10 min."""
    steady = [EtaPrediction("S", A - 3000, A + 240, A)]
    got = eta_error(steady)
    assert got["30min"]["count"] == got["10min"]["count"] == 1
    assert got["30min"]["bias_s"] == got["10min"]["bias_s"] == 240.0
    late_first = [EtaPrediction("L", A - 900, A + 60, A), EtaPrediction("L", A - 300, A, A)]
    got = eta_error(late_first)
    assert got["30min"]["count"] == 0
    assert got["10min"]["mae_s"] == 60.0  # the one of T-15 still stood at T-10


def test_eta_error_without_data() -> None:
    empty = {"count": 0, "mae_s": None, "p50_s": None, "p90_s": None, "bias_s": None}
    assert eta_error([], KpiConfig(horizons_s=(300.0,))) == {"5min": empty}


def north(m: float) -> float:
    return 60.17 + degrees(m / EARTH_RADIUS_M)


T0 = at(8)
FIXES = [
    FixRecord("t1", T0 + 200, north(2000), 24.94),
    FixRecord("t1", T0, north(0), 24.94),
    FixRecord("t1", T0 + 10, north(10), 24.94),  # jitter
    FixRecord("t1", T0 + 60, north(1000), 24.94),
    FixRecord("t1", T0 + 60, north(1900), 24.94),  # same time as the anchor: no speed
    FixRecord("t1", T0 + 70, north(1005), 24.94),  # jitter
    FixRecord("t1", T0 + 80, north(100_000), 24.94),  # 99 km in 20 s: a glitch
    FixRecord("t1", T0 + 100, north(1500), 24.94),
    FixRecord("t2", T0, 60.0, 25.0),
]


def test_km_driven() -> None:
    got = km_driven(FIXES)
    assert got["total"] == pytest.approx(2.0)
    assert got["by_technician"] == pytest.approx({"t1": 2.0, "t2": 0.0})


def test_compute_kpis_whole_and_filtered() -> None:
    whole = compute_kpis(JOBS, PREDICTIONS, FIXES)
    assert whole["jobs"] == 7
    assert whole["punctuality"]["rate"] == 0.5
    assert whole["sla"]["met"] == 2
    # J3 never arrived (test data) but its prediction is still in the period, and scored.
    assert_eta_error(whole["eta_error"])
    assert whole["km_driven"]["total"] == pytest.approx(2.0)
    assert whole["onsite"]["total_s"] == pytest.approx(13200.0)
    assert whole["first_visit_completion"]["rate"] == 1 / 3

    t2 = compute_kpis(JOBS, PREDICTIONS, FIXES, technician_id="t2")
    assert t2["jobs"] == 3
    assert t2["eta_error"]["30min"]["count"] == 0
    assert t2["km_driven"] == {"total": 0.0, "by_technician": {"t2": 0.0}, "incomplete": []}
    assert t2["punctuality"] == {"arrivals": 2, "on_time": 1, "early": 1, "late": 0, "rate": 0.5}

    day2 = compute_kpis(JOBS, PREDICTIONS, FIXES, since=at(0, 1), until=at(0, 2))
    assert day2["jobs"] == 1
    assert day2["first_visit_completion"] == {"done": 0, "first_visit": 0, "rate": None}
    assert day2["km_driven"] == {"total": 0.0, "by_technician": {}, "incomplete": []}
    assert day2["jobs_per_technician_day"]["by_technician"] == {"t2": 1.0}

    morning = compute_kpis(JOBS, PREDICTIONS, FIXES, since=at(7), until=at(9.5))
    assert sorted(morning["onsite"]["by_technician"]) == ["t1", "t2"]
    assert morning["jobs"] == 2  # J1 (arrived 9:00) and J4 (7:30)
    assert morning["km_driven"]["total"] == pytest.approx(2.0)


def test_open_job_without_times_only_in_unbounded_queries() -> None:
    bare = JobRecord("X", "t3", "planned", None, None, None, None)
    assert compute_kpis([bare])["jobs"] == 1
    assert compute_kpis([bare], since=DAY)["jobs"] == 0
