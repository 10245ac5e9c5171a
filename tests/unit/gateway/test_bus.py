"""MemoryBus: event ids, replay after an id, filtering, bounded subscriber queues."""

from __future__ import annotations

import asyncio
import itertools
import re
import types

import orjson
import pytest

from gateway import bus as bus_module
from gateway.bus import MemoryBus, Subscription, parse_id
from gateway.model import Event


def ev(n: int, tech: str = "t1", kind: str = "position") -> Event:
    return {"type": kind, "ts": 1_700_000_000 + n, "n": n, "technician_id": tech}


def drain(sub: Subscription) -> list[tuple[str, str, bytes]]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


def numbers(items: list[tuple[str, str, bytes]]) -> list[int]:
    return [orjson.loads(data)["n"] for _, _, data in items]


async def test_ids_are_shaped_ms_seq_and_strictly_increasing() -> None:
    bus = MemoryBus()
    async with bus.subscribe(None, None, 5000) as sub:
        await bus.publish([ev(i) for i in range(2000)])
        await bus.publish([ev(2000)])
        ids = [item[0] for item in drain(sub)]
    assert len(ids) == 2001
    assert all(re.fullmatch(r"[0-9]{13}-[0-9]+", i) for i in ids)
    keys = [parse_id(i) for i in ids]
    assert all(a is not None and b is not None and a < b for a, b in itertools.pairwise(keys))
    assert bus.published == 2001


async def test_ids_increase_even_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    clock_ms = [5000, 5000, 5001, 4000, 4000, 6000]
    ticks = iter([clock_ms[0], *clock_ms])  # the first: the bus's own start
    fake_time = types.SimpleNamespace(time_ns=lambda: next(ticks) * 1_000_000)
    monkeypatch.setattr(bus_module, "time", fake_time)
    bus = MemoryBus()
    async with bus.subscribe(None, None, 10) as sub:
        bus.publish_now([ev(i) for i in range(len(clock_ms))])
        ids = [item[0] for item in drain(sub)]
    assert ids == ["5000-0", "5000-1", "5001-0", "5001-1", "5001-2", "6000-0"]


async def test_subscriber_gets_id_type_and_encoded_event() -> None:
    bus = MemoryBus()
    async with bus.subscribe(None, None, 10) as sub:
        await bus.publish([ev(1, kind="status"), {"ts": 1}])
        (id1, type1, data1), (_, type2, data2) = drain(sub)
    assert parse_id(id1) is not None
    assert (type1, orjson.loads(data1)) == ("status", ev(1, kind="status"))
    assert (type2, data2) == ("message", b'{"ts":1}')


async def test_replay_after_an_id_gives_only_later_events() -> None:
    bus = MemoryBus()
    async with bus.subscribe(None, None, 10) as first:
        await bus.publish([ev(i) for i in range(5)])
        ids = [item[0] for item in drain(first)]
    async with bus.subscribe(ids[1], None, 10) as resumed:
        assert numbers(drain(resumed)) == [2, 3, 4]
        await bus.publish([ev(5)])
        assert numbers(drain(resumed)) == [5]
    async with bus.subscribe(ids[-1], None, 10) as caught_up:
        assert numbers(drain(caught_up)) == [5]


@pytest.mark.parametrize("last_id", ["0-0", "1-0"])
async def test_replay_from_the_beginning(last_id: str) -> None:
    bus = MemoryBus()
    await bus.publish([ev(i) for i in range(3)])
    async with bus.subscribe(last_id, None, 10) as sub:
        assert numbers(drain(sub)) == [0, 1, 2]


@pytest.mark.parametrize("last_id", ["", "abc", "12", "12-", "-3", "1-2-3", "99999999999999-0"])
async def test_unusable_or_future_last_id_replays_nothing(last_id: str) -> None:
    bus = MemoryBus()
    await bus.publish([ev(i) for i in range(3)])
    async with bus.subscribe(last_id, None, 10) as sub:
        assert drain(sub) == []
        await bus.publish([ev(3)])
        assert numbers(drain(sub)) == [3]


