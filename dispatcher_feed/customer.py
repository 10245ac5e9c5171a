"""What a customer holding a tracking link may see of one job, and in what shape.

Pure: jobs, events and fixes in, booleans and JSON-ready dicts out. ``JobWatch``
follows one job's status events and is the bus predicate of a customer stream,
so it decides at publish time, in event order, whether each event may reach the
customer: this job's status, ETA and customer notifications, and the assigned
technician's positions only while they are en route to *this* job (and only
fixes taken since they set off). Nothing about another job or technician can
pass, and the shapes below drop every field a customer has no use for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from eta.geo import haversine_m
from gateway.model import TERMINAL_STATES, Event, Fix, Job, Site

# Notifications the customer's page reacts to; ``tracking_link`` carries a URL
# (possibly of a newer link) and is for the messaging system, not the page.
CUSTOMER_NOTIFICATIONS: Final = frozenset({"arriving_soon", "arrived", "done", "delayed"})


@dataclass(frozen=True, slots=True)
class Coarsening:
    """Beyond ``beyond_m`` from the site a position snaps to a ``grid_m`` grid, heading dropped."""

    beyond_m: float = 2000.0
    grid_m: float = 500.0


def first_name(name: str) -> str | None:
    """The first word of a technician's name: all a customer is told about them."""
    parts = name.split()
    return parts[0] if parts else None


class JobWatch:
    """One job's customer-relevant state, kept current from its events."""

    def __init__(self, job: Job) -> None:
        self.job_id = job.job_id
        self.technician_id = job.technician_id
        self.state = job.state
        self.arrived = False
        self.finished = False
        self.en_route_since: float | None = None
        for change in job.history:
            self._apply(change.status, change.ts)

    def _apply(self, status: str, ts: float) -> None:
        if status == "on_site":
            self.arrived = True
        if status == "en_route" or (status == "resumed" and not self.arrived):
            self.en_route_since = ts
        self.state = status

    @property
    def moving(self) -> bool:
        """En route to this job: the only time the customer sees the technician."""
        return not self.arrived and not self.finished and self.state in ("en_route", "resumed")

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def phase(self) -> str:
        """What the customer's page shows: scheduled, en_route, on_hold, arrived, or the end."""
        if self.ended:
            return self.state
        if self.finished:
            return "done"
        if self.arrived:
            return "arrived"
        return {"planned": "scheduled", "paused": "on_hold"}.get(self.state, "en_route")

    def position_visible(self, technician_id: object, ts: object) -> bool:
        since = self.en_route_since
        return (
            self.moving
            and self.technician_id is not None
            and technician_id == self.technician_id
            and isinstance(ts, int | float)
            and since is not None
            and ts >= since
        )

    def observe(self, event: Event) -> bool:
        """Update from ``event`` and say whether the customer may see it (a bus ``Predicate``)."""
        kind = event.get("type")
        if kind == "position":
            return self.position_visible(event.get("technician_id"), event.get("ts"))
        if event.get("job_id") != self.job_id:
            return False
        if kind == "status":
            status, ts = event.get("status"), event.get("ts")
            if not isinstance(status, str) or not isinstance(ts, int | float):
                return False
            # A status event names the job's technician as of now (reassignment).
            self.technician_id = event.get("technician_id")
            self._apply(status, float(ts))
            return True
        if kind == "eta":
            return True
        if kind == "notify":
            notification = event.get("notification")
            self.arrived |= notification == "arrived"
            self.finished |= notification == "done"
            return notification in CUSTOMER_NOTIFICATIONS
        return False


def coarsen(lat: float, lon: float, site: Site, rule: Coarsening) -> tuple[float, float, bool]:
    """``(lat, lon, coarse)``: exact near the site, snapped to a grid when far away."""
    if haversine_m(lat, lon, site.lat, site.lon) <= rule.beyond_m:
        return lat, lon, False
    lat_step = rule.grid_m / 111_320.0
    lon_step = lat_step / max(0.01, math.cos(math.radians(site.lat)))
    return (
        round(round(lat / lat_step) * lat_step, 6),
        round(round(lon / lon_step) * lon_step, 6),
        True,
    )


def position_view(
    ts: float, lat: float, lon: float, hdg: object, site: Site, rule: Coarsening
) -> Event:
    lat, lon, coarse = coarsen(lat, lon, site, rule)
    out: Event = {"type": "position", "ts": ts, "lat": lat, "lon": lon, "coarse": coarse}
    if not coarse and isinstance(hdg, int | float):
        out["hdg"] = hdg
    return out


def event_view(event: Event, watch: JobWatch, site: Site, rule: Coarsening) -> Event:
    """The customer's copy of an event ``watch`` has let through (and has already observed)."""
    kind = event["type"]
    ts = event["ts"]
    if kind == "position":
        return position_view(ts, event["lat"], event["lon"], event.get("hdg"), site, rule)
    if kind == "status":
        return {"type": "status", "ts": ts, "status": event["status"], "phase": watch.phase}
    if kind == "eta":
        keys = ("eta", "eta_p90", "delay_s")
        return {"type": "eta", "ts": ts, **{k: _finite(event.get(k)) for k in keys}}
    return {
        "type": "notify",
        "ts": ts,
        "notification": event.get("notification"),
        "phase": watch.phase,
    }


def snapshot(
    job: Job, watch: JobWatch, name: str | None, fix: Fix | None, rule: Coarsening
) -> Event:
    """Everything the page needs to draw itself, as of now."""
    position = None
    if fix is not None and watch.position_visible(job.technician_id, fix.ts):
        position = position_view(fix.ts, fix.lat, fix.lon, fix.hdg, job.site, rule)
    window = job.window
    return {
        "type": "snapshot",
        "phase": watch.phase,
        "state": job.state,
        "window": {"start": window.start, "end": window.end} if window else None,
        "eta": _finite(job.eta),
        "eta_p90": _finite(job.eta_p90),
        "delay_s": _finite(job.delay_s),
        "site": {"lat": job.site.lat, "lon": job.site.lon},
        "technician": {"first_name": first_name(name)} if name else None,
        "position": position,
    }


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
