"""The dispatcher's live map in headless chromium, on a real uvicorn and a real Mosquitto.

Sign in with the API key, see a technician's marker, see it move after a fix
is published over MQTT, see an ETA reach the tour panel and an alert reach the
alerts panel; no JavaScript error, and no request anywhere but the tile server
(aborted: the page must work without tiles).
"""

from __future__ import annotations

import json
import time

import aiomqtt
import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from dispatcher_feed.livemap import OSM_TILES, tile_origin
from tests.browser.pages import session
from tests.support.gateway import API_KEY, gateway_settings, running_gateway
from tests.support.procs import Mosquitto

pytestmark = [pytest.mark.browser, pytest.mark.integration]
AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def seed(base_url: str, now: float) -> None:
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=10) as http:
        # Bob's last fix is ten minutes old: stale (the page's default is five).
        for tech, name, device, lat, age in (
            ("t1", "Alice Martin", "d1", 48.85, 5),
            ("t2", "Bob", "d2", 48.87, 600),
        ):
            r = await http.put(
                f"/api/v1/technicians/{tech}", json={"name": name, "device_ids": [device]}
            )
            assert r.status_code == 200
            fix = {"ts": now - age, "lat": lat, "lon": 2.35, "spd": 8.0, "hdg": 45.0}
            r = await http.post("/api/v1/positions", json={"device_id": device, "positions": [fix]})
            assert r.json()["accepted"] == 1
        for job, seq, lat in (("j1", 0, 48.853), ("j2", 1, 48.86)):
            body = {"technician_id": "t1", "site": {"lat": lat, "lon": 2.36}, "sequence": seq,
                    "window": {"start": now, "end": now + 7200}}  # fmt: skip
            assert (await http.put(f"/api/v1/jobs/{job}", json=body)).status_code == 200
        r = await http.post("/api/v1/jobs/j1/status", json={"status": "en_route", "ts": now - 1})
        assert r.status_code == 200
        depot = {"type": "Feature", "properties": {"radius_m": 120},
                 "geometry": {"type": "Point", "coordinates": [2.34, 48.84]}}  # fmt: skip
        assert (await http.put("/api/v1/geofences/depot", json=depot)).status_code == 200


async def marker_lat(page: Page, tech: str) -> float:
    value = await page.get_attribute(f'.tech-marker[data-technician="{tech}"]', "data-lat")
    assert value is not None
    return float(value)


