"""Publish rate of the raw-socket load generator vs paho, against a private Mosquitto.

Both publish the same kind of JSON fix (contract fields plus `sent`) to
``bench/{device}/pos`` with nobody subscribed, so this measures how fast a publisher can
push into the broker. QoS 1 counts only once every PUBACK is back; QoS 0 ends when the
broker answers a PINGREQ (loadgen) or the last packet is written (paho).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.loadgen import run_load
from tests.support.procs import mosquitto

PAHO_WINDOW = 20_000


def paho_rate(port: int, messages: int, devices: int, qos: int) -> dict[str, Any]:
    """The obvious paho publisher: encode each fix and `publish`, keeping at most
    PAHO_WINDOW QoS 1 messages un-acknowledged (paho fails past 65 535 of them)."""
    done = threading.Semaphore(PAHO_WINDOW)

    def on_publish(*_: Any) -> None:
        done.release()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"paho-bench-{os.getpid()}")
    # 50 measured fastest here (20: ~15 k/s, 1000: ~10 k/s, 20000: < 1 k/s).
    client.max_inflight_messages_set(50)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        topics = [f"bench/paho-{d:06d}/pos" for d in range(devices)]
        t0 = time.time()
        info = None
        for i in range(messages):
            if not done.acquire(timeout=60):
                raise TimeoutError("paho stopped getting acknowledgements")
            now = time.time()
            payload = (
                f'{{"ts":{now:.6f},"lat":60.17,"lon":24.94,"acc":6.0,"spd":8.5,"sent":{now:.6f}}}'
            )
            info = client.publish(topics[i % devices], payload, qos=qos)
        assert info is not None
        info.wait_for_publish(timeout=120)
        seconds = time.time() - t0
    finally:
        client.loop_stop()
        client.disconnect()
    return {"sent": messages, "seconds": round(seconds, 4), "rate": round(messages / seconds, 1)}


def run(quick: bool) -> dict[str, Any]:
    n = 300_000 if quick else 1_000_000
    n_paho = 100_000 if quick else 300_000
    devices = 1000
    out: dict[str, Any] = {"messages": n, "paho_messages": n_paho, "devices": devices}
    with mosquitto() as broker:
        port = broker.port
        for qos in (0, 1):
            load = run_load(
                "127.0.0.1", port, messages=n, devices=devices, qos=qos, batch=1,
                connections=1, topic_prefix="bench",
            )  # fmt: skip
            out[f"loadgen_qos{qos}"] = asdict(load)
            out[f"paho_qos{qos}"] = paho_rate(port, n_paho, devices, qos)
            out[f"ratio_qos{qos}"] = round(load.rate / out[f"paho_qos{qos}"]["rate"], 2)
        two = run_load(
            "127.0.0.1", port, messages=n, devices=devices, qos=1, batch=1, connections=2,
            topic_prefix="bench",
        )  # fmt: skip
        out["loadgen_qos1_2proc"] = asdict(two)
        batched = run_load(
            "127.0.0.1", port, messages=n // 10, devices=devices, qos=1, batch=10,
            connections=1, topic_prefix="bench",
        )  # fmt: skip
        out["loadgen_qos1_batch10"] = asdict(batched)
        out["loadgen_qos1_batch10_fixes_per_s"] = round(batched.fixes / batched.seconds, 1)
    return out
