"""Foundation end to end against a real private Mosquitto: MQTT in -> state -> SSE out."""

from __future__ import annotations

import asyncio
import json
import time

import aiomqtt
import httpx
import msgpack
import pytest

from tests.support.gateway import API_KEY, gateway_settings, running_gateway
from tests.support.procs import Mosquitto, mosquitto
from tests.support.sse import SseEvent, sse_events

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def fix(ts: float, lat: float = 60.17, lon: float = 24.94, **extra: float) -> dict[str, float]:
    return {"ts": ts, "lat": lat, "lon": lon, **extra}


async def publish(
    url_port: int,
    *messages: tuple[str, bytes],
    protocol: aiomqtt.ProtocolVersion = aiomqtt.ProtocolVersion.V5,
) -> None:
    async with aiomqtt.Client("127.0.0.1", url_port, protocol=protocol) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


async def history(base: str, device: str) -> list[dict[str, float]]:
    async with httpx.AsyncClient(base_url=base, headers=AUTH) as http:
        r = await http.get(f"/api/v1/devices/{device}/positions")
        r.raise_for_status()
        result: list[dict[str, float]] = r.json()
        return result


async def wait_history(
    base: str, device: str, n: int, timeout: float = 10.0
) -> list[dict[str, float]]:
    async with asyncio.timeout(timeout):
        while True:
            got = await history(base, device)
            if len(got) >= n:
                return got
            await asyncio.sleep(0.05)


async def test_fix_reaches_feed_and_history(broker: Mosquitto, prefix: str) -> None:
    settings = gateway_settings(broker.url, prefix)
    now = time.time()
    async with running_gateway(settings):
        base = settings.base_url
        async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=10) as http:
            await http.put(
                "/api/v1/technicians/tech-1", json={"name": "Aino", "device_ids": ["dev-1"]}
            )
            async with http.stream("GET", "/api/v1/feed") as feed:
                assert feed.status_code == 200
                await publish(
                    broker.port, (f"{prefix}/dev-1/pos", json.dumps(fix(now, spd=3.5)).encode())
                )
                event = await anext_event(sse_events(feed), "position")
        assert event.data["device_id"] == "dev-1"
        assert event.data["technician_id"] == "tech-1"
        assert (event.data["lat"], event.data["lon"], event.data["spd"]) == (60.17, 24.94, 3.5)
        assert event.id is not None and "-" in event.id
        got = await wait_history(base, "dev-1", 1)
        assert got == [{"ts": now, "lat": 60.17, "lon": 24.94, "spd": 3.5}]


async def anext_event(events: object, kind: str, timeout: float = 10.0) -> SseEvent:
    async with asyncio.timeout(timeout):
        async for event in events:  # type: ignore[attr-defined]
            if event.event == kind:
                return event  # type: ignore[no-any-return]
    raise AssertionError("stream ended")


async def test_garbage_is_dead_lettered_and_next_message_flows(
    broker: Mosquitto, prefix: str
) -> None:
    settings = gateway_settings(broker.url, prefix)
    now = time.time()
    async with (
        running_gateway(settings) as runtime,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as watcher,
    ):
        await watcher.subscribe(f"{prefix}/deadletter/#", qos=1)
        await publish(
            broker.port,
            (f"{prefix}/dev-2/pos", b"\x00\xffnot msgpack{"),
            (f"{prefix}/dev-2/pos", json.dumps({"ts": now, "lat": 200, "lon": 1}).encode()),
            (f"{prefix}/dev-2/pos", msgpack.packb(fix(now + 1))),
        )
        dead = []
        async with asyncio.timeout(10):
            async for message in watcher.messages:
                dead.append(message)
                if len(dead) == 2:
                    break
        got = await wait_history(settings.base_url, "dev-2", 1)
    assert [str(m.topic) for m in dead] == [f"{prefix}/deadletter/dev-2"] * 2
    props = [dict(m.properties.UserProperty) for m in dead]  # type: ignore[union-attr]
    assert props[0]["reason"].startswith("bad_encoding: ")
    assert props[1]["reason"].startswith("lat_out_of_range: ")
    # The code alone, as the metric's label, for a machine to act on.
    assert [p["code"] for p in props] == ["bad_encoding", "lat_out_of_range"]
    assert dead[0].payload == b"\x00\xffnot msgpack{"  # republished unchanged
    assert got == [{"ts": now + 1, "lat": 60.17, "lon": 24.94}]
    metrics = runtime.metrics
    assert metrics.rejected.get("bad_encoding") == 1
    assert metrics.rejected.get("lat_out_of_range") == 1
    assert metrics.positions.get() == 1


