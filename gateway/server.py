"""Composition root for a running gateway: store, bus, gateway, MQTT ingest, HTTP.

One ``TaskGroup`` of named tasks. uvicorn owns the signals: when it has shut
down (Ctrl-C / SIGTERM) the other tasks are cancelled and the group unwinds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import uvicorn

from dispatcher_feed.app import create_app
from dispatcher_feed.context import AppContext
from gateway.bus import MemoryBus
from gateway.ingest import MqttIngest
from gateway.metrics import Metrics
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.store import MemoryStore, Store
from gateway.topics import TopicScheme

log = logging.getLogger("fieldtrack")


@dataclass
class Runtime:
    settings: Settings
    store: Store
    bus: MemoryBus
    metrics: Metrics
    gateway: Gateway
    ingest: MqttIngest
    app_context: AppContext


async def build_runtime(settings: Settings) -> Runtime:
    if settings.redis is not None:
        from gateway.errors import ConfigError

        raise ConfigError("--redis is not available in this build; run without it (memory state)")
    store = MemoryStore(settings.history_per_device)
    bus = MemoryBus(settings.replay_buffer)
    metrics = Metrics()
    topics = TopicScheme(settings.topic_prefix, settings.owntracks_prefix, settings.share_group)
    gateway = Gateway(store, bus, metrics, topics)
    await gateway.start()
    ingest = MqttIngest(settings, gateway)

    async def ready() -> bool:
        return ingest.connected.is_set() and await store.ping()

    ctx = AppContext(settings, store, bus, metrics, gateway, ready=ready)
    return Runtime(settings, store, bus, metrics, gateway, ingest, ctx)


def http_server(runtime: Runtime) -> uvicorn.Server:
    host, port = runtime.settings.http_bind()
    config = uvicorn.Config(
        create_app(runtime.app_context),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        # Without it uvicorn waits forever for open SSE streams (FACTS.md).
        timeout_graceful_shutdown=2,
        lifespan="off",
    )
    return uvicorn.Server(config)


async def serve(
    runtime: Runtime,
    extra: dict[str, Callable[[], Coroutine[Any, Any, Any]]] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run ingest and HTTP (plus ``extra`` named tasks) until a signal or ``stop``."""
    server = http_server(runtime)
    async with asyncio.TaskGroup() as tg:
        http = tg.create_task(server.serve(), name="http")
        others = [
            tg.create_task(runtime.ingest.run(), name="mqtt-ingest"),
            tg.create_task(runtime.gateway.run_ticks(), name="engine-tick"),
        ]
        for name, factory in (extra or {}).items():
            others.append(tg.create_task(factory(), name=name))
        if stop is not None:

            async def stop_server() -> None:
                await stop.wait()
                server.should_exit = True

            others.append(tg.create_task(stop_server(), name="stop"))
        # A failing task ends the group (and so the server); uvicorn ending
        # (a signal, or ``stop``) ends the others.
        await http
        for task in others:
            task.cancel()
