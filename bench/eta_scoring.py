"""Scoring helpers of the ``eta`` benchmark: ETA errors, their split, late-risk flags.

Pure: true job outcomes (from the simulator's truth records) and predictions in, numbers
out. Times are epoch seconds. An error is ``predicted - true``: positive = predicted too late.

The split of an error into travel and the rest (``split_error``) walks the predicted
cascade from the prediction instant to the scored job: every leg still to drive adds
"predicted leg time - true leg time" to the travel part; whatever is left of the error
(on-site work, waiting before leaving or for a window, a phone's clock skew, a status the
gateway has not heard yet) is the on-site part.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from eta.stats import percentile


@dataclass(frozen=True)
class TrueJob:
    """What truly happened at one job: a ``job`` record of the truth file.

    ``leave``: the technician set off for it; ``arrival``: reached it; ``done``: work ended;
    ``departure``: left it (the next job's ``leave``; ``done`` for the last job);
    ``work_s``: on-site work time, pauses excluded; ``pauses``: (start, end) of each.
    """

    job_id: str
    technician_id: str
    window_start: float
    window_end: float
    leave: float
    arrival: float
    done: float
    departure: float
    work_s: float = 0.0
    pauses: tuple[tuple[float, float], ...] = ()

    @property
    def late(self) -> bool:
        return self.arrival > self.window_end

    def onsite_to_come(self, at: float) -> float:
        """The job's true on-site time as a plan seen at ``at``: all its work, and the
        pause time not yet past (the estimator takes work done so far off the plan)."""
        return self.work_s + sum(max(0.0, b - max(a, at)) for a, b in self.pauses)

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> TrueJob:
        return cls(
            job_id=str(rec["job_id"]),
            technician_id=str(rec["technician_id"]),
            window_start=float(rec["window"]["start"]),
            window_end=float(rec["window"]["end"]),
            leave=float(rec["leave"]),
            arrival=float(rec["arrival"]),
            done=float(rec["done"]),
            departure=float(rec["departure"]),
            work_s=float(rec.get("work_s", 0.0)),
            pauses=tuple((float(a), float(b)) for a, b in rec.get("pauses", ())),
        )


@dataclass(frozen=True)
class PredictedStop:
    """One stop of a predicted cascade, in tour order: arrival, departure, already there."""

    job_id: str
    eta: float
    departure: float
    on_site: bool


def error_stats(errors: Sequence[float]) -> dict[str, Any]:
    """Count, mean absolute error, p90 of the absolute error and mean signed error (s)."""
    if not errors:
        return {"n": 0, "mae_s": None, "p90_abs_s": None, "bias_s": None}
    absolute = sorted(abs(e) for e in errors)
    return {
        "n": len(errors),
        "mae_s": round(sum(absolute) / len(absolute), 1),
        "p90_abs_s": round(percentile(absolute, 90.0), 1),
        "bias_s": round(sum(errors) / len(errors), 1),
    }


def split_stats(parts: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Mean absolute and mean signed travel and on-site parts of ``split_error`` results."""
    if not parts:
        return dict.fromkeys(("travel_mae_s", "travel_bias_s", "onsite_mae_s", "onsite_bias_s"))
    n = len(parts)
    return {
        "travel_mae_s": round(sum(abs(t) for t, _ in parts) / n, 1),
        "travel_bias_s": round(sum(t for t, _ in parts) / n, 1),
        "onsite_mae_s": round(sum(abs(o) for _, o in parts) / n, 1),
        "onsite_bias_s": round(sum(o for _, o in parts) / n, 1),
    }


def interval_stats(intervals: Sequence[tuple[float, float, float]]) -> dict[str, Any]:
    """How often the truth fell inside the published p10..p90 (0.8 if the spread is
    right), below it (arrived earlier) and above it, and the median width (s)."""
    if not intervals:
        return {"n": 0, "inside": None, "below": None, "above": None, "median_width_s": None}
    n = len(intervals)
    below = sum(t < lo for lo, _, t in intervals)
    above = sum(t > hi for _, hi, t in intervals)
    return {
        "n": n,
        "inside": round((n - below - above) / n, 3),
        "below": round(below / n, 3),
        "above": round(above / n, 3),
        "median_width_s": round(median(hi - lo for lo, hi, _ in intervals), 1),
    }


def improvement(mae: float | None, baseline_mae: float | None) -> float | None:
    """How much lower ``mae`` is than the baseline's, as a fraction (0.3 = 30 % lower)."""
    if mae is None or not baseline_mae:
        return None
    return round(1.0 - mae / baseline_mae, 3)


def goal_status(mae: float | None, baseline_mae: float | None, target: float) -> dict[str, Any]:
    """Whether ``mae`` is at least ``target`` below the baseline's, and the MAE that would be."""
    gain = improvement(mae, baseline_mae)
    return {
        "improvement": gain,
        "target": target,
        "met": gain is not None and gain >= target,
        "mae_needed_s": None if baseline_mae is None else round(baseline_mae * (1 - target), 1),
        "mae_s": mae,
    }


def split_error(
    cascade: Sequence[PredictedStop],
    job_id: str,
    now: float,
    at: float,
    truth: Mapping[str, TrueJob],
) -> tuple[float, float]:
    """(travel part, on-site part) of the error of ``job_id``'s predicted arrival.

    ``cascade``: the remaining stops as predicted at device time ``now`` (true time ``at``),
    in tour order, up to or beyond ``job_id``. A leg is predicted to start at the previous
    stop's departure (the first one at ``now``) and truly took from ``leave`` -- or from
    ``at`` if the technician had already left -- to ``arrival``. Raises KeyError if
    ``job_id`` is not in the cascade or a stop before it has no truth.
    """
    travel = 0.0
    leave_pred = now
    for stop in cascade:
        true = truth[stop.job_id]
        if not stop.on_site:
            predicted_leg = stop.eta - leave_pred
            true_leg = true.arrival - max(true.leave, at)
            travel += predicted_leg - true_leg
        if stop.job_id == job_id:
            total = stop.eta - true.arrival
            return travel, total - travel
        leave_pred = stop.departure
    raise KeyError(job_id)


@dataclass(frozen=True)
class LateRiskAlert:
    """A ``late_risk`` alert event as published: when, for which job, raised or cleared."""

    published_at: float
    job_id: str
    cleared: bool


def late_risk_scores(jobs: Iterable[TrueJob], alerts: Iterable[LateRiskAlert]) -> dict[str, Any]:
    """Precision and recall of ``late_risk`` over ``jobs``, and how early lateness was seen.

    A job is truly late if it arrived after its window end; it is flagged if a ``late_risk``
    was raised for it before it arrived. Lead times of the correctly flagged jobs are
    measured from the first such raise to the arrival and to the window end (negative: the
    window had already closed when the flag came).
    """
    first: dict[str, float] = {}
    for a in alerts:
        if not a.cleared and (a.job_id not in first or a.published_at < first[a.job_id]):
            first[a.job_id] = a.published_at
    tp = fp = fn = 0
    to_arrival: list[float] = []
    to_window_end: list[float] = []
    for job in jobs:
        raised = first.get(job.job_id)
        flagged = raised is not None and raised < job.arrival
        if flagged and job.late:
            tp += 1
            assert raised is not None
            to_arrival.append(job.arrival - raised)
            to_window_end.append(job.window_end - raised)
        elif flagged:
            fp += 1
        elif job.late:
            fn += 1
    return {
        "late_jobs": tp + fn,
        "flagged": tp + fp,
        "true_positives": tp,
        "precision": round(tp / (tp + fp), 3) if tp + fp else None,
        "recall": round(tp / (tp + fn), 3) if tp + fn else None,
        "median_lead_to_arrival_s": round(median(to_arrival), 1) if to_arrival else None,
        "median_lead_to_window_end_s": round(median(to_window_end), 1) if to_window_end else None,
    }


def late_risk_curve(
    jobs: Iterable[TrueJob],
    probabilities: Mapping[str, Sequence[tuple[float, float]]],
    thresholds: Sequence[float],
) -> dict[str, dict[str, Any]]:
    """Precision and recall of the rule "late once P(late) >= threshold", for each threshold,
    from every (published at, P(late)) of each job's published ETAs before it arrived: what the
    ``late_probability`` of ``late_risk`` (``eta.delay``) would trade at another setting."""
    jobs = list(jobs)
    out: dict[str, dict[str, Any]] = {}
    for threshold in thresholds:
        tp = fp = fn = 0
        leads: list[float] = []
        for job in jobs:
            raised = next(
                (
                    at
                    for at, p in probabilities.get(job.job_id, ())
                    if at < job.arrival and p >= threshold
                ),
                None,
            )
            if raised is not None and job.late:
                tp += 1
                leads.append(job.arrival - raised)
            elif raised is not None:
                fp += 1
            elif job.late:
                fn += 1
        out[f"{threshold:g}"] = {
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None,
            "median_lead_to_arrival_s": round(median(leads), 1) if leads else None,
        }
    return out
