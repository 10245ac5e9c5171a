"""Geofences end to end: fences over HTTP, drives over MQTT, events on SSE and MQTT out.

A real gateway (ingest + uvicorn) on the private Mosquitto. Fixes carry timestamps
in the recent past, so dwells are reached without waiting. Every expected event is
read both from the dispatcher feed and from ``{prefix}/out/{type}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from math import cos, degrees, radians
from typing import Any

import aiomqtt
import httpx
import pytest

from eta.geo import EARTH_RADIUS_M
from gateway.server import Runtime
from gateway.service import Inbound
from tests.support.gateway import API_KEY, gateway_settings, running_gateway
from tests.support.procs import Mosquitto
from tests.support.sse import sse_events

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CENTRE = (60.20, 24.90)

Event = dict[str, Any]


def place(north_m: float, east_m: float = 0.0) -> tuple[float, float]:
    """(lat, lon) that many metres north and east of CENTRE."""
    lat = CENTRE[0] + degrees(north_m / EARTH_RADIUS_M)
    lon = CENTRE[1] + degrees(east_m / (EARTH_RADIUS_M * cos(radians(CENTRE[0]))))
    return lat, lon


def square(half_m: float) -> list[list[float]]:
    corners = [(-half_m, -half_m), (-half_m, half_m), (half_m, half_m), (half_m, -half_m)]
    ring = [list(reversed(place(n, e))) for n, e in corners]
    return [*ring, ring[0]]


class Watch:
    """Everything the gateway says on its feed and on ``{prefix}/out/#``, as it arrives."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.feed: list[Event] = []
        self.out: list[tuple[str, Event]] = []
        self._changed = asyncio.Event()

    def of(self, kind: str, **match: Any) -> list[Event]:
        """Feed events of a type whose fields match."""
        return [e for e in self.feed if e["type"] == kind and _matches(e, match)]

    def mqtt(self, kind: str, **match: Any) -> list[Event]:
        """Events published on ``{prefix}/out/{kind}`` whose fields match."""
        topic = f"{self.prefix}/out/{kind}"
        return [e for t, e in self.out if t == topic and _matches(e, match)]

    async def until(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def read_feed(self, response: httpx.Response) -> None:
        async for event in sse_events(response):
            assert event.event == event.data["type"] and event.id is not None
            self.feed.append(event.data)
            self._changed.set()

    async def read_mqtt(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            self.out.append((str(message.topic), json.loads(message.payload)))
            self._changed.set()


def _matches(event: Event, match: dict[str, Any]) -> bool:
    return all(event.get(k) == v for k, v in match.items())


@contextlib.asynccontextmanager
async def watching(
    broker: Mosquitto, prefix: str, runtime: Runtime, http: httpx.AsyncClient
) -> AsyncIterator[Watch]:
    """Subscribe to MQTT out and open the feed *before* the test drives anything."""
    watch = Watch(prefix)
    async with (
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as mqtt,
        http.stream("GET", "/api/v1/feed") as feed,
    ):
        await mqtt.subscribe(f"{prefix}/out/#", qos=1)
        tasks = [
            asyncio.create_task(watch.read_feed(feed), name="read-feed"),
            asyncio.create_task(watch.read_mqtt(mqtt), name="read-mqtt"),
        ]
        try:
            async with asyncio.timeout(5):
                while runtime.metrics.sse_clients.read() < 1:
                    await asyncio.sleep(0.01)
            yield watch
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def publish(port: int, *messages: tuple[str, dict[str, Any]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        for topic, body in messages:
            await client.publish(topic, json.dumps(body).encode(), qos=1)


def pos(ts: float, north_m: float, east_m: float = 0.0, acc: float = 5.0) -> dict[str, float]:
    lat, lon = place(north_m, east_m)
    return {"ts": ts, "lat": lat, "lon": lon, "acc": acc}


async def test_enter_dwell_exit_and_cross(broker: Mosquitto, prefix: str) -> None:
    settings = gateway_settings(broker.url, prefix)
    now = round(time.time())
    async with (
        running_gateway(settings) as runtime,
        httpx.AsyncClient(base_url=settings.base_url, headers=AUTH, timeout=10) as http,
    ):
        r = await http.put("/api/v1/technicians/t1", json={"name": "Aino", "device_ids": ["d1"]})
        assert r.status_code == 200
        yard = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square(100)]},
                "properties": {"kind": "depot", "dwell_s": 30}}  # fmt: skip
        gate = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [
            place(600)[1], place(600)[0]]}, "properties": {"radius_m": 30}}  # fmt: skip
        for fence_id, body in (("yard", yard), ("gate", gate)):
            r = await http.put(f"/api/v1/geofences/{fence_id}", json=body)
            assert r.status_code == 200, r.text
        async with watching(broker, prefix, runtime, http) as watch:
            topic = f"{prefix}/d1/pos"
            await publish(
                broker.port,
                (topic, pos(now - 100, -300)),  # outside
                (topic, pos(now - 90, 0)),  # in: enter
                (topic, pos(now - 70, 10, 10)),  # 20 s inside
                (topic, pos(now - 55, 20, -20)),  # 35 s >= dwell_s 30: dwell
                (topic, pos(now - 40, 300)),  # clearly out: exit after 50 s
                (topic, pos(now - 30, 900)),  # 300 -> 900 m north passes the gate
            )
            await watch.until(
                lambda: len(watch.of("geofence")) == 4 and len(watch.mqtt("geofence")) == 4
            )
    base = {"device_id": "d1", "technician_id": "t1"}
    expected = [
        {"type": "geofence", "transition": "enter", "ts": now - 90, **base,
         "geofence_id": "yard", "kind": "depot"},
        {"type": "geofence", "transition": "dwell", "ts": now - 55, **base,
         "geofence_id": "yard", "kind": "depot", "dwell_s": 35.0},
        {"type": "geofence", "transition": "exit", "ts": now - 40, **base,
         "geofence_id": "yard", "kind": "depot", "dwell_s": 50.0},
        {"type": "geofence", "transition": "cross", "ts": now - 30, **base,
         "geofence_id": "gate", "kind": "zone"},
    ]  # fmt: skip
    assert watch.of("geofence") == expected
    assert sorted(watch.mqtt("geofence"), key=lambda e: e["ts"]) == expected
    assert [e["ts"] for e in watch.of("position")] == [now - t for t in (100, 90, 70, 55, 40, 30)]