def test_replay_buffer_is_bounded() -> None:
    bus = MemoryBus(replay=3)
    bus.publish_now([ev(i) for i in range(5)])
    assert [item[2]["n"] for item in bus.replay_after("0-0")] == [2, 3, 4]


async def test_a_resume_the_buffer_cannot_cover_is_marked_a_gap() -> None:
    bus = MemoryBus(replay=3)
    async with bus.subscribe(None, None, 10) as live:
        bus.publish_now([ev(0), ev(1)])
        ids = [item[0] for item in drain(live)]
        async with bus.subscribe(ids[0], None, 10) as early:
            assert not early.gap and numbers(drain(early)) == [1]
        bus.publish_now([ev(i) for i in range(2, 6)])  # 0, 1 and 2 evicted
        ids += [item[0] for item in drain(live)]
    for last, gap, replayed in ((0, True, [3, 4, 5]), (1, True, [3, 4, 5]),
                                (2, False, [3, 4, 5]), (4, False, [5])):  # fmt: skip
        async with bus.subscribe(ids[last], None, 10) as sub:
            assert (sub.gap, numbers(drain(sub))) == (gap, replayed), last
    # An id from before this bus existed (a client of a process since restarted).
    await asyncio.sleep(0.002)
    async with MemoryBus().subscribe(ids[-1], None, 10) as other:
        assert other.gap
    async with bus.subscribe(None, None, 10) as fresh:
        assert not fresh.gap


async def test_predicate_filters_replay_and_live_events() -> None:
    bus = MemoryBus()
    await bus.publish([ev(0, "t1"), ev(1, "t2"), ev(2, "t1")])
    async with bus.subscribe("0-0", lambda e: e["technician_id"] == "t1", 10) as sub:
        assert numbers(drain(sub)) == [0, 2]
        await bus.publish([ev(3, "t2"), ev(4, "t1")])
        assert numbers(drain(sub)) == [4]


async def test_overflow_sets_a_flag_instead_of_blocking() -> None:
    bus = MemoryBus()
    async with bus.subscribe(None, None, 2) as slow, bus.subscribe(None, None, 10) as fast:
        await bus.publish([ev(i) for i in range(5)])  # returns although `slow` is full
        assert slow.overflowed.is_set()
        assert not fast.overflowed.is_set()
        assert numbers(drain(slow)) == [0, 1]
        assert numbers(drain(fast)) == [0, 1, 2, 3, 4]


async def test_replay_larger_than_the_queue_overflows() -> None:
    bus = MemoryBus()
    await bus.publish([ev(i) for i in range(5)])
    async with bus.subscribe("0-0", None, 3) as sub:
        assert sub.overflowed.is_set()
        assert numbers(drain(sub)) == [0, 1, 2]


async def test_leaving_unsubscribes() -> None:
    bus = MemoryBus()
    async with bus.subscribe(None, None, 10) as sub:
        assert bus.subscriber_count == 1
    assert bus.subscriber_count == 0
    await bus.publish([ev(1)])
    assert drain(sub) == []


async def test_close_drops_subscribers() -> None:
    bus = MemoryBus()
    async with bus.subscribe(None, None, 10):
        await bus.close()
        assert bus.subscriber_count == 0


PARSE: list[tuple[str, tuple[int, int] | None]] = [
    ("1700000000000-0", (1_700_000_000_000, 0)),
    ("5-12", (5, 12)),
    ("0-0", (0, 0)),
    ("", None),
    ("5", None),
    ("5-", None),
    ("-5", None),
    ("a-1", None),
    ("1-b", None),
    ("1.5-2", None),
    (" 1-2", None),
    # A Last-Event-ID header is latin-1: "\xb2" is "²", which str.isdigit() accepts and
    # int() refuses; an SSE client must not be able to crash its handler with it.
    ("\xb2-0", None),
    ("1-\xb9", None),
]


@pytest.mark.parametrize(("text", "expected"), PARSE, ids=[repr(p[0]) for p in PARSE])
def test_parse_id(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_id(text) == expected


async def test_superscript_last_id_does_not_break_subscribe() -> None:
    bus = MemoryBus()
    await bus.publish([ev(0)])
    async with bus.subscribe("\xb2-0", None, 10) as sub:
        assert drain(sub) == []
