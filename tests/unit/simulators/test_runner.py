"""simulate() against a private Mosquitto and a fake HTTP API."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.config import FleetParams, Format, PhoneParams, Protocol, SimConfig
from simulators.runner import (
    MqttTarget,
    SimulationError,
    _Pacer,
    default_start,
    parse_mqtt_url,
    simulate,
)
from simulators.scenario import Scenario, estimated_day_s
from simulators.truth import read_truth

from .conftest import Broker, subscribed
from .test_fleet import MORNING

KEY = "sim-test-key"
SMALL = FleetParams(jobs=(2, 3), job_duration_s=(600.0, 900.0))
PHONE = PhoneParams(malformed_share=0.05, duplicate_probability=0.05, offline_per_hour=1.0)


class FakeApi:
    """Records requests; answers 200 (or `status` for registrations)."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[httpx.Request] = []
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/osmand" and "lat" not in request.url.params:
            return httpx.Response(400)
        return httpx.Response(self.status if request.method == "PUT" else 200, json={})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def config(broker: Broker, prefix: str, tmp_path: Path, **kw: Any) -> SimConfig:
    base = SimConfig(
        mqtt_url=broker.url, api_url="http://gateway.test", api_key=KEY, technicians=3,
        speedup=1e6, seed=5, truth_path=tmp_path / "truth.jsonl", start=MORNING,
        topic_prefix=prefix, id_prefix=f"{prefix}-", city_size_km=2.0, fleet=SMALL,
        phone=PHONE, progress=False,
    )  # fmt: skip
    return base.with_(**kw)


@pytest.mark.parametrize(("protocol", "fmt"), [("3.1.1", "json"), ("5", "msgpack")])
async def test_a_day_goes_out_exactly_as_the_truth_says(
    mosquitto: Broker, topic_prefix: str, tmp_path: Path, protocol: Protocol, fmt: Format
) -> None:
    cfg = config(mosquitto, topic_prefix, tmp_path, protocol=protocol, format=fmt)
    api = FakeApi()
    with subscribed(mosquitto, f"{topic_prefix}/#") as rec:
        summary = await simulate(cfg, http_transport=api.transport())
        received = await asyncio.to_thread(rec.wait_for, summary.messages)
    assert not summary.stopped_early and summary.http_errors == 0
    assert len(received) == summary.messages
    # The truth file is exactly the scenario's truth, plus the end record.
    truth = read_truth(tmp_path / "truth.jsonl")
    assert truth[:-1] == [orjson.loads(orjson.dumps(r)) for r in Scenario(cfg, MORNING).truth()]
    assert truth[-1]["kind"] == "end" and truth[-1]["messages"] == summary.messages
    # Registrations: every technician and job, with the API key.
    puts = [r for r in api.requests if r.method == "PUT"]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in puts)
    techs = [r for r in puts if "/technicians/" in r.url.path]
    jobs = [r for r in puts if "/jobs/" in r.url.path]
    assert len(techs) == 3 and len(jobs) == sum(1 for r in truth if r["kind"] == "job")
    assert set(orjson.loads(jobs[0].content)) == {
        "technician_id", "site", "window", "planned_duration_s", "sequence", "customer",
    }  # fmt: skip
    assert summary.registrations == len(puts)
    # Every fix on record went out with exactly its `ts`.
    sent: Counter[tuple[str, float]] = Counter()
    for topic, payload, _ in received:
        _, device, leaf = topic.split("/")
        if leaf == "pos" and payload[:1] not in (b"\xc1",):
            try:
                body = (
                    orjson.loads(payload)
                    if fmt == "json"
                    else __import__("msgpack").unpackb(payload)
                )
            except orjson.JSONDecodeError:
                continue
            for fix in body if isinstance(body, list) else [body]:
                sent[(device, fix.get("ts"))] += 1
    for r in truth:
        if r["kind"] == "fix":
            assert sent[(r["device_id"], r["ts"])] >= 1
    faults = Counter(r["fault"] for r in truth if r["kind"] == "fault")
    assert summary.faults == dict(faults) and faults["duplicate"] > 0


