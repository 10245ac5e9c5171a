"""A private Mosquitto on a free port and a subscriber that records what reaches it."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.procs import mosquitto as private_mosquitto


@dataclass(frozen=True)
class Broker:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Broker]:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    with private_mosquitto() as broker:
        yield Broker("127.0.0.1", broker.port)


@dataclass
class Recorder:
    """Messages received by a paho subscriber: (topic, payload, retain)."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[tuple[str, bytes, bool]]:
        deadline = time.monotonic() + timeout
        while self.count() < n and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # anything beyond n (there should be nothing) arrives too
        with self.lock:
            return list(self.messages)


@contextlib.contextmanager
def subscribed(broker: Broker, *topics: str) -> Iterator[Recorder]:
    """A QoS 1 subscriber on `topics`, ready (SUBACK received) when this yields."""
    rec = Recorder()
    ready = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with rec.lock:
            rec.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on_subscribe(*_: object) -> None:
        ready.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rec-{time.time_ns()}")
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.subscribe([(t, 1) for t in topics])
        assert ready.wait(5), "no SUBACK"
        yield rec
    finally:
        client.disconnect()  # first: it wakes the network thread, so loop_stop is quick
        client.loop_stop()


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix unique to the test, so tests sharing the broker never see each other."""
    return f"t{zlib.crc32(request.node.nodeid.encode()):08x}"
