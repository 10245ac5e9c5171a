"""The gateway's core: a batch of raw messages in, state stored, events out.

Both entry points use it: the MQTT ingest loop (``handle_batch``, then it
publishes dead letters and outbound events and only then acknowledges) and the
HTTP API (``ingest_fixes``, ``report_status``, registrations). The order of one
batch is STYLE §2: decode -> store (dedupe, ordering) -> pure steps -> bus.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from gateway import codec
from gateway.bus import MQTT_OUT_TYPES, Bus
from gateway.errors import BadPayload, Rejected
from gateway.metrics import Metrics
from gateway.model import Event, Fix, Job, StatusUpdate, Technician, valid_id
from gateway.pipeline import apply_status, position_event, status_event
from gateway.store import Store, Verdict
from gateway.topics import Route, TopicScheme

log = logging.getLogger("fieldtrack.gateway")
Clock = Callable[[], float]


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


@dataclass(slots=True)
class BatchResult:
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outbound: list[Event] = field(default_factory=list)


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
    ) -> None:
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.topics = topics or TopicScheme()
        self.clock = clock
        self._owner: dict[str, str] = {}

    async def start(self) -> None:
        """Load the device -> technician directory from the store."""
        for technician in await self.store.list_technicians():
            for device_id in technician.device_ids:
                self._owner[device_id] = technician.technician_id

    def technician_of(self, device_id: str) -> str | None:
        return self._owner.get(device_id)

    # -- MQTT batches -----------------------------------------------------------

    async def handle_batch(self, batch: Sequence[Inbound]) -> BatchResult:
        result = BatchResult()
        now = self.clock()
        fixes: list[Fix] = []
        statuses: list[tuple[Inbound, StatusUpdate]] = []
        for msg in batch:
            route = self.topics.route(msg.topic)
            self.metrics.messages.inc(1.0, route.kind)
            try:
                self._decode(msg, route, now, fixes, statuses, result)
            except BadPayload as exc:
                self.metrics.reject(exc.code)
                result.dead_letters.append(_dead(route, msg, exc.reason))
        events, _ = await self._store_fixes(fixes)
        for msg, update in statuses:
            try:
                events.extend(await self._apply_status(update, "device"))
            except Rejected as exc:
                self.metrics.reject(exc.code)
                route = self.topics.route(msg.topic)
                result.dead_letters.append(_dead(route, msg, exc.reason))
        await self._publish(events)
        done = self.clock()
        for msg in batch:
            self.metrics.pipeline.observe(max(0.0, done - msg.received))
        result.outbound = [e for e in events if e["type"] in MQTT_OUT_TYPES]
        return result

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
                    self.metrics.reject(error.code)
                result.dead_letters.append(_dead(route, msg, decoded.reason))
        elif route.kind == "status":
            statuses.append((msg, codec.decode_status(route.device_id, msg.payload, now)))
        elif route.kind == "owntracks":
            fix = codec.decode_owntracks(route.device_id, msg.payload, now)
            if fix is None:
                self.metrics.ignored.inc(1.0, "owntracks")
            else:
                fixes.append(fix)
        elif route.kind == "own":
            self.metrics.ignored.inc(1.0, "own_output")
        else:
            raise BadPayload("bad_topic", route.problem or f"no handler for {msg.topic!r}")

    # -- shared by MQTT and HTTP ------------------------------------------------

    async def _store_fixes(self, fixes: Sequence[Fix]) -> tuple[list[Event], IngestSummary]:
        summary = IngestSummary()
        if not fixes:
            return [], summary
        verdicts = await self.store.record_fixes(fixes)
        events: list[Event] = []
        for fix, verdict in zip(fixes, verdicts, strict=True):
            if verdict is Verdict.DUPLICATE:
                summary.duplicates += 1
                continue
            summary.accepted += 1
            if verdict is Verdict.LATE:
                summary.late += 1
                continue
            events.append(position_event(fix, self._owner.get(fix.device_id)))
        self.metrics.positions.inc(summary.accepted)
        self.metrics.duplicates.inc(summary.duplicates)
        self.metrics.late.inc(summary.late)
        return events, summary

    async def _apply_status(self, update: StatusUpdate, source: str) -> list[Event]:
        job = await self.store.get_job(update.job_id)
        technician_id = self._owner.get(update.device_id) if source == "device" else None
        outcome = apply_status(job, update, technician_id, source)
        if not outcome.changed:
            self.metrics.ignored.inc(1.0, "repeated_status")
            return []
        await self.store.put_job(outcome.job)
        return [status_event(outcome.job, outcome.job.history[-1])]

    async def _publish(self, events: list[Event]) -> None:
        if not events:
            return
        await self.bus.publish(events)
        for event in events:
            self.metrics.events.inc(1.0, event["type"])

    async def ingest_fixes(self, fixes: Sequence[Fix]) -> IngestSummary:
        """HTTP ingestion of fixes the codec has already validated."""
        events, summary = await self._store_fixes(fixes)
        await self._publish(events)
        return summary

    async def report_status(self, update: StatusUpdate, source: str = "api") -> Job:
        events = await self._apply_status(update, source)
        await self._publish(events)
        job = await self.store.get_job(update.job_id)
        assert job is not None  # apply_status raised otherwise
        return job

    # -- registrations ----------------------------------------------------------

    async def put_technician(self, technician: Technician) -> None:
        previous = await self.store.put_technician(technician)
        if previous is not None:
            for device_id in previous.device_ids:
                # Release only what is still ours; the device may have moved on.
                if self._owner.get(device_id) == technician.technician_id:
                    del self._owner[device_id]
        for device_id in technician.device_ids:
            self._owner[device_id] = technician.technician_id

    async def put_job(self, job: Job) -> Job:
        """Create or update a job; its live state and history are kept on update."""
        existing = await self.store.get_job(job.job_id)
        if existing is not None:
            job = msgspec.structs.replace(
                job,
                state=existing.state,
                history=existing.history,
                eta=existing.eta,
                eta_p90=existing.eta_p90,
                delay_s=existing.delay_s,
            )
        await self.store.put_job(job)
        return job


def _dead(route: Route, msg: Inbound, reason: str) -> DeadLetter:
    device_id = route.device_id if valid_id(route.device_id) else "_unknown"
    return DeadLetter(device_id, msg.topic, msg.payload, reason)
