"""Gateway.handle_batch and the HTTP-side entry points over MemoryStore and MemoryBus."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgpack
import msgspec
import orjson
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.bus import MemoryBus, Subscription
from gateway.errors import Rejected
from gateway.metrics import Metrics
from gateway.model import Event, Fix, Job, Site, StatusChange, StatusUpdate, Technician
from gateway.service import DeadLetter, Gateway, Inbound
from gateway.store import MemoryStore, Verdict
from gateway.topics import TopicScheme

NOW = 1_700_000_000.0


class Rig:
    """A gateway over in-memory parts with a fixed clock and a subscriber reading the bus."""

    def __init__(self, sub: Subscription, gateway: Gateway) -> None:
        self.sub = sub
        self.gateway = gateway
        self.store: MemoryStore = gateway.store  # type: ignore[assignment]
        self.metrics = gateway.metrics

    def events(self) -> list[Event]:
        """Position and status events: what ingest itself makes (the engine's ETAs,
        alerts and notifications are tested in test_engine.py)."""
        out = []
        while not self.sub.queue.empty():
            event = orjson.loads(self.sub.queue.get_nowait()[2])
            if event["type"] in ("position", "status"):
                out.append(event)
        return out

    def rejected(self) -> dict[str, float]:
        return {labels[0]: value for labels, value in self.metrics.rejected.values.items()}


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    bus = MemoryBus()
    gateway = Gateway(MemoryStore(), bus, Metrics(), TopicScheme(), clock=lambda: NOW)
    await gateway.put_technician(Technician("tech-1", "Ann", ("dev-1",)))
    await gateway.put_job(Job("job-1", "tech-1", Site(60.2, 24.9)))
    async with bus.subscribe(None, None, 1000) as sub:
        yield Rig(sub, gateway)


BAD_ID = "device id must be 1-64 chars of [A-Za-z0-9_.:-]"


def msg(topic: str, payload: Any, received: float = NOW - 0.5) -> Inbound:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Inbound(topic, data, received)


def pos(ts: float, lat: float = 60.17, lon: float = 24.94) -> dict[str, float]:
    return {"ts": ts, "lat": lat, "lon": lon}


def position(ts: float, device: str = "dev-1", tech: str | None = "tech-1") -> Event:
    return {
        "type": "position", "ts": ts, "device_id": device, "technician_id": tech,
        "lat": 60.17, "lon": 24.94, "spd": None, "hdg": None, "acc": None,
    }  # fmt: skip


async def test_good_fix_becomes_a_position_event(rig: Rig) -> None:
    result = await rig.gateway.handle_batch([msg("fleet/dev-1/pos", pos(NOW - 10))])
    assert result.dead_letters == []
    # The technician's first position moves job-1's ETA: that goes out over MQTT too.
    assert [(e["type"], e["job_id"]) for e in result.outbound] == [("eta", "job-1")]
    assert rig.events() == [position(NOW - 10)]
    assert rig.metrics.positions.get() == 1
    assert rig.metrics.events.get("position") == 1
    assert rig.metrics.messages.get("pos") == 1
    assert await rig.store.latest("dev-1") == Fix("dev-1", NOW - 10, 60.17, 24.94)
    assert rig.metrics.pipeline.count == 1
    assert rig.metrics.pipeline.total == pytest.approx(0.5)


async def test_msgpack_batch_and_unknown_device(rig: Rig) -> None:
    payload = msgpack.packb([pos(NOW - 20), pos(NOW - 10)])
    await rig.gateway.handle_batch([msg("fleet/stray/pos", payload)])
    assert rig.events() == [position(NOW - 20, "stray", None), position(NOW - 10, "stray", None)]
    assert len(await rig.store.history("stray", None, None, 10)) == 2


async def test_garbage_is_dead_lettered_and_the_next_message_flows(rig: Rig) -> None:
    batch = [
        msg("fleet/dev-1/pos", b"\x00garbage"),
        msg("fleet/dev-1/pos", pos(NOW - 10, lat=0, lon=0)),
        msg("fleet/dev-1/pos", pos(NOW - 5)),
    ]
    result = await rig.gateway.handle_batch(batch)
    assert [(d.device_id, d.topic, d.payload) for d in result.dead_letters] == [
        ("dev-1", "fleet/dev-1/pos", b"\x00garbage"),
        ("dev-1", "fleet/dev-1/pos", batch[1].payload),
    ]
    assert result.dead_letters[0].reason.startswith("bad_encoding: not valid MessagePack")
    assert result.dead_letters[1].reason == "null_island: lat=0, lon=0 is a tracker without a fix"
    assert rig.rejected() == {"bad_encoding": 1, "null_island": 1}
    assert rig.events() == [position(NOW - 5)]
    assert rig.metrics.positions.get() == 1
    assert rig.metrics.pipeline.count == 3


async def test_partly_bad_batch_counts_each_bad_fix(rig: Rig) -> None:
    payload = [pos(NOW - 30), pos(NOW + 3600), "x", pos(NOW - 20)]
    result = await rig.gateway.handle_batch([msg("fleet/dev-1/pos", payload)])
    [dead] = result.dead_letters
    assert dead.reason == "2 of 4 fixes rejected; first: future_ts: ts is 3600 s in the future"
    assert dead.code == "future_ts"  # the first bad fix's
    assert rig.rejected() == {"future_ts": 1, "not_an_object": 1}
    assert rig.events() == [position(NOW - 30), position(NOW - 20)]


async def test_duplicate_is_counted_once(rig: Rig) -> None:
    first = msg("fleet/dev-1/pos", pos(NOW - 10))
    await rig.gateway.handle_batch([first, first])
    await rig.gateway.handle_batch([first])  # a broker redelivery after a crash
    assert rig.events() == [position(NOW - 10)]
    assert (rig.metrics.positions.get(), rig.metrics.duplicates.get()) == (1, 2)


async def test_late_fix_is_stored_but_not_published(rig: Rig) -> None:
    await rig.gateway.handle_batch([msg("fleet/dev-1/pos", pos(NOW - 10))])
    await rig.gateway.handle_batch([msg("fleet/dev-1/pos", pos(NOW - 60, lat=61.0))])
    assert rig.events() == [position(NOW - 10)]
    assert (rig.metrics.positions.get(), rig.metrics.late.get()) == (2, 1)
    assert (await rig.store.latest("dev-1")) == Fix("dev-1", NOW - 10, 60.17, 24.94)
    assert [f.ts for f in await rig.store.history("dev-1", None, None, 10)] == [NOW - 60, NOW - 10]


def status(state: str, ts: float, job: str = "job-1") -> dict[str, Any]:
    return {"ts": ts, "job": job, "status": state}


async def test_statuses_drive_the_job(rig: Rig) -> None:
    batch = [
        msg("fleet/dev-1/status", status("en_route", NOW - 30)),
        msg("fleet/dev-1/status", status("en_route", NOW - 29)),  # repeated: no change
        msg("fleet/dev-1/status", status("on_site", NOW - 20)),
    ]
    result = await rig.gateway.handle_batch(batch)
    assert result.dead_letters == []
    statuses = [e for e in rig.events() if e["type"] == "status"]
    assert [(e["type"], e["status"], e["previous"]) for e in statuses] == [
        ("status", "en_route", "planned"),
        ("status", "on_site", "en_route"),
    ]
    job = await rig.store.get_job("job-1")
    assert job is not None and job.state == "on_site"
    assert [(c.status, c.device_id, c.source) for c in job.history] == [
        ("en_route", "dev-1", "device"),
        ("on_site", "dev-1", "device"),
    ]
    assert rig.metrics.events.get("status") == 2
    assert rig.metrics.ignored.get("repeated_status") == 1


async def test_setting_off_for_another_job_sets_the_first_back_to_planned(rig: Rig) -> None:
    # A technician drives to one place at a time: en route to job-2 (or on site there)
    # means no longer en route to job-1, whose customer must stop seeing them coming.
    await rig.gateway.put_job(Job("job-2", "tech-1", Site(60.3, 24.9), sequence=2))
    await rig.gateway.put_job(Job("job-3", "tech-1", Site(60.4, 24.9), sequence=3))
    batch = [
        msg("fleet/dev-1/status", status("en_route", NOW - 30)),
        msg("fleet/dev-1/status", status("en_route", NOW - 20, "job-2")),
        msg("fleet/dev-1/status", status("on_site", NOW - 10, "job-3")),
    ]
    assert (await rig.gateway.handle_batch(batch)).dead_letters == []
    statuses = [e for e in rig.events() if e["type"] == "status"]
    assert [(e["job_id"], e["status"], e["previous"], e["source"]) for e in statuses] == [
        ("job-1", "en_route", "planned", "device"),
        ("job-2", "en_route", "planned", "device"),
        ("job-1", "planned", "en_route", "gateway"),
        ("job-3", "on_site", "planned", "device"),
        ("job-2", "planned", "en_route", "gateway"),
    ]
    states = {j.job_id: j.state for j in await rig.store.jobs_of("tech-1")}
    assert states == {"job-1": "planned", "job-2": "planned", "job-3": "on_site"}
    job = await rig.store.get_job("job-1")
    assert job is not None
    last = job.history[-1]
    assert (last.ts, last.note) == (NOW - 20, "superseded: en_route at job-2")
    # Planned again, it can be set off for again.
    await rig.gateway.handle_batch([msg("fleet/dev-1/status", status("en_route", NOW - 5))])
    job = await rig.store.get_job("job-1")
    assert job is not None and job.state == "en_route"


async def test_a_job_en_route_handed_to_another_technician_is_planned_again(rig: Rig) -> None:
    await rig.gateway.put_technician(Technician("tech-2", "Bo", ("dev-2",)))
    await rig.gateway.handle_batch([msg("fleet/dev-1/status", status("en_route", NOW - 30))])
    rig.events()
    moved = await rig.gateway.put_job(Job("job-1", "tech-2", Site(60.2, 24.9)))
    assert (moved.state, moved.history[-1].source, moved.history[-1].note) == (
        "planned", "api", "reassigned to tech-2",
    )  # fmt: skip
    [event] = rig.events()
    assert (event["status"], event["previous"], event["technician_id"]) == (
        "planned", "en_route", "tech-1",
    )  # fmt: skip
    # Edited without a new technician: its state stays.
    await rig.gateway.handle_batch([msg("fleet/dev-2/status", status("en_route", NOW - 5))])
    again = await rig.gateway.put_job(Job("job-1", "tech-2", Site(60.2, 24.9), sequence=3))
    assert again.state == "en_route"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("fleet/dev-1/status", status("done", NOW),
         "bad_transition: planned -> done is not allowed"),
        ("fleet/dev-1/status", status("en_route", NOW, "job-x"),
         "unknown_job: job 'job-x' does not exist"),
        ("fleet/dev-2/status", status("en_route", NOW),
         "wrong_technician: device 'dev-2' belongs to no technician"),
        ("fleet/dev-1/status", status("arrived", NOW), "unknown_status"),
        ("fleet/dev-1/status", [1], "not_an_object: expected a status object, got list"),
    ],
)  # fmt: skip
async def test_refused_statuses_are_dead_lettered(
    rig: Rig, topic: str, payload: Any, reason: str
) -> None:
    good = msg("fleet/dev-1/pos", pos(NOW - 1))
    result = await rig.gateway.handle_batch([msg(topic, payload), good])
    [dead] = result.dead_letters
    assert dead.reason.startswith(reason)
    assert rig.rejected() == {reason.partition(":")[0]: 1}
    job = await rig.store.get_job("job-1")
    assert job is not None and (job.state, job.history) == ("planned", ())
    assert rig.events() == [position(NOW - 1)]


async def test_owntracks(rig: Rig) -> None:
    await rig.gateway.put_technician(Technician("tech-2", "Bo", ("bo:phone",)))
    location = {"_type": "location", "tst": int(NOW - 5), "lat": "60.17", "lon": "24.94", "vel": -1}
    batch = [
        msg("owntracks/bo/phone", {"_type": "transition", "event": "enter"}),
        msg("owntracks/bo/phone", {"_type": "lwt", "tst": 1}),
        msg("owntracks/bo/phone", location),
    ]
    result = await rig.gateway.handle_batch(batch)
    assert result.dead_letters == []
    assert rig.events() == [position(NOW - 5, "bo:phone", "tech-2")]
    assert rig.metrics.ignored.get("owntracks") == 2
    assert rig.metrics.messages.get("owntracks") == 3


@pytest.mark.parametrize(
    ("topic", "dead"),
    [
        ("fleet/dev 1/pos",
         DeadLetter("_unknown", "fleet/dev 1/pos", b"{}", f"bad_topic: {BAD_ID}", "bad_topic")),
        ("fleet/dev-1/what", DeadLetter("dev-1", "fleet/dev-1/what", b"{}",
                                        "bad_topic: unknown topic 'fleet/dev-1/what'",
                                        "bad_topic")),
        ("elsewhere/x", DeadLetter("_unknown", "elsewhere/x", b"{}",
                                   "bad_topic: unknown topic 'elsewhere/x'", "bad_topic")),
    ],
)  # fmt: skip
async def test_bad_topics_are_dead_lettered(rig: Rig, topic: str, dead: DeadLetter) -> None:
    result = await rig.gateway.handle_batch([msg(topic, b"{}")])
    assert result.dead_letters == [dead]
    assert rig.rejected() == {"bad_topic": 1}


async def test_own_output_is_ignored(rig: Rig) -> None:
    batch = [msg("fleet/out/eta", {"type": "eta"}), msg("fleet/deadletter/dev-1", b"junk")]
    result = await rig.gateway.handle_batch(batch)
    assert (result.dead_letters, rig.events()) == ([], [])
    assert rig.metrics.ignored.get("own_output") == 2
    assert rig.rejected() == {}


async def test_ingest_fixes_from_http(rig: Rig) -> None:
    fixes = [Fix("dev-1", NOW - 3, 60.17, 24.94), Fix("dev-1", NOW - 9, 60.17, 24.94)]
    summary = await rig.gateway.ingest_fixes([*fixes, fixes[0]])
    assert (summary.accepted, summary.duplicates, summary.late) == (2, 1, 1)
    assert rig.events() == [position(NOW - 3)]


async def test_report_status_from_the_api(rig: Rig) -> None:
    job = await rig.gateway.report_status(StatusUpdate("", NOW, "job-1", "cancelled", "no access"))
    assert (job.state, job.history[-1].source, job.history[-1].note) == (
        "cancelled",
        "api",
        "no access",
    )
    [event] = [e for e in rig.events() if e["type"] == "status"]
    assert (event["status"], event["source"], event["device_id"]) == ("cancelled", "api", None)
    with pytest.raises(Rejected) as info:
        await rig.gateway.report_status(StatusUpdate("", NOW, "job-1", "en_route"))
    assert info.value.code == "bad_transition"


async def test_put_job_keeps_live_state_on_update(rig: Rig) -> None:
    await rig.gateway.handle_batch([msg("fleet/dev-1/status", status("en_route", NOW - 5))])
    updated = await rig.gateway.put_job(Job("job-1", "tech-1", Site(60.3, 25.0), sequence=4))
    assert (updated.state, len(updated.history), updated.site, updated.sequence) == (
        "en_route", 1, Site(60.3, 25.0), 4,
    )  # fmt: skip
    assert await rig.store.get_job("job-1") == updated


async def test_start_loads_device_owners_from_the_store() -> None:
    store = MemoryStore()
    await store.put_technician(Technician("tech-9", "Kim", ("dev-9",)))
    gateway = Gateway(store, MemoryBus(), Metrics(), clock=lambda: NOW)
    assert gateway.technician_of("dev-9") is None
    await gateway.start()
    assert gateway.technician_of("dev-9") == "tech-9"


async def test_handed_over_device_keeps_its_new_owner(rig: Rig) -> None:
    # dev-1 moves from tech-1 to tech-2; then tech-1 is re-registered with a new phone.
    await rig.gateway.put_technician(Technician("tech-2", "Bo", ("dev-1",)))
    await rig.gateway.put_technician(Technician("tech-1", "Ann", ("dev-7",)))
    assert rig.gateway.technician_of("dev-1") == "tech-2"
    await rig.gateway.handle_batch([msg("fleet/dev-1/pos", pos(NOW - 1))])
    assert rig.events() == [position(NOW - 1, "dev-1", "tech-2")]


async def test_a_device_handed_over_leaves_its_previous_technicians_record(rig: Rig) -> None:
    await rig.gateway.put_technician(Technician("tech-1", "Ann", ("dev-1", "dev-3")))
    await rig.gateway.put_technician(Technician("tech-2", "Bo", ("dev-1", "dev-2")))
    ann, bo = await rig.store.get_technician("tech-1"), await rig.store.get_technician("tech-2")
    assert ann is not None and ann.device_ids == ("dev-3",)
    assert bo is not None and bo.device_ids == ("dev-1", "dev-2")
    assert [await rig.store.technician_of(d) for d in ("dev-1", "dev-2", "dev-3")] == [
        "tech-2", "tech-2", "tech-1",
    ]  # fmt: skip


class FailingBus(MemoryBus):
    """A bus that refuses the next ``failures`` publishes, as Redis does when it goes away."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def publish(self, events: Sequence[Event]) -> None:
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("Redis went away")
        await super().publish(events)


