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
from gateway.server import build_runtime, serve
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


def banner(settings: Settings, key: str, technicians: int) -> str:
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
            f"  try          curl -H 'Authorization: Bearer {key}' {url}/api/v1/technicians",
            "  stop         Ctrl-C",
            "",
        ]
    )


async def demo(settings: Settings, technicians: int, seed: int, duration: float | None) -> int:
    key = settings.api_keys[0].value
    url = settings.mqtt_url
    stop = asyncio.Event()
    async with embedded_broker(url.host, url.port):
        runtime = await build_runtime(settings)
        sim = SimConfig.demo(
            mqtt_url=settings.mqtt, api_url=settings.base_url, api_key=key,
            technicians=technicians, seed=seed,
        )  # fmt: skip

        async def fleet() -> None:
            async with asyncio.timeout(30):
                await wait_http(settings.base_url)
            print(banner(settings, key, technicians), file=sys.stdout, flush=True)
            summary = await simulate(sim, stop=stop)
            log.info("simulated fleet finished: %d messages", summary.messages)

        async def deadline() -> None:
            if duration is not None:
                await asyncio.sleep(duration)
                stop.set()

        await serve(runtime, extra={"fleet": fleet, "deadline": deadline}, stop=stop)
    return 0
