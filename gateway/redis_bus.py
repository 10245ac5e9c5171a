"""The event bus on a Redis Stream, so SSE clients on any API node see every event.

``publish`` appends a batch of events to ``{prefix}events`` in one round trip
(one ``EVALSHA`` doing an ``XADD ... MAXLEN ~ replay`` per event: the same
effect as a pipeline of XADDs at a third of the client cost). The stream id is
the event id, so a browser that reconnects to another node with
``Last-Event-ID`` resumes exactly where it was.

One reader task per ``RedisBus`` runs ``XREAD BLOCK`` from the last id it has
seen and fans events out to this process's subscribers, so N SSE clients cost
one blocking read, not N. A subscriber with a ``last_id`` is registered first
and only then replays ``XRANGE (last_id +``; what the shared reader hands it
meanwhile is parked, then released after the replay, and everything is
filtered by "id greater than the last id delivered". Every event is in the
replay (it was in the stream before the replay read it) or reaches the parked
list (the reader read it after registration), and the id filter removes the
overlap: no gap, no duplicate. When Redis is away the reader retries with
back-off from the same position, so subscribers simply wait.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, cast

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.bus import Predicate, Subscription, parse_id
from gateway.cancel import raise_if_cancelling
from gateway.model import Event
from gateway.redis_store import LuaScript, redis_client

log = logging.getLogger("fieldtrack.bus")

# KEYS: the stream; ARGV: max length, then (type, data) per event. Returns the ids.
PUBLISH_LUA: Final = """
local ids = {}
for i = 2, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                             't', ARGV[i], 'd', ARGV[i + 1])
end
return ids
"""
StreamKey = tuple[int, int]
# Stream replies as our clients return them (RESP2, responses not decoded).
Rows = list[tuple[bytes, dict[bytes, bytes]]]


class _Entry:
    """One stream entry, decoded to an ``Event`` only if a predicate asks for it."""

    __slots__ = ("_event", "data", "event_id", "event_type", "key")

    def __init__(self, key: StreamKey, event_id: str, event_type: str, data: bytes) -> None:
        self.key = key
        self.event_id = event_id
        self.event_type = event_type
        self.data = data
        self._event: Event | None = None

    @classmethod
    def parse(cls, raw_id: bytes, fields: dict[bytes, bytes]) -> _Entry | None:
        event_id = raw_id.decode()
        key = parse_id(event_id)
        if key is None or b"d" not in fields:
            return None  # not written by us; never hand it to a browser
        return cls(key, event_id, fields.get(b"t", b"message").decode(), fields[b"d"])

    @property
    def event(self) -> Event:
        if self._event is None:
            self._event = orjson.loads(self.data)
        return self._event


class _Member:
    """A local subscriber: its queue, the last id it got, and events parked during replay."""

    __slots__ = ("floor", "parked", "sub")

    def __init__(self, sub: Subscription, floor: StreamKey, replaying: bool) -> None:
        self.sub = sub
        self.floor = floor
        self.parked: list[_Entry] | None = [] if replaying else None

    def offer(self, entry: _Entry) -> None:
        if entry.key <= self.floor or self.sub.overflowed.is_set():
            return
        self.floor = entry.key
        predicate = self.sub.predicate
        if predicate is None or predicate(entry.event):
            self.sub.offer(entry.event_id, entry.event_type, entry.data)

    def deliver(self, entry: _Entry) -> None:
        """From the shared reader: parked while the replay runs, offered after.

        Parking is not capped: it lasts one replay, holds entries shared with
        every other subscriber, and cutting a resuming client off here would
        make it resume from the same id again while the reader catches up.
        """
        if self.parked is not None:
            self.parked.append(entry)
        else:
            self.offer(entry)

    def go_live(self) -> None:
        parked, self.parked = self.parked or [], None
        for entry in parked:
            self.offer(entry)


class RedisBus:
    """The ``Bus`` Protocol on one Redis Stream, shared by every node of a deployment."""

    def __init__(
        self,
        url: str,
        *,
        replay: int = 10_000,
        key_prefix: str = "ft:",
        block_ms: int = 1000,
        read_count: int = 1000,
    ) -> None:
        # Publishing and replays fail fast, like the store. The reader has a
        # client of its own with no socket timeout: redis-py then sends without
        # asyncio.wait_for, which on Python 3.11 can swallow the cancel that
        # close() relies on; a dead peer is caught by asyncio.timeout instead.
        self.client = redis_client(url)
        self._reader_client = Redis.from_url(
            url,
            socket_timeout=None,  # redis-py's default is 5 s
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
            max_connections=1,
        )
        self.stream = f"{key_prefix}events"
        self.replay = replay
        self.block_ms = block_ms
        self.read_count = read_count
        self.published = 0
        self._publish = LuaScript(PUBLISH_LUA)
        self._members: set[_Member] = set()
        self._reader: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()

    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        args: list[Any] = [self.replay]
        for event in events:
            args += (str(event.get("type", "message")), orjson.dumps(event))
        await self._publish(self.client, (self.stream,), args)
        self.published += len(events)

    @asynccontextmanager
    async def subscribe(
        self, last_id: str | None, predicate: Predicate | None, size: int
    ) -> AsyncIterator[Subscription]:
        await self._ensure_reader()
        sub = Subscription(predicate, size)
        key = None if last_id is None else parse_id(last_id)
        member = _Member(sub, key or (0, 0), replaying=key is not None)
        self._members.add(member)
        try:
            if key is not None:
                await self._replay(member, key)
            raise_if_cancelling()  # a client that left during the replay
            yield sub
        finally:
            self._members.discard(member)

    async def _replay(self, member: _Member, after: StreamKey) -> None:
        member.sub.gap = await self._gappy(after)
        start = f"({after[0]}-{after[1]}"
        while not member.sub.overflowed.is_set():
            reply = await self.client.xrange(self.stream, start, "+", count=self.read_count)
            rows = cast(Rows, reply)
            for raw_id, fields in rows:
                entry = _Entry.parse(raw_id, fields)
                if entry is not None:
                    member.offer(entry)
            if len(rows) < self.read_count:
                break
            start = f"({rows[-1][0].decode()}"
        # No await between the last page and going live: the reader cannot slip in.
        member.go_live()

    async def _gappy(self, after: StreamKey) -> bool:
        """Whether events after ``after`` may be missing from the stream.

        The client's id came from an entry of this stream, so it is at or after the
        first entry unless entries were trimmed away (MAXLEN ~ replay) or the stream is
        not the one it read (Redis restarted empty, the key deleted): a resume from before
        the first entry is a gap (at worst the client's own entry was the last trimmed:
        a needless refetch, never a silent loss), and so is one into no stream at all."""
        try:
            info = await self.client.xinfo_stream(self.stream)
        except RedisError as exc:
            if "no such key" in str(exc).lower():
                return True
            raise
        first = info.get("first-entry")
        if not first:
            return True  # an empty stream: whatever the client saw is not in it
        raw = first[0]
        key = parse_id(raw.decode() if isinstance(raw, bytes) else str(raw))
        return key is not None and after < key

    # -- the shared reader -------------------------------------------------------

    async def _ensure_reader(self) -> None:
        if self._reader is not None:
            return
        async with self._start_lock:
            if self._reader is None:
                # Start from the stream's current end, read here so that a
                # subscriber returning from subscribe() misses nothing after it.
                tail = cast(Rows, await self.client.xrevrange(self.stream, "+", "-", count=1))
                position = tail[0][0].decode() if tail else "0-0"
                self._reader = asyncio.create_task(
                    self._read_loop(position), name=f"redis-bus-reader:{self.stream}"
                )
                self._reader.add_done_callback(self._reader_done)

    async def _read_loop(self, position: str) -> None:
        delay = 0.05
        # BLOCK plus a grace for the reply to travel: past that the peer is gone.
        read_timeout = self.block_ms / 1000 + 2.0
        while True:
            raise_if_cancelling()  # second line of defence; the reader's client avoids wait_for
            try:
                async with asyncio.timeout(read_timeout):
                    reply = await self._reader_client.xread(
                        {self.stream: position}, count=self.read_count, block=self.block_ms
                    )
            except (RedisError, OSError) as exc:  # OSError covers TimeoutError
                # Keep the position: when Redis is back the reader resumes
                # without a gap (unless the stream was trimmed meanwhile).
                log.warning("event stream read failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            for _stream, rows in cast(list[tuple[bytes, Rows]] | None, reply) or ():
                for raw_id, fields in rows:
                    position = raw_id.decode()
                    entry = _Entry.parse(raw_id, fields)
                    if entry is not None:
                        self._fan_out(entry)

    def _fan_out(self, entry: _Entry) -> None:
        for member in self._members:
            member.deliver(entry)

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # A bug, not an outage (those are retried): cut the subscribers off so
        # their clients reconnect and resume, and let the next subscribe restart it.
        log.error("event stream reader failed", exc_info=task.exception())
        if self._reader is task:
            self._reader = None
        for member in self._members:
            member.sub.overflowed.set()

    @property
    def subscriber_count(self) -> int:
        return len(self._members)

    def end_subscriptions(self) -> None:
        for member in self._members:
            member.sub.end()

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                # Re-raise only if *we* are being cancelled, not the reader.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        self._members.clear()
        await self._reader_client.aclose()
        await self.client.aclose()
