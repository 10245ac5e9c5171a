"""Pure stages of the pipeline: no await, no clock reads, plain data in and out.

``position_event`` turns an accepted fix into the feed's event; ``apply_status``
runs the job state machine. Anything the caller needs to know (the time, who
owns a device) is passed in, so the tests are tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from gateway.errors import Rejected
from gateway.model import TERMINAL_STATES, Event, Fix, Job, StatusChange, StatusUpdate

# The job state machine. A technician who forgets "en route" may still arrive,
# so planned -> on_site is allowed; terminal states accept nothing.
TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    "planned": frozenset({"en_route", "on_site", "cancelled", "failed"}),
    "en_route": frozenset({"on_site", "paused", "cancelled", "failed"}),
    "on_site": frozenset({"paused", "done", "failed", "cancelled"}),
    "paused": frozenset({"resumed", "cancelled", "failed"}),
    "resumed": frozenset({"paused", "on_site", "done", "failed", "cancelled"}),
    "done": frozenset(),
    "cancelled": frozenset(),
    "failed": frozenset(),
}

# A job in one of these states holds its technician (en route, working or paused).
_ACTIVE: Final = frozenset({"en_route", "on_site", "paused", "resumed"})


def position_event(fix: Fix, technician_id: str | None) -> Event:
    event: Event = {
        "type": "position",
        "ts": fix.ts,
        "device_id": fix.device_id,
        "technician_id": technician_id,
        "lat": fix.lat,
        "lon": fix.lon,
        "spd": fix.spd,
        "hdg": fix.hdg,
        "acc": fix.acc,
    }
    if fix.bat is not None:
        event["bat"] = fix.bat
    return event


class StatusOutcome(msgspec.Struct, frozen=True):
    job: Job
    changed: bool  # False: the same status repeated (a QoS 1 re-send), nothing to do


def apply_status(
    job: Job | None,
    update: StatusUpdate,
    technician_id: str | None,
    source: str = "device",
) -> StatusOutcome:
    """Apply a reported status to its job, or raise ``Rejected`` with the reason."""
    if job is None:
        raise Rejected("unknown_job", f"job {update.job_id!r} does not exist")
    # A device nobody owns reports for nobody: it must not drive an unassigned job.
    if source == "device" and technician_id is None:
        raise Rejected("wrong_technician", f"device {update.device_id!r} belongs to no technician")
    if source == "device" and job.technician_id != technician_id:
        owner = f"technician {technician_id!r}"
        raise Rejected("wrong_technician", f"job {job.job_id!r} is not assigned to {owner}")
    last = job.history[-1] if job.history else None
    # A state the gateway inferred from a geofence is provisional: the
    # technician's own word confirms it (recorded) or overrides it.
    provisional = source == "device" and last is not None and last.source == "geofence"
    if update.status == job.state and not provisional:
        return StatusOutcome(job, changed=False)
    # A set-back to planned (``set_back``) is stamped by the gateway's clock; the next
    # status comes from a device's, which may run behind. What a new status must not be
    # older than is the last change a technician or dispatcher made.
    anchor = next((c for c in reversed(job.history) if c.status != "planned"), None)
    if anchor is not None and update.ts < anchor.ts and not provisional:
        raise Rejected(
            "stale_status",
            f"{update.status} at {update.ts:.3f}".rstrip("0").rstrip(".")
            + " is older than the job's last change",
        )
    allowed = TRANSITIONS[job.state]
    if provisional and last is not None:
        allowed = allowed | TRANSITIONS[last.previous] | {last.previous, job.state}
    if update.status not in allowed:
        raise Rejected("bad_transition", f"{job.state} -> {update.status} is not allowed")
    change = StatusChange(
        ts=update.ts,
        status=update.status,
        previous=job.state,
        source=source,
        device_id=update.device_id or None,
        note=update.note,
    )
    new = msgspec.structs.replace(job, state=update.status, history=(*job.history, change))
    return StatusOutcome(new, changed=True)


def set_back(job: Job, ts: float, source: str, note: str) -> Job:
    """The job as it is when its technician is no longer on the way to it: ``planned``
    again (another job took them, or it went to someone else). Not a transition a device
    may ask for; the gateway makes it, so that a technician is on the way to one job at
    a time and only that job's customer sees them coming."""
    change = StatusChange(ts=ts, status="planned", previous=job.state, source=source, note=note)
    return msgspec.structs.replace(job, state="planned", history=(*job.history, change))


def status_event(job: Job, change: StatusChange) -> Event:
    return {
        "type": "status",
        "ts": change.ts,
        "job_id": job.job_id,
        "technician_id": job.technician_id,
        "device_id": change.device_id,
        "status": change.status,
        "previous": change.previous,
        "source": change.source,
        **({"note": change.note} if change.note else {}),
    }


def is_open(job: Job) -> bool:
    return job.state not in TERMINAL_STATES


def is_active(job: Job) -> bool:
    return job.state in _ACTIVE
