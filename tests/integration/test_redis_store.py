"""RedisStore against a private redis-server: the same answers as MemoryStore, atomically.

Every test uses its own key prefix on one module-wide server; the outage test
runs its own server so it can stop it.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import cast

import msgspec
import orjson
import pytest
import redis.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import redis_store
from gateway.model import Customer, Fix, Job, Site, Technician, Window
from gateway.redis_store import RedisStore, decode_fix, encode_fix
from gateway.store import MemoryStore, Store, Verdict
from tests.support.procs import RedisServer, redis_server

pytestmark = pytest.mark.integration
N, L, D = Verdict.NEWEST, Verdict.LATE, Verdict.DUPLICATE
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as srv:
        yield srv


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


async def open_store(
    server: RedisServer, limit: int = 10_000, prefix: str | None = None
) -> RedisStore:
    return await RedisStore.connect(
        server.url, history_per_device=limit, key_prefix=prefix or new_prefix()
    )


@pytest.fixture
async def store(server: RedisServer) -> AsyncIterator[RedisStore]:
    s = await open_store(server)
    yield s
    await s.close()


def fx(device: str, ts: float, lat: float = 60.0) -> Fix:
    return Fix(device, ts, lat, 24.0)


# (name, history limit, batches of fixes, expected verdicts per batch)
VERDICT_TABLE: list[tuple[str, int, list[list[Fix]], list[list[Verdict]]]] = [
    ("in order", 100, [[fx("a", T0), fx("a", T0 + 1)], [fx("a", T0 + 2)]], [[N, N], [N]]),
    ("late fix stored, not live", 100, [[fx("a", T0 + 5)], [fx("a", T0 + 3), fx("a", T0 + 4)]],
     [[N], [L, L]]),
    ("retained replay of newest", 100, [[fx("a", T0), fx("a", T0 + 1)], [fx("a", T0 + 1, 61.0)]],
     [[N, N], [D]]),
    ("duplicate of a late fix", 100, [[fx("a", T0 + 9), fx("a", T0 + 2)], [fx("a", T0 + 2)]],
     [[N, L], [D]]),
    ("duplicate inside one batch", 100,
     [[fx("a", T0), fx("a", T0), fx("a", T0 - 1), fx("a", T0 - 1)]], [[N, D, L, D]]),
    ("devices are independent", 100, [[fx("a", T0 + 1), fx("b", T0), fx("b", T0 + 1), fx("a", T0)]],
     [[N, N, N, L]]),
    ("sub-millisecond times differ", 100,
     [[fx("a", T0 + 0.001), fx("a", T0 + 0.0011), fx("a", T0 + 0.001), fx("a", T0 + 0.00105)]],
     [[N, N, D, L]]),
    ("trimmed fixes are forgotten", 8,
     [[fx("a", T0 + i) for i in range(12)], [fx("a", T0), fx("a", T0 + 11)]], [[N] * 12, [L, D]]),
]  # fmt: skip


async def same_state(redis: RedisStore, memory: MemoryStore) -> None:
    for device in ("a", "b"):
        assert await redis.latest(device) == await memory.latest(device)
        want = await memory.history(device, None, None, 1000)
        assert await redis.history(device, None, None, 1000) == want


async def run_table(store: Store, batches: list[list[Fix]]) -> list[list[Verdict]]:
    return [await store.record_fixes(batch) for batch in batches]


@pytest.mark.parametrize(
    ("name", "limit", "batches", "expected"), VERDICT_TABLE, ids=[c[0] for c in VERDICT_TABLE]
)
async def test_verdicts_history_and_latest_match_memory_store(
    server: RedisServer,
    name: str,
    limit: int,
    batches: list[list[Fix]],
    expected: list[list[Verdict]],
) -> None:
    memory = MemoryStore(limit)
    redis = await open_store(server, limit)
    try:
        assert await run_table(memory, batches) == expected
        assert await run_table(redis, batches) == expected
        await same_state(redis, memory)
    finally:
        await redis.close()


FIXES = st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 40)), max_size=60)


@settings(max_examples=40, deadline=None)
@given(steps=FIXES, limit=st.integers(1, 12), batch=st.integers(1, 7))
def test_any_sequence_gets_memory_store_answers(
    server: RedisServer, steps: list[tuple[str, int]], limit: int, batch: int
) -> None:
    fixes = [fx(device, T0 + ts) for device, ts in steps]
    batches = [fixes[i : i + batch] for i in range(0, len(fixes), batch)]

    async def both() -> None:
        memory = MemoryStore(limit)
        redis = await open_store(server, limit)
        try:
            assert await run_table(redis, batches) == await run_table(memory, batches)
            await same_state(redis, memory)
        finally:
            await redis.close()

    asyncio.run(both())


async def test_late_write_from_another_worker_does_not_move_live_state_back(
    server: RedisServer,
) -> None:
    prefix = new_prefix()
    a, b = await open_store(server, prefix=prefix), await open_store(server, prefix=prefix)
    try:
        # Worker B got the newer fix first; worker A's older one lands after it.
        assert await b.record_fixes([fx("d", T0 + 2, 62.0)]) == [N]
        assert await a.record_fixes([fx("d", T0 + 1, 61.0)]) == [L]
        assert await a.latest("d") == fx("d", T0 + 2, 62.0)
    finally:
        await a.close()
        await b.close()


async def test_concurrent_workers_with_interleaved_fixes_end_with_newest(
    server: RedisServer,
) -> None:
    prefix = new_prefix()
    workers = [await open_store(server, prefix=prefix) for _ in range(2)]
    rng = random.Random(7)
    fixes = [fx(dev, T0 + i, 60 + i / 1000) for i in range(300) for dev in ("d1", "d2")]
    # Round robin like a shared subscription, each worker's share shuffled and re-sent once.
    shares = [fixes[0::2], fixes[1::2]]
    for share in shares:
        rng.shuffle(share)
        share.extend(rng.sample(share, 20))

    async def drain(store: RedisStore, share: list[Fix]) -> list[Verdict]:
        out: list[Verdict] = []
        i = 0
        while i < len(share):
            n = rng.randint(1, 9)
            out += await store.record_fixes(share[i : i + n])
            i += n
        return out

    try:
        results = await asyncio.gather(*(drain(w, s) for w, s in zip(workers, shares, strict=True)))
        verdicts = results[0] + results[1]
        assert verdicts.count(D) == 40
        assert len(verdicts) - verdicts.count(D) == 600
        for dev in ("d1", "d2"):
            assert await workers[0].latest(dev) == fx(dev, T0 + 299, 60 + 299 / 1000)
            history = await workers[1].history(dev, None, None, 1000)
            assert [f.ts for f in history] == [T0 + i for i in range(300)]
    finally:
        for w in workers:
            await w.close()


HISTORY_WINDOWS = [
    (None, None, 100, [0, 1, 2, 3, 4, 5]),
    (T0 + 2, None, 100, [2, 3, 4, 5]),
    (None, T0 + 2, 100, [0, 1, 2]),
    (T0 + 1, T0 + 4, 2, [1, 2]),
    (T0 + 1.5, T0 + 3.5, 100, [2, 3]),
    (T0 + 9, None, 100, []),
    (None, None, 0, []),
]


@pytest.mark.parametrize(("since", "until", "limit", "expected"), HISTORY_WINDOWS)
async def test_history_window_oldest_first(
    store: RedisStore, since: float | None, until: float | None, limit: int, expected: list[int]
) -> None:
    await store.record_fixes([fx("a", T0 + i) for i in (3, 0, 5, 1, 4, 2, 3)])
    got = await store.history("a", since, until, limit)
    assert [f.ts - T0 for f in got] == expected
    assert await store.history("nobody", None, None, 10) == []
    assert await store.latest("nobody") is None


async def test_history_length_is_bounded(server: RedisServer) -> None:
    s = await open_store(server, limit=16)
    try:
        for start in range(0, 200, 10):
            await s.record_fixes([fx("a", T0 + i) for i in range(start, start + 10)])
        kept = await s.history("a", None, None, 1000)
        # Trimmed back to 16 once more than 16 + 16 // 8 pile up (as MemoryStore).
        assert 16 <= len(kept) <= 18
        assert kept[-1].ts == T0 + 199
        assert [f.ts for f in kept] == sorted(f.ts for f in kept)
    finally:
        await s.close()


ROUND_TRIP = [
    Fix("dev-1", T0 + 0.25, -33.8688, 151.2093),
    Fix("dev-1", T0 + 1, 60.1, 24.9, spd=8.5, hdg=359.9, acc=4.0, alt=-12.5, bat=77.0,
        seq=2**40, sent=T0 + 1.5),
    Fix("dev-1", T0 + 2, 60.1, 24.9, bat=5.0),
    Fix("dev-1", T0 + 3, 0.0001, -0.0001, sent=T0),
]  # fmt: skip


@pytest.mark.parametrize("fix", ROUND_TRIP)
async def test_fix_round_trips_exactly(store: RedisStore, fix: Fix) -> None:
    assert decode_fix(fix.device_id, encode_fix(fix)) == fix
    assert await store.record_fixes([fix]) == [N]
    assert await store.latest(fix.device_id) == fix
    assert await store.history(fix.device_id, fix.ts, fix.ts, 5) == [fix]


async def test_technicians_round_trip_and_own_devices(store: RedisStore) -> None:
    first = Technician("t1", "Ann", ("d1", "d2"), ("hvac",))
    assert await store.put_technician(first) is None
    assert await store.put_technician(Technician("t2", "Bob", ("d3",))) is None
    moved = Technician("t1", "Ann B", ("d2", "d4"), ("hvac", "gas"))
    assert await store.put_technician(moved) == first
    assert await store.get_technician("t1") == moved
    assert await store.get_technician("nobody") is None
    assert [t.technician_id for t in await store.list_technicians()] == ["t1", "t2"]
    owners = {d: await store.technician_of(d) for d in ("d1", "d2", "d3", "d4", "d9")}
    assert owners == {"d1": None, "d2": "t1", "d3": "t2", "d4": "t1", "d9": None}


async def test_device_handed_over_stays_with_its_new_technician(store: RedisStore) -> None:
    await store.put_technician(Technician("t1", "Ann", ("d1",)))
    await store.put_technician(Technician("t2", "Bob", ("d1",)))
    # Re-saving t1 without d1 must not take d1 away from t2.
    await store.put_technician(Technician("t1", "Ann", ()))
    assert await store.technician_of("d1") == "t2"


def job(job_id: str, tech: str | None, sequence: int, start: float | None = None) -> Job:
    window = None if start is None else Window(start, start + 3600)
    return Job(
        job_id,
        tech,
        Site(60.1, 24.9, 80.0),
        window,
        sequence=sequence,
        customer=Customer("C", "r1"),
    )


async def test_jobs_round_trip_in_tour_order(store: RedisStore) -> None:
    jobs = [job("j-c", "t1", 2, T0), job("j-b", "t1", 1, T0 + 60), job("j-a", "t1", 1, T0 + 60),
            job("j-z", "t1", 1, T0), job("j-x", "t2", 0), job("j-n", None, 0)]  # fmt: skip
    for j in jobs:
        await store.put_job(j)
    assert await store.get_job("j-c") == jobs[0]
    assert await store.get_job("nope") is None
    assert [j.job_id for j in await store.jobs_of("t1")] == ["j-z", "j-a", "j-b", "j-c"]
    assert [j.job_id for j in await store.list_jobs()] == ["j-a", "j-b", "j-c", "j-n", "j-x", "j-z"]
    # Reassigning a job moves it between tours; unassigning removes it.
    await store.put_job(job("j-c", "t2", 5))
    await store.put_job(job("j-x", None, 0))
    assert [j.job_id for j in await store.jobs_of("t1")] == ["j-z", "j-a", "j-b"]
    assert [j.job_id for j in await store.jobs_of("t2")] == ["j-c"]
    memory = MemoryStore()
    for j in [*jobs, job("j-c", "t2", 5), job("j-x", None, 0)]:
        await memory.put_job(j)
    for tech in ("t1", "t2"):
        assert await store.jobs_of(tech) == await memory.jobs_of(tech)


async def test_standing_alerts_match_memory_store(store: RedisStore) -> None:
    """Raised and cleared in batches, in order (a raise and its clear may share one)."""
    memory, rng = MemoryStore(), random.Random(5)
    kinds = ("late_risk", "overrun", "stale_device", "left_site_open_job")
    for step in range(150):
        batch = []
        for _ in range(rng.randint(1, 4)):
            event = {
                "type": "alert", "alert": rng.choice(kinds), "severity": "warning",
                "ts": T0 + step, "technician_id": rng.choice(("t1", "t2")),
                "job_id": rng.choice(("j1", "j2", None)), "eta": T0 + 600.5,
            }  # fmt: skip
            if rng.random() < 0.4:
                event["cleared"] = True
            batch.append(event)
        await store.put_alerts(batch)
        await memory.put_alerts(batch)
        assert await store.list_alerts() == await memory.list_alerts()
    standing = await store.list_alerts()
    assert standing and all(not a.get("cleared") for a in standing)


async def test_signed_out_sessions_expire_with_them(store: RedisStore) -> None:
    for s in (store, MemoryStore()):
        await s.revoke_session("a", 0.3)
        assert (await s.session_revoked("a"), await s.session_revoked("b")) == (True, False)
        await asyncio.sleep(0.4)  # as long as the session could have lived: forgotten
        assert await s.session_revoked("a") is False


async def test_blobs_round_trip(store: RedisStore) -> None:
    assert await store.get_blob("eta-model") is None
    await store.put_blob("eta-model", b"\x00\x01snapshot")
    await store.put_blob("fences", b"")
    assert await store.get_blob("eta-model") == b"\x00\x01snapshot"
    assert await store.get_blob("fences") == b""


async def test_script_flush_is_recovered(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await store.record_fixes([fx("a", T0)]) == [N]
    await store.client.script_flush()
    assert await store.record_fixes([fx("a", T0 + 1), fx("a", T0)]) == [N, D]
    # Several chunks go in one pipeline; each NOSCRIPT reply is redone in order.
    monkeypatch.setattr(redis_store, "SCRIPT_CHUNK", 3)
    await store.client.script_flush()
    batch = [fx("a", T0 + t) for t in (5, 4, 4, 2, 6, 1, 6)]
    assert await store.record_fixes(batch) == [N, L, D, L, N, D, D]
    await store.client.script_flush()
    assert await store.put_technician(Technician("t1", "Ann", ("a",))) is None
    await store.put_job(job("j1", "t1", 1))
    assert [j.job_id for j in await store.jobs_of("t1")] == ["j1"]


async def test_redis_down_fails_fast_and_recovers() -> None:
    with redis_server() as srv:
        s = await open_store(srv)
        try:
            assert await s.ping() is True
            assert await s.record_fixes([fx("a", T0)]) == [N]
            srv.stop()
            async with asyncio.timeout(5):
                assert await s.ping() is False
                with pytest.raises(
                    (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
                ):
                    await s.record_fixes([fx("a", T0 + 1)])
            # A restarted Redis has an empty script cache (and, here, no data).
            srv.start()
            assert await s.ping() is True
            assert await s.record_fixes([fx("a", T0 + 1), fx("a", T0 + 1)]) == [N, D]
        finally:
            await s.close()


async def test_an_attempt_token_repeats_its_verdicts_for_the_retry(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = [fx("a", T0 + 2), fx("a", T0 + 1), fx("a", T0 + 2)]
    first = await store.record_fixes(batch, "try-1")
    assert first == [Verdict.NEWEST, Verdict.LATE, Verdict.DUPLICATE]
    # The same attempt again (its reply was lost): what was decided then, nothing stored twice.
    assert await store.record_fixes(batch, "try-1") == first
    assert [f.ts for f in await store.history("a", None, None, 10)] == [T0 + 1, T0 + 2]
    # Another attempt, or none, decides afresh.
    assert await store.record_fixes(batch, "try-2") == [Verdict.DUPLICATE] * 3
    assert await store.record_fixes(batch) == [Verdict.DUPLICATE] * 3
    # The memo of each call lasts RECORD_TTL_S; a batch over SCRIPT_CHUNK has one per chunk.
    ttl = await store.client.ttl(f"{store.prefix}rec:try-1:0")
    assert 0 < ttl <= redis_store.RECORD_TTL_S
    monkeypatch.setattr(redis_store, "SCRIPT_CHUNK", 2)
    many = [fx("b", T0 + i) for i in range(5)]
    assert await store.record_fixes(many, "try-3") == [Verdict.NEWEST] * 5
    assert await store.record_fixes(many, "try-3") == [Verdict.NEWEST] * 5
    assert len(await store.client.keys(f"{store.prefix}rec:try-3:*")) == 3


# -- the store as the bus's outbox ------------------------------------------------------


async def stream_events(store: RedisStore, stream: str) -> list[tuple[str, dict[str, object]]]:
    # Replies as our clients return them: RESP2, not decoded.
    rows = cast(list[tuple[bytes, dict[bytes, bytes]]], await store.client.xrange(stream))
    return [(f[b"t"].decode(), orjson.loads(f[b"d"])) for _, f in rows]


async def test_events_go_to_the_stream_with_the_fixes_that_are_newest(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = new_prefix()
    stream = f"{prefix}events"
    store = await RedisStore.connect(server.url, key_prefix=prefix, events=(stream, 1000))
    try:
        assert store.publishes_events
        batch = [fx("a", T0 + 2), fx("a", T0 + 1), fx("a", T0 + 2), fx("b", T0)]
        events = [{"type": "position", "n": i} for i in range(len(batch))]
        assert await store.record_fixes(batch, "try-1", events) == [N, L, D, N]
        # Late and duplicate fixes make no event: only the first and the last.
        assert await stream_events(store, stream) == [
            ("position", events[0]),
            ("position", events[3]),
        ]
        # The retry of a lost reply gets its verdicts back and appends nothing again.
        assert await store.record_fixes(batch, "try-1", events) == [N, L, D, N]
        assert len(await stream_events(store, stream)) == 2
        # Without events (a caller that publishes itself) the stream is left alone.
        assert await store.record_fixes([fx("a", T0 + 3)]) == [N]
        assert len(await stream_events(store, stream)) == 2
        with pytest.raises(ValueError, match="one event per fix"):
            await store.record_fixes([fx("a", T0 + 4)], None, [])
        # Every chunk of a big batch appends its own fixes' events, in order.
        monkeypatch.setattr(redis_store, "SCRIPT_CHUNK", 2)
        many = [fx("c", T0 + i) for i in range(5)]
        await store.record_fixes(many, None, [{"type": "position", "k": i} for i in range(5)])
        assert [e["k"] for _, e in (await stream_events(store, stream))[2:]] == list(range(5))
        # A job and the events of its change go together too.
        status = {"type": "status", "job_id": "j1", "status": "done"}
        await store.put_job(job("j1", "t1", 1), [status])
        assert (await stream_events(store, stream))[-1] == ("status", status)
        assert await store.get_job("j1") == job("j1", "t1", 1)
        # So do a fence and its event; a deletion's only if there was something to delete.
        put = {"type": "fence", "geofence_id": "depot", "deleted": False}
        await store.put_fence("depot", b'{"type": "Feature"}', [put])
        assert (await stream_events(store, stream))[-1] == ("fence", put)
        assert await store.list_fences() == {"depot": b'{"type": "Feature"}'}
        gone = {"type": "fence", "geofence_id": "depot", "deleted": True}
        assert await store.delete_fence("depot", [gone]) is True
        assert await store.delete_fence("depot", [gone]) is False  # a retried DELETE
        assert [e for _, e in await stream_events(store, stream)][-2:] == [put, gone]
        assert await store.list_fences() == {}
    finally:
        await store.close()


async def test_a_store_without_a_stream_publishes_nothing(store: RedisStore) -> None:
    assert not store.publishes_events
    await store.record_fixes([fx("a", T0)], None, [{"type": "position"}])
    await store.put_job(job("j1", "t1", 1), [{"type": "status"}])
    await store.put_fence("f", b"{}", [{"type": "fence"}])
    assert await store.delete_fence("f", [{"type": "fence"}]) is True
    assert await store.client.keys(f"{store.prefix}events") == []
    assert await store.get_job("j1") == job("j1", "t1", 1)


async def test_put_eta_sets_the_eta_fields_on_the_job_as_stored(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = job("j1", "t1", 1)
    await store.put_job(seen)
    moved = msgspec.structs.replace(seen, sequence=7)  # an edit the engine has not seen
    await store.put_job(moved)
    engine_fields: dict[str, object] = {
        "eta": T0 + 600, "eta_p90": T0 + 700, "delay_s": -50.0,
        "predictions": ((T0, T0 + 600),), "notified": ("arriving_soon",),
    }  # fmt: skip
    estimated = msgspec.structs.replace(seen, **engine_fields)
    await store.put_eta(estimated)
    assert await store.get_job("j1") == msgspec.structs.replace(moved, **engine_fields)
    # Another writer between the read and the write: the script refuses, the merge is
    # made again on what that writer stored.
    script = store._update_job
    raced = [False]

    async def racing(client: object, keys: object, args: object) -> object:
        if not raced[0]:
            raced[0] = True
            await store.put_job(msgspec.structs.replace(moved, sequence=8))
        return await script(client, keys, args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_update_job", racing)
    await store.put_eta(msgspec.structs.replace(estimated, eta=T0 + 900))
    final = await store.get_job("j1")
    assert final is not None and (final.sequence, final.eta) == (8, T0 + 900)
    # A job deleted meanwhile is not brought back.
    await store.put_eta(job("gone", "t1", 1))
    assert await store.get_job("gone") is None
