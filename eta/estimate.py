"""ETA of every remaining job of a technician's tour, with spread, lateness and slack.

The cascade, stop by stop in tour order (done, cancelled and failed stops are skipped):

* a stop being worked (``on_site``, ``paused``, ``resumed``): its ETA is ``arrived_at``
  (``now`` if unknown); it is left after the remaining on-site time, counted from ``now``.
  A paused job resumes after the rest of its pause: with a learned ``pauses`` model (a
  ``DurationModel`` of pause lengths against ``EstimateConfig.pause_ref_s``), the median
  rest of a pause that has lasted this long; without one, now (the most optimistic
  reading). Every later fix moves the estimate on, and the overrun/late-risk alerts
  catch a long pause.
* any other stop: arrival = previous departure + travel time, the first leg starting at
  the technician's position; departure = max(arrival, window start) + planned duration.
  Planned durations are the technician's: times ``pace``, how their on-site times compare
  with the fleet's (``eta.pace.TechnicianPace``).
* before the technician has set off (``set_off``, learned by ``eta.daystart``), the first
  leg leaves at the predicted start rather than now.
* tours span days (a dispatcher books tomorrow's before today's is over): a stop of a later
  service day (``TourStop.day``, after ``today`` and after the stops before it) is not
  driven to the evening before. The technician leaves for it so as to arrive when its
  window opens, or at once if the day before runs later than that.

Origin of the first leg when ``position`` is None: the site of the last visited (done or
failed) stop before the first remaining one -- where the technician was last known to be.
With neither, no travel can be estimated: the ETAs computed so far (on-site stops only) are
returned and the rest are left out rather than guessed.

Uncertainty: variances add along the tour (travel legs from the speed model, on-site
durations from ``EstimateConfig.onsite_cv`` or, better, a learned ``DurationModel``).
Waiting for a window to open absorbs part of the spread (the variance of
max(arrival, window start) for a normal arrival). The spread
of each ETA is fitted as a log-normal over the time remaining until it (skewed: a job can
be much later than predicted, never before now); ``late_probability`` comes from the same
fit.

``delay_s`` is signed, like GTFS-realtime's delay: ``eta - window_end``; positive = predicted
lateness, negative = slack before the window closes; 0.0 when the job has no window end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from math import sqrt

from eta.durations import DurationModel
from eta.speeds import SpeedModel
from eta.stats import lognormal_summary, var_after_wait

STATES = frozenset(
    {"planned", "en_route", "on_site", "paused", "resumed", "done", "cancelled", "failed"}
)
ON_SITE_STATES = frozenset({"on_site", "paused", "resumed"})
CLOSED_STATES = frozenset({"done", "cancelled", "failed"})
VISITED_STATES = frozenset({"done", "failed"})


def service_day(ts: float, tz: tzinfo) -> int:
    """The local day (proleptic Gregorian ordinal) of an instant: ``TourStop.day``'s scale."""
    return datetime.fromtimestamp(ts, tz).toordinal()


@dataclass(frozen=True)
class TourStop:
    """One job of a tour as the estimator needs it (times are epoch seconds).

    ``paused_s``: pauses already ended; ``paused_since``: start of the current pause when
    ``state == "paused"`` (its time so far is also not work).
    """

    job_id: str
    lat: float
    lon: float
    window_start: float | None
    window_end: float | None
    planned_duration_s: float
    state: str
    arrived_at: float | None = None
    paused_s: float = 0.0
    paused_since: float | None = None
    # Local day number of the service day the stop belongs to (None: any day).
    day: int | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown job state {self.state!r}")
        if self.planned_duration_s < 0:
            raise ValueError("planned_duration_s must be >= 0")


@dataclass(frozen=True)
class JobEta:
    """Prediction for one remaining job.

    ``eta``: arrival (``arrived_at`` once on site); ``eta_p10``/``eta_p90``: its spread;
    ``departure``: predicted end of the job; ``delay_s``: signed, see the module docstring;
    ``late_probability``: P(arrival > window end), 0 without a window end;
    ``remaining_onsite_s``: on-site time still to come (the planned duration before arrival).
    """

    job_id: str
    eta: float
    eta_p10: float
    eta_p90: float
    departure: float
    delay_s: float
    late_probability: float
    remaining_onsite_s: float