async def test_a_burst_of_dead_letters_goes_out_without_a_warning_flood(
    broker: Mosquitto, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch's dead letters (and outbound events) are published together: hundreds
    awaiting their PUBACK at a busy moment is flow, which aiomqtt would warn of past 10."""
    settings = gateway_settings(broker.url, prefix)
    garbage = [(f"{prefix}/dev-{i % 7}/pos", b"{not json") for i in range(120)]
    async with (
        running_gateway(settings) as runtime,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as watcher,
    ):
        await watcher.subscribe(f"{prefix}/deadletter/#", qos=1)
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            client.pending_calls_threshold = len(garbage)  # (this publisher's own)
            await asyncio.gather(*(client.publish(t, p, qos=1) for t, p in garbage))
        dead = 0
        async with asyncio.timeout(10):
            async for _ in watcher.messages:
                dead += 1
                if dead == len(garbage):
                    break
        assert runtime.metrics.rejected.get("bad_encoding") == len(garbage)
    assert [r.getMessage() for r in caplog.records if "pending publish" in r.getMessage()] == []


async def test_messages_published_while_down_are_processed_after_restart(prefix: str) -> None:
    with mosquitto(persistence=True) as broker:
        settings = gateway_settings(broker.url, prefix)
        async with running_gateway(settings):
            pass  # creates the persistent session and its subscriptions
        now = time.time()
        await publish(
            broker.port,
            *[(f"{prefix}/dev-3/pos", json.dumps(fix(now + i)).encode()) for i in range(5)],
        )
        broker.restart()  # the broker too: the session and queue are persistent
        async with running_gateway(settings):
            got = await wait_history(settings.base_url, "dev-3", 5)
    assert [p["ts"] for p in got] == [now + i for i in range(5)]


async def test_duplicate_is_counted_once(broker: Mosquitto, prefix: str) -> None:
    settings = gateway_settings(broker.url, prefix)
    now = time.time()
    payload = json.dumps(fix(now)).encode()
    async with running_gateway(settings) as runtime:
        await publish(
            broker.port,
            (f"{prefix}/dev-4/pos", payload),
            (f"{prefix}/dev-4/pos", payload),
            (f"{prefix}/dev-4/pos", json.dumps(fix(now + 1)).encode()),
        )
        got = await wait_history(settings.base_url, "dev-4", 2)
        async with asyncio.timeout(5):
            while runtime.metrics.duplicates.get() < 1:
                await asyncio.sleep(0.02)
    assert [p["ts"] for p in got] == [now, now + 1]
    assert runtime.metrics.duplicates.get() == 1
    assert runtime.metrics.positions.get() == 2


async def test_mqtt_311_dead_letters_in_a_json_envelope(broker: Mosquitto, prefix: str) -> None:
    settings = gateway_settings(broker.url, prefix, mqtt_protocol="3.1.1")
    v311 = aiomqtt.ProtocolVersion.V311
    async with (
        running_gateway(settings),
        aiomqtt.Client("127.0.0.1", broker.port, protocol=v311) as watcher,
    ):
        await watcher.subscribe(f"{prefix}/deadletter/#", qos=1)
        await publish(
            broker.port,
            (f"{prefix}/dev-5/status", b'{"ts": 1, "job": "j", "status": "x"}'),
            protocol=v311,
        )
        async with asyncio.timeout(10):
            message = await anext(aiter(watcher.messages))
    body = json.loads(message.payload)
    assert body["topic"] == f"{prefix}/dev-5/status"
    assert body["payload"] == '{"ts": 1, "job": "j", "status": "x"}'
    assert body["reason"].startswith("bad_ts")
    assert body["code"] == "bad_ts"
