"""An API node under SSE load: slow consumers are cut off, churn leaks nothing.

The node is ``role=api`` on a private Redis (events through the Redis Stream
bus, as in a scaled deployment), run in this process over a real uvicorn so
its tasks, file descriptors and allocations can be counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from gateway.redis_bus import RedisBus
from gateway.server import Runtime
from tests.support.gateway import API_KEY, gateway_settings, running_gateway
from tests.support.procs import Mosquitto, RedisServer, redis_server
from tests.support.sse import SseEvent, sse_events

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SEND_TIMEOUT_S = 0.5
# A leak of one subscription, queue, task or socket per cycle shows within a few hundred
# cycles (see the limits below); more only lengthens the suite (~40 ms a cycle, traced).
CYCLES = 500
PARALLEL = 10  # clients connecting at once during the cycles
# Generous for a leak-free node (allocator caches, interned strings) and far below a
# leak of one subscription, queue or task per cycle (a few KiB each, so MiBs here).
TRACED_GROWTH_MAX = 256 * 1024
RSS_GROWTH_MAX = 16 * 2**20


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
async def api_node(
    broker: Mosquitto, redis: RedisServer, prefix: str
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    settings = gateway_settings(
        broker.url, prefix, role="api", redis=redis.url, redis_prefix=f"{prefix}:",
        sse_send_timeout_s=SEND_TIMEOUT_S,
        # Far more than the test sends: a cut-off can only come from the send timeout.
        sse_queue_size=1_000_000,
    )  # fmt: skip
    async with (
        running_gateway(settings, background=True) as runtime,
        httpx.AsyncClient(base_url=settings.base_url, headers=AUTH, timeout=10) as http,
    ):
        yield runtime, http


class Positions:
    """POSTs fixes of one device with rising timestamps: each one is a position event."""

    def __init__(self, http: httpx.AsyncClient, device: str = "d1") -> None:
        self.http, self.device = http, device
        self.base = time.time() - 86_400
        self.sent = 0

    async def post(self, n: int) -> None:
        fixes = [
            {"ts": self.base + (self.sent + i) * 0.01, "lat": 60.17, "lon": 24.94, "acc": 5.0}
            for i in range(n)
        ]
        r = await self.http.post(
            "/api/v1/positions", json={"device_id": self.device, "positions": fixes}
        )
        assert r.status_code == 200 and r.json()["accepted"] == n, r.text[:300]
        self.sent += n


async def frozen_client(host: str, port: int) -> socket.socket:
    """Opens the feed and never reads: a tiny receive buffer fills at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, port))
    request = (
        f"GET /api/v1/feed HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    return sock


async def read_to_eof(sock: socket.socket) -> int:
    loop, total = asyncio.get_running_loop(), 0
    while chunk := await loop.sock_recv(sock, 1 << 16):
        total += len(chunk)
    return total


async def until(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not {what} after {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_frozen_sse_client_is_cut_off_while_others_keep_receiving(
    api_node: tuple[Runtime, httpx.AsyncClient],
) -> None:
    runtime, http = api_node
    clients = runtime.app_context.sse_clients
    positions = Positions(http)
    received: list[SseEvent] = []

    async def follow(feed: httpx.Response) -> None:
        async for event in sse_events(feed):
            received.append(event)

    host, port = runtime.settings.http_bind()
    async with http.stream("GET", "/api/v1/feed") as feed:
        reader = asyncio.create_task(follow(feed))
        frozen = await frozen_client(host, port)
        await until(lambda: clients.n == 2, 5, "two feed clients")
        started = time.monotonic()
        while clients.n == 2:
            assert time.monotonic() - started < 20, "the frozen client was never cut off"
            await positions.post(1000)
        cut_after = time.monotonic() - started
        at_cut = positions.sent
        await positions.post(500)  # the node goes on for the live client
        await until(lambda: len(received) == positions.sent, 10, "every event received")
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    # Cut off by the send timeout (counted as dropped), not for overflowing its queue.
    assert runtime.metrics.sse_dropped.get() == 1
    async with asyncio.timeout(5):
        buffered = await read_to_eof(frozen)
    frozen.close()
    assert [e.event for e in received] == ["position"] * positions.sent
    ids = [e.id for e in received]
    assert len(set(ids)) == len(ids)
    print(
        f"\nfrozen SSE client cut {cut_after:.2f} s into the stream (send timeout "
        f"{SEND_TIMEOUT_S} s) after {at_cut} events, {buffered} bytes buffered; the live "
        f"client got all {positions.sent}"
    )


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _connect_and_leave(http: httpx.AsyncClient, last_id: str | None) -> None:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    async with http.stream("GET", "/api/v1/feed", headers=headers) as feed:
        assert feed.status_code == 200
        async for _ in feed.aiter_bytes():
            break  # the retry line (or a replayed event): connected, now leave


async def recent_id(bus: RedisBus, back: int = 5) -> str:
    """The id ``back`` events before the end of the stream: resuming there replays a few."""
    rows = await bus.client.xrevrange(bus.stream, "+", "-", count=back)
    assert rows, "the stream is empty"
    raw = rows[-1][0]
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def churn(http: httpx.AsyncClient, bus: RedisBus, cycles: int) -> None:
    """``cycles`` connect/disconnect cycles, PARALLEL at a time, every other one resuming."""

    async def lane(k: int) -> None:
        for i in range(k, cycles, PARALLEL):
            await _connect_and_leave(http, await recent_id(bus) if i % 2 else None)

    async with asyncio.TaskGroup() as tg:
        for k in range(PARALLEL):
            tg.create_task(lane(k))


async def test_sse_connect_disconnect_cycles_leak_nothing(
    api_node: tuple[Runtime, httpx.AsyncClient],
) -> None:
    runtime, http = api_node
    bus = runtime.bus
    assert isinstance(bus, RedisBus)
    clients = runtime.app_context.sse_clients
    positions = Positions(http)
    await positions.post(20)

    def idle() -> bool:
        return clients.n == 0 and bus.subscriber_count == 0

    async def publishing(stop: asyncio.Event) -> None:
        while not stop.is_set():  # events keep flowing while clients come and go
            await positions.post(5)
            await asyncio.sleep(0.01)

    async def cycles(n: int) -> float:
        stop = asyncio.Event()
        feeder = asyncio.create_task(publishing(stop))
        started = time.monotonic()
        await churn(http, bus, n)
        took = time.monotonic() - started
        stop.set()
        await feeder
        await until(idle, 5, "idle after the cycles")
        gc.collect()
        return took

    tracemalloc.start()  # before the warm-up, so the caches it fills are in the baseline
    try:
        await cycles(200)  # warm-up: imports, caches, connection pools at this concurrency
        tasks, fds, rss = len(asyncio.all_tasks()), _fd_count(), _rss()
        traced = tracemalloc.get_traced_memory()[0]
        took = await cycles(CYCLES)
        await until(lambda: len(asyncio.all_tasks()) <= tasks, 5, "tasks back to the baseline")
        grown = tracemalloc.get_traced_memory()[0] - traced
    finally:
        tracemalloc.stop()
    assert len(asyncio.all_tasks()) <= tasks  # a transient task of the baseline may be gone
    # Connection pools (Redis, httpx) may hold one more socket per concurrent lane than
    # the warm-up left open; a leak would add one per cycle.
    fds_after = _fd_count()
    assert fds_after <= fds + PARALLEL
    rss_grown = _rss() - rss
    assert grown < TRACED_GROWTH_MAX
    assert rss_grown < RSS_GROWTH_MAX
    print(
        f"\n{CYCLES} SSE cycles in {took:.1f} s (traced): tasks {tasks} -> {tasks}, fds {fds} "
        f"-> {fds_after}, traced +{grown / 1024:.0f} KiB, RSS +{rss_grown / 2**20:.1f} MiB"
    )
