"""Delay rules: alerts for the dispatcher, re-optimisation triggers, customer notifications.

All three are pure functions of (time, ETAs, tour, previous state) returning a new state and
the events to publish; states are frozen and replaced, never mutated, so the gateway can
keep one per technician and tests are tables of inputs and expected events.

Alerts (``evaluate``), each raised once per (alert, job) condition and followed by one
``cleared=True`` event when the condition stops holding (or its job leaves the tour):

* ``late_risk`` -- a job not yet reached is predicted within ``late_margin_s`` of (or past) its
  window end and P(late) >= ``late_probability``; it clears when the prediction drops out of
  the margin or the probability falls below the threshold minus ``late_clear_hysteresis``
  (so a probability hovering at the threshold does not flap), or when the job is reached.
  Severity ``critical`` if P(late) >= ``critical_probability``, else ``warning``.
* ``overrun`` -- on-site work time beyond ``planned x overrun_factor``; ``warning``.
* ``stale_device`` -- the technician has a job ``en_route``/``on_site``/``resumed`` and no
  fix for ``stale_after_s``; ``critical`` (the dispatcher is blind). Without any fix time
  the rule cannot tell how long the device has been silent and stays quiet: the gateway
  passes the time the job went active when no fix has arrived since.
* ``long_stop`` -- en route and stopped (within ``long_stop_radius_m`` of one point, see
  ``track_stop``) for ``long_stop_after_s`` away from every site, as far as the fixes show
  (up to the last one: silence is ``stale_device``'s); ``info`` (a fuel stop or a parts
  counter is legitimate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from eta.estimate import CLOSED_STATES, ON_SITE_STATES, JobEta, TourStop, onsite_elapsed_s
from eta.geo import haversine_m


@dataclass(frozen=True)
class DelayConfig:
    """Thresholds of the delay rules (seconds, metres, probabilities).

    ``late_margin_s``: a job is at risk when its ETA is less than this before its window end.
    ``late_probability``: P(arrival > window end) needed to raise ``late_risk`` and to tell the
    customer ``delayed``. ``late_clear_hysteresis``: how far below it the probability must fall
    to clear. ``critical_probability``: a late risk this likely is ``critical``.
    ``overrun_factor``: on-site work beyond planned x factor is an overrun.
    ``stale_after_s``: silence of an active technician's device before ``stale_device``.
    ``long_stop_after_s`` / ``long_stop_radius_m``: how long and within what radius a device
    en route must stay to be stopped; the radius also defines "near a site".
    ``reopt_cooldown_s``: quiet time per technician after a re-optimisation request, broken
    only by a predicted lateness grown by ``reopt_min_gain_s`` -- or by a cancellation or an
    urgent job, which wait only ``reopt_urgent_cooldown_s`` (the plan is wrong now, but a burst
    of cancellations should still arrive as one request).
    ``arriving_soon_s`` / ``arriving_soon_m``: ETA or distance at which the customer is told
    the technician is arriving.
    """

    late_margin_s: float = 300.0
    late_probability: float = 0.5
    late_clear_hysteresis: float = 0.1
    critical_probability: float = 0.9
    overrun_factor: float = 1.2
    stale_after_s: float = 600.0
    long_stop_after_s: float = 900.0
    long_stop_radius_m: float = 50.0
    reopt_cooldown_s: float = 900.0
    reopt_min_gain_s: float = 300.0
    reopt_urgent_cooldown_s: float = 60.0
    arriving_soon_s: float = 600.0
    arriving_soon_m: float = 1000.0


DEFAULT_DELAY_CONFIG = DelayConfig()

Detail = Mapping[str, float | str]
AlertKey = tuple[str, str | None]
_EMPTY: Mapping[AlertKey, Alert] = MappingProxyType({})


@dataclass(frozen=True)
class Alert:
    """A dispatcher alert; ``cleared=True`` marks the end of a condition raised earlier."""

    alert: str
    technician_id: str
    job_id: str | None
    severity: str
    ts: float
    cleared: bool
    detail: Detail


@dataclass(frozen=True)
class AlertState:
    """Alerts raised and not yet cleared for one technician, by (alert, job_id)."""

    active: Mapping[AlertKey, Alert] = field(default_factory=lambda: _EMPTY)


def evaluate(
    now: float,
    technician_id: str,
    etas: Sequence[JobEta],
    stops: Sequence[TourStop],
    last_fix_ts: float | None,
    stopped_since: float | None,
    near_site: bool,
    state: AlertState,
    cfg: DelayConfig = DEFAULT_DELAY_CONFIG,
) -> tuple[AlertState, list[Alert]]:
    """Alerts raised and cleared at ``now``; clears first, then raises, each in tour order."""
    holding: dict[AlertKey, Alert] = {}
    _late_risks(now, technician_id, etas, stops, state, cfg, holding)
    _overruns(now, technician_id, stops, cfg, holding)
    _device_rules(now, technician_id, stops, last_fix_ts, stopped_since, near_site, cfg, holding)
    events = [
        replace(a, ts=now, cleared=True) for key, a in state.active.items() if key not in holding
    ]
    events += [a for key, a in holding.items() if key not in state.active]
    if not events:
        return state, events
    active = {key: state.active.get(key, a) for key, a in holding.items()}
    return AlertState(MappingProxyType(active)), events


def _late_risks(
    now: float,
    technician_id: str,
    etas: Sequence[JobEta],
    stops: Sequence[TourStop],
    state: AlertState,
    cfg: DelayConfig,
    out: dict[AlertKey, Alert],
) -> None:
    windows = {s.job_id: s.window_end for s in stops if s.state in ("planned", "en_route")}
    for e in etas:
        we = windows.get(e.job_id)
        if we is None or e.eta + cfg.late_margin_s <= we:
            continue
        key = ("late_risk", e.job_id)
        threshold = cfg.late_probability
        if key in state.active:
            threshold -= cfg.late_clear_hysteresis
        if e.late_probability < threshold:
            continue
        severity = "critical" if e.late_probability >= cfg.critical_probability else "warning"
        detail = {
            "eta": e.eta,
            "eta_p90": e.eta_p90,
            "window_end": we,
            "delay_s": e.delay_s,
            "late_probability": e.late_probability,
        }
        out[key] = Alert("late_risk", technician_id, e.job_id, severity, now, False, detail)


def _overruns(
    now: float,
    technician_id: str,
    stops: Sequence[TourStop],
    cfg: DelayConfig,
    out: dict[AlertKey, Alert],
) -> None:
    for s in stops:
        if s.state not in ON_SITE_STATES or s.arrived_at is None:
            continue
        elapsed = onsite_elapsed_s(s, now)
        if elapsed <= s.planned_duration_s * cfg.overrun_factor:
            continue
        detail = {
            "elapsed_s": elapsed,
            "planned_duration_s": s.planned_duration_s,
            "overrun_s": elapsed - s.planned_duration_s,
        }
        out[("overrun", s.job_id)] = Alert(
            "overrun", technician_id, s.job_id, "warning", now, False, detail
        )


def _device_rules(
    now: float,
    technician_id: str,
    stops: Sequence[TourStop],
    last_fix_ts: float | None,
    stopped_since: float | None,
    near_site: bool,
    cfg: DelayConfig,
    out: dict[AlertKey, Alert],
) -> None:
    active = next((s for s in stops if s.state in ("en_route", "on_site", "resumed")), None)
    if active is None:
        return
    job = active.job_id
    if last_fix_ts is not None and now - last_fix_ts >= cfg.stale_after_s:
        detail = {"last_fix_ts": last_fix_ts, "silent_s": now - last_fix_ts}
        out[("stale_device", job)] = Alert(
            "stale_device", technician_id, job, "critical", now, False, detail
        )
    # Stopped as far as the fixes show: up to the last one. Silence after it is the stale
    # rule's (one old fix, then nothing, is no evidence of a stop, only of silence).
    seen_until = last_fix_ts if last_fix_ts is not None else now
    if (
        active.state == "en_route"
        and stopped_since is not None
        and seen_until - stopped_since >= cfg.long_stop_after_s
        and not near_site
    ):
        detail = {"stopped_since": stopped_since, "stopped_s": seen_until - stopped_since}
        out[("long_stop", job)] = Alert("long_stop", technician_id, job, "info", now, False, detail)


@dataclass(frozen=True)
class StopAnchor:
    """Where and since when a device has stayed within the long-stop radius."""

    lat: float
    lon: float
    since: float


def track_stop(
    anchor: StopAnchor | None, lat: float, lon: float, ts: float, radius_m: float
) -> StopAnchor:
    """Follow a device's newest fix: keep the anchor while within ``radius_m`` of it, else move it.

    ``anchor.since`` is the ``stopped_since`` that ``evaluate`` wants; measuring from a fixed
    anchor (not the previous fix) stops GPS drift from creeping out of a stop unnoticed.
    """
    if anchor is None or haversine_m(anchor.lat, anchor.lon, lat, lon) > radius_m:
        return StopAnchor(lat, lon, ts)
    return anchor


def near_any_site(lat: float, lon: float, stops: Sequence[TourStop], radius_m: float) -> bool:
    """Whether a point is within ``radius_m`` of any stop of the tour, visited or not."""
    return any(haversine_m(lat, lon, s.lat, s.lon) <= radius_m for s in stops)


# -- re-optimisation -------------------------------------------------------------------

REOPT_REASONS = frozenset({"late_risk", "overrun", "cancelled", "urgent_job", "stale_device"})
_URGENT_REASONS = frozenset({"cancelled", "urgent_job"})


@dataclass(frozen=True)
class Reoptimize:
    """A request to the planner to re-sequence a technician's remaining tour."""

    technician_id: str
    reason: str
    job_ids: tuple[str, ...]
    predicted_lateness_s: float
    ts: float


