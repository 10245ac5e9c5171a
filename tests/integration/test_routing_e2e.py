"""``--routing-url`` end to end: a real broker, the whole gateway with its background tasks,
and an OSRM-shaped HTTP server. The first ETA comes from the learned model alone (the
estimate never waits for HTTP); once the route is fetched, the next one is the route's."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.test_geofence_e2e import AUTH, place, pos, publish, watching
from tests.support.gateway import gateway_settings, running_gateway
from tests.support.osrm import osrm_server
from tests.support.procs import Mosquitto

pytestmark = pytest.mark.integration


async def test_etas_follow_the_routing_engine_once_it_has_answered(
    broker: Mosquitto, prefix: str
) -> None:
    now = round(time.time())
    lat, lon = place(3000)
    job = {
        "technician_id": "t1",
        "site": {"lat": lat, "lon": lon, "radius_m": 100},
        "window": {"start": now, "end": now + 7200},
        "planned_duration_s": 1800,
        "sequence": 1,
        "customer": {"name": "Kahvila Aalto"},
    }
    async with osrm_server() as (osrm, url):
        # A fast road: 3.2 km in 120 s. The learned model alone says 3 km x 1.35 at 8.3 m/s.
        osrm.distance_m, osrm.duration_s = 3200.0, 120.0
        settings = gateway_settings(broker.url, prefix, routing_url=url)
        async with (
            running_gateway(settings, background=True) as runtime,
            httpx.AsyncClient(base_url=settings.base_url, headers=AUTH, timeout=10) as http,
        ):
            await http.put("/api/v1/technicians/t1", json={"name": "Aino", "device_ids": ["d1"]})
            async with watching(broker, prefix, runtime, http) as watch:
                await publish(broker.port, (f"{prefix}/d1/pos", pos(now, 0)))
                await watch.until(lambda: bool(watch.of("position")))
                assert (await http.put("/api/v1/jobs/j1", json=job)).status_code == 200
                await watch.until(lambda: bool(watch.of("eta", job_id="j1")))
                await watch.until(lambda: bool(osrm.asked))
                # Still parked 20 s later: re-estimated, now from the route.
                await publish(broker.port, (f"{prefix}/d1/pos", pos(now + 20, 0)))
                await watch.until(lambda: len(watch.of("eta", job_id="j1")) >= 2)
                metrics = (await http.get("/metrics")).text
            first, second = (e["eta"] for e in watch.of("eta", job_id="j1")[:2])

    assert first - now > 400  # the model alone: ~490 s
    assert second == pytest.approx(now + 20 + 120, abs=2)  # the route's 120 s from the fix
    assert osrm.asked == [(*(round(x, 3) for x in place(0)), round(lat, 4), round(lon, 4))]
    assert 'fieldtrack_routing_requests_total{outcome="ok"} 1' in metrics