async def test_a_batch_stored_but_not_published_publishes_on_its_retry() -> None:
    bus = FailingBus(failures=2)
    gateway = Gateway(MemoryStore(), bus, Metrics(), TopicScheme(), clock=lambda: NOW)
    await gateway.put_technician(Technician("tech-1", "Ann", ("dev-1",)))
    batch = [msg("fleet/dev-1/pos", pos(NOW - 20)), msg("fleet/dev-1/pos", pos(NOW - 10))]
    async with bus.subscribe(None, None, 1000) as sub:
        for _ in range(2):  # stored the first time, then duplicates: no events of their own
            with pytest.raises(RedisConnectionError):
                await gateway.handle_batch(batch)
        assert sub.queue.empty()
        result = await gateway.handle_batch(batch)  # the ingest loop retries, un-acked
        seen = [orjson.loads(sub.queue.get_nowait()[2]) for _ in range(sub.queue.qsize())]
        assert [e for e in seen if e["type"] == "position"] == [
            position(NOW - 20),
            position(NOW - 10),
        ]
        # The retries neither stored the fixes again nor fed them to the engine twice.
        assert gateway.metrics.duplicates.get() == 0
        assert gateway.metrics.positions.get() == 2
        # The next batch carries nothing over.
        await gateway.handle_batch([msg("fleet/dev-1/pos", pos(NOW - 5))])
        seen = [orjson.loads(sub.queue.get_nowait()[2]) for _ in range(sub.queue.qsize())]
        assert [e for e in seen if e["type"] == "position"] == [position(NOW - 5)]
    assert [e["type"] for e in result.outbound] == []


