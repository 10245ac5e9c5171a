"""RedisBus against a private redis-server: ids, replay, two API nodes, one reader per node."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest

from gateway.bus import Subscription, parse_id
from gateway.model import Event
from gateway.redis_bus import RedisBus
from tests.support.procs import RedisServer, redis_server

pytestmark = pytest.mark.integration
Item = tuple[str, str, bytes]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as srv:
        yield srv


@contextlib.asynccontextmanager
async def nodes(server: RedisServer, n: int, replay: int = 10_000) -> AsyncIterator[list[RedisBus]]:
    """``n`` buses on one stream, as ``n`` API nodes would have."""
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    buses = [RedisBus(server.url, replay=replay, key_prefix=prefix) for _ in range(n)]
    try:
        yield buses
    finally:
        for bus in buses:
            await bus.close()


def ev(n: int, technician_id: str = "t-a", kind: str = "position") -> Event:
    return {"type": kind, "n": n, "technician_id": technician_id}


async def take(sub: Subscription, n: int, within_s: float = 5.0) -> list[Item]:
    async with asyncio.timeout(within_s):
        return [await sub.queue.get() for _ in range(n)]


def numbers(items: list[Item]) -> list[int]:
    return [orjson.loads(data)["n"] for _, _, data in items]


async def test_ids_increase_and_carry_type_and_data(server: RedisServer) -> None:
    async with nodes(server, 1) as (bus,), bus.subscribe(None, None, 100) as sub:
        await bus.publish([ev(0), ev(1, kind="eta")])
        await bus.publish([ev(2, kind="alert")])
        got = await take(sub, 3)
    keys = [parse_id(event_id) or (0, 0) for event_id, _, _ in got]
    assert keys[0] > (0, 0)
    assert keys == sorted(keys) and len(set(keys)) == 3
    assert [(t, orjson.loads(d)) for _, t, d in got] == [
        ("position", ev(0)), ("eta", ev(1, kind="eta")), ("alert", ev(2, kind="alert"))
    ]  # fmt: skip
    assert bus.published == 3


async def test_resume_after_id_replays_then_goes_live(server: RedisServer) -> None:
    async with nodes(server, 1) as (bus,):
        async with bus.subscribe(None, None, 100) as sub:
            await bus.publish([ev(i) for i in range(5)])
            seen = await take(sub, 5)
        async with bus.subscribe(seen[1][0], None, 100) as sub:
            replayed = await take(sub, 3)
            await bus.publish([ev(5)])
            live = await take(sub, 1)
            assert sub.queue.empty()
    assert replayed == seen[2:]
    assert numbers(live) == [5]


async def test_event_published_on_one_node_reaches_the_other(server: RedisServer) -> None:
    async with nodes(server, 2) as (a, b), b.subscribe(None, None, 100) as sub_b:
        await a.publish([ev(1), ev(2)])
        assert numbers(await take(sub_b, 2)) == [1, 2]


async def test_resume_on_other_node_with_id_seen_on_first(server: RedisServer) -> None:
    async with nodes(server, 2) as (a, b):
        async with a.subscribe(None, None, 100) as sub_a:
            await a.publish([ev(i) for i in range(4)])
            seen_on_a = await take(sub_a, 4)
        await b.publish([ev(4), ev(5)])  # published while the browser was away
        async with b.subscribe(seen_on_a[2][0], None, 100) as sub_b:
            resumed = await take(sub_b, 3)
            await a.publish([ev(6)])
            resumed += await take(sub_b, 1)
            await asyncio.sleep(0.1)
            assert sub_b.queue.empty()
    assert numbers(resumed) == [3, 4, 5, 6]
    assert resumed[0] == seen_on_a[3]


async def test_replay_racing_live_publishing_has_no_gap_and_no_duplicate(
    server: RedisServer,
) -> None:
    async with nodes(server, 2) as (a, b):
        async with a.subscribe(None, None, 10) as sub:
            await a.publish([ev(-1)])
            (first,) = await take(sub, 1)
        stop = asyncio.Event()

        async def publish_forever() -> None:
            n = 0
            while not stop.is_set():
                await a.publish([ev(n), ev(n + 1)])
                n += 2
                await asyncio.sleep(0)

        publisher = asyncio.create_task(publish_forever())
        try:
            resumed: list[list[Item]] = []
            for _ in range(10):
                async with b.subscribe(first[0], None, 100_000) as sub:
                    await asyncio.sleep(0.02)
                    items: list[Item] = []
                    while not sub.queue.empty():
                        items.append(sub.queue.get_nowait())
                    resumed.append(items)
        finally:
            stop.set()
            await publisher
    for items in resumed:
        # Contiguous from the first event after the resume point: no gap, no duplicate.
        assert numbers(items) == list(range(len(items)))
        assert len(items) >= 2


async def test_predicate_filters_per_subscriber(server: RedisServer) -> None:
    async with nodes(server, 1) as (bus,):
        only_a = bus.subscribe(None, lambda e: e.get("technician_id") == "t-a", 100)
        async with only_a as sub_a, bus.subscribe(None, None, 100) as sub_all:
            await bus.publish([ev(1, "t-b"), ev(2, "t-a"), ev(3, "t-b"), ev(4, "t-a")])
            assert numbers(await take(sub_all, 4)) == [1, 2, 3, 4]
            assert numbers(await take(sub_a, 2)) == [2, 4]
            assert sub_a.queue.empty()


async def test_full_queue_marks_subscriber_overflowed(server: RedisServer) -> None:
    async with nodes(server, 1) as (bus,), bus.subscribe(None, None, 3) as slow:
        async with bus.subscribe(None, None, 100) as fast:
            await bus.publish([ev(i) for i in range(10)])
            assert numbers(await take(fast, 10)) == list(range(10))
        assert slow.overflowed.is_set()
        assert numbers(await take(slow, 3)) == [0, 1, 2]


async def test_replay_longer_than_queue_overflows(server: RedisServer) -> None:
    async with nodes(server, 1) as (bus,):
        await bus.publish([ev(-1)])
        async with bus.subscribe(None, None, 100) as sub:
            await bus.publish([ev(0)])
            (mark,) = await take(sub, 1)
        await bus.publish([ev(i) for i in range(1, 2500)])
        async with bus.subscribe(mark[0], None, 5) as sub:
            assert sub.overflowed.is_set()
            assert numbers(await take(sub, 5)) == [1, 2, 3, 4, 5]


async def test_many_subscribers_share_one_blocking_read(server: RedisServer) -> None:
    async with nodes(server, 2) as (a, b), contextlib.AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(a.subscribe(None, None, 100)) for _ in range(20)]
        subs.append(await stack.enter_async_context(b.subscribe(None, None, 100)))
        await b.publish([ev(1)])
        for sub in subs:
            assert numbers(await take(sub, 1)) == [1]
        assert a.subscriber_count == 20
        readers = [t for t in asyncio.all_tasks() if t.get_name().startswith("redis-bus-reader")]
        assert len(readers) == 2


async def test_unusable_last_id_means_live_only(server: RedisServer) -> None:
    async with nodes(server, 1) as (bus,):
        await bus.publish([ev(0)])
        async with bus.subscribe("not-an-id", None, 100) as sub:
            await bus.publish([ev(1)])
            assert numbers(await take(sub, 1)) == [1]


async def test_stream_is_trimmed_to_about_replay_length(server: RedisServer) -> None:
    async with nodes(server, 1, replay=100) as (bus,):
        for start in range(0, 1000, 50):
            await bus.publish([ev(i) for i in range(start, start + 50)])
        length = await bus.client.xlen(bus.stream)
    # MAXLEN ~ trims whole radix-tree nodes (100 entries by default), never below 100.
    assert 100 <= length <= 200


async def test_a_resume_from_before_what_was_trimmed_is_marked_a_gap(
    server: RedisServer,
) -> None:
    async with nodes(server, 1, replay=100) as (bus,):
        async with bus.subscribe(None, None, 2000) as live:
            await bus.publish([ev(0)])
            [(first_id, _, _)] = await take(live, 1)
            async with bus.subscribe(first_id, None, 2000) as early:
                assert not early.gap  # nothing trimmed yet
            for start in range(1, 1000, 50):
                await bus.publish([ev(i) for i in range(start, start + 50)])
            ids = [item[0] for item in await take(live, 999)]
        async with bus.subscribe(first_id, None, 2000) as gappy:
            assert gappy.gap  # event 0 and many after it are gone
        async with bus.subscribe(ids[-2], None, 2000) as recent:
            assert not recent.gap
            assert numbers(await take(recent, 1)) == [999]
        async with bus.subscribe(None, None, 10) as fresh:
            assert not fresh.gap  # not a resume
        await bus.client.delete(bus.stream)  # Redis flushed: everything since is gone
        async with bus.subscribe(ids[-1], None, 10) as lost:
            assert lost.gap
        # Redis back empty, and events flowing again: the client's id is from before.
        await bus.publish([ev(1000)])
        async with bus.subscribe(ids[-1], None, 10) as restarted:
            assert restarted.gap and numbers(await take(restarted, 1)) == [1000]


def reader_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("redis-bus-reader")]


@pytest.mark.parametrize("deliveries", [0, 1, 3])
async def test_close_stops_the_reader_at_once(server: RedisServer, deliveries: int) -> None:
    # The reader is cancelled right after it handed out events and sent its
    # next XREAD; a lost cancel would show up as a close taking block_ms (1 s).
    for _ in range(3):
        async with nodes(server, 1) as (bus,):
            async with bus.subscribe(None, None, 10) as sub:
                for n in range(deliveries):
                    await bus.publish([ev(n)])
                    await take(sub, 1)
            async with asyncio.timeout(0.5):
                await bus.close()
            assert not reader_tasks()


async def test_client_leaving_during_replay_is_not_left_hanging(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with nodes(server, 1) as (bus,):
        await bus.publish([ev(0)])
        async with bus.subscribe(None, None, 10) as sub:
            await bus.publish([ev(1)])
            (mark,) = await take(sub, 1)
        entered = asyncio.Event()

        async def xrange_swallowing_cancel(*args: object, **kwargs: object) -> list[object]:
            # What redis-py's send through asyncio.wait_for can do on Python 3.11.
            entered.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)
            return []

        monkeypatch.setattr(bus.client, "xrange", xrange_swallowing_cancel)

        async def sse_client() -> None:
            async with bus.subscribe(mark[0], None, 10) as resumed:
                await resumed.queue.get()

        client = asyncio.create_task(sse_client())
        await entered.wait()
        client.cancel()
        done, _ = await asyncio.wait({client}, timeout=2)
        assert done == {client} and client.cancelled()
        assert bus.subscriber_count == 0


async def test_reader_survives_a_redis_restart() -> None:
    with redis_server() as srv:
        async with nodes(srv, 2) as (a, b), b.subscribe(None, None, 100) as sub:
            await a.publish([ev(1)])
            assert numbers(await take(sub, 1)) == [1]
            srv.stop()
            await asyncio.sleep(0.3)
            srv.start()
            await a.publish([ev(2)])
            assert numbers(await take(sub, 1, within_s=8)) == [2]