@dataclass(frozen=True)
class EstimateConfig:
    """``onsite_cv``: spread of a job's duration relative to it. A job is never predicted to
    end in less than ``max(min_remaining_s, min_remaining_frac x planned)`` (capped at the
    planned duration): the end of the plan is not the end of the work, and the floor keeps an
    overrunning job from pulling the next ETAs into the past.

    ``max_early_s``: technicians time their departure so as not to reach a site more than
    this before its window opens (they leave later rather than wait outside; 15 min by
    default: a customer booked for 11:00 is not told at 10:00 that the technician is
    arriving). A job already ``en_route`` is not affected. None is the plain rule: leave
    at once, wait on site. It does not move departures, so later ETAs are the same either
    way; on the simulated fleet, whose windows open before the planned arrival, it never
    binds.

    With a ``DurationModel`` passed to ``estimate_tour``, the spread of on-site times comes
    from the learned ratios of worked to planned time instead of ``onsite_cv`` -- for a job
    under way, conditional on how long it has run, so a job at the end of its plan carries
    the risk of being one of the overruns. The times themselves stay "planned" and "plan minus
    elapsed" unless asked: ``learned_durations`` gives a job not started its planned time x
    the learned median ratio, ``learned_remaining`` a job under way its conditional median
    rest (medians: an ETA is judged by its absolute error). The second is a trade-off, not a
    plain gain: it foresees an overrun once a job runs past its plan, which is right on
    average, but it is the jobs about to end that are reached soon after; on the simulated
    fleet it cut the error 30 min ahead of an arrival by ~6 % and raised it 10 min ahead by
    ~30 % (``bench eta`` reports both ways).

    ``pause_ref_s``: the length a pause model's ratios are taken against (a typical pause;
    it only scales the model's histogram, see ``eta.durations.PAUSE_PRIOR``)."""

    onsite_cv: float = 0.25
    pause_ref_s: float = 600.0
    min_remaining_s: float = 60.0
    min_remaining_frac: float = 0.1
    max_early_s: float | None = 900.0
    learned_durations: bool = False
    learned_remaining: bool = False


DEFAULT_CONFIG = EstimateConfig()


def onsite_elapsed_s(stop: TourStop, now: float) -> float:
    """Seconds of work so far on a stop: time since arrival minus pauses (0 if not arrived)."""
    if stop.arrived_at is None:
        return 0.0
    paused = stop.paused_s
    if stop.state == "paused" and stop.paused_since is not None:
        paused += max(0.0, now - stop.paused_since)
    return max(0.0, now - stop.arrived_at - paused)


def remaining_onsite_s(
    stop: TourStop,
    now: float,
    cfg: EstimateConfig = DEFAULT_CONFIG,
    durations: DurationModel | None = None,
    pauses: DurationModel | None = None,
) -> float:
    """Predicted on-site time left on a stop being worked (a pause's rest included)."""
    return _remaining(stop, now, cfg, durations, pauses)[0]


def _remaining(
    stop: TourStop,
    now: float,
    cfg: EstimateConfig,
    durations: DurationModel | None,
    pauses: DurationModel | None = None,
    pace: float = 1.0,
) -> tuple[float, float]:
    planned = stop.planned_duration_s * pace
    floor = min(planned, max(cfg.min_remaining_s, cfg.min_remaining_frac * planned))
    elapsed = onsite_elapsed_s(stop, now)
    rest = max(planned - elapsed, floor)
    learned = durations.remaining(planned, elapsed) if durations is not None else None
    if learned is None:
        work, sd = rest, cfg.onsite_cv * rest
    else:
        median, sd = learned
        work = max(median, floor) if cfg.learned_remaining else rest
    pause, pause_sd = _pause_rest(stop, now, cfg, pauses)
    return work + pause, sqrt(sd * sd + pause_sd * pause_sd)


def _pause_rest(
    stop: TourStop, now: float, cfg: EstimateConfig, pauses: DurationModel | None
) -> tuple[float, float]:
    """(median, sd) of the rest of the current pause; (0, 0) when not paused or unknown
    (and when the pause has outlasted every one learned: it may end any moment)."""
    if pauses is None or stop.state != "paused" or stop.paused_since is None:
        return 0.0, 0.0
    learned = pauses.remaining(cfg.pause_ref_s, max(0.0, now - stop.paused_since))
    return learned if learned is not None else (0.0, 0.0)


def _duration(
    stop: TourStop, cfg: EstimateConfig, durations: DurationModel | None, pace: float = 1.0
) -> tuple[float, float]:
    planned = stop.planned_duration_s * pace
    if durations is None:
        return planned, cfg.onsite_cv * planned
    _, sd = durations.expected(planned)
    return (planned * durations.median_ratio() if cfg.learned_durations else planned), sd


