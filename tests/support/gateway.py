"""Run a whole gateway (ingest + uvicorn) inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from gateway.server import Runtime, build_runtime, http_server
from gateway.settings import Settings
from tests.support.procs import free_port
from tests.support.tasks import stop_task

API_KEY = "test-key-0123456789"


def gateway_settings(mqtt_url: str, prefix: str, **changes: object) -> Settings:
    values: dict[str, object] = {
        "mqtt": mqtt_url,
        "mqtt_protocol": "5",
        "mqtt_client_id": f"gw-{prefix}",
        "topic_prefix": prefix,
        "owntracks_prefix": f"{prefix}-ot",
        "http": f"127.0.0.1:{free_port()}",
        "api_keys": API_KEY,
        "sse_ping_s": 1.0,
    }
    values.update(changes)
    return Settings.from_mapping(values)


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, wait_connected: bool = True, background: bool = False
) -> AsyncIterator[Runtime]:
    """uvicorn and the MQTT ingest; with ``background`` every task of the role
    (engine ticks, or the Redis engine leader and directory refresh)."""
    runtime = await build_runtime(settings)
    server = http_server(runtime)
    http = asyncio.create_task(server.serve(), name="http")
    factories = runtime.background() if background else {"mqtt-ingest": runtime.ingest.run}
    tasks = [asyncio.create_task(f(), name=name) for name, f in factories.items()]
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if http.done():
                    http.result()
                await asyncio.sleep(0.02)
            if wait_connected and "mqtt-ingest" in factories:
                await runtime.ingest.connected.wait()
        yield runtime
    finally:
        server.should_exit = True
        for task in tasks:
            await stop_task(task)
        await http
        await runtime.close()
