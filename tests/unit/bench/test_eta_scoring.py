"""Scoring helpers of the ``eta`` benchmark: error statistics, error split, late-risk scores."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.eta_scoring import (
    LateRiskAlert,
    PredictedStop,
    TrueJob,
    error_stats,
    goal_status,
    improvement,
    interval_stats,
    late_risk_curve,
    late_risk_scores,
    split_error,
    split_stats,
)

AT = 1_000_000.0


def job(
    job_id: str, leave: float, arrival: float, departure: float, window_end: float = 0.0
) -> TrueJob:
    return TrueJob(job_id, "t1", 0.0, window_end, leave, arrival, departure, departure)


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        ([], {"n": 0, "mae_s": None, "p90_abs_s": None, "bias_s": None}),
        ([10.0, -20.0, 30.0], {"n": 3, "mae_s": 20.0, "p90_abs_s": 28.0, "bias_s": 6.7}),
        ([-5.0], {"n": 1, "mae_s": 5.0, "p90_abs_s": 5.0, "bias_s": -5.0}),
    ],
)
def test_error_stats(errors: list[float], expected: dict[str, Any]) -> None:
    assert error_stats(errors) == expected


@pytest.mark.parametrize(
    ("mae", "baseline", "expected"),
    [(70.0, 100.0, 0.3), (120.0, 100.0, -0.2), (None, 100.0, None), (50.0, 0.0, None),
     (50.0, None, None)],
)  # fmt: skip
def test_improvement(mae: float | None, baseline: float | None, expected: float | None) -> None:
    assert improvement(mae, baseline) == expected


@pytest.mark.parametrize(
    ("mae", "met", "gain"), [(70.0, True, 0.3), (71.0, False, 0.29), (None, False, None)]
)
def test_goal_status(mae: float | None, met: bool, gain: float | None) -> None:
    assert goal_status(mae, 100.0, 0.3) == {
        "improvement": gain,
        "target": 0.3,
        "met": met,
        "mae_needed_s": 70.0,
        "mae_s": mae,
    }


def test_split_stats() -> None:
    assert split_stats([(10.0, -30.0), (-20.0, 10.0)]) == {
        "travel_mae_s": 15.0,
        "travel_bias_s": -5.0,
        "onsite_mae_s": 20.0,
        "onsite_bias_s": -10.0,
    }
    assert split_stats([]) == dict.fromkeys(
        ("travel_mae_s", "travel_bias_s", "onsite_mae_s", "onsite_bias_s")
    )


def stop(job_id: str, eta: float, departure: float, on_site: bool = False) -> PredictedStop:
    return PredictedStop(job_id, AT + eta, AT + departure, on_site)


def true(job_id: str, leave: float, arrival: float, departure: float) -> TrueJob:
    return job(job_id, AT + leave, AT + arrival, AT + departure)


@pytest.mark.parametrize(
    ("cascade", "now", "truth", "target", "expected"),
    [
        # Driving there already: the whole error is travel.
        ([stop("A", 600, 2400)], 0.0, [true("A", -120, 700, 3000)], "A", (-100.0, 0.0)),
        # On site at A: leaving 200 s too early is on-site error, the leg 100 s too slow.
        ([stop("A", -900, 300, on_site=True), stop("B", 900, 2000)], 0.0,
         [true("A", -2000, -900, 500), true("B", 500, 1000, 3000)], "B", (100.0, -200.0)),
        # A phone clock 60 s behind: predicted in device time, so the skew is not travel.
        ([stop("A", 540, 2000)], -60.0, [true("A", -10, 600, 3000)], "A", (0.0, -60.0)),
        # Still waiting to leave: the wait is not travel.
        ([stop("A", 500, 2000)], 0.0, [true("A", 200, 800, 3000)], "A", (-100.0, -200.0)),
        # Two legs to go: both are travel; the stay at A in between is on-site.
        ([stop("A", 300, 1300), stop("B", 1700, 2500)], 0.0,
         [true("A", -60, 500, 1400), true("B", 1400, 1900, 3000)], "B", (-300.0, 100.0)),
    ],
)  # fmt: skip
def test_split_error(
    cascade: list[PredictedStop],
    now: float,
    truth: list[TrueJob],
    target: str,
    expected: tuple[float, float],
) -> None:
    truth_by_id = {j.job_id: j for j in truth}
    assert split_error(cascade, target, AT + now, AT, truth_by_id) == expected


def test_split_error_job_not_predicted() -> None:
    cascade = [PredictedStop("A", AT + 600, AT + 2400, False)]
    with pytest.raises(KeyError):
        split_error(cascade, "B", AT, AT, {"A": job("A", AT, AT + 600, AT + 900)})


@given(
    st.lists(
        st.tuples(
            st.floats(0, 5000), st.floats(0, 5000), st.floats(-900, 900), st.floats(-900, 900)
        ),
        min_size=1,
        max_size=6,
    ),
    st.floats(-120, 60),
)
def test_split_error_attributes_each_miss(
    legs: list[tuple[float, float, float, float]], skew: float
) -> None:
    """Legs mispredicted by ``leg_miss`` and stays by ``stay_miss``: travel gets the former."""
    cascade, truth = [], {}
    t, cursor = AT, AT + skew
    for i, (drive, stay, leg_miss, stay_miss) in enumerate(legs):
        job_id = f"J{i}"
        eta = cursor + max(0.0, drive + leg_miss)
        cursor = eta + max(0.0, stay + stay_miss)
        cascade.append(PredictedStop(job_id, eta, cursor, False))
        truth[job_id] = job(job_id, t, t + drive, t + drive + stay)
        t += drive + stay
    travel, onsite = split_error(cascade, cascade[-1].job_id, AT + skew, AT, truth)
    expected_travel = sum(max(0.0, d + m) - d for d, _, m, _ in legs)
    expected_onsite = skew + sum(max(0.0, s + m) - s for _, s, _, m in legs[:-1])
    assert travel == pytest.approx(expected_travel, abs=1e-6)
    assert onsite == pytest.approx(expected_onsite, abs=1e-6)


def test_late_risk_scores() -> None:
    jobs = [
        job("hit", 0.0, 5000.0, 6000.0, window_end=4000.0),  # late, flagged at 1000
        job("too_late", 0.0, 5000.0, 6000.0, window_end=4000.0),  # late, flagged on arrival
        job("missed", 0.0, 5000.0, 6000.0, window_end=4000.0),  # late, never flagged
        job("false", 0.0, 3000.0, 6000.0, window_end=4000.0),  # on time, flagged
        job("quiet", 0.0, 3000.0, 6000.0, window_end=4000.0),  # on time, only a clear
        job("hit2", 0.0, 9000.0, 9500.0, window_end=8000.0),  # late, flagged after window end
    ]
    alerts = [
        LateRiskAlert(1500.0, "hit", False),
        LateRiskAlert(1000.0, "hit", False),  # out of order: the earliest raise counts
        LateRiskAlert(5000.0, "too_late", False),
        LateRiskAlert(2000.0, "false", False),
        LateRiskAlert(2500.0, "false", True),
        LateRiskAlert(2500.0, "quiet", True),
        LateRiskAlert(8500.0, "hit2", False),
    ]
    assert late_risk_scores(jobs, alerts) == {
        "late_jobs": 4,
        "flagged": 3,
        "true_positives": 2,
        "precision": 0.667,
        "recall": 0.5,
        "median_lead_to_arrival_s": 2250.0,  # 4000 and 500
        "median_lead_to_window_end_s": 1250.0,  # 3000 and -500
    }


def test_late_risk_scores_nothing_to_score() -> None:
    assert late_risk_scores([], []) == {
        "late_jobs": 0,
        "flagged": 0,
        "true_positives": 0,
        "precision": None,
        "recall": None,
        "median_lead_to_arrival_s": None,
        "median_lead_to_window_end_s": None,
    }


def test_true_job_from_truth_record() -> None:
    record = {
        "kind": "job",
        "job_id": "job-001-02",
        "technician_id": "tech-001",
        "window": {"start": 100.0, "end": 5500.0},
        "leave": 4000.0,
        "arrival": 5600.5,
        "done": 7000.0,
        "departure": 7300.0,
        "planned_duration_s": 1800.0,
    }
    j = TrueJob.from_record(record)
    assert j == TrueJob("job-001-02", "tech-001", 100.0, 5500.0, 4000.0, 5600.5, 7000.0, 7300.0)
    assert j.late


def test_true_on_site_time_as_seen_at_a_moment() -> None:
    record = {
        "job_id": "j", "technician_id": "t", "window": {"start": 0.0, "end": 9000.0},
        "leave": 0.0, "arrival": 1000.0, "done": 4900.0, "departure": 4900.0,
        "work_s": 3000.0, "pauses": [[2000.0, 2600.0], [3000.0, 3300.0]],
    }  # fmt: skip
    j = TrueJob.from_record(record)
    assert (j.work_s, j.pauses) == (3000.0, ((2000.0, 2600.0), (3000.0, 3300.0)))
    assert j.onsite_to_come(500.0) == 3000.0 + 600.0 + 300.0  # before arrival: all of it
    assert j.onsite_to_come(2400.0) == 3000.0 + 200.0 + 300.0  # paused: the rest of it
    assert j.onsite_to_come(2800.0) == 3000.0 + 300.0  # between pauses
    assert j.onsite_to_come(5000.0) == 3000.0  # afterwards: the work alone


def test_interval_stats_count_the_truth_inside_and_either_side() -> None:
    intervals = [(0.0, 100.0, 50.0), (0.0, 100.0, 100.0), (10.0, 30.0, 5.0), (0.0, 40.0, 41.0)]
    assert interval_stats(intervals) == {
        "n": 4, "inside": 0.5, "below": 0.25, "above": 0.25, "median_width_s": 70.0,
    }  # fmt: skip
    assert interval_stats([])["inside"] is None


def test_late_risk_curve_trades_precision_for_recall() -> None:
    jobs = [
        job("sure", 0.0, 5000.0, 6000.0, window_end=4000.0),  # late, P up to 0.9 early on
        job("unsure", 0.0, 5000.0, 6000.0, window_end=4000.0),  # late, P 0.6 at most
        job("scare", 0.0, 3000.0, 6000.0, window_end=4000.0),  # on time, P 0.55 once
        job("calm", 0.0, 3000.0, 6000.0, window_end=4000.0),  # on time, P 0.2
        job("after", 0.0, 5000.0, 6000.0, window_end=4000.0),  # late, P high on arrival only
    ]
    probabilities = {
        "sure": [(1000.0, 0.6), (2000.0, 0.9)],
        "unsure": [(1000.0, 0.3), (4000.0, 0.6)],
        "scare": [(1500.0, 0.55), (2500.0, 0.1)],
        "calm": [(1000.0, 0.2)],
        "after": [(5000.0, 0.99)],
    }
    assert late_risk_curve(jobs, probabilities, (0.5, 0.8, 0.95)) == {
        "0.5": {"precision": 0.667, "recall": 0.667, "median_lead_to_arrival_s": 2500.0},
        "0.8": {"precision": 1.0, "recall": 0.333, "median_lead_to_arrival_s": 3000.0},
        "0.95": {"precision": None, "recall": 0.0, "median_lead_to_arrival_s": None},
    }
