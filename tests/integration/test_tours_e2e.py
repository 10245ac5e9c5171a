"""Tours over several days, through the API and a real broker: tomorrow's tour, numbered
from 1 like today's and booked while today's is under way, leaves today's ETAs alone.

The gateway runs in a fixed-offset zone where it is about 09:00 now, so that "today"
and "tomorrow" are the same local dates whatever the hour of the test run.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.integration.test_geofence_e2e import AUTH, place, pos, publish, watching
from tests.support.gateway import gateway_settings, running_gateway
from tests.support.procs import Mosquitto

pytestmark = pytest.mark.integration

DAY = 86400


def morning_zone(now: float) -> str:
    """An ``Etc/GMT`` zone in which ``now`` is between 09:00 and 10:00."""
    offset = (9 - datetime.fromtimestamp(now, UTC).hour) % 24
    if offset > 14:
        offset -= 24
    return f"Etc/GMT{-offset:+d}"  # POSIX-style names: Etc/GMT-3 is UTC+3


def job_body(north_m: float, seq: int, start: float, end: float) -> dict[str, Any]:
    lat, lon = place(north_m)
    return {
        "technician_id": "t1",
        "site": {"lat": lat, "lon": lon, "radius_m": 100},
        "window": {"start": start, "end": end},
        "planned_duration_s": 1800,
        "sequence": seq,
        "customer": {"name": f"customer at {north_m} m"},
    }


async def test_booking_tomorrow_over_http_leaves_todays_etas(
    broker: Mosquitto, prefix: str
) -> None:
    now = round(time.time())
    settings = gateway_settings(broker.url, prefix, timezone=morning_zone(now))
    async with (
        running_gateway(settings) as runtime,
        httpx.AsyncClient(base_url=settings.base_url, headers=AUTH, timeout=10) as http,
    ):
        await http.put("/api/v1/technicians/t1", json={"name": "Aino", "device_ids": ["d1"]})
        async with watching(broker, prefix, runtime, http) as watch:
            # Where the technician is, then today's tour (each job change re-estimates).
            await publish(broker.port, (f"{prefix}/d1/pos", pos(now - 30, 0)))
            await watch.until(lambda: bool(watch.of("position")))
            today = {
                "j1": job_body(3000, 1, now, now + 3600),
                "j2": job_body(6000, 2, now, now + 7200),
            }
            for job_id, body in today.items():
                assert (await http.put(f"/api/v1/jobs/{job_id}", json=body)).status_code == 200
            await watch.until(lambda: bool(watch.of("eta", job_id="j2")))
            before = (await http.get("/api/v1/jobs/j2")).json()["eta"]
            tomorrow = {
                "k1": job_body(500, 1, now + DAY, now + DAY + 3600),
                "k2": job_body(1500, 2, now + DAY, now + DAY + 7200),
            }
            for job_id, body in tomorrow.items():
                assert (await http.put(f"/api/v1/jobs/{job_id}", json=body)).status_code == 200
            await watch.until(lambda: bool(watch.of("eta", job_id="k2")))
            jobs = {j: (await http.get(f"/api/v1/jobs/{j}")).json() for j in ("j2", "k1", "k2")}
            notes = watch.of("notify")

    assert jobs["j2"]["eta"] == before < now + 7200  # today's last job is still today's
    # Tomorrow's first job is reached as its window opens, not tonight, the next after it.
    assert jobs["k1"]["eta"] == pytest.approx(now + DAY, abs=1)
    assert now + DAY + 1800 < jobs["k2"]["eta"] < now + DAY + 3600
    # Nobody is told of a delay, and only today's first customer that we are on the way.
    assert [(n["notification"], n["job_id"]) for n in notes] == [("arriving_soon", "j1")]
