"""Jobs as tours: each technician's jobs in ``sequence`` order, and a job as an ETA stop.

The tour book is the engine's in-memory view of the jobs; every change made
through the gateway (a PUT, a status) passes through ``put``, so it is never
stale within a process.
"""

from __future__ import annotations

from collections.abc import Iterable

from eta.estimate import TourStop
from gateway.model import Job

# A change back to these after ``on_site`` withdraws the arrival: the technician
# overriding a geofence-inferred ``on_site`` (pipeline.apply_status) was not there yet.
_NOT_ARRIVED = frozenset({"planned", "en_route"})


def arrived_at(job: Job) -> float | None:
    """When the technician reached the site for this visit (the first ``on_site`` change
    not withdrawn since)."""
    arrived = None
    for change in job.history:
        if change.status == "on_site" and arrived is None:
            arrived = change.ts
        elif change.status in _NOT_ARRIVED:
            arrived = None
    return arrived


def pauses(job: Job) -> tuple[float, float | None]:
    """(seconds paused on site in finished pauses, start of the current pause or None).

    Only pauses after the arrival count: they are subtracted from on-site work time,
    and a break on the way (en_route -> paused -> resumed) is not part of it."""
    total, since, arrived = 0.0, None, False
    for change in job.history:
        if change.status == "paused":
            since = change.ts if arrived else None
            continue
        if since is not None:
            total += max(0.0, change.ts - since)
            since = None
        if change.status == "on_site":
            arrived = True
        elif change.status in _NOT_ARRIVED:
            arrived = False
    return total, since


def tour_stop(job: Job) -> TourStop:
    paused_s, paused_since = pauses(job)
    window = job.window
    return TourStop(
        job_id=job.job_id,
        lat=job.site.lat,
        lon=job.site.lon,
        window_start=window.start if window else None,
        window_end=window.end if window else None,
        planned_duration_s=job.planned_duration_s,
        state=job.state,
        arrived_at=arrived_at(job),
        paused_s=paused_s,
        paused_since=paused_since if job.state == "paused" else None,
    )


def tour_key(job: Job) -> tuple[int, float, str]:
    return (job.sequence, job.window.start if job.window else 0.0, job.job_id)


class TourBook:
    """technician id -> job id -> Job, plus where each job is filed."""

    def __init__(self) -> None:
        self._tours: dict[str, dict[str, Job]] = {}
        self._owner: dict[str, str] = {}

    def put(self, job: Job) -> Job | None:
        """File (or re-file) a job; returns the previous version."""
        previous_owner = self._owner.get(job.job_id)
        previous = None
        if previous_owner is not None:
            previous = self._tours[previous_owner].pop(job.job_id, None)
            if not self._tours[previous_owner]:
                del self._tours[previous_owner]
        if job.technician_id is not None:
            self._tours.setdefault(job.technician_id, {})[job.job_id] = job
            self._owner[job.job_id] = job.technician_id
        else:
            self._owner.pop(job.job_id, None)
        return previous

    def load(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.put(job)

    def tour(self, technician_id: str) -> list[Job]:
        return sorted(self._tours.get(technician_id, {}).values(), key=tour_key)

    def get(self, job_id: str) -> Job | None:
        owner = self._owner.get(job_id)
        return None if owner is None else self._tours[owner].get(job_id)

    def technicians(self) -> list[str]:
        return sorted(self._tours)