@dataclass(frozen=True)
class ReoptCandidate:
    """Why the tour might need re-planning, before cool-down and gain are applied."""

    reason: str
    job_ids: tuple[str, ...]
    predicted_lateness_s: float

    def __post_init__(self) -> None:
        if self.reason not in REOPT_REASONS:
            raise ValueError(f"unknown re-optimisation reason {self.reason!r}")


@dataclass(frozen=True)
class ReoptState:
    """The last request sent for one technician (none yet: ``last_ts is None``)."""

    last_ts: float | None = None
    last_lateness_s: float = 0.0
    last_reason: str | None = None


def decide(
    now: float,
    technician_id: str,
    candidate: ReoptCandidate,
    state: ReoptState,
    cfg: DelayConfig = DEFAULT_DELAY_CONFIG,
) -> tuple[ReoptState, Reoptimize | None]:
    """Send the candidate unless the planner heard about this technician too recently.

    Within ``reopt_cooldown_s`` of the last request a candidate passes only if its predicted
    lateness exceeds the last request's by ``reopt_min_gain_s``. Cancellations and urgent jobs
    skip that test (they change the work itself) but respect ``reopt_urgent_cooldown_s``.
    A suppressed candidate leaves the state unchanged, so gains are measured against what the
    planner was last told.
    """
    if state.last_ts is not None:
        since = now - state.last_ts
        if candidate.reason in _URGENT_REASONS:
            if since < cfg.reopt_urgent_cooldown_s:
                return state, None
        elif since < cfg.reopt_cooldown_s and (
            candidate.predicted_lateness_s < state.last_lateness_s + cfg.reopt_min_gain_s
        ):
            return state, None
    request = Reoptimize(
        technician_id,
        candidate.reason,
        candidate.job_ids,
        candidate.predicted_lateness_s,
        now,
    )
    return ReoptState(now, candidate.predicted_lateness_s, candidate.reason), request


