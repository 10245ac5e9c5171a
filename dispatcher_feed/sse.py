"""Event bus -> Server-Sent Events, with ids for ``Last-Event-ID`` resume.

Each client reads a bounded queue on the bus. Frames are pre-encoded and
several queued events go out in one write (FACTS.md: one write per event is
the bottleneck). A client whose queue overflows is cut off and resumes with
``Last-Event-ID``; a client that stops reading is cut off by ``send_timeout``.
Neither ever slows the pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from gateway.bus import END, Bus, Predicate, Subscription
from gateway.metrics import Metrics

MAX_EVENTS_PER_WRITE = 256
# A client is written to at most this often: under load each write carries many
# events (one write per event per client is what saturates a process, FACTS.md;
# the latency bench saw ingest fall 100 s behind), at the price of <= 10 ms latency.
COALESCE_S = 0.01
RETRY_MS = 2000


def frame(event_id: str, event_type: str, data: bytes) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), event_type.encode(), data)


# Sent first on a resume the bus cannot replay in full (``Subscription.gap``): the
# client's state may have missed events, so it refetches it (GET technicians, jobs).
RESET = b'event: reset\ndata: {"type":"reset","reason":"events_lost"}\n\n'


async def _frames(sub: Subscription, metrics: Metrics) -> AsyncIterator[bytes]:
    yield b"retry: %d\n\n" % RETRY_MS
    if sub.gap:
        yield RESET
    queue = sub.queue
    while not sub.overflowed.is_set() and not sub.ended:
        item = await queue.get()
        if item is END:
            return  # the server is shutting down
        chunk = [frame(*item)]
        if queue.qsize() < MAX_EVENTS_PER_WRITE:
            await asyncio.sleep(COALESCE_S)
        chunk += _drain(queue, MAX_EVENTS_PER_WRITE - 1)
        yield b"".join(chunk)
    if sub.ended:
        return
    # Cut off for falling behind: what was queued is gap-free up to the overflow,
    # so deliver it and end; the client resumes from the last id it received.
    while rest := _drain(queue, MAX_EVENTS_PER_WRITE):
        yield b"".join(rest)
    metrics.sse_dropped.inc()


def _drain(queue: asyncio.Queue[tuple[str, str, bytes]], limit: int) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < limit:
        try:
            item = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        if item is END:
            break
        out.append(frame(*item))
    return out


class ClientCount:
    """Connected SSE clients of one app, read by the ``fieldtrack_sse_clients`` gauge."""

    def __init__(self) -> None:
        self.n = 0

    def read(self) -> float:
        return float(self.n)


def event_stream(
    bus: Bus,
    metrics: Metrics,
    clients: ClientCount,
    last_event_id: str | None,
    predicate: Predicate | None,
    queue_size: int,
    send_timeout_s: float,
    ping_s: float,
    headers: dict[str, str] | None = None,
) -> EventSourceResponse:
    async def body() -> AsyncIterator[bytes]:
        async with bus.subscribe(last_event_id, predicate, queue_size) as sub:
            clients.n += 1
            try:
                async for chunk in _frames(sub, metrics):
                    yield chunk
            finally:
                clients.n -= 1

    return _Stream(
        metrics,
        body(),
        ping=ping_s,
        send_timeout=send_timeout_s,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", **(headers or {})},
    )


class _Stream(EventSourceResponse):
    """A client that stops reading is cut off by ``send_timeout``: an expected end,
    counted in ``fieldtrack_sse_dropped_total``, not an application error."""

    def __init__(self, metrics: Metrics, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except* SendTimeoutError:
            self._metrics.sse_dropped.inc()
