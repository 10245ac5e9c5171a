"""Jobs as tours: each technician's jobs day by day in ``sequence`` order, and a job as an
ETA stop.

A technician's tour is a day's: dispatchers number each day's jobs from 1 and book
tomorrow's before today's is over. So jobs are ordered by service day first -- the local
date (``TourBook.tz``) on which the job's window opens -- then by ``sequence``. A job
without a window belongs to no day in particular: it is taken to be part of the earliest
day that still has a job open (ordered there by its sequence).

The tour book is the engine's in-memory view of the jobs; every change made
through the gateway (a PUT, a status) passes through ``put``, so it is never
stale within a process.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo
from zoneinfo import ZoneInfo

from eta.estimate import CLOSED_STATES, TourStop, service_day
from gateway.model import Job, StatusChange

# A change back to these after ``on_site`` withdraws the arrival: the technician
# overriding a geofence-inferred ``on_site`` (pipeline.apply_status) was not there yet.
_NOT_ARRIVED = frozenset({"planned", "en_route"})


def visit_on_sites(job: Job) -> list[StatusChange]:
    """The ``on_site`` changes of the current visit, in order: those since the last change
    back to planned or en_route (which withdraws a visit)."""
    changes: list[StatusChange] = []
    for change in job.history:
        if change.status == "on_site":
            changes.append(change)
        elif change.status in _NOT_ARRIVED:
            changes = []
    return changes


def arrived_at(job: Job) -> float | None:
    """When the technician reached the site for this visit (the first ``on_site`` change
    not withdrawn since)."""
    changes = visit_on_sites(job)
    return changes[0].ts if changes else None


def travelling(job: Job) -> bool:
    """On the way to the job: ``en_route``, or paused or resumed before arriving."""
    if job.state == "en_route":
        return True
    return job.state in ("paused", "resumed") and arrived_at(job) is None


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


def job_day(job: Job, tz: tzinfo) -> int | None:
    """The service day of a job: the local day its window opens on (None: no window)."""
    return service_day(job.window.start, tz) if job.window is not None else None


def tour_stop(job: Job, day: int | None = None) -> TourStop:
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
        day=day,
    )


def _closed_at(job: Job) -> float:
    if job.history:
        return job.history[-1].ts
    return job.window.end if job.window is not None else float("inf")


def tour_key(job: Job, day: int) -> tuple[int, int, float, str]:
    """Order within a technician's jobs: service day, sequence, window start, id."""
    return (day, job.sequence, job.window.start if job.window else 0.0, job.job_id)


class TourBook:
    """technician id -> job id -> Job, plus where each job is filed; ``tz``: the fleet's
    local time, whose dates are the service days."""

    def __init__(self, tz: tzinfo | None = None) -> None:
        self.tz = tz if tz is not None else ZoneInfo("UTC")
        self._tours: dict[str, dict[str, Job]] = {}
        self._owner: dict[str, str] = {}
        self._days: dict[str, int | None] = {}  # job id -> service day

    def put(self, job: Job) -> Job | None:
        """File (or re-file) a job; returns the previous version."""
        # First what can fail (a window too far out for a calendar date): then a job
        # that cannot be filed leaves the book as it was.
        day = job_day(job, self.tz) if job.technician_id is not None else None
        previous_owner = self._owner.get(job.job_id)
        previous = None
        if previous_owner is not None:
            previous = self._tours[previous_owner].pop(job.job_id, None)
            if not self._tours[previous_owner]:
                del self._tours[previous_owner]
        if job.technician_id is not None:
            self._tours.setdefault(job.technician_id, {})[job.job_id] = job
            self._owner[job.job_id] = job.technician_id
            self._days[job.job_id] = day
        else:
            self._owner.pop(job.job_id, None)
            self._days.pop(job.job_id, None)
        return previous

    def load(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.put(job)

    def tour(self, technician_id: str) -> list[Job]:
        """The technician's jobs in tour order (see the module docstring)."""
        return [job for job, _ in self.tour_days(technician_id)]

    def tour_days(self, technician_id: str) -> list[tuple[Job, int | None]]:
        """The technician's jobs in tour order, each with its service day."""
        jobs = self._tours.get(technician_id)
        if not jobs:
            return []
        days = self._days
        open_days = [
            d for j in jobs.values() if (d := days[j.job_id]) is not None
            and j.state not in CLOSED_STATES
        ]  # fmt: skip
        # A job without a window goes with the earliest day still open.
        anyday = min(open_days) if open_days else 0
        keyed = [(tour_key(j, d if (d := days[j.job_id]) is not None else anyday), j, d)
                 for j in jobs.values()]  # fmt: skip
        keyed.sort(key=lambda k: k[0])
        return [(j, d) for _, j, d in keyed]

    def retire(self, technician_id: str, before: float) -> list[Job]:
        """Forget the technician's jobs closed before ``before`` (their last status change,
        or their window's end if they have none); returns them.

        Tours are built from every job filed, so without this a technician's estimate
        grows with every job they ever did (80 times slower after a year: 14 ms a tour).
        A retired job is still in the store; if it changes again it is filed anew."""
        jobs = self._tours.get(technician_id)
        if not jobs:
            return []
        gone = [j for j in jobs.values() if j.state in CLOSED_STATES and _closed_at(j) < before]
        for j in gone:
            del jobs[j.job_id]
            del self._owner[j.job_id]
            self._days.pop(j.job_id, None)
        if not jobs:
            del self._tours[technician_id]
        return gone

    def day(self, job_id: str) -> int | None:
        """The service day of a filed job (None: no window, or not filed)."""
        return self._days.get(job_id)

    def get(self, job_id: str) -> Job | None:
        owner = self._owner.get(job_id)
        return None if owner is None else self._tours[owner].get(job_id)

    def technicians(self) -> list[str]:
        return sorted(self._tours)
