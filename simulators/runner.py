"""Drive a simulated fleet against a live gateway: HTTP registrations, then MQTT/HTTP traffic.

:func:`simulate` builds the :class:`~simulators.scenario.Scenario` for a config, then
paces its emission stream in (scaled) real time: virtual time ``v`` is sent at wall time
``max(wall0 + (v - start) / speedup, v)``, so a fix's timestamp is never ahead of the
wall clock (the gateway refuses fixes > 5 min in the future) and with speedup 1 the
run is real time. The truth file is written as messages go out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import httpx
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from simulators import formats
from simulators.config import SimConfig
from simulators.phone import PhoneMessage
from simulators.scenario import (
    Emission,
    Registration,
    Scenario,
    emission_records,
    estimated_day_s,
)
from simulators.truth import Record, TruthWriter, meta_record


class SimulationError(RuntimeError):
    """The gateway refused the fleet (e.g. a registration was rejected); the run stops."""


@dataclass(slots=True)
class SimSummary:
    """What a run did. Times are epoch seconds (virtual) and seconds (wall)."""

    start: float
    end: float
    wall_s: float = 0.0
    messages: int = 0
    fixes: int = 0
    statuses: int = 0
    registrations: int = 0
    http_requests: int = 0
    http_rejected: int = 0
    http_errors: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    truth_records: int = 0
    truth_path: Path | None = None
    stopped_early: bool = False


def default_start(cfg: SimConfig, now: float) -> float:
    """Virtual start so that the (estimated) day ends at wall-clock `now + span/speedup`."""
    span = cfg.duration_s or estimated_day_s(cfg.fleet)
    return round(now - max(0.0, span * (1 - 1 / cfg.speedup)), 3)


@dataclass(frozen=True, slots=True)
class MqttTarget:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False


def parse_mqtt_url(url: str) -> MqttTarget:
    """``mqtt://[user:pass@]host[:port]`` (or ``mqtts://``, or bare ``host:port``)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts", "tcp"):
        raise ValueError(f"unsupported MQTT URL scheme {parts.scheme!r} in {url!r}")
    tls = parts.scheme == "mqtts"
    return MqttTarget(
        parts.hostname or "127.0.0.1",
        parts.port or (8883 if tls else 1883),
        parts.username,
        parts.password,
        tls,
    )


class _Pacer:
    def __init__(self, start: float, wall0: float, speedup: float) -> None:
        self.start, self.wall0, self.speedup = start, wall0, speedup

    def due(self, v: float) -> float:
        return max(self.wall0 + (v - self.start) / self.speedup, v)