async def test_sign_in_marker_moves_eta_and_alert(
    browser: Browser, broker: Mosquitto, prefix: str
) -> None:
    settings = gateway_settings(broker.url, prefix)
    now = time.time()
    async with (
        running_gateway(settings) as runtime,
        session(browser, settings.base_url, viewport={"width": 1280, "height": 800}) as s,
    ):
        await seed(settings.base_url, now)
        # Raised before the page opened, and still standing: the page lists it (GET
        # /api/v1/alerts), as it does not get it from the feed.
        standing = {"type": "alert", "alert": "stale_device", "severity": "critical",
                    "technician_id": "t2", "job_id": "j9", "ts": now - 300}  # fmt: skip
        await runtime.store.put_alerts([standing])
        page = s.page
        response = await page.goto(settings.base_url + "/")
        assert response is not None and response.status == 200
        await page.fill("#key", API_KEY)
        await page.click("#login button[type=submit]")

        # Both technicians appear, coloured by status; the tour lists the jobs in order.
        marker = page.locator('.tech-marker[data-technician="t1"]')
        await marker.wait_for(state="visible", timeout=5000)
        await page.locator('.tech-marker[data-technician="t2"]').wait_for(timeout=5000)
        assert "status-en_route" in (await marker.get_attribute("class") or "")
        assert await marker_lat(page, "t1") == 48.85
        await page.locator("#conn.on").wait_for(timeout=5000)
        earlier = page.locator("#alert-list li", has_text="Stale device")
        assert "Bob · j9" in await earlier.inner_text()
        tour = page.locator('#tech-list li[data-technician="t1"] ol.tour li')
        assert [t.split(" · ")[0] for t in await tour.all_inner_texts()] == ["j1", "j2"]

        # A fix over MQTT moves the marker.
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as mqtt:
            fix = {"ts": time.time(), "lat": 48.8512, "lon": 2.3531, "spd": 9.0, "hdg": 90.0}
            await mqtt.publish(f"{prefix}/d1/pos", json.dumps(fix).encode(), qos=1)
        # (expect polls from outside: a string predicate would need eval, which the CSP forbids)
        await expect(marker).to_have_attribute("data-lat", "48.8512", timeout=5000)

        # An ETA reaches the tour panel and the site marker.
        eta = now + 900
        await runtime.bus.publish([{"type": "eta", "ts": time.time(), "job_id": "j1",
                                    "technician_id": "t1", "eta": eta, "eta_p90": eta + 600,
                                    "delay_s": 600.0}])  # fmt: skip
        await page.locator('#tech-list li[data-technician="t1"] .tour .late').wait_for(timeout=5000)
        assert await page.locator('.site-marker[data-job="j1"] .eta.late').inner_text() != ""

        # An alert reaches the alerts panel.
        alert = {"type": "alert", "alert": "late_risk", "severity": "warning",
                 "technician_id": "t1", "job_id": "j1", "ts": time.time()}  # fmt: skip
        await runtime.bus.publish([alert])
        item = page.locator("#alert-list li", has_text="Late risk")
        await item.wait_for(timeout=5000)
        assert "Alice Martin" in await item.inner_text()
        # (The gateway's own rules may raise more alerts than this one.)
        assert int(await page.inner_text("#alert-count")) >= 1
        # Signed in: the sign-in form is gone.
        assert not await page.locator("#login").is_visible()
        # The optional panels are there: KPIs, and the dispatcher's own geofences drawn.
        await page.locator("#kpis").wait_for(state="visible", timeout=5000)
        fence = page.locator('.leaflet-overlay-pane path[stroke="#7c3aed"]')
        await fence.first.wait_for(state="attached", timeout=5000)
        assert await fence.count() == 1  # the depot; the jobs' own site fences are not drawn

        # Staleness shows on the marker and the panel; filters hide the others.
        bob = page.locator('.tech-marker[data-technician="t2"]')
        assert "stale" in (await bob.get_attribute("class") or "").split()
        assert "stale" not in (await marker.get_attribute("class") or "").split()
        assert await page.locator('#tech-list li[data-technician="t2"] .chip.stale').count() == 1
        await page.select_option("#filter-status", "stale")
        await marker.wait_for(state="hidden", timeout=2000)
        assert await bob.is_visible()
        await page.select_option("#filter-status", "")
        await page.select_option("#filter-tech", "t2")
        await marker.wait_for(state="hidden", timeout=2000)
        await page.select_option("#filter-tech", "")
        await marker.wait_for(state="visible", timeout=2000)

        # On site, the tour says since when, not an "ETA" in the past.
        async with httpx.AsyncClient(base_url=settings.base_url, headers=AUTH) as http:
            r = await http.post("/api/v1/jobs/j1/status", json={"status": "on_site"})
            assert r.status_code == 200
        first = page.locator('#tech-list li[data-technician="t1"] ol.tour li').first
        await expect(first).to_contain_text("j1 · on site · since", timeout=5000)

        # No tiles could load here: the page says so and keeps working.
        await page.locator("#map-note").wait_for(state="visible", timeout=5000)
        await s.shot("dispatcher-map")
        assert s.watch.take_errors() == []
        origin = tile_origin(OSM_TILES)
        assert origin is not None
        assert s.watch.external and all(u.startswith(origin + "/") for u in s.watch.external)
        # Tiles of the fleet's area only: the map fitted the fleet before its first view,
        # so no world tile at zoom 2 was fetched first ({origin}/{z}/{x}/{y}.png).
        zooms = {int(u.removeprefix(origin + "/").split("/")[0]) for u in s.watch.external}
        assert min(zooms) >= 10, sorted(zooms)
