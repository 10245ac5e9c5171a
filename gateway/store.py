"""Live state and history behind one interface, with an in-memory implementation.

The interface is batch-shaped because the Redis implementation pipelines a
batch of fixes into one round trip: ``record_fixes`` stores history, drops
duplicates and moves live state forward in one call, and answers a ``Verdict``
per fix. Deciding "is this the newest fix?" inside the store is what lets
several workers share one device's stream without a single owner.

A store may also be the bus's outbox (``publishes_events``): given the events of what
it writes (fixes, jobs, fences), it appends them to the event stream in the same atomic
step, so that a process dying between the two cannot leave data stored whose events never
went out (the retry of its un-acked batch finds duplicates, which make no events; a
retried DELETE finds nothing to delete). ``RedisStore`` does so when it shares Redis with
the ``RedisBus``; in one process (``MemoryStore``) a crash loses both alike, and the
caller publishes.
"""

from __future__ import annotations

import bisect
import enum
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

import msgspec

from gateway.model import Event, Fix, Job, Technician


class Verdict(enum.Enum):
    NEWEST = "newest"  # stored, and it is now the device's live position
    LATE = "late"  # stored in history; live state already newer
    DUPLICATE = "duplicate"  # same device and ts already stored: dropped


class Store(Protocol):
    @property
    def publishes_events(self) -> bool:
        """True: ``record_fixes`` and ``put_job`` publish the events they are given (the
        caller must not publish them again); False: they ignore them."""
        ...

    async def record_fixes(
        self,
        fixes: Sequence[Fix],
        token: str | None = None,
        events: Sequence[Event] | None = None,
    ) -> list[Verdict]:
        """Store the fixes; each one's verdict. ``token`` names one attempt: called again
        with the same token (its reply was lost, say), a store that can lose replies
        returns the verdicts it gave then instead of calling every fix a duplicate.
        ``events``: one per fix, published with it if it becomes the newest."""
        ...

    async def latest(self, device_id: str) -> Fix | None: ...
    async def history(
        self, device_id: str, since: float | None, until: float | None, limit: int
    ) -> list[Fix]: ...
    async def put_technician(self, technician: Technician) -> Technician | None: ...
    async def get_technician(self, technician_id: str) -> Technician | None: ...
    async def list_technicians(self) -> list[Technician]: ...
    async def technician_of(self, device_id: str) -> str | None: ...
    async def put_job(self, job: Job, events: Sequence[Event] = ()) -> None:
        """Store the job (with ``publishes_events``, and publish ``events`` with it)."""
        ...

    async def put_eta(self, job: Job) -> None:
        """Set the stored job's engine fields (``eta``, ``eta_p90``, ``delay_s``,
        ``predictions``, ``notified``) to ``job``'s, keeping everything else as stored;
        nothing if the job is gone."""
        ...

    async def get_job(self, job_id: str) -> Job | None: ...
    async def jobs_of(self, technician_id: str) -> list[Job]: ...
    async def list_jobs(self) -> list[Job]: ...
    async def put_fence(self, fence_id: str, feature: bytes, events: Sequence[Event] = ()) -> None:
        """Store the GeoJSON (with ``publishes_events``, and publish ``events`` with it)."""
        ...

    async def delete_fence(self, fence_id: str, events: Sequence[Event] = ()) -> bool:
        """Delete; whether it was there (and, with ``publishes_events``, then only,
        publish ``events`` with the deletion)."""
        ...

    async def list_fences(self) -> dict[str, bytes]: ...
    async def revoke_links(self, job_id: str, before: float, keep_s: float) -> None:
        """Every customer link of the job issued up to ``before`` is revoked, for
        ``keep_s`` (the longest a link lives: after that they have all expired)."""
        ...

    async def links_revoked(self, job_id: str) -> float | None:
        """Up to when the job's links are revoked; None if never (or long enough ago)."""
        ...

    async def revoke_session(self, session_id: str, keep_s: float) -> None:
        """A dispatcher session signed out, for ``keep_s`` (the longest a session lives)."""
        ...

    async def session_revoked(self, session_id: str) -> bool: ...

    async def put_alerts(self, events: Sequence[Event]) -> None:
        """Keep the alerts standing, in order: an ``alert`` event raises (stores) the alert
        of its ``alert_key``, one with ``cleared`` ends (deletes) it."""
        ...

    async def list_alerts(self) -> list[Event]:
        """The alerts standing (the events that raised them), oldest first."""
        ...

    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


class _History:
    """One device's fixes sorted by ts; appends are O(1), late fixes O(log n + k)."""

    __slots__ = ("fixes", "stamps")

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.fixes: list[Fix] = []

    def add(self, fix: Fix, limit: int) -> Verdict:
        stamps = self.stamps
        if not stamps or fix.ts > stamps[-1]:
            stamps.append(fix.ts)
            self.fixes.append(fix)
            verdict = Verdict.NEWEST
        else:
            i = bisect.bisect_left(stamps, fix.ts)
            if stamps[i] == fix.ts:
                return Verdict.DUPLICATE
            stamps.insert(i, fix.ts)
            self.fixes.insert(i, fix)
            verdict = Verdict.LATE
        # Trim in chunks of an eighth so the memmove is paid once per many fixes.
        excess = len(stamps) - limit
        if excess > limit // 8:
            del stamps[:excess]
            del self.fixes[:excess]
        return verdict

    def window(self, since: float | None, until: float | None, limit: int) -> list[Fix]:
        lo = 0 if since is None else bisect.bisect_left(self.stamps, since)
        hi = len(self.stamps) if until is None else bisect.bisect_right(self.stamps, until)
        return self.fixes[lo : min(hi, lo + limit)]


