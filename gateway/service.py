"""The gateway's core: a batch of raw messages in, state stored, events out.

Both entry points use it: the MQTT ingest loop (``handle_batch``, then it
publishes dead letters and outbound events and only then acknowledges) and the
HTTP API (``ingest_fixes``, ``report_status``, registrations). The order of one
batch is STYLE §2: decode -> store (dedupe, ordering) -> pure steps -> bus.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

import msgspec
import orjson

from gateway import codec
from gateway.bus import MQTT_OUT_TYPES, Bus
from gateway.cancel import raise_if_cancelling
from gateway.engine import SITE_PREFIX, Effects, Engine, site_fence
from gateway.errors import BadPayload, Rejected
from gateway.events import fence_changed, job_changed
from gateway.metrics import Metrics
from gateway.model import Event, Fix, Job, StatusUpdate, Technician, valid_id
from gateway.pipeline import apply_status, position_event, set_back, status_event
from gateway.store import Store, Verdict
from gateway.topics import Route, TopicScheme
from gateway.tours import travelling
from geofence.errors import FenceError
from geofence.shapes import Fence, fence_from_geojson

log = logging.getLogger("fieldtrack.gateway")
Clock = Callable[[], float]
# False while the ingest task retries a batch (a context variable: an HTTP request served
# meanwhile, in a task of its own, still counts what it rejects or ignores).
_COUNTING: ContextVar[bool] = ContextVar("fieldtrack_counting", default=True)


@dataclass(slots=True)
class Inbound:
    """One message as the broker delivered it."""

    topic: str
    payload: bytes
    received: float


@dataclass(slots=True)
class DeadLetter:
    device_id: str
    topic: str
    payload: bytes
    reason: str
    # The reason's code, as counted in fieldtrack_rejected_total{reason} (a batch with
    # several bad fixes: its first one's).
    code: str


@dataclass(slots=True)
class BatchResult:
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outbound: list[Event] = field(default_factory=list)


@dataclass(slots=True)
class _Attempt:
    """One broker batch, across the retries of the ingest loop (see ``handle_batch``)."""

    key: bytes = b""  # digest of the batch's topics and payloads, taken if it fails
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    stored: set[int] = field(default_factory=set)  # stages whose store call returned
    tries: int = 0


def _batch_key(batch: Sequence[Inbound]) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for msg in batch:
        digest.update(msg.topic.encode())
        digest.update(len(msg.payload).to_bytes(4, "big"))
        digest.update(msg.payload)
    return digest.digest()


@dataclass(slots=True)
class IngestSummary:
    accepted: int = 0
    duplicates: int = 0
    late: int = 0


class Gateway:
    """Owns the decode/store/step/publish sequence; holds no socket of its own."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        metrics: Metrics,
        topics: TopicScheme | None = None,
        clock: Clock = time.time,
        engine: Engine | None = None,
        outbox_size: int = 10_000,
        inline_engine: bool = True,
    ) -> None:
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.topics = topics or TopicScheme()
        self.clock = clock
        self.engine = engine or Engine()
        # One process: the engine runs inline on every fix. With Redis and several
        # workers it runs in the elected leader only, fed from the bus (leader.py).
        self.inline_engine = inline_engine
        self._owner: dict[str, str] = {}
        # Outbound MQTT events made outside a broker batch (HTTP calls, ticks):
        # the ingest loop publishes them. Bounded; the oldest go first if the
        # broker is away for long (counted).
        self.outbox: deque[Event] = deque(maxlen=outbox_size)
        self.outbox_ready = asyncio.Event()
        # Events of a broker batch whose fixes were stored but which could not be
        # published (the bus failed after the store): the batch is retried un-acked,
        # its fixes are duplicates then and make no events, so these go out instead.
        self._unpublished: list[Event] = []
        # The batch that failed last, retried by the ingest loop until it succeeds.
        self._attempt: _Attempt | None = None

    async def start(self) -> None:
        """Load the device -> technician directory, the fences and the tours from the store."""
        for technician in await self.store.list_technicians():
            for device_id in technician.device_ids:
                self._owner[device_id] = technician.technician_id
        for fence in (await self.stored_fences()).values():
            self.engine.put_fence(fence)
        self.engine.load_jobs(await self.store.list_jobs())
        if self.inline_engine:
            await self.take_over_alerts()

    async def take_over_alerts(self) -> None:
        """The engine (just rebuilt from the store) takes over the alerts standing, so
        that it neither raises them again nor leaves them standing once they end."""
        restored = self.engine.restore_alerts(await self.store.list_alerts(), self.clock())
        await self._publish(await self._apply(restored))

    def technician_of(self, device_id: str) -> str | None:
        return self._owner.get(device_id)

    def _learn_owner(self, device_id: str, technician_id: str | None) -> None:
        """What the store just said of a device, for the fixes that follow."""
        if technician_id is None:
            self._owner.pop(device_id, None)
        else:
            self._owner[device_id] = technician_id

    # -- MQTT batches -----------------------------------------------------------

    async def handle_batch(self, batch: Sequence[Inbound]) -> BatchResult:
        """Decode, store, feed the engine, publish to the bus; what ingest sends on.

        A failure (Redis away) raises, and the ingest loop retries the same batch
        un-acked. The retry loses nothing the first try did: events of stored fixes
        wait in ``_unpublished``; a stage whose store call returned is not stored or fed
        again; and a store call whose reply was lost is repeated with the same attempt
        token, so the store answers what it decided then rather than "duplicate".
        """
        attempt = self._attempt
        if attempt is not None and attempt.key != _batch_key(batch):
            attempt = None  # that batch was given up (its messages will come again)
        attempt = attempt or _Attempt()
        self._attempt = None
        # A retry's messages, rejects and repeats were counted by its first try.
        counting = _COUNTING.set(attempt.tries == 0)
        attempt.tries += 1
        try:
            return await self._handle_batch(batch, attempt)
        except BaseException:
            # Only a failed batch is digested: the next call may be its retry.
            attempt.key = _batch_key(batch)
            self._attempt = attempt
            raise
        finally:
            _COUNTING.reset(counting)

    async def _handle_batch(self, batch: Sequence[Inbound], attempt: _Attempt) -> BatchResult:
        result = BatchResult()
        now = self.clock()
        # Appended to in place: what is stored before a failure stays for the retry.
        events = self._unpublished
        stage = 0
        fixes: list[Fix] = []
        stamps: list[float] = []  # each fix's receive time, for the engine's clock
        statuses: list[tuple[Inbound, StatusUpdate]] = []
        for msg in batch:
            route = self.topics.route(msg.topic)
            if _COUNTING.get():
                self.metrics.messages.inc(1.0, route.kind)
            try:
                self._decode(msg, route, now, fixes, statuses, result)
            except BadPayload as exc:
                self._reject(exc.code)
                result.dead_letters.append(_dead(route, msg, exc.reason, exc.code))
            stamps += [msg.received] * (len(fixes) - len(stamps))
            if statuses:
                # Keep arrival order: fixes before a status are stored (and seen by the
                # engine) before it, fixes after it after it -- an offline phone flushing
                # "en route" then its drive into the site must arrive, not stay en route.
                await self._flush(fixes, stamps, statuses, result, events, (attempt, stage))
                stage += 1
        await self._flush(fixes, stamps, statuses, result, events, (attempt, stage))
        await self._publish(events, outbox=False)
        self._unpublished = []
        done = self.clock()
        for msg in batch:
            self.metrics.pipeline.observe(max(0.0, done - msg.received))
        result.outbound = [e for e in events if e["type"] in MQTT_OUT_TYPES]
        return result

    async def _flush(
        self,
        fixes: list[Fix],
        stamps: list[float],
        statuses: list[tuple[Inbound, StatusUpdate]],
        result: BatchResult,
        events: list[Event],
        stage: tuple[_Attempt, int],
    ) -> None:
        """Store the fixes gathered so far, then apply the status that ended the run;
        the events go to ``events`` as they are made (kept if a later step fails)."""
        attempt, number = stage
        if number not in attempt.stored:  # else stored and fed by an earlier try
            await self._store_fixes(fixes, stamps, events, stage)
        for msg, update in statuses:
            try:
                events += await self._apply_status(update, "device")
            except Rejected as exc:
                self._reject(exc.code)
                route = self.topics.route(msg.topic)
                result.dead_letters.append(_dead(route, msg, exc.reason, exc.code))
        fixes.clear()
        stamps.clear()
        statuses.clear()

    def _decode(
        self,
        msg: Inbound,
        route: Route,
        now: float,
        fixes: list[Fix],
        statuses: list[tuple[Inbound, StatusUpdate]],
        result: BatchResult,
    ) -> None:
        if route.kind == "pos":
            decoded = codec.decode_positions(route.device_id, msg.payload, now)
            fixes.extend(decoded.fixes)
            if decoded.errors:
                for error in decoded.errors:
                    self._reject(error.code)
                code = decoded.errors[0].code
                result.dead_letters.append(_dead(route, msg, decoded.reason, code))
        elif route.kind == "status":
            statuses.append((msg, codec.decode_status(route.device_id, msg.payload, now)))
        elif route.kind == "owntracks":
            fix = codec.decode_owntracks(route.device_id, msg.payload, now)
            if fix is None:
                self._ignore("owntracks")
            else:
                fixes.append(fix)
        elif route.kind == "own":
            self._ignore("own_output")
        else:
            raise BadPayload("bad_topic", route.problem or f"no handler for {msg.topic!r}")

    def _reject(self, code: str) -> None:
        if _COUNTING.get():
            self.metrics.reject(code)

    def _ignore(self, why: str) -> None:
        if _COUNTING.get():
            self.metrics.ignored.inc(1.0, why)

    # -- shared by MQTT and HTTP ------------------------------------------------

    async def _store_fixes(
        self,
        fixes: Sequence[Fix],
        received: Sequence[float],
        events: list[Event],
        stage: tuple[_Attempt, int] | None = None,
    ) -> IngestSummary:
        """Store, then append the events to ``events`` -- in place, so that those of
        stored fixes survive a failure of the steps after the store."""
        summary = IngestSummary()
        if not fixes:
            return summary
        owner = self._owner
        # With an outbox store the events go out with the fixes, in the store's own step.
        made = (
            [position_event(f, owner.get(f.device_id)) for f in fixes]
            if self.store.publishes_events
            else None
        )
        if stage is None:
            verdicts = await self.store.record_fixes(fixes, None, made)
        else:
            attempt, number = stage
            # The fixes are part of the name: decoding depends on the clock (a fix from
            # the future), so a retry could gather other fixes, and a memo of other
            # verdicts must not answer them.
            which = hash(tuple((f.device_id, f.ts) for f in fixes)) & 0xFFFF_FFFF_FFFF
            token = f"{attempt.token}:{number}:{which:x}"
            verdicts = await self.store.record_fixes(fixes, token, made)
            attempt.stored.add(number)
        effects = Effects()
        published = 0
        for fix, verdict, at in zip(fixes, verdicts, received, strict=True):
            if verdict is Verdict.DUPLICATE:
                summary.duplicates += 1
                continue
            summary.accepted += 1
            if verdict is Verdict.LATE:
                summary.late += 1
                continue
            technician_id = owner.get(fix.device_id)
            if made is None:
                events.append(position_event(fix, technician_id))
            else:
                published += 1
            if self.inline_engine:
                effects.extend(self.engine.on_fix(fix, technician_id, at))
        if published:
            self.metrics.events.inc(float(published), "position")
        self.metrics.positions.inc(summary.accepted)
        self.metrics.duplicates.inc(summary.duplicates)
        self.metrics.late.inc(summary.late)
        await self._apply(effects, events)
        return summary

    async def _apply(self, effects: Effects, events: list[Event] | None = None) -> list[Event]:
        """Store what the engine changed and apply the statuses it inferred; the events
        go to ``events`` (in place) or a new list, which is returned."""
        if events is None:
            events = []
        events += effects.events
        alerts = [e for e in effects.events if e["type"] == "alert"]
        if alerts:
            # Standing alerts outlive this engine: a map opened later lists them
            # (GET /api/v1/alerts), and a successor takes them over (``start``).
            await self.store.put_alerts(alerts)
        for job in effects.jobs:
            # The ETA fields only: a status change or an edit stored since the engine
            # read the job (by another worker, or an HTTP request meanwhile) stays.
            await self.store.put_eta(job)
        for update in effects.statuses:
            try:
                events += await self._apply_status(update, "geofence")
            except Rejected as exc:
                # The technician changed the job meanwhile; their word stands.
                log.debug("geofence status not applied: %s", exc.reason)
        return events

    async def _apply_status(self, update: StatusUpdate, source: str) -> list[Event]:
        job = await self.store.get_job(update.job_id)
        technician_id = None
        if source != "api":
            # The store's word, not this process's directory: with several workers that
            # is refreshed every 2 s, and a status sent right after its device was
            # registered (or handed over) elsewhere would be refused, its job stuck.
            technician_id = await self.store.technician_of(update.device_id)
            self._learn_owner(update.device_id, technician_id)
        outcome = apply_status(job, update, technician_id, source)
        if not outcome.changed:
            self._ignore("repeated_status")
            return []
        new = outcome.job
        events = await self._put_job(new, [status_event(new, new.history[-1])])
        if self.inline_engine:
            events += await self._apply(self.engine.job_changed(new, update.ts))
        if new.technician_id is not None and (travelling(new) or new.state == "on_site"):
            # On the way to (or at) this job, so no longer on the way to another: that
            # one is planned again, and its customer stops seeing the technician. Unless
            # the other began later than this status (a phone's buffered or skewed
            # clock): then this job is the one left behind.
            others = [
                j for j in await self.store.jobs_of(new.technician_id)
                if j.job_id != new.job_id and travelling(j)
            ]  # fmt: skip
            later = [j for j in others if j.history and j.history[-1].ts > update.ts]
            if later and travelling(new):
                note = f"superseded: {later[0].state} at {later[0].job_id}"
                return events + await self._set_back(new, update.ts, "gateway", note)
            note = f"superseded: {new.state} at {new.job_id}"
            for other in others:
                if other not in later:  # (on site here, then off to that one: both stand)
                    events += await self._set_back(other, update.ts, "gateway", note)
        return events

    async def _set_back(self, job: Job, ts: float, source: str, note: str) -> list[Event]:
        back = set_back(job, ts, source, note)
        events = await self._put_job(back, [status_event(back, back.history[-1])])
        if self.inline_engine:
            events += await self._apply(self.engine.job_changed(back, ts))
        return events

    async def _put_job(self, job: Job, events: list[Event]) -> list[Event]:
        """Store the job with the events of the change; those still to publish are returned."""
        await self.store.put_job(job, events)
        return self._left_to_publish(events)

    def _left_to_publish(self, events: list[Event]) -> list[Event]:
        """Of events just given to the store with their change: none if the store is the
        outbox and published them (counted here), else all (the caller publishes)."""
        if not self.store.publishes_events:
            return events
        for event in events:
            self.metrics.events.inc(1.0, event["type"])
        return []

    async def _publish(self, events: list[Event], outbox: bool = True) -> None:
        """To the bus; with ``outbox``, MQTT-out types also wait for the ingest loop."""
        if not events:
            return
        await self.bus.publish(events)
        for event in events:
            kind = event["type"]
            self.metrics.events.inc(1.0, kind)
            if outbox and kind in MQTT_OUT_TYPES:
                self.relay(event)

    async def ingest_fixes(self, fixes: Sequence[Fix]) -> IngestSummary:
        """HTTP ingestion of fixes the codec has already validated."""
        events: list[Event] = []
        summary = await self._store_fixes(fixes, [self.clock()] * len(fixes), events)
        await self._publish(events)
        return summary

    async def report_status(self, update: StatusUpdate, source: str = "api") -> Job:
        events = await self._apply_status(update, source)
        await self._publish(events)
        job = await self.store.get_job(update.job_id)
        assert job is not None  # apply_status raised otherwise
        return job

    async def publish_notice(self, event: Event) -> None:
        """An event made outside the engine (a tracking link issued): to the feed, and
        to MQTT out if its type goes there. With the engine run by an elected leader
        (Redis), the feed is the stream, and the leader, which follows it, relays the
        event to MQTT (``relay``): this process may serve HTTP only."""
        await self._publish([event], outbox=self.inline_engine)

    def relay(self, event: Event) -> None:
        """Queue an event already on the feed for MQTT out (the leader's side of
        ``publish_notice``)."""
        if len(self.outbox) == self.outbox.maxlen:
            self.metrics.outbox_dropped.inc()
        self.outbox.append(event)
        self.outbox_ready.set()

    async def publish_effects(self, effects: Effects) -> None:
        """What an engine fed from the bus produced (the leader's path)."""
        await self._publish(await self._apply(effects))

    async def refresh_directory(self) -> None:
        """Reload device owners: with several nodes, registrations happen elsewhere."""
        owners: dict[str, str] = {}
        for technician in await self.store.list_technicians():
            for device_id in technician.device_ids:
                owners[device_id] = technician.technician_id
        self._owner = owners

    async def run_directory_refresh(self, interval_s: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.refresh_directory()
            raise_if_cancelling()

    async def tick(self) -> None:
        """Time passing without messages: dwell, overruns, stale devices, ETA refresh."""
        events = await self._apply(self.engine.tick(self.clock()))
        await self._publish(events)

    async def run_ticks(self, interval_s: float = 5.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.tick()
            raise_if_cancelling()

    # -- registrations ----------------------------------------------------------

    async def put_technician(self, technician: Technician) -> None:
        """Create or update a technician. A device listed here that another technician
        had is handed over: it leaves their record, so one phone is one person's."""
        others: dict[str, list[str]] = {}
        for device_id in technician.device_ids:
            owner = await self.store.technician_of(device_id)
            if owner is not None and owner != technician.technician_id:
                others.setdefault(owner, []).append(device_id)
        previous = await self.store.put_technician(technician)
        for owner, moved in others.items():
            had = await self.store.get_technician(owner)
            if had is not None:
                kept = tuple(d for d in had.device_ids if d not in moved)
                await self.store.put_technician(msgspec.structs.replace(had, device_ids=kept))
        if previous is not None:
            for device_id in previous.device_ids:
                # Release only what is still ours; the device may have moved on.
                if self._owner.get(device_id) == technician.technician_id:
                    del self._owner[device_id]
        for device_id in technician.device_ids:
            self._owner[device_id] = technician.technician_id

    async def put_fence(self, fence_id: str, feature: object) -> Fence:
        """Validate (``FenceError`` with the reason), store, and swap into the index."""
        if fence_id.startswith(SITE_PREFIX):
            raise FenceError(f"ids starting with {SITE_PREFIX!r} are reserved for job sites")
        fence = fence_from_geojson(fence_id, feature)
        events = [fence_changed(fence_id, self.clock(), deleted=False)]
        await self.store.put_fence(fence_id, orjson.dumps(feature), events)
        events = self._left_to_publish(events)
        if self.inline_engine:
            self.engine.put_fence(fence)
        await self._publish(events)
        return fence

    async def delete_fence(self, fence_id: str) -> bool:
        if fence_id.startswith(SITE_PREFIX):
            return False
        events = [fence_changed(fence_id, self.clock(), deleted=True)]
        removed = await self.store.delete_fence(fence_id, events)
        if removed:  # an outbox store published the event with the deletion
            events = self._left_to_publish(events)
        if self.inline_engine:
            removed = self.engine.remove_fence(fence_id) or removed
        if removed:
            await self._publish(events)
        return removed

    async def stored_fences(self) -> dict[str, Fence]:
        """The user fences in the store; one that no longer loads is logged and skipped."""
        fences: dict[str, Fence] = {}
        for fence_id, feature in (await self.store.list_fences()).items():
            try:
                fences[fence_id] = fence_from_geojson(fence_id, orjson.loads(feature))
            except (FenceError, orjson.JSONDecodeError) as exc:
                log.error("stored geofence %s no longer loads: %s", fence_id, exc)
        return fences

    async def list_fences(self) -> dict[str, Fence]:
        """User fences as stored, and the job-site fences of open, assigned jobs."""
        fences = await self.stored_fences()
        for job in await self.store.list_jobs():
            site = site_fence(job, self.engine.config.site_dwell_s)
            if site is not None:
                fences[site.fence_id] = site
        return fences

    async def put_job(self, job: Job) -> Job:
        """Create or update a job; its live state and history are kept on update."""
        existing = await self.store.get_job(job.job_id)
        now = self.clock()
        reassigned: list[Event] = []
        if existing is not None:
            if existing.technician_id != job.technician_id and travelling(existing):
                # Whoever was on the way to it is not any more; the new technician is
                # not yet (they say so with their own en_route).
                existing = set_back(existing, now, "api", f"reassigned to {job.technician_id}")
                reassigned = [status_event(existing, existing.history[-1])]
            job = msgspec.structs.replace(
                job,
                state=existing.state,
                history=existing.history,
                eta=existing.eta,
                eta_p90=existing.eta_p90,
                delay_s=existing.delay_s,
                predictions=existing.predictions,
                # What its customer was told stands, unless someone else takes the job:
                # then they may be told once more (by the one now coming).
                notified=existing.notified if existing.technician_id == job.technician_id else (),
            )
        events = await self._put_job(
            job, [*reassigned, job_changed(job, now, created=existing is None)]
        )
        if self.inline_engine:
            events += await self._apply(self.engine.job_changed(job, now, existing is None))
            job = self.engine.tours.get(job.job_id) or job
        await self._publish(events)
        return job


def _dead(route: Route, msg: Inbound, reason: str, code: str) -> DeadLetter:
    device_id = route.device_id if valid_id(route.device_id) else "_unknown"
    return DeadLetter(device_id, msg.topic, msg.payload, reason, code)
