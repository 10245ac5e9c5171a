"""`fieldtrack run --redis`: a worker and an API node share state and events through Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import aiomqtt
import httpx
import pytest

from gateway.engine import Engine
from gateway.learning import ModelKeeper
from gateway.redis_store import RedisStore
from tests.support.gateway import API_KEY, gateway_settings, running_gateway
from tests.support.procs import Mosquitto, RedisServer, free_port, redis_server
from tests.support.sse import SseEvent, sse_events

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


async def until(events: object, wanted: set[str], timeout: float = 15.0) -> list[SseEvent]:
    seen: list[SseEvent] = []
    async with asyncio.timeout(timeout):
        async for event in events:  # type: ignore[attr-defined]
            seen.append(event)
            if wanted <= {e.event for e in seen}:
                return seen
    return seen


async def test_worker_ingests_leader_runs_engine_api_node_streams(
    broker: Mosquitto, redis: RedisServer, prefix: str
) -> None:
    common = {"redis": redis.url, "redis_prefix": f"{prefix}:"}
    worker = gateway_settings(broker.url, prefix, role="worker", **common)
    api = gateway_settings(
        broker.url, prefix, role="api", http=f"127.0.0.1:{free_port()}", **common
    )
    now = time.time()
    async with (
        running_gateway(worker, background=True) as w,
        running_gateway(api, background=True),
        httpx.AsyncClient(base_url=api.base_url, headers=AUTH, timeout=10) as http,
    ):
        assert w.leader is not None
        async with asyncio.timeout(10):
            await w.leader.is_leader.wait()
        r = await http.put("/api/v1/technicians/t1", json={"name": "Aino", "device_ids": ["d1"]})
        assert r.status_code == 200
        job = {"technician_id": "t1", "site": {"lat": 60.2, "lon": 24.9, "radius_m": 80}}
        assert (await http.put("/api/v1/jobs/j1", json=job)).status_code == 200
        await asyncio.sleep(2.5)  # the worker's directory refresh picks up the technician
        async with http.stream("GET", "/api/v1/feed") as feed:
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                for i, lat in enumerate((60.19, 60.2, 60.2)):
                    fix = {"ts": now - 30 + i, "lat": lat, "lon": 24.9, "acc": 5}
                    await client.publish(f"{prefix}/d1/pos", json.dumps(fix), qos=1)
            events = await until(sse_events(feed), {"position", "geofence"})
        positions = [e for e in events if e.event == "position"]
        assert positions[0].data["technician_id"] == "t1"
        enter = next(e for e in events if e.event == "geofence")
        assert (enter.data["transition"], enter.data["geofence_id"]) == ("enter", "job:j1")
        r = await http.get("/api/v1/devices/d1/positions")
        assert [p["lat"] for p in r.json()] == [60.19, 60.2, 60.2]


async def test_learned_model_survives_a_new_leader(redis: RedisServer, prefix: str) -> None:
    store = await RedisStore.connect(redis.url, key_prefix=f"{prefix}:")
    try:
        taught = Engine()
        for i in range(40):
            taught.model.observe(
                60.1 + i * 5e-4,
                24.9,
                1.8e9 + i * 5,
                60.1 + (i + 1) * 5e-4,
                24.9,
                1.8e9 + (i + 1) * 5,
            )
        await ModelKeeper(blobs=store).save(taught)
        successor = Engine()
        assert await ModelKeeper(blobs=store).load_into(successor) is True
        assert successor.model.snapshot() == taught.model.snapshot()
    finally:
        await store.close()