async def test_job_site_arrival_inferred_then_confirmed(broker: Mosquitto, prefix: str) -> None:
    settings = gateway_settings(broker.url, prefix)
    now = round(time.time())
    site_lat, site_lon = place(0)
    async with (
        running_gateway(settings) as runtime,
        httpx.AsyncClient(base_url=settings.base_url, headers=AUTH, timeout=10) as http,
    ):
        await http.put("/api/v1/technicians/t1", json={"name": "Aino", "device_ids": ["d1"]})
        job = {
            "technician_id": "t1",
            "site": {"lat": site_lat, "lon": site_lon, "radius_m": 80},
            "window": {"start": now - 600, "end": now + 3600},
            "planned_duration_s": 1800,
            "customer": {"name": "Acme", "ref": "C-7"},
        }
        assert (await http.put("/api/v1/jobs/j1", json=job)).status_code == 200
        async with watching(broker, prefix, runtime, http) as watch:
            # The status first, on its own: a batch applies its fixes before its statuses.
            await publish(
                broker.port,
                (f"{prefix}/d1/status", {"ts": now - 200, "job": "j1", "status": "en_route"}),
            )
            await watch.until(lambda: bool(watch.of("status", status="en_route")))
            topic = f"{prefix}/d1/pos"
            await publish(
                broker.port,
                (topic, pos(now - 190, -2000)),
                (topic, pos(now - 120, 0)),  # enter the site
                (topic, pos(now - 90, 10)),
                (topic, pos(now - 50, -10)),  # 70 s inside >= site_dwell_s (60): arrived
            )
            await watch.until(
                lambda: (
                    bool(watch.of("notify", notification="arrived"))
                    and bool(watch.mqtt("notify", notification="arrived"))
                )
            )
            inferred = (await http.get("/api/v1/jobs/j1")).json()
            # The technician's own word: recorded as a confirmation, nothing re-announced.
            await publish(
                broker.port,
                (f"{prefix}/d1/status", {"ts": now - 30, "job": "j1", "status": "on_site"}),
            )
            await watch.until(lambda: bool(watch.of("status", source="device", status="on_site")))
            confirmed = (await http.get("/api/v1/jobs/j1")).json()
            # Walking off the site with the job open: exit and an alert, also a marker that
            # everything published before it has reached the MQTT watcher.
            await publish(broker.port, (topic, pos(now - 10, 500)))
            await watch.until(lambda: bool(watch.mqtt("alert", alert="left_site_open_job")))
    assert inferred["state"] == "on_site"
    assert inferred["history"] == [
        {"ts": now - 200, "status": "en_route", "previous": "planned", "source": "device",
         "device_id": "d1"},
        {"ts": now - 50, "status": "on_site", "previous": "en_route", "source": "geofence",
         "device_id": "d1"},
    ]  # fmt: skip
    assert confirmed["state"] == "on_site"
    assert confirmed["history"][2:] == [
        {"ts": now - 30, "status": "on_site", "previous": "on_site", "source": "device",
         "device_id": "d1"},
    ]  # fmt: skip
    base = {"device_id": "d1", "technician_id": "t1", "geofence_id": "job:j1", "kind": "site",
            "job_id": "j1"}  # fmt: skip
    site_events = [
        {"type": "geofence", "transition": "enter", "ts": now - 120, **base},
        {"type": "geofence", "transition": "dwell", "ts": now - 50, **base, "dwell_s": 70.0},
        {"type": "geofence", "transition": "exit", "ts": now - 10, **base, "dwell_s": 110.0},
    ]
    assert watch.of("geofence") == site_events
    assert sorted(watch.mqtt("geofence"), key=lambda e: e["ts"]) == site_events
    assert [(e["status"], e["source"]) for e in watch.of("status")] == [
        ("en_route", "device"),
        ("on_site", "geofence"),
        ("on_site", "device"),
    ]
    arrived = {"type": "notify", "notification": "arrived", "ts": now - 50, "job_id": "j1",
               "technician_id": "t1", "customer": {"name": "Acme", "ref": "C-7"}}  # fmt: skip
    assert watch.of("notify", notification="arrived") == [arrived]
    assert watch.mqtt("notify", notification="arrived") == [arrived]
    left = {"type": "alert", "alert": "left_site_open_job", "severity": "warning",
            "ts": now - 10, "technician_id": "t1", "job_id": "j1", "state": "on_site",
            "device_id": "d1"}  # fmt: skip
    assert watch.of("alert") == [left]
    assert watch.mqtt("alert") == [left]


