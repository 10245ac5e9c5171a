"""The load generator against a real Mosquitto: every message arrives, well formed."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import msgpack
import orjson
import pytest

from simulators.loadgen import LoadResult, run_load

from .conftest import Broker, subscribed


def decode(payload: bytes) -> Any:
    return orjson.loads(payload) if payload[:1] in (b"{", b"[") else msgpack.unpackb(payload)


@pytest.mark.parametrize(
    ("qos", "protocol", "encoding", "batch"),
    [(1, 4, "json", 1), (0, 4, "json", 3), (1, 5, "msgpack", 1), (0, 5, "msgpack", 20)],
)
def test_every_message_arrives_with_unique_timestamps(
    mosquitto: Broker, topic_prefix: str, qos: int, protocol: int, encoding: str, batch: int
) -> None:
    with subscribed(mosquitto, f"{topic_prefix}/#") as rec:
        before = time.time()
        result = run_load(
            mosquitto.host, mosquitto.port, messages=300, devices=7, qos=qos, batch=batch,
            connections=1, topic_prefix=topic_prefix, encoding=encoding, protocol=protocol,
        )  # fmt: skip
        received = rec.wait_for(300)
    after = time.time()
    assert (result.sent, result.fixes, result.acked) == (300, 300 * batch, 300 if qos else 0)
    assert result.rate == pytest.approx(300 / result.seconds, rel=1e-3)
    assert len(received) == 300
    seen: dict[str, set[float]] = defaultdict(set)
    for topic, payload, _ in received:
        prefix, device, leaf = topic.split("/")
        assert (prefix, leaf) == (topic_prefix, "pos") and device.startswith("load-")
        body = decode(payload)
        fixes = body if batch > 1 else [body]
        assert isinstance(body, list) == (batch > 1) and len(fixes) == batch
        for fix in fixes:
            assert before <= fix["sent"] <= fix["ts"] <= after
            assert 59.9 < fix["lat"] < 60.3 and 24.7 < fix["lon"] < 25.1
            assert {"acc", "spd", "hdg"} <= set(fix)
            assert fix["ts"] not in seen[device]
            seen[device].add(fix["ts"])
    assert len(seen) == 7


def test_two_processes_share_the_work(mosquitto: Broker, topic_prefix: str) -> None:
    with subscribed(mosquitto, f"{topic_prefix}/#") as rec:
        result = run_load(
            mosquitto.host, mosquitto.port, messages=1001, devices=3, qos=1, batch=1,
            connections=2, topic_prefix=topic_prefix,
        )  # fmt: skip
        received = rec.wait_for(1001)
    assert (result.sent, result.acked, result.connections) == (1001, 1001, 2)
    assert len(received) == 1001
    keys = [(t, orjson.loads(p)["ts"]) for t, p, _ in received]
    assert len(set(keys)) == 1001  # no device sends the same ts twice, across processes


def test_rate_cap(mosquitto: Broker, topic_prefix: str) -> None:
    result = run_load(
        mosquitto.host, mosquitto.port, messages=600, devices=10, qos=0, batch=1,
        connections=1, topic_prefix=topic_prefix, rate=2000.0,
    )  # fmt: skip
    assert result.seconds >= 0.25
    assert result.rate <= 2400


@pytest.mark.parametrize(
    "kwargs",
    [{"qos": 2}, {"encoding": "xml"}, {"batch": 0}, {"devices": 0}, {"connections": 0}],
)
def test_invalid_arguments(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"messages": 1, "devices": 1, "qos": 0, "batch": 1, "connections": 1}
    with pytest.raises(ValueError):
        run_load("127.0.0.1", 1, **{**args, **kwargs})


def test_load_result_fields() -> None:
    r = LoadResult(sent=10, seconds=2.0, rate=5.0)
    assert (r.sent, r.seconds, r.rate, r.fixes, r.acked, r.connections) == (10, 2.0, 5.0, 0, 0, 1)
