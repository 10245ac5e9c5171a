"""The per-worker live engine: geofences, learned speeds, tour ETAs, alerts, notifications.

Synchronous and clock-free like the pure stages it drives (``geofence.detect``,
``eta.*``): time comes in as arguments. It keeps the state those stages need
between fixes (inside-sets, stop anchors, trips, alert/notify/re-plan state,
last published ETAs) and answers each input with an ``Effects``: events to
publish, jobs whose ETA fields changed, and statuses inferred from geofences
for the gateway to apply (a technician's own status always wins).

Event time vs wall time: fixes carry device time, which is what ETAs and
windows are measured in. Between fixes (``tick``) a technician's "now" is
their last fix time plus the wall time since it was received, so a replayed
day and a live one behave the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import MappingProxyType
from zoneinfo import ZoneInfo

import msgspec

from eta.daystart import DayStarts
from eta.delay import (
    AlertState,
    DelayConfig,
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
from eta.durations import PAUSE_PRIOR, DurationModel
from eta.estimate import (
    CLOSED_STATES,
    ON_SITE_STATES,
    EstimateConfig,
    JobEta,
    TourStop,
    estimate_tour,
    onsite_elapsed_s,
    service_day,
)
from eta.pace import TechnicianPace
from eta.speeds import ModelConfig, SpeedModel
from eta.spread import BandScale
from eta.trips import Trip, begin_trip, extend_trip, finish_trip
from gateway.events import (
    alert_event,
    alert_of,
    eta_event,
    geofence_event,
    notification_event,
    notify_event,
    reoptimize_event,
)
from gateway.model import Event, Fix, Job, Site, StatusUpdate
from gateway.tours import TourBook, arrived_at, tour_stop
from geofence.detect import DetectorConfig, Presence, Transition, detect, tick
from geofence.errors import FenceError
from geofence.index import FenceIndex
from geofence.shapes import Fence, circle_fence

log = logging.getLogger("fieldtrack.engine")

SITE_PREFIX = "job:"
# Job states in which the delay rules expect fixes from the technician (eta.delay).
ACTIVE_STATES = frozenset({"en_route", "on_site", "resumed"})
# Job states that say nothing of the technician having started their day.
IDLE_STATES = frozenset({"planned", "cancelled"})
# ETAs kept per job for the ETA-error KPI (the newest; one per >= 60 s change).
MAX_PREDICTIONS = 64
# Bands kept per job for the spread scale (the newest: one per band_sample_s, 4 h at 5 min).
MAX_BANDS = 48


@dataclass(frozen=True)
class EngineConfig:
    """``eta_interval_s``: re-estimate a technician's tour at most this often on fixes
    (a status or job change always re-estimates; FACTS: a tour estimate costs ~40 µs).
    ``eta_publish_s``: publish an ETA when it moved at least this much (CONTRACT: 60 s).
    ``site_dwell_s``: time inside a job site that counts as arrival.
    ``timezone``: the fleet's local time (IANA name), whose dates are the service days
    that tours are split into (``gateway.tours``).
    ``closed_kept_s``: how long a closed job stays in its technician's tour (by the
    technician's event time); checked every ``retire_every_s`` of wall time.
    ``band_sample_s``: how often the ETA bands of a tour are kept for the band scale
    (``eta.spread``) to learn from at each arrival.
    ``max_lag_s``: how far behind the wall clock a technician's event time may fall
    between fixes. Event time is "newest fix time + wall time since it arrived", so a
    replayed day behaves like a live one; but a newest fix that was already old when it
    arrived (the end of a flushed offline buffer, a message held back) would keep every
    later tick that far in the past: silence judged late, ETAs published before the
    present. 300 s, as far as a fix may be ahead (``gateway.codec.MAX_FUTURE_S``); it
    applies once nothing has arrived for ``quiet_s`` (60 s), so that a device still
    reporting (a replayed or simulated past day) keeps one timeline for fixes and ticks.
    ``estimate``: the rules of the tour cascade (``eta.estimate.EstimateConfig``)."""

    eta_interval_s: float = 10.0
    eta_publish_s: float = 60.0
    site_dwell_s: float = 60.0
    timezone: str = "UTC"
    closed_kept_s: float = 86400.0
    retire_every_s: float = 3600.0
    band_sample_s: float = 300.0
    max_lag_s: float = 300.0
    quiet_s: float = 60.0
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    delay: DelayConfig = field(default_factory=DelayConfig)


@dataclass
class DeviceTrack:
    presence: Presence = field(default_factory=Presence.empty)
    last: Fix | None = None
    received: float | None = None
    technician_id: str | None = None


@dataclass
class TechTrack:
    alerts: AlertState = field(default_factory=AlertState)
    reopt: ReoptState = field(default_factory=ReoptState)
    notify: NotifyState = field(default_factory=NotifyState)
    published: dict[str, tuple[float, str]] = field(default_factory=dict)
    # (p10, p90) of each job not reached yet, every band_sample_s, for the band scale
    band_samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    last_fix: Fix | None = None
    last_received: float | None = None
    active_since: float | None = None
    estimated_at: float | None = None
    bands_at: float | None = None  # when the bands of the tour were last sampled
    stop: StopAnchor | None = None
    trip: Trip | None = None
    trip_predicted_s: float | None = None  # the model's (uncalibrated) guess at departure
    etas: list[JobEta] = field(default_factory=list)
    left_open: set[str] = field(default_factory=set)


@dataclass
class Effects:
    events: list[Event] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)

    def extend(self, other: Effects) -> None:
        self.events += other.events
        self.jobs += other.jobs
        self.statuses += other.statuses


class Engine:
    """``model`` learns travel times from fixes and trips; ``durations`` learns how long jobs
    really take against their plan, from every job that ends ``done`` after an arrival;
    ``pauses`` how long a pause lasts, from every pause that ends, so that a paused job's
    later ETAs count the rest of its pause; ``bands`` how wide each side of an ETA's
    p10..p90 must be, from the bands each job had before it was reached (sampled in time);
    ``paces`` how each technician's on-site times compare with the fleet's, from the same
    jobs as ``durations`` (which learns from plans scaled by the technician's factor);
    ``starts`` when each technician sets off in the morning, from their first ``en_route``
    of each service day, so that a first ETA made before then does not assume "now"."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        model: SpeedModel | None = None,
        durations: DurationModel | None = None,
        pauses: DurationModel | None = None,
        bands: BandScale | None = None,
        paces: TechnicianPace | None = None,
        starts: DayStarts | None = None,
    ):
        self.config = config or EngineConfig()
        self.model = model or SpeedModel(config=ModelConfig.for_zone(self.config.timezone))
        self.durations = durations or DurationModel()
        self.pauses = pauses or DurationModel(PAUSE_PRIOR)
        self.bands = bands or BandScale()
        self.paces = paces or TechnicianPace()
        self.tours = TourBook(ZoneInfo(self.config.timezone))
        self.starts = starts or DayStarts(self.tours.tz)
        self.fences = FenceIndex.build(())
        self.devices: dict[str, DeviceTrack] = {}
        self.techs: dict[str, TechTrack] = {}
        self._sites: dict[str, tuple[float, float, float, str]] = {}
        self._retired_at: float | None = None

    # -- fences ---------------------------------------------------------------------

    def put_fence(self, fence: Fence) -> None:
        # Readers hold the old index until this assignment: no pause, no lock.
        self.fences = self.fences.with_fence(fence)

    def remove_fence(self, fence_id: str) -> bool:
        if fence_id not in self.fences.fences:
            return False
        self.fences = self.fences.without(fence_id)
        return True

    def _site_fence(self, job: Job) -> None:
        fence_id = SITE_PREFIX + job.job_id
        if job.technician_id is None or job.state in CLOSED_STATES:
            self._sites.pop(job.job_id, None)
            self.remove_fence(fence_id)
            return
        key = (job.site.lat, job.site.lon, job.site.radius_m, job.technician_id)
        if self._sites.get(job.job_id) == key:
            return
        self._sites[job.job_id] = key
        fence = site_fence(job, self.config.site_dwell_s)
        assert fence is not None
        self.put_fence(fence)

    # -- jobs -------------------------------------------------------------------------

    def load_jobs(self, jobs: list[Job]) -> None:
        for job in jobs:
            # A job stored by an older version that let it in (a window past year 9999, a
            # site at a pole) must not keep the gateway from starting: left out, logged.
            try:
                self.tours.put(job)
            except (ValueError, OverflowError, OSError) as exc:
                log.error("job %r left out of the tours: %s", job.job_id, exc)
                continue
            try:
                self._site_fence(job)
            except FenceError as exc:
                self._sites.pop(job.job_id, None)
                log.error("job %r has no site fence: %s", job.job_id, exc)
            if job.technician_id is None:
                continue
            if job.notified:
                # What the customer was told before this engine (a previous leader's).
                tech = self._tech(job.technician_id)
                told = {(n, job.job_id) for n in job.notified}
                tech.notify = NotifyState(tech.notify.sent | told)
            if job.eta is not None:
                # Published by a previous engine: this one withdraws it as its own when
                # the job closes or changes hands, and republishes only on a move.
                self._tech(job.technician_id).published[job.job_id] = (job.eta, job.state)

    def restore_alerts(self, alerts: list[Event], now: float) -> Effects:
        """Take over the alerts standing when the previous engine stopped (the store keeps
        them, ``Store.list_alerts``; call after ``load_jobs``): they are not raised again,
        and are cleared when their condition ends, as if this engine had raised them. One
        whose job is gone, closed or someone else's now is cleared at once, dated by the
        job's last change (its close, its hand-over: the fleet's time, which a replayed
        day does not share with the wall clock), else ``now``."""
        out = Effects()
        for event in alerts:
            alert = alert_of(event)
            job = self.tours.get(alert.job_id) if alert and alert.job_id else None
            if (
                alert is None
                or job is None
                or job.technician_id != alert.technician_id
                or job.state in CLOSED_STATES
            ):
                ts = job.history[-1].ts if job is not None and job.history else now
                out.events.append(
                    {**event, "ts": max(ts, float(event.get("ts") or 0.0)), "cleared": True}
                )
                continue
            tech = self._tech(alert.technician_id)
            if alert.alert == "left_site_open_job":
                tech.left_open.add(job.job_id)
            else:
                active = {**tech.alerts.active, (alert.alert, alert.job_id): alert}
                tech.alerts = AlertState(MappingProxyType(active))
        return out

    def job_changed(self, job: Job, now: float, created: bool = False) -> Effects:
        """A job was created, edited or changed state (through the API or a status)."""
        previous = self.tours.put(job)
        self._site_fence(job)
        out = Effects()
        if previous is not None and previous.technician_id not in (None, job.technician_id):
            # Taken from a tour (reassigned or unassigned): that tour changes at once too.
            out.extend(self._handed_over(previous, job, now))
            out.extend(self._estimate(previous.technician_id, now, force=True))
        if job.technician_id is None:
            return out
        tech = self._tech(job.technician_id)
        if previous is not None and previous.state != job.state:
            out.extend(self._on_state(tech, job, previous, now))
        # Urgent and new to this tour: created here, or assigned here after the fact.
        joined = created or previous is None or previous.technician_id != job.technician_id
        if joined and job.priority == "urgent":
            out.extend(self._reoptimize(job.technician_id, now, "urgent_job", (job.job_id,)))
        out.extend(self._estimate(job.technician_id, now, force=True))
        return out

    def _handed_over(self, previous: Job, job: Job, now: float) -> Effects:
        """What the previous technician's engine state said of a job that is no longer
        theirs: an open ``left_site_open_job`` alert is cleared (nobody else would), and
        the ETA their tour predicted is withdrawn -- an ``eta`` event with no prediction,
        the stored ETA fields cleared -- until the new technician's estimate, if it can
        make one, publishes theirs (in the same change, just after)."""
        out = Effects()
        old = self.techs.get(previous.technician_id) if previous.technician_id else None
        if old is None:
            return out
        old.band_samples.pop(job.job_id, None)
        if job.job_id in old.left_open:
            old.left_open.discard(job.job_id)
            out.events.append(_left_site_alert(previous, now, cleared=True))
        if old.published.pop(job.job_id, None) is not None:
            out.extend(self._withdraw_eta(job, now))
        return out

    def _on_state(self, tech: TechTrack, job: Job, previous: Job, now: float) -> Effects:
        out = Effects()
        assert job.technician_id is not None
        if job.state in ACTIVE_STATES:
            # Without any fix, the stale rule counts silence from here (a technician may
            # go straight from planned to on_site, or resume after a pause).
            tech.active_since = now
        if job.state == "en_route":
            self.starts.set_off(job.technician_id, now)
            fix = tech.last_fix
            tech.trip, tech.trip_predicted_s = None, None
            if fix is not None:
                # The drive starts now, not at the last (possibly minute-old) parked fix.
                start = max(fix.ts, now)
                tech.trip = begin_trip(fix.lat, fix.lon, start)
                tech.trip_predicted_s = self.model.travel_mean_sd(
                    fix.lat, fix.lon, job.site.lat, job.site.lon, start, calibrated=False
                )[0]
        elif job.state == "on_site" and arrived_at(previous) is None:
            # The first arrival, whatever came before (en route, or resumed after a
            # pause on the way); back to work after a pause on site is not one.
            out.events.append(notify_event("arrived", job, now))
            self.bands.observe(now, tech.band_samples.pop(job.job_id, []))
            fix = tech.last_fix
            if tech.trip is not None and fix is not None:
                finish_trip(self.model, tech.trip, fix.lat, fix.lon, fix.ts, tech.trip_predicted_s)
            tech.trip, tech.trip_predicted_s = None, None
        elif job.state == "done":
            out.events.append(notify_event("done", job, now))
            self._learn_duration(previous, now)
        # (A pause on the way set back to planned did not end in going on.)
        if previous.state == "paused" and job.state not in ("paused", "planned"):
            self._learn_pause(previous, now)
        if job.state in CLOSED_STATES and job.job_id in tech.left_open:
            tech.left_open.discard(job.job_id)
            out.events.append(_left_site_alert(job, now, cleared=True))
        if job.state == "cancelled":
            remaining = tuple(
                j.job_id for j in self.tours.tour(job.technician_id) if j.state not in CLOSED_STATES
            )
            if remaining:
                out.extend(self._reoptimize(job.technician_id, now, "cancelled", remaining))
        return out

    def _learn_pause(self, previous: Job, ended_at: float) -> None:
        """Teach the pause model how long the pause that just ended lasted."""
        since = tour_stop(previous).paused_since
        if since is not None and ended_at > since:
            self.pauses.observe_job(self.config.estimate.pause_ref_s, ended_at - since)

    def _learn_duration(self, previous: Job, done_at: float) -> None:
        """Teach the duration model the worked time (arrival to done, pauses excluded)."""
        if previous.state not in ON_SITE_STATES:
            return  # done without being on site: no arrival, no worked time
        stop = tour_stop(previous)
        if stop.arrived_at is None:
            return
        worked = onsite_elapsed_s(stop, done_at)
        technician_id = previous.technician_id
        pace = self.paces.factor(technician_id) if technician_id is not None else 1.0
        self.durations.observe_job(stop.planned_duration_s * pace, worked)
        if technician_id is not None:
            self.paces.observe(technician_id, stop.planned_duration_s, worked)

    # -- fixes ------------------------------------------------------------------------

    def on_fix(self, fix: Fix, technician_id: str | None, received: float) -> Effects:
        """A device's newest fix (late fixes never reach the engine)."""
        out = Effects()
        track = self.devices.get(fix.device_id)
        if track is None:
            track = self.devices[fix.device_id] = DeviceTrack()
        previous = track.last
        if previous is not None:
            self.model.observe(previous.lat, previous.lon, previous.ts, fix.lat, fix.lon, fix.ts)
        track.last, track.received, track.technician_id = fix, received, technician_id
        presence, transitions = detect(
            self.fences, track.presence, fix.ts, fix.lat, fix.lon, fix.acc,
            self.config.detector, technician_id,
        )  # fmt: skip
        track.presence = presence
        out.extend(self._transitions(fix.device_id, technician_id, transitions))
        if technician_id is None:
            return out
        tech = self._tech(technician_id)
        if tech.last_fix is not None and fix.ts <= tech.last_fix.ts:
            return out  # another device of the same technician is ahead
        tech.last_fix, tech.last_received = fix, received
        tech.stop = track_stop(
            tech.stop, fix.lat, fix.lon, fix.ts, self.config.delay.long_stop_radius_m
        )
        if tech.trip is not None:
            tech.trip = extend_trip(tech.trip, fix.lat, fix.lon, fix.ts, self.model.config)
        out.extend(self._estimate(technician_id, fix.ts, force=False))
        return out

    def _transitions(
        self, device_id: str, technician_id: str | None, transitions: list[Transition]
    ) -> Effects:
        out = Effects()
        for t in transitions:
            job_id = t.fence_id[len(SITE_PREFIX) :] if t.fence_id.startswith(SITE_PREFIX) else None
            out.events.append(
                geofence_event(
                    transition=t.transition,
                    ts=t.ts,
                    device_id=device_id,
                    technician_id=technician_id,
                    geofence_id=t.fence_id,
                    kind=t.kind,
                    dwell_s=t.dwell_s,
                    job_id=job_id,
                )
            )
            if job_id is not None and technician_id is not None:
                out.extend(self._site_transition(t, job_id, technician_id, device_id))
        return out

    def _site_transition(
        self, t: Transition, job_id: str, technician_id: str, device_id: str
    ) -> Effects:
        out = Effects()
        job = self.tours.get(job_id)
        if job is None or job.technician_id != technician_id:
            return out
        tech = self._tech(technician_id)
        if t.transition == "dwell" and job.state == "en_route":
            out.statuses.append(StatusUpdate(device_id, t.ts, job_id, "on_site"))
        elif t.transition == "exit" and job.state in ("on_site", "paused", "resumed"):
            if job_id not in tech.left_open:
                tech.left_open.add(job_id)
                out.events.append(_left_site_alert(job, t.ts, cleared=False, device_id=device_id))
        elif t.transition == "enter" and job_id in tech.left_open:
            tech.left_open.discard(job_id)
            out.events.append(_left_site_alert(job, t.ts, cleared=True, device_id=device_id))
        return out

    # -- ETAs, alerts, notifications ---------------------------------------------------

    def _estimate(self, technician_id: str, now: float, force: bool) -> Effects:
        tech = self._tech(technician_id)
        out = Effects()
        if (
            not force
            and tech.estimated_at is not None
            # abs: a job edit stamps wall time, fixes device time (a skewed phone clock)
            and abs(now - tech.estimated_at) < self.config.eta_interval_s
        ):
            return out
        tech.estimated_at = now
        tour = self.tours.tour_days(technician_id)
        jobs = [j for j, _ in tour]
        stops = [tour_stop(j, d) for j, d in tour]
        fix = tech.last_fix
        position = (fix.lat, fix.lon) if fix is not None else None
        today = service_day(now, self.tours.tz)
        etas = (
            estimate_tour(
                now,
                position,
                stops,
                self.model,
                self.config.estimate,
                self.durations,
                self.pauses,
                self.bands.scales,
                today=today,
                pace=self.paces.factor(technician_id),
                set_off=self.set_off_ahead(technician_id, now, today, stops),
            )
            if stops
            else []
        )
        tech.etas = etas
        by_id = {j.job_id: j for j in jobs}
        self._sample_bands(tech, by_id, etas, now)
        for e in etas:
            out.extend(self._publish_eta(tech, by_id[e.job_id], e, now))
        predicted = {e.job_id for e in etas}
        for job_id in [j for j in tech.published if j not in predicted]:
            out.extend(self._unpublish(tech, job_id, by_id.get(job_id), now))
        cfg = self.config.delay
        last_fix_ts = fix.ts if fix is not None else tech.active_since
        stopped_since = tech.stop.since if tech.stop is not None else None
        near = position is not None and near_any_site(*position, stops, cfg.long_stop_radius_m)
        tech.alerts, alerts = evaluate(
            now, technician_id, etas, stops, last_fix_ts, stopped_since, near, tech.alerts, cfg
        )
        out.events += [alert_event(a) for a in alerts]
        candidate = reopt_candidate(alerts, etas)
        if candidate is not None:
            out.extend(
                self._reoptimize(technician_id, now, candidate.reason, candidate.job_ids, candidate)
            )
        tech.notify, notes = customer_notifications(
            now, technician_id, position, etas, stops, tech.notify, cfg
        )
        for n in notes:
            out.events.append(notification_event(n, by_id[n.job_id]))
            # Kept with the job, so that an engine rebuilt elsewhere does not send it again.
            job = self.tours.get(n.job_id) or by_id[n.job_id]
            told = msgspec.structs.replace(job, notified=(*job.notified, n.notification))
            self.tours.put(told)
            out.jobs.append(told)
        return out

    def _sample_bands(
        self, tech: TechTrack, jobs: dict[str, Job], etas: list[JobEta], now: float
    ) -> None:
        """Keep the bands of the jobs not reached yet, every ``band_sample_s``, for the
        band scale to learn from at their arrival. Sampled in time, not when published: a
        band is right if it holds the arrival at the moment someone looks, and an ETA that
        moves every minute (an overrun) would otherwise count many times over a steady one.
        Only while the technician is being tracked: not on a day not begun (the last fix
        is last night's), which would teach the scale that arrivals are never early."""
        fix = tech.last_fix
        if fix is None or now - fix.ts > self.config.delay.stale_after_s:
            return
        if tech.bands_at is not None and abs(now - tech.bands_at) < self.config.band_sample_s:
            return
        tech.bands_at = now
        for e in etas:
            if jobs[e.job_id].state in ON_SITE_STATES or e.eta_p90 <= e.eta_p10:
                continue
            bands = tech.band_samples.setdefault(e.job_id, [])
            bands.append((e.eta_p10, e.eta_p90))
            if len(bands) > MAX_BANDS:
                del bands[0]

    def set_off_ahead(
        self, technician_id: str, now: float, today: int, stops: list[TourStop]
    ) -> tuple[float, float] | None:
        """(time, sd) at which the technician is predicted to set off today, if they have
        not yet: no ``en_route`` today and no job of today's tour under way or visited."""
        if self.starts.started(technician_id, today):
            return None
        if any(s.day == today and s.state not in IDLE_STATES for s in stops):
            return None
        return self.starts.expected(technician_id, now)

    def _publish_eta(self, tech: TechTrack, job: Job, e: JobEta, now: float) -> Effects:
        out = Effects()
        last = tech.published.get(job.job_id)
        if (
            last is not None
            and last[1] == job.state
            and abs(e.eta - last[0]) < (self.config.eta_publish_s)
        ):
            return out
        tech.published[job.job_id] = (e.eta, job.state)
        out.events.append(eta_event(job, e, now))
        predictions = (*job.predictions[-(MAX_PREDICTIONS - 1) :], (now, round(e.eta, 1)))
        updated = msgspec.structs.replace(
            job,
            eta=round(e.eta, 1),
            eta_p90=round(e.eta_p90, 1),
            delay_s=round(e.delay_s, 1),
            predictions=predictions,
        )
        self.tours.put(updated)
        out.jobs.append(updated)
        return out

    def _unpublish(self, tech: TechTrack, job_id: str, job: Job | None, now: float) -> Effects:
        """A job with a published ETA that the estimate no longer predicts. Closed (done,
        cancelled, failed): its state changed, so its ETA is withdrawn. Open but not
        estimable now (no position): it keeps its last ETA. Gone from the tour: only
        forgotten (a hand-over withdrew it already, ``_handed_over``)."""
        if job is not None and job.state not in CLOSED_STATES:
            return Effects()
        del tech.published[job_id]
        return self._withdraw_eta(job, now) if job is not None else Effects()

    def _withdraw_eta(self, job: Job, now: float) -> Effects:
        """No ETA for the job any more: an ``eta`` event with no prediction, and the
        stored job's ETA fields cleared."""
        cleared = msgspec.structs.replace(job, eta=None, eta_p90=None, delay_s=None)
        if job.technician_id is not None:
            self.tours.put(cleared)
        return Effects(events=[eta_event(job, None, now)], jobs=[cleared])

    def _reoptimize(
        self,
        technician_id: str,
        now: float,
        reason: str,
        job_ids: tuple[str, ...],
        candidate: ReoptCandidate | None = None,
    ) -> Effects:
        tech = self._tech(technician_id)
        if candidate is None:
            delays = {e.job_id: e.delay_s for e in tech.etas}
            lateness = max((delays.get(j, 0.0) for j in job_ids), default=0.0)
            candidate = ReoptCandidate(reason, job_ids, max(0.0, lateness))
        tech.reopt, request = decide(now, technician_id, candidate, tech.reopt, self.config.delay)
        return Effects(events=[reoptimize_event(request)] if request is not None else [])

    # -- time passing -----------------------------------------------------------------

    def tick(self, wall_now: float) -> Effects:
        """Dwell without new fixes, overruns and stale devices: call every few seconds."""
        out = Effects()
        for device_id, track in self.devices.items():
            if not track.presence.inside or track.last is None:
                continue
            technician_id = track.technician_id
            now = self._event_now(technician_id, wall_now, track)
            track.presence, transitions = tick(
                self.fences, track.presence, now, self.config.detector
            )
            out.extend(self._transitions(device_id, technician_id, transitions))
        if self._retired_at is None or wall_now - self._retired_at >= self.config.retire_every_s:
            self._retired_at = wall_now
            self._retire(wall_now)
        for technician_id in self.tours.technicians():
            tech = self._tech(technician_id)
            if tech.last_fix is None and tech.active_since is None:
                continue
            now = self._event_now(technician_id, wall_now)
            out.extend(self._estimate(technician_id, now, force=False))
        return out

    def _retire(self, wall_now: float) -> None:
        """Drop jobs closed long enough ago from the tours, and what the engine kept on them."""
        for technician_id in self.tours.technicians():
            before = self._event_now(technician_id, wall_now) - self.config.closed_kept_s
            gone = self.tours.retire(technician_id, before)
            tech = self.techs.get(technician_id)
            if tech is None:
                continue
            for job in gone:
                tech.published.pop(job.job_id, None)
                tech.band_samples.pop(job.job_id, None)
                tech.left_open.discard(job.job_id)

    def _event_now(
        self, technician_id: str | None, wall_now: float, track: DeviceTrack | None = None
    ) -> float:
        tech = self.techs.get(technician_id) if technician_id is not None else None
        if tech is not None and tech.last_fix is not None and tech.last_received is not None:
            return self._since(tech.last_fix.ts, tech.last_received, wall_now)
        # A device nobody owns keeps its own clock the same way, or its dwells never fire.
        if track is not None and track.last is not None and track.received is not None:
            return self._since(track.last.ts, track.received, wall_now)
        return wall_now

    def _since(self, fix_ts: float, received: float, wall_now: float) -> float:
        """Fix time + wall time since it arrived; once the device has gone quiet (nothing
        received for ``quiet_s``), no more than ``max_lag_s`` behind the wall clock. A
        device still reporting keeps its own timeline, however far behind (a replay, a
        simulator's past day): its fixes and its ticks then agree."""
        since = fix_ts + max(0.0, wall_now - received)
        if wall_now - received < self.config.quiet_s:
            return since
        return max(since, wall_now - self.config.max_lag_s)

    def _tech(self, technician_id: str) -> TechTrack:
        tech = self.techs.get(technician_id)
        if tech is None:
            tech = self.techs[technician_id] = TechTrack()
        return tech


def check_site(site: Site) -> None:
    """Raise ``FenceError`` if a job's site cannot be its automatic fence (near a pole)."""
    circle_fence(SITE_PREFIX + "_", site.lat, site.lon, site.radius_m, kind="site")


def site_fence(job: Job, dwell_s: float) -> Fence | None:
    """The automatic fence of an open, assigned job's site (``job:{job_id}``)."""
    if job.technician_id is None or job.state in CLOSED_STATES:
        return None
    return circle_fence(
        SITE_PREFIX + job.job_id,
        job.site.lat,
        job.site.lon,
        job.site.radius_m,
        kind="site",
        dwell_s=dwell_s,
        technician_ids=frozenset({job.technician_id}),
    )


def _left_site_alert(job: Job, ts: float, cleared: bool, device_id: str | None = None) -> Event:
    event: Event = {
        "type": "alert",
        "alert": "left_site_open_job",
        "severity": "warning",
        "ts": ts,
        "technician_id": job.technician_id,
        "job_id": job.job_id,
        "state": job.state,
    }
    if device_id is not None:
        event["device_id"] = device_id
    if cleared:
        event["cleared"] = True
    return event