class MemoryStore:
    """State for one process: what ``fieldtrack demo`` and ``run`` without Redis use.

    History keeps at least ``history_per_device`` newest fixes per device (up to
    an eighth more between trims); duplicates older than that window cannot be
    recognised, which the README states.
    """

    def __init__(self, history_per_device: int = 10_000) -> None:
        self.history_limit = history_per_device
        self._history: dict[str, _History] = {}
        self._latest: dict[str, Fix] = {}
        self._technicians: dict[str, Technician] = {}
        # job id -> (links revoked up to, kept until)
        self._revoked: dict[str, tuple[float, float]] = {}
        self._device_owner: dict[str, str] = {}
        self._jobs: dict[str, Job] = {}
        self._fences: dict[str, bytes] = {}
        self._alerts: dict[str, Event] = {}
        self._signed_out: dict[str, float] = {}  # session id -> until

    publishes_events = False  # a crash loses the events and this store alike

    async def record_fixes(
        self,
        fixes: Sequence[Fix],
        token: str | None = None,
        events: Sequence[Event] | None = None,
    ) -> list[Verdict]:
        # In process, a reply cannot be lost: the token has nothing to do.
        verdicts = []
        for fix in fixes:
            history = self._history.get(fix.device_id)
            if history is None:
                history = self._history[fix.device_id] = _History()
            verdict = history.add(fix, self.history_limit)
            if verdict is Verdict.NEWEST:
                self._latest[fix.device_id] = fix
            verdicts.append(verdict)
        return verdicts

    async def latest(self, device_id: str) -> Fix | None:
        return self._latest.get(device_id)

    async def history(
        self, device_id: str, since: float | None, until: float | None, limit: int
    ) -> list[Fix]:
        history = self._history.get(device_id)
        return [] if history is None else history.window(since, until, limit)

    async def put_technician(self, technician: Technician) -> Technician | None:
        previous = self._technicians.get(technician.technician_id)
        if previous is not None:
            for device_id in previous.device_ids:
                # Only release what is still ours: the device may have moved to someone else.
                if self._device_owner.get(device_id) == technician.technician_id:
                    del self._device_owner[device_id]
        for device_id in technician.device_ids:
            self._device_owner[device_id] = technician.technician_id
        self._technicians[technician.technician_id] = technician
        return previous

    async def get_technician(self, technician_id: str) -> Technician | None:
        return self._technicians.get(technician_id)

    async def list_technicians(self) -> list[Technician]:
        return sorted(self._technicians.values(), key=lambda t: t.technician_id)

    async def technician_of(self, device_id: str) -> str | None:
        return self._device_owner.get(device_id)

    async def put_job(self, job: Job, events: Sequence[Event] = ()) -> None:
        self._jobs[job.job_id] = job

    async def put_eta(self, job: Job) -> None:
        stored = self._jobs.get(job.job_id)
        if stored is not None:
            self._jobs[job.job_id] = with_eta(stored, job)

    async def get_job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    async def jobs_of(self, technician_id: str) -> list[Job]:
        return _tour_order(j for j in self._jobs.values() if j.technician_id == technician_id)

    async def list_jobs(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: j.job_id)

    async def put_fence(self, fence_id: str, feature: bytes, events: Sequence[Event] = ()) -> None:
        self._fences[fence_id] = feature

    async def delete_fence(self, fence_id: str, events: Sequence[Event] = ()) -> bool:
        return self._fences.pop(fence_id, None) is not None

    async def revoke_links(self, job_id: str, before: float, keep_s: float) -> None:
        until = before + keep_s
        self._revoked = {j: r for j, r in self._revoked.items() if r[1] > before}
        self._revoked[job_id] = (before, until)

    async def links_revoked(self, job_id: str) -> float | None:
        revoked = self._revoked.get(job_id)
        return None if revoked is None or revoked[1] <= time.time() else revoked[0]

    async def list_fences(self) -> dict[str, bytes]:
        return dict(self._fences)

    async def revoke_session(self, session_id: str, keep_s: float) -> None:
        now = time.time()
        self._signed_out = {s: t for s, t in self._signed_out.items() if t > now}
        self._signed_out[session_id] = now + keep_s

    async def session_revoked(self, session_id: str) -> bool:
        return self._signed_out.get(session_id, 0.0) > time.time()

    async def put_alerts(self, events: Sequence[Event]) -> None:
        for event in events:
            key = alert_key(event)
            if event.get("cleared"):
                self._alerts.pop(key, None)
            else:
                self._alerts[key] = event

    async def list_alerts(self) -> list[Event]:
        return oldest_first(self._alerts.values())

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    @property
    def device_count(self) -> int:
        return len(self._history)


def with_eta(stored: Job, job: Job) -> Job:
    """``stored`` with the fields the engine writes of ``job``: ETA, predictions and the
    customer notifications sent."""
    return msgspec.structs.replace(
        stored, eta=job.eta, eta_p90=job.eta_p90, delay_s=job.delay_s,
        predictions=job.predictions, notified=job.notified,
    )  # fmt: skip


def alert_key(event: Event) -> str:
    """What one alert is, raised until cleared: its kind, technician and job."""
    return f"{event.get('alert')}|{event.get('technician_id') or ''}|{event.get('job_id') or ''}"


def oldest_first(alerts: Iterable[Event]) -> list[Event]:
    return sorted(alerts, key=lambda e: (float(e.get("ts") or 0.0), alert_key(e)))


def _tour_order(jobs: Iterable[Job]) -> list[Job]:
    return sorted(jobs, key=lambda j: (j.sequence, j.window.start if j.window else 0.0, j.job_id))
