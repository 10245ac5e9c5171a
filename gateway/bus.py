"""Where events go once the pipeline has made them: the in-process event bus.

Every event gets an id shaped like a Redis Stream id (``<ms>-<seq>``), strictly
increasing, so the SSE layer can hand it to browsers for ``Last-Event-ID``
resume whichever bus implementation is behind it. A bounded replay buffer
answers resumes; each subscriber has a bounded queue, and a subscriber that
lets it fill is cut off (it reconnects and resumes) instead of slowing the
pipeline down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import orjson

from gateway.model import Event

Predicate = Callable[[Event], bool]
# Outbound MQTT topics by event type (CONTRACT "MQTT out").
MQTT_OUT_TYPES = frozenset({"geofence", "eta", "alert", "reoptimize", "notify"})


def parse_id(event_id: str) -> tuple[int, int] | None:
    ms, sep, seq = event_id.partition("-")
    # isdigit() alone admits "²"; ids are ASCII digits only.
    if not sep or not (ms + seq).isascii() or not ms.isdigit() or not seq.isdigit():
        return None
    return int(ms), int(seq)


# Put in a subscription's queue by ``Subscription.end``: no event has an empty id.
END: tuple[str, str, bytes] = ("", "", b"")


class Subscription:
    """One reader of the bus: a bounded queue of ``(id, encoded event)``."""

    def __init__(self, predicate: Predicate | None, size: int) -> None:
        self.predicate = predicate
        self.queue: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue(size)
        self.overflowed = asyncio.Event()
        # A resume from an id older than the bus still holds: events after it may be
        # lost, and the reader must refetch state rather than trust the replay alone.
        self.gap = False

        self.ended = False

    def offer(self, event_id: str, event_type: str, data: bytes) -> None:
        try:
            self.queue.put_nowait((event_id, event_type, data))
        except asyncio.QueueFull:
            self.overflowed.set()

    def end(self) -> None:
        """The server is shutting down: the reader sends what it has and finishes the
        response (so that the server need not wait for it, nor cancel it). ``END`` wakes
        a reader waiting on an empty queue; a full one is being read anyway."""
        self.ended = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(END)


class Bus(Protocol):
    async def publish(self, events: Sequence[Event]) -> None: ...
    def subscribe(
        self, last_id: str | None, predicate: Predicate | None, size: int
    ) -> AbstractAsyncContextManager[Subscription]: ...
    def end_subscriptions(self) -> None:
        """Shutting down: every open subscription ends (``Subscription.end``)."""

    async def close(self) -> None: ...


class MemoryBus:
    """Fan-out to this process's SSE clients, with a bounded replay buffer."""

    def __init__(self, replay: int = 10_000) -> None:
        self._buffer: deque[tuple[tuple[int, int], str, Event, str, bytes]] = deque(maxlen=replay)
        self._subscribers: set[Subscription] = set()
        self._last = (0, 0)
        self.published = 0
        # Resumes from before this are gappy: what this bus never had (it started at
        # this millisecond) or no longer has (the newest event evicted from the buffer).
        self._floor = (time.time_ns() // 1_000_000, 0)

    def _next_id(self) -> tuple[int, int]:
        ms = time.time_ns() // 1_000_000
        last_ms, last_seq = self._last
        self._last = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return self._last

    async def publish(self, events: Sequence[Event]) -> None:
        self.publish_now(events)

    def publish_now(self, events: Sequence[Event]) -> None:
        subscribers = self._subscribers
        for event in events:
            key = self._next_id()
            event_id = f"{key[0]}-{key[1]}"
            data = orjson.dumps(event)
            event_type = str(event.get("type", "message"))
            if len(self._buffer) == self._buffer.maxlen:
                self._floor = self._buffer[0][0]
            self._buffer.append((key, event_id, event, event_type, data))
            for sub in subscribers:
                if sub.predicate is None or sub.predicate(event):
                    sub.offer(event_id, event_type, data)
        self.published += len(events)

    @asynccontextmanager
    async def subscribe(
        self, last_id: str | None, predicate: Predicate | None, size: int
    ) -> AsyncIterator[Subscription]:
        sub = Subscription(predicate, size)
        # Replay and registration happen without an await in between, so no
        # event can fall between the buffer and the live queue.
        key = None if last_id is None else parse_id(last_id)
        sub.gap = key is not None and key < self._floor
        if last_id is not None:
            for _, event_id, event, event_type, data in self.replay_after(last_id):
                if predicate is None or predicate(event):
                    sub.offer(event_id, event_type, data)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    def replay_after(
        self, last_id: str
    ) -> Iterator[tuple[tuple[int, int], str, Event, str, bytes]]:
        key = parse_id(last_id)
        if key is None:
            return
        for item in self._buffer:
            if item[0] > key:
                yield item

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def end_subscriptions(self) -> None:
        for sub in self._subscribers:
            sub.end()

    async def close(self) -> None:
        self._subscribers.clear()
