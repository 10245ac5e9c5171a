"""Fleet KPIs from finished work: punctuality, SLA, ETA accuracy, km, on-site time, throughput.

Pure: records in, a JSON-ready dict out (rates are None when nothing was measurable).
What ``GET /api/v1/kpis`` answers; the store supplies the records, this module the arithmetic.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from math import hypot
from typing import Any

from eta.estimate import service_day
from eta.geo import haversine_m
from eta.stats import percentile


@dataclass(frozen=True)
class JobRecord:
    """One job as it ended up (or stands now).

    ``state``: its last state (``done``, ``failed``, ``cancelled`` or still open);
    ``arrived_at``: first arrival on site; ``finished_at``: time of ``done``/``failed``;
    ``paused_s``: pauses while on site; ``visits``: on-site visits this job took;
    ``follow_up_of``: the job this one revisits (a second visit for the same request).
    """

    job_id: str
    technician_id: str
    state: str
    window_start: float | None
    window_end: float | None
    arrived_at: float | None
    finished_at: float | None
    paused_s: float = 0.0
    visits: int = 1
    follow_up_of: str | None = None


@dataclass(frozen=True)
class EtaPrediction:
    """An ETA published at ``predicted_at`` for a job that really arrived at ``actual_arrival``."""

    job_id: str
    predicted_at: float
    predicted_eta: float
    actual_arrival: float


@dataclass(frozen=True)
class FixRecord:
    """One stored position of a technician's device: ``acc`` its horizontal accuracy (m, a
    radius holding the true position about two times in three), ``spd`` its reported speed
    (m/s), each None when the device did not say."""

    technician_id: str
    ts: float
    lat: float
    lon: float
    acc: float | None = None
    spd: float | None = None


@dataclass(frozen=True)
class KpiConfig:
    """``sla_grace_s``: a job is SLA-compliant if done by window end + grace.
    ``horizons_s``: ETA error is scored for the prediction standing this long before the
    actual arrival: the latest one published at or before that instant, however old (ETAs
    are re-published only when they move, so an old one still stands; see ``eta_error``).
    ``km_driven`` (see there): two fixes closer than ``noise_sigmas`` x their combined
    accuracy are GPS noise, not driving; ``default_acc_m`` is the accuracy of a fix without
    ``acc``; a reported speed of ``moving_mps`` or more says the vehicle moves; a step counts
    no longer than ``speed_slack`` x the reported speed allows. ``max_speed_mps``: a fix
    implying a faster jump is an outlier and skipped.
    ``tz``: the local time whose dates are the "days" of jobs per technician per day."""

    sla_grace_s: float = 0.0
    horizons_s: tuple[float, ...] = (1800.0, 600.0)
    noise_sigmas: float = 2.0
    default_acc_m: float = 9.0
    moving_mps: float = 1.0
    speed_slack: float = 1.25
    max_speed_mps: float = 60.0
    tz: tzinfo = UTC


DEFAULT_KPI_CONFIG = KpiConfig()


def compute_kpis(
    jobs: Iterable[JobRecord],
    predictions: Iterable[EtaPrediction] = (),
    fixes: Iterable[FixRecord] = (),
    cfg: KpiConfig = DEFAULT_KPI_CONFIG,
    *,
    since: float | None = None,
    until: float | None = None,
    technician_id: str | None = None,
    now: float | None = None,
    km_unknown: Iterable[str] = (),
) -> dict[str, Any]:
    """All KPIs over jobs, predictions and fixes within [since, until) and one technician.

    A job belongs to the period by its arrival (else its finish, else its window start);
    a prediction by its job; a fix by its time. ``now``: SLA compliance leaves out jobs
    still open within their window (see ``sla_compliance``). ``km_unknown``: technicians
    whose fixes do not cover the period (see ``km_driven``).
    """
    picked = [j for j in jobs if job_in_period(j, since, until, technician_id)]
    ids = {j.job_id for j in picked}
    return {
        "jobs": len(picked),
        "punctuality": punctuality(picked),
        "sla": sla_compliance(picked, cfg.sla_grace_s, now),
        "eta_error": eta_error([p for p in predictions if p.job_id in ids], cfg),
        "km_driven": km_driven(
            [
                f
                for f in fixes
                if (technician_id is None or f.technician_id == technician_id)
                and (since is None or f.ts >= since)
                and (until is None or f.ts < until)
            ],
            cfg,
            unknown=[t for t in km_unknown if technician_id is None or t == technician_id],
        ),
        "onsite": onsite_time(picked),
        "jobs_per_technician_day": jobs_per_technician_day(picked, cfg.tz),
        "first_visit_completion": first_visit_completion(picked),
    }


def job_in_period(
    j: JobRecord, since: float | None, until: float | None, tech: str | None = None
) -> bool:
    """Whether ``compute_kpis`` counts the job in [since, until) (and of ``tech``)."""
    if tech is not None and j.technician_id != tech:
        return False
    ref = next((t for t in (j.arrived_at, j.finished_at, j.window_start) if t is not None), None)
    if ref is None:
        return since is None and until is None
    return (since is None or ref >= since) and (until is None or ref < until)


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def punctuality(jobs: Sequence[JobRecord]) -> dict[str, Any]:
    """Arrivals within their window, among arrived jobs that had a window."""
    early = late = on_time = 0
    for j in jobs:
        if j.arrived_at is None or (j.window_start is None and j.window_end is None):
            continue
        if j.window_start is not None and j.arrived_at < j.window_start:
            early += 1
        elif j.window_end is not None and j.arrived_at > j.window_end:
            late += 1
        else:
            on_time += 1
    n = early + late + on_time
    return {
        "arrivals": n,
        "on_time": on_time,
        "early": early,
        "late": late,
        "rate": _rate(on_time, n),
    }


def sla_compliance(
    jobs: Sequence[JobRecord], grace_s: float = 0.0, now: float | None = None
) -> dict[str, Any]:
    """Jobs done by window end + grace, among non-cancelled jobs with a window end that are
    due: finished (done or failed), or still open with their deadline passed by ``now``. A
    job still open within its window has not missed anything yet (None: every job is due,
    as in a period that is over)."""
    due = met = 0
    for j in jobs:
        if j.state == "cancelled" or j.window_end is None:
            continue
        if j.state not in ("done", "failed") and now is not None and now <= j.window_end + grace_s:
            continue
        due += 1
        finished = j.finished_at
        if j.state == "done" and finished is not None and finished <= j.window_end + grace_s:
            met += 1
    return {"due": due, "met": met, "rate": _rate(met, due)}


def eta_error(
    predictions: Sequence[EtaPrediction], cfg: KpiConfig = DEFAULT_KPI_CONFIG
) -> dict[str, Any]:
    """Absolute ETA error of the prediction standing at each horizon before arrival.

    Per job and horizon H, the prediction standing at arrival - H is scored: the latest one
    published at or before that instant, as the benchmark (``bench/cases/eta.py``) scores
    the gateway's last published ETA. It may be much older than H: the gateway re-publishes
    an ETA only when it moves by 60 s or more, or the job's state changes, so until then
    the old one is what dispatcher and customer saw. A job with no prediction published by
    then is not scored. ``bias_s`` is the mean signed error (positive = predicted too late).
    """
    by_job: dict[str, list[EtaPrediction]] = defaultdict(list)
    for p in predictions:
        by_job[p.job_id].append(p)
    out: dict[str, Any] = {}
    for horizon in cfg.horizons_s:
        errors: list[float] = []
        for preds in by_job.values():
            best: EtaPrediction | None = None
            for p in preds:
                if p.actual_arrival - p.predicted_at >= horizon and (
                    best is None or p.predicted_at > best.predicted_at
                ):
                    best = p
            if best is not None:
                errors.append(best.predicted_eta - best.actual_arrival)
        out[f"{horizon / 60:g}min"] = _error_stats(errors)
    return out


def _error_stats(errors: list[float]) -> dict[str, Any]:
    if not errors:
        return {"count": 0, "mae_s": None, "p50_s": None, "p90_s": None, "bias_s": None}
    absolute = sorted(abs(e) for e in errors)
    return {
        "count": len(errors),
        "mae_s": sum(absolute) / len(absolute),
        "p50_s": percentile(absolute, 50.0),
        "p90_s": percentile(absolute, 90.0),
        "bias_s": sum(errors) / len(errors),
    }


def km_driven(
    fixes: Sequence[FixRecord], cfg: KpiConfig = DEFAULT_KPI_CONFIG, unknown: Iterable[str] = ()
) -> dict[str, Any]:
    """Distance along each technician's fixes, in km, not counting GPS noise or glitches.

    ``unknown``: technicians whose fixes are known not to cover the period (their stored
    history was trimmed, say): their distance is None rather than what the fixes left
    add up to, and so is the total; ``incomplete`` lists them.

    A step from the last counted point (the anchor) to a fix counts when the fixes say the
    vehicle moved: either the two are further apart than their noise allows
    (``noise_sigmas`` x the combined ``acc`` of both, ``default_acc_m`` for a fix without
    one), or the anchor or the fix reports a speed of at least ``moving_mps``. A parked
    device's wander is neither, so it adds nothing. When both report a speed, a step counts
    no longer than the fastest reported speed allows in its time (x ``speed_slack``) --
    noise zig-zagging a drive adds nothing either -- or, if longer, than the part of it
    beyond the noise (a move with no fix on the way). A fix is an impossible jump when it
    is too fast from the previous *plausible* fix (not the anchor: after a long stop that
    would admit any glitch), and is skipped.
    """
    tracks: dict[str, list[FixRecord]] = defaultdict(list)
    for f in fixes:
        tracks[f.technician_id].append(f)
    by_tech: dict[str, float] = {}
    for tech, track in sorted(tracks.items()):
        track.sort(key=lambda f: f.ts)
        anchor = prev = track[0]
        metres = 0.0
        for f in track[1:]:
            dt = f.ts - prev.ts
            if dt <= 0 or haversine_m(prev.lat, prev.lon, f.lat, f.lon) / dt > cfg.max_speed_mps:
                continue
            prev = f
            step = _step_m(anchor, f, cfg)
            if step > 0.0:
                metres += step
                anchor = f
        by_tech[tech] = metres / 1000.0
    missing = sorted(set(unknown))
    out: dict[str, float | None] = {**by_tech, **dict.fromkeys(missing)}
    total = None if missing else sum(by_tech.values())
    return {"total": total, "by_technician": dict(sorted(out.items())), "incomplete": missing}


def _step_m(a: FixRecord, b: FixRecord, cfg: KpiConfig) -> float:
    """The metres driven from ``a`` to ``b`` that ``km_driven`` counts (0: none)."""
    d = haversine_m(a.lat, a.lon, b.lat, b.lon)
    acc_a = cfg.default_acc_m if a.acc is None else a.acc
    acc_b = cfg.default_acc_m if b.acc is None else b.acc
    noise = cfg.noise_sigmas * hypot(acc_a, acc_b)
    if a.spd is None or b.spd is None:
        moving = (a.spd or 0.0) >= cfg.moving_mps or (b.spd or 0.0) >= cfg.moving_mps
        return d if d > noise or moving else 0.0
    speed_bound = max(a.spd, b.spd) * (b.ts - a.ts) * cfg.speed_slack
    if max(a.spd, b.spd) >= cfg.moving_mps:
        return min(d, max(speed_bound, d - noise))
    return max(0.0, d - noise)


def onsite_time(jobs: Sequence[JobRecord]) -> dict[str, Any]:
    """Seconds worked on site (arrival to finish minus pauses) of finished jobs."""
    by_tech: dict[str, float] = defaultdict(float)
    n = 0
    for j in jobs:
        if j.arrived_at is None or j.finished_at is None:
            continue
        by_tech[j.technician_id] += max(0.0, j.finished_at - j.arrived_at - j.paused_s)
        n += 1
    total = sum(by_tech.values())
    return {
        "total_s": total,
        "jobs": n,
        "mean_per_job_s": total / n if n else None,
        "by_technician": dict(sorted(by_tech.items())),
    }


def jobs_per_technician_day(jobs: Sequence[JobRecord], tz: tzinfo = UTC) -> dict[str, Any]:
    """Done jobs per technician per working day (a local day with any arrival or finish)."""
    days: dict[str, set[int]] = defaultdict(set)
    done: dict[str, int] = defaultdict(int)
    for j in jobs:
        for t in (j.arrived_at, j.finished_at):
            if t is not None:
                days[j.technician_id].add(service_day(t, tz))
        if j.state == "done":
            done[j.technician_id] += 1
    by_tech = {t: done[t] / len(d) for t, d in sorted(days.items())}
    n_days = sum(len(d) for d in days.values())
    return {
        "mean": sum(done.values()) / n_days if n_days else None,
        "technician_days": n_days,
        "by_technician": by_tech,
    }


def first_visit_completion(jobs: Sequence[JobRecord]) -> dict[str, Any]:
    """Share of done requests finished in one visit with no follow-up job booked after them."""
    revisited = {j.follow_up_of for j in jobs if j.follow_up_of is not None}
    done = first = 0
    for j in jobs:
        if j.state != "done" or j.follow_up_of is not None:
            continue
        done += 1
        if j.visits == 1 and j.job_id not in revisited:
            first += 1
    return {"done": done, "first_visit": first, "rate": _rate(first, done)}
