"""A short simulated day through a real Mosquitto and the gateway, scored against the truth file.

The simulator registers its technicians and jobs over HTTP and drives them on a small
synthetic city at 120x (a ~20-minute day in ~10 s). The whole day lies in the past (the
simulator's default ``start`` keeps virtual time behind the wall clock), so no good fix
trips the gateway's 5-minute future rule; only the injected ``future_ts`` faults do.
Then the gateway's own record must agree with the truth: every good fix in history once,
every malformed message dead-lettered and counted by reason, re-sends counted as
duplicates, every job done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from gateway.server import Runtime
from simulators.config import FleetParams, Format, PhoneParams, SimConfig
from simulators.runner import SimSummary, simulate
from simulators.truth import Record, read_truth
from tests.support.gateway import API_KEY, gateway_settings, running_gateway
from tests.support.procs import Mosquitto, mosquitto

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}"}

# The reason code the gateway gives each malformed kind the simulator injects.
REASON = {
    "bad_encoding": "bad_encoding",
    "missing_lat": "missing_field",
    "lat_out_of_range": "lat_out_of_range",
    "null_island": "null_island",
    "future_ts": "future_ts",
    "unknown_status": "unknown_status",
}
# Two short jobs per technician on a 2 km city: a whole day is ~20 virtual minutes.
FLEET = FleetParams(
    jobs=(2, 2), job_duration_s=(240.0, 480.0), window_s=1800.0, window_lead_s=(120.0, 300.0),
    slot_s=120.0, shift_spread_s=60.0, early_tolerance_s=120.0, depots=1, return_to_depot=False,
)  # fmt: skip
# Faults turned up so a short day has each kind (the test asserts that they occur).
PHONE = PhoneParams(
    malformed_share=0.05, duplicate_probability=0.03, retained_replay_probability=0.03,
    offline_per_hour=2.0, dropouts_per_hour=1.0,
)  # fmt: skip
SPEEDUP = 120.0


@pytest.fixture(scope="module")
def own_broker() -> Iterator[Mosquitto]:
    """Not the session broker: OwnTracks topics have no per-test prefix and are retained."""
    with mosquitto() as broker:
        yield broker


class DeadLetterWatch:
    """Collects (device_id, reason code) of everything on ``{prefix}/deadletter/#``."""

    def __init__(self) -> None:
        self.seen: Counter[tuple[str, str]] = Counter()

    async def collect(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            device_id = str(message.topic).rsplit("/", 1)[1]
            props = dict(message.properties.UserProperty)  # type: ignore[union-attr]
            self.seen[device_id, props["reason"].split(":", 1)[0]] += 1


@contextlib.asynccontextmanager
async def watching_dead_letters(broker: Mosquitto, prefix: str) -> AsyncIterator[DeadLetterWatch]:
    watch = DeadLetterWatch()
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(f"{prefix}/deadletter/#", qos=1)
        task = asyncio.create_task(watch.collect(client), name="dead-letter watch")
        try:
            yield watch
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def scrape(text: str, name: str) -> dict[str, float]:
    """Samples of one Prometheus metric, keyed by the label set as written (or '')."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in "{ ":
            key, _, value = line[len(name) :].rpartition(" ")
            out[key] = float(value)
    return out


async def drained(runtime: Runtime, watch: DeadLetterWatch, summary: SimSummary) -> None:
    """Until the gateway has taken every message the simulator sent and its dead letters
    are back from the broker."""
    metrics = runtime.metrics
    async with asyncio.timeout(15):
        while (
            sum(metrics.messages.values.values()) < summary.messages
            or watch.seen.total() < metrics.dead_letters.get()
        ):
            await asyncio.sleep(0.05)


def expected_fixes(truth: list[Record]) -> dict[str, dict[float, tuple[float, float]]]:
    """device -> ts -> (lat, lon) as sent, for every fix the gateway must store."""
    out: dict[str, dict[float, tuple[float, float]]] = {}
    for rec in truth:
        if rec["kind"] == "fix":
            assert rec["expect"] == "store"
            sent = rec["sent"]
            out.setdefault(rec["device_id"], {})[float(rec["ts"])] = (sent["lat"], sent["lon"])
    return out


def faults(truth: list[Record], expect: str) -> list[Record]:
    return [r for r in truth if r["kind"] == "fault" and r["expect"] == expect]


async def history(http: httpx.AsyncClient, device_id: str) -> list[dict[str, Any]]:
    r = await http.get(f"/api/v1/devices/{device_id}/positions", params={"limit": 10_000})
    r.raise_for_status()
    got: list[dict[str, Any]] = r.json()
    return got


# Seeds chosen so the two days together inject every malformed kind, offline batches
# (newest- and oldest-first), clock skew, QoS 1 duplicates and retained replays.
@pytest.mark.parametrize(("fmt", "seed"), [("json", 7), ("owntracks", 13)])
async def test_gateway_agrees_with_the_truth_of_a_simulated_day(
    own_broker: Mosquitto, prefix: str, tmp_path: Path, fmt: Format, seed: int
) -> None:
    extra = {"owntracks_prefix": "owntracks"} if fmt == "owntracks" else {}
    settings = gateway_settings(own_broker.url, prefix, **extra)
    cfg = SimConfig(
        mqtt_url=own_broker.url, api_url=settings.base_url, api_key=API_KEY, technicians=3,
        speedup=SPEEDUP, seed=seed, truth_path=tmp_path / "truth.jsonl", format=fmt,
        network="synthetic", city_size_km=2.0, topic_prefix=prefix, id_prefix=f"{prefix}-",
        fleet=FLEET, phone=PHONE, progress=False,
    )  # fmt: skip
    async with (
        watching_dead_letters(own_broker, prefix) as watch,
        running_gateway(settings) as runtime,
        httpx.AsyncClient(base_url=settings.base_url, headers=AUTH, timeout=10) as http,
    ):
        summary = await simulate(cfg)
        await drained(runtime, watch, summary)
        truth = read_truth(tmp_path / "truth.jsonl")
        devices = [d for r in truth if r["kind"] == "technician" for d in r["device_ids"]]
        histories = {d: await history(http, d) for d in devices}
        jobs = {
            r["job_id"]: (await http.get(f"/api/v1/jobs/{r['job_id']}")).json()
            for r in truth
            if r["kind"] == "job"
        }
        metrics_text = (await http.get("/metrics")).text
    assert not summary.stopped_early and truth[-1]["kind"] == "end"

    # The day exercised what it is meant to score.
    kinds = Counter(r["fault"] for r in truth if r["kind"] == "fault")
    resend_kinds = {"duplicate", "retained_replay"} if fmt == "owntracks" else {"duplicate"}
    assert resend_kinds | {"offline_buffer"} <= kinds.keys()
    assert len(faults(truth, "deadletter")) >= 3

    # Every good fix in its device's history exactly once, as sent; nothing else there.
    want = expected_fixes(truth)
    assert set(want) == set(devices)
    for device_id, fixes in histories.items():
        stamps = Counter(f["ts"] for f in fixes)
        assert [ts for ts, n in stamps.items() if n > 1] == [], device_id
        assert {f["ts"]: (f["lat"], f["lon"]) for f in fixes} == want[device_id], device_id
        assert [f["ts"] for f in fixes] == sorted(want[device_id]), device_id

    # Re-sent fixes (QoS 1 duplicates, retained replays) were recognised, each once.
    resent = [ts for r in faults(truth, "once") if r["fault"] in resend_kinds for ts in r["ts"]]
    assert all(
        float(ts) in want[r["device_id"]] for r in faults(truth, "once") for ts in r.get("ts", ())
    )
    positions = scrape(metrics_text, "fieldtrack_positions_total")
    duplicates = scrape(metrics_text, "fieldtrack_duplicates_total")
    assert positions == {"": sum(len(f) for f in want.values())}
    assert duplicates == {"": len(resent)}

    # Every malformed message dead-lettered under its device with the right reason, and
    # counted: no more, no fewer (a good status refused would show up here too).
    injected = Counter((r["device_id"], REASON[r["fault"]]) for r in faults(truth, "deadletter"))
    assert watch.seen == injected
    by_reason = Counter(code for _, code in injected.elements())
    rejected = scrape(metrics_text, "fieldtrack_rejected_total")
    assert rejected == {f'{{reason="{code}"}}': float(n) for code, n in by_reason.items()}

    # Every job ends as the truth says: done, with the technician's own statuses in order.
    assert jobs.keys() == {r["job_id"] for r in truth if r["kind"] == "job"}
    for job_id, job in jobs.items():
        reported = [
            (r["status"], r["ts"]) for r in truth if r["kind"] == "status" and r["job_id"] == job_id
        ]
        # The phone must have sent "done" for the gateway to know (see the report on
        # simulators: a phone still offline when the day ends never flushes its buffer).
        assert reported[-1][0] == "done", (job_id, reported)
        assert job["state"] == "done", (job_id, job["history"])
        device_changes = [(h["status"], h["ts"]) for h in job["history"] if h["source"] == "device"]
        assert device_changes == reported, job_id