async def test_osmand_posts_positions_and_publishes_statuses(
    mosquitto: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    cfg = config(mosquitto, topic_prefix, tmp_path, format="osmand")
    api = FakeApi()
    with subscribed(mosquitto, f"{topic_prefix}/#") as rec:
        summary = await simulate(cfg, http_transport=api.transport())
        received = await asyncio.to_thread(rec.wait_for, summary.messages - summary.http_requests)
    posts = [r for r in api.requests if r.url.path == "/osmand"]
    assert len(posts) == summary.http_requests > 100
    assert all("authorization" not in r.headers for r in posts)
    assert {"id", "timestamp", "lon", "speed"} <= set(posts[0].url.params)
    assert {t.split("/")[-1] for t, _, _ in received} == {"status"}
    truth = read_truth(tmp_path / "truth.jsonl")
    missing_lat = sum(1 for r in truth if r["kind"] == "fault" and r["fault"] == "missing_lat")
    assert summary.http_rejected == missing_lat and summary.http_errors == 0


async def test_a_refused_registration_stops_the_run(
    mosquitto: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    cfg = config(mosquitto, topic_prefix, tmp_path)
    with pytest.raises(SimulationError, match="401"):
        await simulate(cfg, http_transport=FakeApi(status=401).transport())


async def test_stop_event_ends_the_run_cleanly(
    mosquitto: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    cfg = config(mosquitto, topic_prefix, tmp_path, api_url=None, speedup=1.0, start=None)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, stop.set)
    started = time.monotonic()
    summary = await simulate(cfg, stop=stop)
    assert time.monotonic() - started < 3
    assert summary.stopped_early and summary.registrations == 0
    end = read_truth(tmp_path / "truth.jsonl")[-1]
    assert end["kind"] == "end" and end["stopped_early"] is True


async def test_cancellation_still_closes_the_truth_file(
    mosquitto: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    cfg = config(mosquitto, topic_prefix, tmp_path, api_url=None, speedup=1.0, start=None)
    task = asyncio.create_task(simulate(cfg))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    end = read_truth(tmp_path / "truth.jsonl")[-1]
    assert end["kind"] == "end" and end["stopped_early"] is True


async def test_virtual_time_never_passes_the_wall_clock(
    mosquitto: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    quiet = PhoneParams(clock_skew_probability=0.0, malformed_share=0.0)
    cfg = config(
        mosquitto, topic_prefix, tmp_path, api_url=None, start=None, speedup=2000.0,
        duration_s=600.0, phone=quiet,
    )  # fmt: skip
    stamps: list[tuple[float, float]] = []
    with subscribed(mosquitto, f"{topic_prefix}/+/pos") as rec:
        before = time.time()
        summary = await simulate(cfg)
        await asyncio.to_thread(rec.wait_for, summary.messages - summary.statuses)
        arrived = time.time()
        for _, payload, _ in rec.messages:
            body = orjson.loads(payload)
            stamps += [(f["ts"], arrived) for f in (body if isinstance(body, list) else [body])]
    assert summary.start == pytest.approx(before - 600 * (1 - 1 / 2000), abs=1.0)
    assert stamps and all(ts <= at for ts, at in stamps)
    assert max(ts for ts, _ in stamps) > before - 120  # and it does reach the present


@pytest.mark.parametrize(
    ("duration", "speedup", "lag"),
    [(3600.0, 1.0, 0.0), (3600.0, 10.0, 3240.0), (600.0, 0.5, 0.0), (None, 100.0, None)],
)
def test_default_start(duration: float | None, speedup: float, lag: float | None) -> None:
    cfg = SimConfig(duration_s=duration, speedup=speedup)
    if lag is None:
        lag = estimated_day_s(cfg.fleet) * (1 - 1 / speedup)
    assert default_start(cfg, 1_800_000_000.0) == pytest.approx(1_800_000_000.0 - lag)


@given(st.floats(1e9, 2e9), st.floats(0.0, 1e5), st.floats(0.1, 1e4), st.floats(0.0, 1e5))
def test_pacer_never_sends_virtual_time_early(
    start: float, lag: float, speedup: float, dv: float
) -> None:
    pacer = _Pacer(start, start + lag, speedup)
    assert pacer.due(start + dv) >= start + dv


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("mqtt://127.0.0.1:1884", MqttTarget("127.0.0.1", 1884)),
        ("broker.local", MqttTarget("broker.local", 1883)),
        ("mqtts://u:p@broker:8884", MqttTarget("broker", 8884, "u", "p", True)),
        ("mqtts://broker", MqttTarget("broker", 8883, tls=True)),
        ("tcp://h:1", MqttTarget("h", 1)),
    ],
)
def test_parse_mqtt_url(url: str, target: MqttTarget) -> None:
    assert parse_mqtt_url(url) == target


def test_parse_mqtt_url_refuses_other_schemes() -> None:
    with pytest.raises(ValueError, match="scheme"):
        parse_mqtt_url("http://broker:1883")
