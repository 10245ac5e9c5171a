"""Plain data that flows through the gateway: fixes, status updates, jobs, events.

Structs are msgspec ``Struct``s (cheap to build, compact in memory, encodable as
they are). Events leaving the gateway are plain ``dict``s so that every sink
(SSE, MQTT out, Redis Streams) encodes them the same way.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

JOB_STATES: Final = (
    "planned",
    "en_route",
    "on_site",
    "paused",
    "resumed",
    "done",
    "cancelled",
    "failed",
)
DEVICE_STATUSES: Final = frozenset(JOB_STATES) - {"planned"}
TERMINAL_STATES: Final = frozenset({"done", "cancelled", "failed"})

Event = dict[str, Any]


def valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


class Fix(msgspec.Struct, frozen=True, gc=False):
    """One validated position of one device."""

    device_id: str
    ts: float
    lat: float
    lon: float
    spd: float | None = None
    hdg: float | None = None
    acc: float | None = None
    alt: float | None = None
    bat: float | None = None
    seq: int | None = None
    # Publisher's send time, when a load generator or simulator carries one.
    sent: float | None = None

    def to_wire(self) -> dict[str, Any]:
        """The fix as the history API returns it (absent fields left out)."""
        out: dict[str, Any] = {"ts": self.ts, "lat": self.lat, "lon": self.lon}
        for name in ("spd", "hdg", "acc", "alt", "bat", "seq"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


class StatusUpdate(msgspec.Struct, frozen=True, gc=False):
    """A technician's job status as their device reported it."""

    device_id: str
    ts: float
    job_id: str
    status: str
    note: str | None = None


class Site(msgspec.Struct, frozen=True):
    lat: float
    lon: float
    radius_m: float = 100.0


class Window(msgspec.Struct, frozen=True):
    start: float
    end: float


class Customer(msgspec.Struct, frozen=True):
    name: str = ""
    ref: str | None = None


class StatusChange(msgspec.Struct, frozen=True):
    ts: float
    status: str
    previous: str
    source: str
    device_id: str | None = None
    note: str | None = None


class Technician(msgspec.Struct, frozen=True):
    technician_id: str
    name: str
    device_ids: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()


class Job(msgspec.Struct, frozen=True):
    job_id: str
    technician_id: str | None
    site: Site
    window: Window | None = None
    planned_duration_s: float = 1800.0
    sequence: int = 0
    customer: Customer = Customer()
    priority: str = "normal"
    state: str = "planned"
    history: tuple[StatusChange, ...] = ()
    eta: float | None = None
    eta_p90: float | None = None
    delay_s: float | None = None
    # (published at, predicted arrival) of recent ETAs: what the ETA-error KPI scores.
    predictions: tuple[tuple[float, float], ...] = ()
    # Customer notifications the engine sent for this job (arriving_soon, delayed): each
    # at most once, also across an engine rebuilt by a new leader.
    notified: tuple[str, ...] = ()
    # The job this one revisits (a follow-up visit booked for the same request), if any:
    # the first-visit-completion KPI counts neither as done in one visit.
    follow_up_of: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]
