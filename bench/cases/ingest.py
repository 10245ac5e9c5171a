"""``ingest``: the gateway's processing rate against a bare aiomqtt drain, same broker, same run.

Method: a backlog of N QoS 1 messages is queued in a private Mosquitto for an
offline persistent session, then the consumer connects and drains it; the
clock runs from connect to the N-th message processed. Draining a backlog
measures the consumer alone, whatever the publisher's speed. Each consumer
gets its own backlog of identical messages (fresh device ids, so nothing is a
duplicate). Also reported: fixes/s with 50-fix batched payloads.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiomqtt
import orjson
import paho.mqtt.client as paho
import uvloop
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.bus import MemoryBus
from gateway.ingest import MqttIngest
from gateway.metrics import Metrics
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.store import MemoryStore
from gateway.topics import TopicScheme
from tests.support.procs import Mosquitto, mosquitto


def publish_backlog(port: int, prefix: str, messages: int, batch: int, devices: int) -> None:
    """Queue ``messages`` payloads (each ``batch`` fixes) with a blocking paho publisher."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{prefix}")
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    t0 = time.time() - 3600
    infos = []
    for i in range(messages):
        device = f"d{i % devices}"
        base = t0 + (i // devices) * batch
        fixes = [
            {"ts": base + k, "lat": 60.1 + (i % 97) * 1e-4, "lon": 24.9 + k * 1e-5, "spd": 5.0}
            for k in range(batch)
        ]
        payload = orjson.dumps(fixes[0] if batch == 1 else fixes)
        infos.append(client.publish(f"{prefix}/{device}/pos", payload, qos=1))
        if len(infos) >= 5000:
            for info in infos:
                info.wait_for_publish()
            infos.clear()
    for info in infos:
        info.wait_for_publish()
    client.loop_stop()
    client.disconnect()


async def _subscribe_once(port: int, client_id: str, topic: str) -> None:
    """Create the persistent session with its subscription, then leave."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False, properties=props,
    ) as client:  # fmt: skip
        await client.subscribe(topic, qos=1)


async def bare_drain(port: int, client_id: str, expected: int) -> float:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    t0 = time.perf_counter()
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False, properties=props,
    ) as client:  # fmt: skip
        n = 0
        async for _ in client.messages:
            n += 1
            if n == expected:
                break
    return time.perf_counter() - t0


async def gateway_drain(port: int, prefix: str, expected_fixes: int) -> tuple[float, Metrics]:
    settings = Settings.from_mapping(
        {"mqtt": f"mqtt://127.0.0.1:{port}", "mqtt_protocol": "5",
         "mqtt_client_id": f"gw-{prefix}", "topic_prefix": prefix}
    )  # fmt: skip
    metrics = Metrics()
    gateway = Gateway(MemoryStore(1000), MemoryBus(1000), metrics, TopicScheme(prefix))
    ingest = MqttIngest(settings, gateway)
    t0 = time.perf_counter()
    task = asyncio.create_task(ingest.run())
    while metrics.positions.get() < expected_fixes:
        await asyncio.sleep(0.002)
        if task.done():
            task.result()
    elapsed = time.perf_counter() - t0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed, metrics


def _case(broker: Mosquitto, messages: int, batch: int, devices: int) -> dict[str, Any]:
    bare_prefix, gw_prefix = f"bare{batch}", f"gw{batch}"
    uvloop.run(_subscribe_once(broker.port, f"bare-{bare_prefix}", f"{bare_prefix}/+/pos"))
    # The gateway's first run creates its session; cancel it once subscribed.
    uvloop.run(_prime_gateway(broker.port, gw_prefix))
    publish_backlog(broker.port, bare_prefix, messages, batch, devices)
    publish_backlog(broker.port, gw_prefix, messages, batch, devices)
    bare_s = uvloop.run(bare_drain(broker.port, f"bare-{bare_prefix}", messages))
    gw_s, metrics = uvloop.run(gateway_drain(broker.port, gw_prefix, messages * batch))
    return {
        "messages": messages,
        "fixes_per_message": batch,
        "bare_aiomqtt_msgs_per_s": round(messages / bare_s),
        "gateway_msgs_per_s": round(messages / gw_s),
        "gateway_fixes_per_s": round(messages * batch / gw_s),
        "ratio_gateway_vs_bare": round(bare_s / gw_s, 3),
        "pipeline_p50_s_upper_bound": _quantile(metrics, 0.5),
        "pipeline_p99_s_upper_bound": _quantile(metrics, 0.99),
    }


async def _prime_gateway(port: int, prefix: str) -> None:
    settings = Settings.from_mapping(
        {"mqtt": f"mqtt://127.0.0.1:{port}", "mqtt_protocol": "5",
         "mqtt_client_id": f"gw-{prefix}", "topic_prefix": prefix}
    )  # fmt: skip
    gateway = Gateway(MemoryStore(10), MemoryBus(10), Metrics(), TopicScheme(prefix))
    ingest = MqttIngest(settings, gateway)
    task = asyncio.create_task(ingest.run())
    await asyncio.wait_for(ingest.connected.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _quantile(metrics: Metrics, q: float) -> float | None:
    hist = metrics.pipeline
    if hist.count == 0:
        return None
    target, running = q * hist.count, 0
    for bound, n in zip(hist.buckets, hist.counts, strict=False):
        running += n
        if running >= target:
            return bound
    return None


def run(quick: bool) -> dict[str, Any]:
    singles = 30_000 if quick else 200_000
    batches = 2_000 if quick else 10_000
    with mosquitto() as broker:
        single = _case(broker, singles, 1, 1000)
        batched = _case(broker, batches, 50, 1000)
    return {"single_fix_qos1": single, "batched_50_qos1": batched}
