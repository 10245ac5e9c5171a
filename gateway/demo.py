"""``fieldtrack demo``: broker, gateway, API and a simulated fleet in one process.

Nothing to install: the broker is amqtt (embedded, MQTT 3.1.1), state lives in
memory, and the fleet drives the packaged Helsinki street network (© OpenStreetMap
contributors, ODbL) in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

import httpx

from gateway.broker import embedded_broker
from gateway.server import build_runtime, check_free, serve
from gateway.settings import Settings
from simulators.config import SimConfig
from simulators.runner import simulate

log = logging.getLogger("fieldtrack.demo")


async def wait_http(base_url: str) -> None:
    """Until the API answers /healthz (the caller bounds the wait)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as http:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


async def first_tracking_link(base_url: str, key: str) -> str | None:
    """Issue a customer link for the first open job, once the fleet has registered one."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=5.0) as http:
        while True:
            jobs = (await http.get("/api/v1/jobs")).json()
            open_jobs = [j for j in jobs if j["state"] not in ("done", "cancelled", "failed")]
            if open_jobs:
                r = await http.post(f"/api/v1/jobs/{open_jobs[0]['job_id']}/tracking-link")
                return str(r.json()["url"]) if r.status_code == 200 else None
            await asyncio.sleep(0.2)


def banner(settings: Settings, key: str, technicians: int, link: str | None) -> str:
    url = settings.base_url
    return "\n".join(
        [
            "",
            "FieldTrack demo",
            f"  dispatcher   {url}/",
            f"  API key      {key}",
            f"  broker       {settings.mqtt} (embedded, MQTT 3.1.1)",
            f"  fleet        {technicians} technicians on Helsinki streets "
            "(map data © OpenStreetMap contributors, ODbL)",
            f"  customer     {link or '(no open job yet)'}",
            f"  try          curl -H 'Authorization: Bearer {key}' {url}/api/v1/technicians",
            "  stop         Ctrl-C",
            "",
        ]
    )


async def demo(settings: Settings, technicians: int, seed: int, duration: float | None) -> int:
    key = settings.api_keys[0].value
    url = settings.mqtt_url
    stop = asyncio.Event()
    # Both ports up front: a port taken is one clear line, not the tracebacks of a
    # broker or server failing inside a task group.
    for what, (host, port) in (("broker", (url.host, url.port)), ("http", settings.http_bind())):
        check_free(what, host, port)
    async with embedded_broker(url.host, url.port):
        runtime = await build_runtime(settings)
        # The fleet and the demo's own calls go to this process, wherever --public-url
        # (what links and the banner show) points; the fleet publishes on --topic-prefix.
        local = settings.local_url
        sim = SimConfig.demo(
            mqtt_url=settings.mqtt, api_url=local, api_key=key,
            technicians=technicians, seed=seed, topic_prefix=settings.topic_prefix,
        )  # fmt: skip

        async def fleet() -> None:
            async with asyncio.timeout(30):
                await wait_http(local)
            run = asyncio.create_task(simulate(sim, stop=stop), name="simulator")
            link = None
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(20):
                        link = await first_tracking_link(local, key)
                print(banner(settings, key, technicians, link), file=sys.stdout, flush=True)
                summary = await run
            finally:
                run.cancel()
            log.info("simulated fleet finished: %d messages", summary.messages)

        async def deadline() -> None:
            if duration is not None:
                await asyncio.sleep(duration)
                stop.set()

        await serve(runtime, extra={"fleet": fleet, "deadline": deadline}, stop=stop)
    return 0