def _start_origin(
    position: tuple[float, float] | None, stops: Sequence[TourStop]
) -> tuple[float, float] | None:
    if position is not None:
        return position
    origin = None
    for stop in stops:
        if stop.state in VISITED_STATES:
            origin = (stop.lat, stop.lon)
        elif stop.state not in CLOSED_STATES:
            break
    return origin


def _first_open_planned(stops: Sequence[TourStop]) -> bool:
    first = next((s for s in stops if s.state not in CLOSED_STATES), None)
    return first is not None and first.state == "planned"


def estimate_tour(
    now: float,
    position: tuple[float, float] | None,
    stops: Sequence[TourStop],
    model: SpeedModel,
    cfg: EstimateConfig = DEFAULT_CONFIG,
    durations: DurationModel | None = None,
    pauses: DurationModel | None = None,
    band: tuple[float, float] = (1.0, 1.0),
    today: int | None = None,
    pace: float = 1.0,
    set_off: tuple[float, float] | None = None,
) -> list[JobEta]:
    """ETAs of the remaining stops, in tour order (see the module docstring for the rules).

    ``band``: factors on the distances from each ETA to its p10 and to its p90
    (``eta.spread.BandScale``, learned from how often arrivals fell outside the bands).
    ``today``: the service day of ``now``, on the same scale as ``TourStop.day``.
    ``pace``: the technician's factor on planned on-site times (``eta.pace``).
    ``set_off``: (time, sd) at which a technician who has not set off yet will
    (``eta.daystart``); it applies when the first remaining stop is still ``planned``."""
    origin = _start_origin(position, stops)
    cursor = now  # when the technician is free to leave for the next stop
    var = 0.0  # variance of ``cursor``
    if set_off is not None and _first_open_planned(stops):
        cursor, var = max(now, set_off[0]), set_off[1] * set_off[1]
    day = today  # the service day the cascade has reached
    out: list[JobEta] = []
    for stop in stops:
        if stop.state in CLOSED_STATES:
            continue
        new_day = stop.day is not None and day is not None and stop.day > day
        if stop.day is not None and (day is None or stop.day > day):
            day = stop.day
        if stop.state in ON_SITE_STATES:
            eta = stop.arrived_at if stop.arrived_at is not None else now
            remaining, sd_work = _remaining(stop, now, cfg, durations, pauses, pace)
            departure = cursor + remaining
            sd_arrival = 0.0
            arrived = True
        else:
            if origin is None:
                break
            travel, sd_travel, _ = model.travel_mean_sd(
                origin[0], origin[1], stop.lat, stop.lon, cursor
            )
            leave = cursor
            ws = stop.window_start
            early = 0.0 if new_day else cfg.max_early_s
            if early is not None and ws is not None and stop.state == "planned":
                latest = ws - early - travel
                var = var_after_wait(cursor, sqrt(var), latest)
                leave = max(cursor, latest)
            eta = leave + travel
            var += sd_travel * sd_travel
            sd_arrival = sqrt(var)
            remaining, sd_work = _duration(stop, cfg, durations, pace)
            start = eta
            if stop.window_start is not None and stop.window_start > eta:
                start = stop.window_start
            if stop.window_start is not None:
                var = var_after_wait(eta, sd_arrival, stop.window_start)
            departure = start + remaining
            arrived = False
        var += sd_work * sd_work
        out.append(_job_eta(now, stop, eta, sd_arrival, departure, remaining, arrived, band))
        origin = (stop.lat, stop.lon)
        cursor = departure
    return out


def _job_eta(
    now: float,
    stop: TourStop,
    eta: float,
    sd: float,
    departure: float,
    remaining: float,
    arrived: bool,
    band: tuple[float, float] = (1.0, 1.0),
) -> JobEta:
    we = stop.window_end
    if arrived:
        # Already there: the arrival is a fact, and so is its lateness.
        p10 = p90 = eta
        p_late = 0.0 if we is None or eta <= we else 1.0
    else:
        lo, hi, p_late = lognormal_summary(eta - now, sd, (we if we is not None else eta) - now)
        # Float rounding of now + x must not put the mean outside its own spread.
        p10, p90 = min(now + lo, eta), max(now + hi, eta)
        p10, p90 = eta - band[0] * (eta - p10), eta + band[1] * (p90 - eta)
        if we is None:
            p_late = 0.0
    return JobEta(
        job_id=stop.job_id,
        eta=eta,
        eta_p10=p10,
        eta_p90=p90,
        departure=departure,
        delay_s=eta - we if we is not None else 0.0,
        late_probability=p_late,
        remaining_onsite_s=remaining,
    )
