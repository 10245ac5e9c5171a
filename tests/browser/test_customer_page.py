"""A customer's tracking page in headless chromium (phone-sized), on a real uvicorn and Mosquitto.

The page follows its job live: "en route" with an ETA and the technician's
marker, "arrived" (marker gone) when the job goes on site, "done", and the link
answers 410 on reload. No JavaScript error, and not one request to another origin.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiomqtt
import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.pages import Session, session
from tests.support.gateway import API_KEY, gateway_settings, running_gateway
from tests.support.procs import Mosquitto

pytestmark = [pytest.mark.browser, pytest.mark.integration]
AUTH = {"Authorization": f"Bearer {API_KEY}"}
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
}


async def seed(base_url: str, now: float) -> str:
    """Alice, on her way to one job of a tour of two; returns the customer's link."""
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=10) as http:
        tech = {"name": "Alice Martin", "device_ids": ["d1"]}
        assert (await http.put("/api/v1/technicians/t1", json=tech)).status_code == 200
        for job, lat in (("j1", 48.8566), ("j9", 48.80)):
            body = {"technician_id": "t1", "site": {"lat": lat, "lon": 2.3522, "radius_m": 60},
                    "window": {"start": now, "end": now + 7200},
                    "customer": {"name": "Claire Dupont"}}  # fmt: skip
            assert (await http.put(f"/api/v1/jobs/{job}", json=body)).status_code == 200
        r = await http.post("/api/v1/jobs/j1/tracking-link")
        assert r.status_code == 200
        url: str = r.json()["url"]
        return url


async def phase_is(page: Page, phase: str) -> None:
    await page.locator(f'#phase[data-phase="{phase}"]').wait_for(timeout=5000)


async def check_clean(s: Session) -> None:
    assert s.watch.take_errors() == []
    assert s.watch.external == []


async def test_customer_follows_the_visit_to_the_end(
    browser: Browser, broker: Mosquitto, prefix: str
) -> None:
    settings = gateway_settings(broker.url, prefix)
    now = time.time()
    async with (
        running_gateway(settings) as runtime,
        session(browser, settings.base_url, **PHONE) as s,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as mqtt,
    ):
        url = await seed(settings.base_url, now)
        page = s.page

        async def device(kind: str, payload: dict[str, object]) -> None:
            await mqtt.publish(f"{prefix}/d1/{kind}", json.dumps(payload).encode(), qos=1)

        response = await page.goto(url)
        assert response is not None and response.status == 200
        await phase_is(page, "scheduled")
        assert await page.inner_text("#who") == "Your technician today: Alice"

        # En route: the marker appears with each fix; an ETA with its range shows.
        await device("status", {"ts": time.time(), "job": "j1", "status": "en_route"})
        await phase_is(page, "en_route")
        await device("pos", {"ts": time.time(), "lat": 48.8500, "lon": 2.3400, "hdg": 60.0})
        van = page.locator(".van-marker")
        await van.wait_for(timeout=5000)
        eta = now + 1200
        await runtime.bus.publish([{"type": "eta", "ts": time.time(), "job_id": "j1",
                                    "technician_id": "t1", "eta": eta, "eta_p90": eta + 600,
                                    "delay_s": 0.0}])  # fmt: skip
        await page.locator("#eta-row").wait_for(state="visible", timeout=5000)
        assert "en route" in (await page.inner_text("#phase")).lower()
        assert "–" in await page.inner_text("#eta")
        assert await page.is_visible("#window-row")
        await device("pos", {"ts": time.time(), "lat": 48.8530, "lon": 2.3450, "hdg": 50.0})
        await expect(van).to_have_attribute("data-lat", "48.853", timeout=5000)
        assert "km away" in await page.inner_text("#distance")
        await s.shot("customer-en-route")

        # Arrived: no more position, the marker goes.
        await device("status", {"ts": time.time(), "job": "j1", "status": "on_site"})
        await phase_is(page, "arrived")
        await van.wait_for(state="detached", timeout=5000)
        await device("pos", {"ts": time.time(), "lat": 48.8566, "lon": 2.3522})
        assert "arrived" in (await page.inner_text("#phase")).lower()
        assert not await page.is_visible("#eta-row")
        await s.shot("customer-arrived")

        # Done, then the link is over.
        await device("status", {"ts": time.time(), "job": "j1", "status": "done"})
        await phase_is(page, "done")
        assert "done" in (await page.inner_text("#phase")).lower()
        assert await page.locator(".van-marker").count() == 0
        await s.shot("customer-done")
        await check_clean(s)

        response = await page.reload()
        assert response is not None and response.status == 410
        await phase_is(page, "gone")
        assert "Alice" not in await page.content()
        await s.shot("customer-gone")
        # The browser reports the 410 of the page itself, and nothing else.
        assert [e.split(" @ ")[0] for e in s.watch.take_errors()] == [
            "Failed to load resource: the server responded with a status of 410 (Gone)"
        ]
        assert s.watch.external == []