def reopt_candidate(alerts: Sequence[Alert], etas: Sequence[JobEta]) -> ReoptCandidate | None:
    """The re-optimisation an ``evaluate`` result calls for, if any.

    Only newly raised alerts count (a condition already reported was already considered).
    An overrun names the overrunning job and every later one (they all move); a late risk the
    jobs at risk; a stale device every remaining job. The cause wins when several are
    raised together: overrun, then late risk, then stale device. The predicted lateness is the
    largest positive ``delay_s`` among the named jobs.
    """
    raised = [a for a in alerts if not a.cleared]
    order = [e.job_id for e in etas]
    delays = {e.job_id: e.delay_s for e in etas}
    overrun = next((a.job_id for a in raised if a.alert == "overrun"), None)
    if overrun is not None:
        start = order.index(overrun) if overrun in order else len(order)
        return _candidate("overrun", (overrun, *order[start + 1 :]), delays)
    late = tuple(a.job_id for a in raised if a.alert == "late_risk" and a.job_id is not None)
    if late:
        return _candidate("late_risk", late, delays)
    if any(a.alert == "stale_device" for a in raised):
        return _candidate("stale_device", tuple(order), delays)
    return None


def _candidate(
    reason: str, job_ids: tuple[str, ...], delays: Mapping[str, float]
) -> ReoptCandidate:
    lateness = max((delays.get(j, 0.0) for j in job_ids), default=0.0)
    return ReoptCandidate(reason, job_ids, max(0.0, lateness))


