"""Composition root for a running gateway: store, bus, gateway, MQTT ingest, HTTP.

One ``TaskGroup`` of named tasks. uvicorn owns the signals: when it has shut
down (Ctrl-C / SIGTERM) the other tasks are cancelled and the group unwinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from redis.exceptions import RedisError
from sse_starlette.sse import AppStatus

from dispatcher_feed.app import create_app
from dispatcher_feed.context import AppContext
from eta.delay import DelayConfig
from gateway.bus import Bus, MemoryBus
from gateway.cancel import raise_if_cancelling
from gateway.engine import Engine, EngineConfig
from gateway.errors import ConfigError
from gateway.ingest import MqttIngest
from gateway.leader import EngineLeader
from gateway.learning import ModelKeeper
from gateway.metrics import Gauge, Metrics
from gateway.routing import OsrmRouting
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.store import MemoryStore, Store
from gateway.topics import TopicScheme

log = logging.getLogger("fieldtrack")


@dataclass
class Runtime:
    settings: Settings
    store: Store
    bus: Bus
    metrics: Metrics
    gateway: Gateway
    ingest: MqttIngest
    app_context: AppContext
    leader: EngineLeader | None = None
    keeper: ModelKeeper | None = None
    routing: OsrmRouting | None = None

    def background(self) -> dict[str, Callable[[], Coroutine[Any, Any, Any]]]:
        """The named tasks this process runs besides HTTP, by role."""
        role, tasks = self.settings.role, {}
        if role in ("all", "worker"):
            tasks["mqtt-ingest"] = self.ingest.run
            if self.routing is not None:  # where the engine may run
                tasks["routing"] = self.routing.run
        if self.leader is None:
            tasks["engine-tick"] = self.gateway.run_ticks
            if self.keeper is not None:
                keeper, gateway = self.keeper, self.gateway
                tasks["eta-model"] = lambda: keeper.keep(lambda: gateway.engine)
        else:
            tasks["directory"] = _outlasting_redis("directory", self.gateway.run_directory_refresh)
            if role in ("all", "worker"):
                tasks["engine-leader"] = self.leader.run
        return tasks

    async def close(self) -> None:
        if self.leader is not None:
            await self.leader.close()
        await self.bus.close()
        await self.store.close()
        if self.routing is not None:
            await self.routing.aclose()


def check_free(what: str, host: str, port: int) -> None:
    """ConfigError if ``host:port`` cannot be listened on (taken, or not this host's)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"{what} port {host}:{port}: {exc.strerror}") from None


def engine_config(settings: Settings) -> EngineConfig:
    """The engine's rules, as the settings give them."""
    return EngineConfig(
        timezone=settings.timezone,
        delay=DelayConfig(late_probability=settings.late_probability),
    )


def engine_for(settings: Settings, metrics: Metrics) -> tuple[Engine, OsrmRouting | None]:
    """The engine, with the routing engine as its travel-time prior when one is given."""
    engine = Engine(engine_config(settings))
    routing = None
    if settings.routing_url:
        routing = engine.model.routing = OsrmRouting(settings.routing_url, metrics)
    return engine, routing


async def build_runtime(settings: Settings) -> Runtime:
    metrics = Metrics()
    engine, routing = engine_for(settings, metrics)
    topics = TopicScheme(settings.topic_prefix, settings.owntracks_prefix, settings.share_group)
    store: Store
    bus: Bus
    leader = keeper = None
    if settings.redis is None:
        store = MemoryStore(settings.history_per_device)
        bus = MemoryBus(settings.replay_buffer)
        gateway = Gateway(store, bus, metrics, topics, engine=engine)
        if settings.eta_snapshot:
            keeper = ModelKeeper(path=settings.eta_snapshot)
            await keeper.load_into(gateway.engine)
    else:
        from gateway.redis_bus import RedisBus
        from gateway.redis_store import RedisStore, redis_client

        bus = RedisBus(
            settings.redis, replay=settings.replay_buffer, key_prefix=settings.redis_prefix
        )
        # The store appends position, status, job and fence events to the bus's stream in the
        # same script as the data (an outbox): a worker killed in between loses neither.
        store = await RedisStore.connect(
            settings.redis,
            history_per_device=settings.history_per_device,
            key_prefix=settings.redis_prefix,
            events=(bus.stream, settings.replay_buffer),
        )
        gateway = Gateway(store, bus, metrics, topics, engine=engine, inline_engine=False)
        leader = EngineLeader(
            gateway, redis_client(settings.redis), settings.redis_prefix,
            worker_id=settings.worker_id, keeper=ModelKeeper(blobs=store),
        )  # fmt: skip
    await gateway.start()
    ingest = MqttIngest(settings, gateway)
    serves_mqtt = settings.role in ("all", "worker")
    metrics.broker_connected.enabled = serves_mqtt  # an API node has no broker to be up
    if leader is not None and serves_mqtt:  # where the engine may run
        elected = leader.is_leader
        metrics.extra.append(
            Gauge(
                "fieldtrack_engine_leader",
                "1 while this worker runs the engine (elected through Redis).",
                lambda: 1.0 if elected.is_set() else 0.0,
            )
        )

    async def ready() -> bool:
        broker_ok = ingest.connected.is_set() or not serves_mqtt
        # Holding: the store answers PING but refuses writes (full, read-only).
        return broker_ok and not ingest.holding and await store.ping()

    ctx = AppContext(settings, store, bus, metrics, gateway, ready=ready)
    return Runtime(settings, store, bus, metrics, gateway, ingest, ctx, leader, keeper, routing)


def _outlasting_redis(
    name: str, loop: Callable[[], Coroutine[Any, Any, Any]]
) -> Callable[[], Coroutine[Any, Any, Any]]:
    """A loop reading Redis that starts again after an outage rather than end the process."""

    async def run() -> None:
        while True:
            try:
                await loop()
                return
            except RedisError as exc:
                log.warning("%s: Redis failed (%s); starting again in 1 s", name, exc)
            raise_if_cancelling()
            await asyncio.sleep(1.0)

    return run


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
    return _Server(config)


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: ``serve`` stops it on SIGINT/SIGTERM.

    uvicorn's own handlers, once it has shut down, re-raise the signal with the
    previous disposition: SIGTERM then kills the process before anything after the
    HTTP server runs (the ETA model's last save, leaving a share group, closing Redis).
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def _stop_on_signals(server: uvicorn.Server, bus: Bus) -> Iterator[None]:
    """SIGINT/SIGTERM end the HTTP server gracefully; a second one, at once."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        logging.getLogger("fieldtrack").info("%s: shutting down", sig.name)
        if server.should_exit:
            server.force_exit = True
        _begin_shutdown(server, bus)

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (RuntimeError, ValueError, NotImplementedError):  # not the main thread
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _begin_shutdown(server: uvicorn.Server, bus: Bus) -> None:
    """Stop uvicorn, and end the open SSE streams (dispatcher maps, customer pages) so
    that it need not wait for them: uvicorn waits ``timeout_graceful_shutdown`` for open
    connections, then cancels them with a traceback each. Our streams finish their
    responses when their subscription ends; as a backstop, sse-starlette cancels its
    streams on ``AppStatus.should_exit`` (it finds uvicorn's own flag only through
    uvicorn's signal handlers, which ``_Server`` does not install)."""
    server.should_exit = True
    bus.end_subscriptions()
    AppStatus.should_exit = True


async def serve(
    runtime: Runtime,
    extra: dict[str, Callable[[], Coroutine[Any, Any, Any]]] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run ingest and HTTP (plus ``extra`` named tasks) until a signal or ``stop``."""
    server = http_server(runtime)
    try:
        with _stop_on_signals(server, runtime.bus):
            await _serve(runtime, server, extra, stop)
    finally:
        AppStatus.should_exit = False  # process-wide: a later server must not start closed
    await runtime.close()


async def _serve(
    runtime: Runtime,
    server: uvicorn.Server,
    extra: dict[str, Callable[[], Coroutine[Any, Any, Any]]] | None,
    stop: asyncio.Event | None,
) -> None:
    async with asyncio.TaskGroup() as tg:
        http = tg.create_task(server.serve(), name="http")
        others = []
        for name, factory in {**runtime.background(), **(extra or {})}.items():
            others.append(tg.create_task(factory(), name=name))
        if stop is not None:

            async def stop_server() -> None:
                await stop.wait()
                _begin_shutdown(server, runtime.bus)

            others.append(tg.create_task(stop_server(), name="stop"))
        # A failing task ends the group (and so the server); uvicorn ending
        # (a signal, or ``stop``) ends the others.
        await http
        if runtime.settings.leave_share_group and "mqtt-ingest" in runtime.background():
            await runtime.ingest.leave()  # while ingest still runs: it drains the queue
        for task in others:
            task.cancel()