async def test_offline_flush_status_then_fixes_in_one_batch(broker: Mosquitto, prefix: str) -> None:
    """A phone back from offline flushes "en_route" and then the drive into the site: the
    ingest loop hands all of it over as one batch, in arrival order. The arrival must be
    inferred as if the messages had come one by one."""
    settings = gateway_settings(broker.url, prefix)
    now = round(time.time())
    site_lat, site_lon = place(0)
    async with (
        running_gateway(settings) as runtime,
        httpx.AsyncClient(base_url=settings.base_url, headers=AUTH, timeout=10) as http,
    ):
        await http.put("/api/v1/technicians/t1", json={"name": "Aino", "device_ids": ["d1"]})
        job = {"technician_id": "t1", "site": {"lat": site_lat, "lon": site_lon, "radius_m": 80}}
        assert (await http.put("/api/v1/jobs/j1", json=job)).status_code == 200
        status = {"ts": now - 300, "job": "j1", "status": "en_route"}
        fixes = [pos(now - 290, -2000), pos(now - 120, 0), pos(now - 50, 10)]
        batch = [Inbound(f"{prefix}/d1/status", json.dumps(status).encode(), now)]
        batch += [Inbound(f"{prefix}/d1/pos", json.dumps(f).encode(), now) for f in fixes]
        result = await runtime.gateway.handle_batch(batch)
        assert result.dead_letters == []
        history = (await http.get("/api/v1/jobs/j1")).json()["history"]
    assert [(c["ts"], c["status"], c["source"]) for c in history] == [
        (now - 300, "en_route", "device"),
        (now - 50, "on_site", "geofence"),
    ]