class FailingJobStore(MemoryStore):
    """Stores fixes, then fails once writing a job the engine changed (its new ETA)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def put_eta(self, job: Job) -> None:
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("Redis went away")
        await super().put_eta(job)


async def test_fixes_stored_before_a_later_step_failed_keep_their_events() -> None:
    store = FailingJobStore()
    bus = MemoryBus()
    gateway = Gateway(store, bus, Metrics(), TopicScheme(), clock=lambda: NOW)
    await gateway.put_technician(Technician("tech-1", "Ann", ("dev-1",)))
    store.failures = 0
    await gateway.put_job(Job("job-1", "tech-1", Site(60.2, 24.9)))
    store.failures = 1  # the ETA the first fix gives job-1 cannot be written
    batch = [msg("fleet/dev-1/pos", pos(NOW - 10))]
    async with bus.subscribe(None, None, 1000) as sub:
        with pytest.raises(RedisConnectionError):
            await gateway.handle_batch(batch)
        await gateway.handle_batch(batch)
        seen = [orjson.loads(sub.queue.get_nowait()[2]) for _ in range(sub.queue.qsize())]
    assert [e for e in seen if e["type"] == "position"] == [position(NOW - 10)]


class LostReplyStore(MemoryStore):
    """Stores a batch, then loses the reply once (Redis died after running the script);
    answers a repeated attempt token with the verdicts it gave, as RedisStore does."""

    def __init__(self) -> None:
        super().__init__()
        self.lose = 1
        self.memo: dict[str, list[Verdict]] = {}
        self.tokens: list[str | None] = []

    async def record_fixes(
        self,
        fixes: Sequence[Fix],
        token: str | None = None,
        events: Sequence[Event] | None = None,
    ) -> list[Verdict]:
        self.tokens.append(token)
        if token is not None and token in self.memo:
            return self.memo[token]
        verdicts = await super().record_fixes(fixes)
        if token is not None:
            self.memo[token] = verdicts
        if self.lose:
            self.lose -= 1
            raise RedisConnectionError("Connection closed by server.")
        return verdicts


async def test_a_store_reply_lost_is_answered_on_the_retry_by_its_token() -> None:
    store = LostReplyStore()
    bus = MemoryBus()
    gateway = Gateway(store, bus, Metrics(), TopicScheme(), clock=lambda: NOW)
    await gateway.put_technician(Technician("tech-1", "Ann", ("dev-1",)))
    batch = [msg("fleet/dev-1/pos", pos(NOW - 20)), msg("fleet/dev-1/pos", pos(NOW - 10))]
    async with bus.subscribe(None, None, 1000) as sub:
        with pytest.raises(RedisConnectionError):
            await gateway.handle_batch(batch)
        await gateway.handle_batch(batch)
        seen = [orjson.loads(sub.queue.get_nowait()[2]) for _ in range(sub.queue.qsize())]
        assert [e for e in seen if e["type"] == "position"] == [
            position(NOW - 20),
            position(NOW - 10),
        ]
        assert store.tokens[0] is not None and store.tokens == [store.tokens[0]] * 2
        # A new batch is a new attempt, even with the same content after a success.
        await gateway.handle_batch(batch)
        assert store.tokens[2] != store.tokens[0]
        assert sub.queue.empty()  # duplicates: no position, and nothing else changed
    assert gateway.metrics.duplicates.get() == 2
    assert gateway.engine.techs["tech-1"].last_fix == Fix("dev-1", NOW - 10, 60.17, 24.94)


class OutboxStore(MemoryStore):
    """Publishes the events it is given with the data, as RedisStore does with a stream."""

    publishes_events = True

    def __init__(self) -> None:
        super().__init__()
        self.published: list[Event] = []

    async def record_fixes(
        self,
        fixes: Sequence[Fix],
        token: str | None = None,
        events: Sequence[Event] | None = None,
    ) -> list[Verdict]:
        verdicts = await super().record_fixes(fixes, token)
        assert events is not None and len(events) == len(fixes)
        self.published += [e for e, v in zip(events, verdicts, strict=True) if v is Verdict.NEWEST]
        return verdicts

    async def put_job(self, job: Job, events: Sequence[Event] = ()) -> None:
        await super().put_job(job)
        self.published += events

    async def put_fence(self, fence_id: str, feature: bytes, events: Sequence[Event] = ()) -> None:
        await super().put_fence(fence_id, feature)
        self.published += events

    async def delete_fence(self, fence_id: str, events: Sequence[Event] = ()) -> bool:
        removed = await super().delete_fence(fence_id)
        if removed:
            self.published += events
        return removed


async def test_an_outbox_store_publishes_what_it_stores_and_the_bus_does_not_again() -> None:
    store, bus = OutboxStore(), MemoryBus()
    gateway = Gateway(store, bus, Metrics(), TopicScheme(), clock=lambda: NOW)
    await gateway.put_technician(Technician("tech-1", "Ann", ("dev-1",)))
    await gateway.put_job(Job("job-1", "tech-1", Site(60.2, 24.9)))
    assert [e["type"] for e in store.published] == ["job"]
    store.published.clear()
    batch = [
        msg("fleet/dev-1/pos", pos(NOW - 10)),
        msg("fleet/dev-1/pos", pos(NOW - 10)),  # a duplicate: no event
        msg("fleet/dev-1/pos", pos(NOW - 20)),  # late: stored, no event
        msg("fleet/dev-1/status", {"ts": NOW - 5, "job": "job-1", "status": "en_route"}),
    ]
    async with bus.subscribe(None, None, 1000) as sub:
        await gateway.handle_batch(batch)
        on_bus = [orjson.loads(sub.queue.get_nowait()[2]) for _ in range(sub.queue.qsize())]
    assert [(e["type"], e["ts"]) for e in store.published] == [
        ("position", NOW - 10),
        ("status", NOW - 5),
    ]
    assert store.published[0] == position(NOW - 10)
    # The engine's own events still go by the bus; what the store published does not.
    assert {e["type"] for e in on_bus} == {"eta"}
    assert gateway.metrics.events.get("position") == 1
    assert gateway.metrics.events.get("status") == 1
    assert gateway.metrics.events.get("job") == 1


async def test_a_retried_batch_is_counted_once() -> None:
    """Messages, rejects and ignored repeats are counted by a batch's first try only."""
    bus = FailingBus(failures=0)
    gateway = Gateway(MemoryStore(), bus, Metrics(), TopicScheme(), clock=lambda: NOW)
    await gateway.put_technician(Technician("tech-1", "Ann", ("dev-1",)))
    batch = [
        msg("fleet/dev-1/pos", pos(NOW - 10)),
        msg("fleet/dev-1/pos", b"\xff not json"),
        msg("fleet/dev-1/status", status("en_route", NOW - 5)),
        msg("fleet/dev-1/status", status("en_route", NOW - 4)),  # the same again: ignored
    ]
    await gateway.put_job(Job("job-1", "tech-1", Site(60.2, 24.9)))
    bus.failures = 2
    for _ in range(2):
        with pytest.raises(RedisConnectionError):
            await gateway.handle_batch(batch)
    await gateway.handle_batch(batch)
    m = gateway.metrics
    assert m.messages.get("pos") == 2 and m.messages.get("status") == 2
    assert {labels[0]: v for labels, v in m.rejected.values.items()} == {"bad_encoding": 1}
    assert m.ignored.get("repeated_status") == 1
    assert m.positions.get() == 1
    # Outside a batch's retry, everything counts.
    await gateway.handle_batch([msg("fleet/dev-1/pos", b"\xff not json")])
    assert m.messages.get("pos") == 3
    assert {labels[0]: v for labels, v in m.rejected.values.items()} == {"bad_encoding": 2}


