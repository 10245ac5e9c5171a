"""A simulated overrun end to end: overrun, later ETAs moving, late risk, one re-plan.

A technician has three jobs 3 km apart. They report on site at job 1 25 minutes ago
(planned 10 minutes) and their phone has sent a fix there every 100 s since, with
timestamps in the recent past: the engine walks through those 25 minutes in event
time. Expected, on the feed and on ``{prefix}/out/{alert,eta,reoptimize}``: one
``overrun`` (at 800 s on site > 600 x 1.2), job 2's ETA published later and later
(job 1 is never predicted to end sooner than 60 s from now), a ``late_risk`` for job 2
once its arrival is more likely than not past its window, and exactly one
``reoptimize``: the late risk comes within the cool-down with too little gain, and
more ticks and fixes do not add one.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from itertools import pairwise

import httpx
import pytest

from tests.integration.test_geofence_e2e import AUTH, place, pos, publish, watching
from tests.support.gateway import gateway_settings, running_gateway
from tests.support.procs import Mosquitto

pytestmark = pytest.mark.integration


async def test_overrun_cascades_into_late_risk_and_one_reoptimize(
    broker: Mosquitto, prefix: str
) -> None:
    settings = gateway_settings(broker.url, prefix)
    now = round(time.time())
    async with (
        running_gateway(settings) as runtime,
        httpx.AsyncClient(base_url=settings.base_url, headers=AUTH, timeout=10) as http,
    ):
        await http.put("/api/v1/technicians/t1", json={"name": "Aino", "device_ids": ["d1"]})
        # Windows close together: job 2 must be reached by now + 100 s.
        for seq, (job_id, north_m, end) in enumerate(
            (("j1", 0, 600), ("j2", 3000, 100), ("j3", 6000, 3600)), start=1
        ):
            lat, lon = place(north_m)
            body = {
                "technician_id": "t1",
                "site": {"lat": lat, "lon": lon, "radius_m": 100},
                "window": {"start": now - 2400, "end": now + end},
                "planned_duration_s": 600,
                "sequence": seq,
            }
            assert (await http.put(f"/api/v1/jobs/{job_id}", json=body)).status_code == 200
        async with watching(broker, prefix, runtime, http) as watch:

            def seen(ts: float) -> bool:
                return bool(watch.of("position", ts=ts))

            status = {"ts": now - 1500, "job": "j1", "status": "on_site"}
            await publish(broker.port, (f"{prefix}/d1/status", status))
            await watch.until(lambda: bool(watch.of("status", status="on_site")))
            stamps = [now - s for s in range(1400, 0, -100)] + [now - 5]
            await publish(broker.port, *[(f"{prefix}/d1/pos", pos(ts, 0)) for ts in stamps])
            await watch.until(partial(seen, now - 5))
            during = [e for e in watch.feed if e["type"] == "reoptimize"]
            # Time goes on: more ticks (event time = last fix + wall time since) and fixes.
            for ts in (now - 3, now - 2):
                await runtime.gateway.tick()
                await publish(broker.port, (f"{prefix}/d1/pos", pos(ts, 0)))
                await watch.until(partial(seen, ts))
            await runtime.gateway.tick()
            # A marker: leaving the site raises an alert published after all of the above.
            await publish(broker.port, (f"{prefix}/d1/pos", pos(now - 1, 500)))
            await watch.until(lambda: bool(watch.mqtt("alert", alert="left_site_open_job")))
            async with asyncio.timeout(5):
                while runtime.gateway.outbox:
                    await asyncio.sleep(0.02)

    overrun = {"type": "alert", "alert": "overrun", "severity": "warning", "ts": now - 700,
               "technician_id": "t1", "job_id": "j1", "elapsed_s": 800.0,
               "planned_duration_s": 600.0, "overrun_s": 200.0}  # fmt: skip
    assert watch.of("alert", alert="overrun") == [overrun]
    assert watch.mqtt("alert", alert="overrun") == [overrun]

    late = watch.of("alert", alert="late_risk")
    assert [(e["job_id"], e.get("cleared", False)) for e in late] == [("j2", False)]
    assert watch.mqtt("alert", alert="late_risk") == late
    assert late[0]["ts"] > overrun["ts"]
    assert late[0]["window_end"] == now + 100
    assert late[0]["eta"] + 300 > now + 100 and late[0]["late_probability"] >= 0.5

    # Job 2's ETA: published at the arrival on job 1, then later and later (>= 60 s steps).
    etas = [e["eta"] for e in watch.of("eta", job_id="j2")]
    assert len(etas) >= 10
    assert all(b - a >= 60 for a, b in pairwise(etas))
    assert etas[-1] - etas[0] >= 900
    assert [e["eta"] for e in watch.mqtt("eta", job_id="j2")] == etas
    # Job 3 moves with it.
    etas3 = [e["eta"] for e in watch.of("eta", job_id="j3")]
    assert etas3 == sorted(etas3) and etas3[-1] - etas3[0] >= 900

    request = {"type": "reoptimize", "reason": "overrun", "ts": now - 700, "technician_id": "t1",
               "job_ids": ["j1", "j2", "j3"], "predicted_lateness_s": 0.0}  # fmt: skip
    assert during == [request]
    assert watch.of("reoptimize") == [request]
    assert watch.mqtt("reoptimize") == [request]