class _Inflight:
    """Publishes in flight, at most `limit` at once, in the order they were started.

    Not a TaskGroup: its ExceptionGroup would wrap every error of the run, and a failed
    publish is just re-raised as itself by the next `start` or by `__aexit__`.
    """

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None

    async def start(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        if self._error is not None:
            coro.close()
            raise self._error
        await self._slots.acquire()
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None and self._error is None:
            self._error = task.exception()

    async def __aenter__(self) -> _Inflight:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            for task in self._tasks:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if exc_type is None and self._error is not None:
            raise self._error


class _Run:
    """One run's connections, counters and truth writer; `emit` handles one emission."""

    def __init__(self, cfg: SimConfig, summary: SimSummary, truth: TruthWriter) -> None:
        self.cfg, self.summary, self.truth = cfg, summary, truth
        self.mqtt: aiomqtt.Client | None = None
        self.http: httpx.AsyncClient | None = None
        self.inflight = _Inflight(cfg.max_inflight)
        self.faults: Counter[str] = Counter()

    async def emit(self, em: Emission) -> None:
        self._record(emission_records(em, self.cfg))
        item = em.item
        if isinstance(item, Registration):
            await self._register(item)
        elif isinstance(item, PhoneMessage):
            await self._send(item)

    async def _register(self, reg: Registration) -> None:
        if self.http is None:
            return
        headers = {"Authorization": f"Bearer {self.cfg.api_key}"} if self.cfg.api_key else {}
        resp = await self.http.put(reg.path, json=reg.body, headers=headers)
        self.summary.registrations += 1
        if resp.is_error:
            raise SimulationError(f"PUT {reg.path} -> {resp.status_code}: {resp.text[:200]}")

    async def _send(self, msg: PhoneMessage) -> None:
        out = formats.encode(
            msg, self.cfg.format, prefix=self.cfg.topic_prefix, qos=self.cfg.phone.qos,
            now=time.time(),
        )  # fmt: skip
        self.summary.messages += 1
        if msg.fault is None:
            self.summary.fixes += len(msg.fixes)
            self.summary.statuses += msg.status is not None
        if isinstance(out, formats.HttpOut):
            await self._post(out, expect_ok=msg.fault is None or msg.fault in ("duplicate",))
        else:
            assert self.mqtt is not None
            publish = self.mqtt.publish(out.topic, out.payload, qos=out.qos, retain=out.retain)
            await self.inflight.start(publish, f"publish {msg.msg_id}")

    async def _post(self, out: formats.HttpOut, *, expect_ok: bool) -> None:
        assert self.http is not None  # SimConfig refuses osmand without an api_url
        resp = await self.http.request(out.method, out.path, params=out.params)
        self.summary.http_requests += 1
        if resp.is_error and expect_ok:
            self.summary.http_errors += 1
        elif resp.is_error:
            self.summary.http_rejected += 1

    def _record(self, records: list[Record]) -> None:
        for rec in records:
            if rec["kind"] == "fault":
                self.faults[rec["fault"]] += 1
        self.truth.write(records)


async def simulate(
    cfg: SimConfig,
    *,
    stop: asyncio.Event | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
) -> SimSummary:
    """Run the simulation to its end, to `cfg.duration_s`, or until `stop` is set.

    Cancellation also stops cleanly: the truth file gets its ``end`` record and is
    closed, then the cancellation propagates.
    """
    wall0 = time.time()
    start = cfg.start if cfg.start is not None else default_start(cfg, wall0)
    scenario = await asyncio.to_thread(Scenario, cfg, start)
    end = min(scenario.end, start + cfg.duration_s) if cfg.duration_s else scenario.end
    summary = SimSummary(start=start, end=end, truth_path=cfg.truth_path)
    pacer = _Pacer(start, time.time(), cfg.speedup)
    with TruthWriter(cfg.truth_path) as truth:
        run = _Run(cfg, summary, truth)
        truth.write([meta_record(cfg, start, scenario.graph.name)])
        last = start
        try:
            async with _connections(cfg, run, http_transport), _progress(cfg, start, end) as bar:
                async for em in _paced(scenario, pacer, stop):
                    await run.emit(em)
                    last = em.t
                    bar(em.t, summary.messages)
                summary.stopped_early = stop is not None and stop.is_set()
                bar(last if summary.stopped_early else end, summary.messages, force=True)
        except asyncio.CancelledError:
            summary.stopped_early = True
            raise
        finally:
            summary.faults = dict(sorted(run.faults.items()))
            summary.wall_s = round(time.time() - wall0, 3)
            summary.truth_records = truth.count + 1
            truth.write([_end_record(summary, last)])
    return summary


def _end_record(s: SimSummary, last: float) -> Record:
    return {
        "kind": "end",
        "t": last,
        "stopped_early": s.stopped_early,
        "messages": s.messages,
        "fixes": s.fixes,
        "statuses": s.statuses,
        "faults": s.faults,
    }


async def _paced(
    scenario: Scenario, pacer: _Pacer, stop: asyncio.Event | None
) -> AsyncIterator[Emission]:
    burst = 0
    for em in scenario.emissions():
        delay = pacer.due(em.t) - time.time()
        if delay > 0:
            burst = 0
            if await _stopped_within(stop, delay):
                return
        elif stop is not None and stop.is_set():
            return
        else:
            burst += 1
            if burst % 256 == 0:
                await asyncio.sleep(0)  # let publish tasks and the network run while catching up
        yield em


async def _stopped_within(stop: asyncio.Event | None, delay: float) -> bool:
    if stop is None:
        await asyncio.sleep(delay)
        return False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await stop.wait()
    return stop.is_set()


@contextlib.asynccontextmanager
async def _connections(
    cfg: SimConfig, run: _Run, http_transport: httpx.AsyncBaseTransport | None
) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        if cfg.api_url is not None:
            run.http = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=cfg.api_url, timeout=cfg.http_timeout_s, transport=http_transport
                )
            )
        protocol = (
            aiomqtt.ProtocolVersion.V5 if cfg.protocol == "5" else aiomqtt.ProtocolVersion.V311
        )
        target = parse_mqtt_url(cfg.mqtt_url)
        client = aiomqtt.Client(
            target.host,
            target.port,
            username=target.username,
            password=target.password,
            tls_params=aiomqtt.TLSParameters() if target.tls else None,
            identifier=f"fieldtrack-sim-{cfg.seed}-{time.monotonic_ns() % 10**9}",
            protocol=protocol,
            max_inflight_messages=cfg.max_inflight,
        )
        # Our own window bounds what is pending; aiomqtt would warn past 10.
        client.pending_calls_threshold = cfg.max_inflight + 1
        run.mqtt = await stack.enter_async_context(client)
        # Leaving this waits for the last PUBACK (or cancels what is pending on an error).
        await stack.enter_async_context(run.inflight)
        yield


@contextlib.asynccontextmanager
async def _progress(cfg: SimConfig, start: float, end: float) -> AsyncIterator[_Bar]:
    if not cfg.progress:
        yield _Bar(None, TaskID(0), start)
        return
    progress = Progress(
        TextColumn("[bold]simulate[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}% of virtual day"),
        TextColumn("{task.fields[msgs]} msgs"),
        TimeElapsedColumn(),
    )
    with progress:
        task = progress.add_task(
            time.strftime("%H:%M:%S", time.localtime(start)), total=end - start, msgs=0
        )
        yield _Bar(progress, task, start)


class _Bar:
    """Progress update, throttled to ~10 Hz of wall time."""

    def __init__(self, progress: Progress | None, task: TaskID, start: float) -> None:
        self.progress, self.task, self.start = progress, task, start
        self._next = 0.0

    def __call__(self, t: float, messages: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or (now < self._next and not force):
            return
        self._next = now + 0.1
        clock = time.strftime("%H:%M:%S", time.localtime(t))
        self.progress.update(
            self.task,
            completed=t - self.start,
            description=clock,
            msgs=messages,
        )