# -- customer notifications ------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """A customer-facing notification about one job."""

    notification: str
    technician_id: str
    job_id: str
    ts: float
    detail: Detail


@dataclass(frozen=True)
class NotifyState:
    """(notification, job_id) pairs already sent for one technician's open jobs."""

    sent: frozenset[tuple[str, str]] = frozenset()


def customer_notifications(
    now: float,
    technician_id: str,
    position: tuple[float, float] | None,
    etas: Sequence[JobEta],
    stops: Sequence[TourStop],
    state: NotifyState,
    cfg: DelayConfig = DEFAULT_DELAY_CONFIG,
) -> tuple[NotifyState, list[Notification]]:
    """``arriving_soon`` and ``delayed``, each at most once per job.

    ``arriving_soon``: for the next job not yet reached, when its ETA is within
    ``arriving_soon_s`` or -- while the technician is driving there (the job ``en_route``,
    none worked before it) -- the position is within ``arriving_soon_m`` of its site. Being
    near is not enough otherwise: a first job round the corner from where the technician
    parked last night, or the next one across the street from the last while its window
    opens in two hours, is not "arriving soon".
    ``delayed``: for any job not yet reached whose P(missing the window) reaches
    ``late_probability``. ``arrived`` and ``done`` follow status changes and are the
    gateway's. Entries for jobs that left the tour or closed are dropped from the state.
    """
    by_job = {s.job_id: s for s in stops}
    sent = state.sent
    fresh: list[Notification] = []
    first = True
    working = False
    for e in etas:
        stop = by_job.get(e.job_id)
        if stop is None or stop.state in CLOSED_STATES:
            continue
        if stop.state in ON_SITE_STATES:
            working = True
            continue
        if first:
            first = False
            fresh += _arriving_soon(now, technician_id, position, e, stop, working, sent, cfg)
        we = stop.window_end
        if (
            we is not None
            and e.late_probability >= cfg.late_probability
            and ("delayed", e.job_id) not in sent
        ):
            detail = {"eta": e.eta, "window_end": we, "delay_s": e.delay_s}
            fresh.append(Notification("delayed", technician_id, e.job_id, now, detail))
    kept = frozenset(
        k for k in sent if k[1] in by_job and by_job[k[1]].state not in CLOSED_STATES
    ) | {(n.notification, n.job_id) for n in fresh}
    if kept == sent:
        return state, fresh
    return NotifyState(kept), fresh


def _arriving_soon(
    now: float,
    technician_id: str,
    position: tuple[float, float] | None,
    e: JobEta,
    stop: TourStop,
    working: bool,
    sent: frozenset[tuple[str, str]],
    cfg: DelayConfig,
) -> list[Notification]:
    if ("arriving_soon", e.job_id) in sent:
        return []
    detail: dict[str, float | str] = {"eta": e.eta, "eta_p90": e.eta_p90}
    near = False
    if position is not None and not working:
        distance = haversine_m(position[0], position[1], stop.lat, stop.lon)
        detail["distance_m"] = distance
        near = stop.state == "en_route" and distance <= cfg.arriving_soon_m
    if not near and e.eta - now > cfg.arriving_soon_s:
        return []
    return [Notification("arriving_soon", technician_id, e.job_id, now, detail)]
