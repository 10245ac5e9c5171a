"""The dispatcher feed over a real uvicorn: filters, Last-Event-ID resume, heartbeats."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from gateway.model import Fix
from tests.support.gateway import API_KEY, gateway_settings, running_gateway
from tests.support.procs import Mosquitto
from tests.support.sse import SseEvent, sse_events

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def collect(response: httpx.Response, n: int, timeout: float = 10.0) -> list[SseEvent]:
    out: list[SseEvent] = []
    async with asyncio.timeout(timeout):
        async for event in sse_events(response):
            out.append(event)
            if len(out) == n:
                return out
    return out


async def test_technician_filter_and_resume(broker: Mosquitto, prefix: str) -> None:
    settings = gateway_settings(broker.url, prefix)
    now = time.time()
    async with running_gateway(settings) as runtime:
        gateway = runtime.gateway
        async with httpx.AsyncClient(base_url=settings.base_url, headers=AUTH, timeout=10) as http:
            for tech, dev in (("t-a", "dev-a"), ("t-b", "dev-b")):
                r = await http.put(
                    f"/api/v1/technicians/{tech}", json={"name": tech, "device_ids": [dev]}
                )
                assert r.status_code == 200
            async with http.stream("GET", "/api/v1/feed", params={"technician_id": "t-a"}) as feed:
                await gateway.ingest_fixes(
                    [Fix("dev-b", now, 60.1, 24.9), Fix("dev-a", now, 60.2, 24.8)]
                )
                await gateway.ingest_fixes([Fix("dev-a", now + 1, 60.3, 24.7)])
                first = await collect(feed, 2)
            assert [(e.data["device_id"], e.data["lat"]) for e in first] == [
                ("dev-a", 60.2),
                ("dev-a", 60.3),
            ]
            # Events published while disconnected are replayed after the last id seen.
            await gateway.ingest_fixes(
                [Fix("dev-a", now + 2, 60.4, 24.6), Fix("dev-b", now + 2, 60.0, 24.0)]
            )
            await gateway.ingest_fixes([Fix("dev-a", now + 3, 60.5, 24.5)])
            headers = {"Last-Event-ID": str(first[0].id)}
            async with http.stream(
                "GET", "/api/v1/feed", params={"technician_id": "t-a"}, headers=headers
            ) as feed:
                resumed = await collect(feed, 3)
    assert [e.data["lat"] for e in resumed] == [60.3, 60.4, 60.5]
    assert resumed[0].id == first[1].id


async def test_a_resume_past_the_replay_buffer_says_reset_first(
    broker: Mosquitto, prefix: str
) -> None:
    settings = gateway_settings(broker.url, prefix, replay_buffer=5)
    now = time.time()
    async with (
        running_gateway(settings) as runtime,
        httpx.AsyncClient(base_url=settings.base_url, headers=AUTH, timeout=10) as http,
    ):
        gateway = runtime.gateway
        async with http.stream("GET", "/api/v1/feed") as feed:
            await gateway.ingest_fixes([Fix("dev-a", now, 60.0, 24.0)])
            [seen] = await collect(feed, 1)
        await gateway.ingest_fixes(
            [Fix("dev-a", now + i, 60.0 + i / 100, 24.0) for i in range(1, 13)]
        )
        async with http.stream(
            "GET", "/api/v1/feed", headers={"Last-Event-ID": str(seen.id)}
        ) as feed:
            resumed = await collect(feed, 6)
        # Six of the twelve are gone: the client is told to refetch, then gets what is left.
        assert [e.event for e in resumed] == ["reset"] + ["position"] * 5
        assert resumed[0].data == {"type": "reset", "reason": "events_lost"}
        assert [e.data["lat"] for e in resumed[1:]] == [60.08, 60.09, 60.1, 60.11, 60.12]
        last = resumed[-2].id
        async with http.stream("GET", "/api/v1/feed", headers={"Last-Event-ID": str(last)}) as feed:
            await gateway.ingest_fixes([Fix("dev-a", now + 13, 60.13, 24.0)])
            again = await collect(feed, 2)
        assert [e.event for e in again] == ["position", "position"]  # no gap: no reset


async def test_feed_requires_key_and_counts_clients(broker: Mosquitto, prefix: str) -> None:
    settings = gateway_settings(broker.url, prefix)
    async with running_gateway(settings) as runtime:
        async with httpx.AsyncClient(base_url=settings.base_url, timeout=10) as http:
            r = await http.get("/api/v1/feed")
            assert r.status_code == 401
            assert r.json()["error"] == "unauthorized"
            async with http.stream("GET", "/api/v1/feed", headers=AUTH) as feed:
                assert feed.headers["content-type"].startswith("text/event-stream")
                async with asyncio.timeout(5):
                    while runtime.metrics.sse_clients.read() != 1:
                        await asyncio.sleep(0.02)
                # The heartbeat (ping_s=1 in tests) arrives as an SSE comment.
                async with asyncio.timeout(5):
                    async for line in feed.aiter_lines():
                        if line.startswith(":"):
                            break
        async with asyncio.timeout(5):
            while runtime.metrics.sse_clients.read() != 0:
                await asyncio.sleep(0.02)


async def test_overflowing_client_is_cut_off_and_pipeline_goes_on(
    broker: Mosquitto, prefix: str
) -> None:
    settings = gateway_settings(broker.url, prefix, sse_queue_size=5)
    now = time.time()
    async with (
        running_gateway(settings) as runtime,
        httpx.AsyncClient(base_url=settings.base_url, headers=AUTH, timeout=10) as http,
    ):
        async with http.stream("GET", "/api/v1/feed") as feed:
            # 100 events in two calls overflow a 5-slot queue before the client reads.
            await runtime.gateway.ingest_fixes(
                [Fix("dev-x", now + i, 60.1, 24.9) for i in range(50)]
            )
            await runtime.gateway.ingest_fixes(
                [Fix(f"dev-{i}", now, 60.1, 24.9) for i in range(50)]
            )
            events = await collect(feed, 100, timeout=5)
        assert len(events) < 51  # cut off, not blocked
        assert runtime.metrics.sse_dropped.get() == 1
        assert runtime.metrics.positions.get() == 100