async def test_an_outbox_store_publishes_fence_changes_once() -> None:
    store, bus = OutboxStore(), MemoryBus()
    gateway = Gateway(store, bus, Metrics(), TopicScheme(), clock=lambda: NOW)
    square = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
        [[24.9, 60.1], [24.91, 60.1], [24.91, 60.11], [24.9, 60.11], [24.9, 60.1]]]}}  # fmt: skip
    async with bus.subscribe(None, None, 1000) as sub:
        await gateway.put_fence("depot", square)
        assert await gateway.delete_fence("depot") is True
        assert await gateway.delete_fence("depot") is False  # retried: nothing to announce
        on_bus = [orjson.loads(sub.queue.get_nowait()[2]) for _ in range(sub.queue.qsize())]
    assert on_bus == []
    assert [(e["type"], e["deleted"]) for e in store.published] == [
        ("fence", False),
        ("fence", True),
    ]
    assert gateway.metrics.events.get("fence") == 2
    assert "depot" not in gateway.engine.fences.fences


async def test_an_eta_written_back_keeps_a_status_stored_meanwhile(rig: Rig) -> None:
    """With several workers the engine lags the store: another worker may store a status
    the engine has not seen yet. The engine's new ETA for that job must not undo it."""
    await rig.gateway.handle_batch([msg("fleet/dev-1/status", status("en_route", NOW - 50))])
    seen = await rig.store.get_job("job-1")
    assert seen is not None and seen.state == "en_route"
    elsewhere = StatusChange(NOW - 40, "on_site", "en_route", "device", "dev-1")
    arrived = msgspec.structs.replace(seen, state="on_site", history=(*seen.history, elsewhere))
    await rig.store.put_job(arrived)  # another worker; this engine has not heard of it
    await rig.gateway.handle_batch([msg("fleet/dev-1/pos", pos(NOW - 30))])
    stored = await rig.store.get_job("job-1")
    assert stored is not None
    assert (stored.state, stored.history) == ("on_site", arrived.history)
    assert stored.eta is not None  # the engine's ETA, on the job as stored
