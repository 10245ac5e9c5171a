"""``latency``: publish -> SSE delivery percentiles at 5 000 msg/s with 200 SSE clients
(quick: 2 000 msg/s, 50 clients), against publish -> MQTT receive at the same rate.

Three processes besides Mosquitto, so no side takes the others' CPU: this one runs the
raw-socket load generator (``run_load``, QoS 1, one fix per message, 1 000 devices; a
fix's ``ts`` is its send time); the gateway runs as ``fieldtrack run`` (in-memory
state); a spawned measuring process holds the SSE clients. Latency is receive time
minus ``ts`` (one clock, one machine).

The measuring side stays light: each SSE client is a bare asyncio protocol on one
socket (``_FeedReader``), counts events with one ``bytes.count`` per read, and only
every ``probe_every``-th client also pulls the ``ts`` values out with one regex per
read (a read's events share its receive time). Every client counts, so delivery (each
event to every client) is checked in full. ``measurer_cpu_s`` shows it kept up.

Baseline, same run, same rate, same generator: a bare aiomqtt QoS 1 subscriber in the
measuring process, publish -> MQTT receive. The difference is what the gateway and
SSE add. Note: the generator writes in bursts of 128 messages (every 25.6 ms at
5 000 msg/s), and both paths see the same bursts.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import aiomqtt
import httpx
import orjson
import uvloop

from simulators.loadgen import LoadResult, run_load
from tests.support.procs import Mosquitto, free_port, mosquitto

API_KEY = "bench-latency-key"
PREFIX = "lat"
DEVICES = 1000
IDLE_S = 3.0  # after the load, a measurer stops once nothing arrived for this long
TS = re.compile(rb'"ts":([0-9.]+)')


@dataclass(frozen=True)
class Plan:
    rate: float
    seconds: float
    clients: int
    probe_every: int

    @property
    def messages(self) -> int:
        return round(self.rate * self.seconds)


# -- statistics -----------------------------------------------------------------------


def summarize(latencies: array[float]) -> dict[str, float | int]:
    """p50/p99/p999/max in milliseconds (nearest rank)."""
    ordered = sorted(latencies)
    n = len(ordered)
    if not n:
        return {"samples": 0}

    def pct(q: float) -> float:
        return round(ordered[min(n - 1, math.ceil(q * n) - 1)] * 1000, 2)

    return {
        "samples": n,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


# -- measuring process ------------------------------------------------------------------


@dataclass
class _Sse:
    """What all SSE clients of the measuring process saw."""

    counts: list[int]
    probe_every: int
    latencies: array[float] = field(default_factory=lambda: array("d"))
    ready: int = 0
    ended: int = 0  # streams the server closed (a client cut off for falling behind)
    chunks: int = 0
    last_rx: float = 0.0


class _FeedReader(asyncio.Protocol):
    """One SSE client on a bare socket: a GET, then every read counted where it lands.

    No HTTP library: per read it costs a ``time.time()``, a ``bytes.count`` and (probe
    clients) a regex, a few µs, where httpx's ``aiter_raw`` cost ~19 µs of CPU per chunk
    here and made the measurer, not the gateway, the bottleneck at 50 clients. uvicorn
    sends each SSE write as one HTTP chunk of whole frames, so the chunk-size lines
    between them never split a ``data:`` line or a ``ts``.
    """

    def __init__(self, sse: _Sse, i: int, request: bytes, on_ready: Callable[[], None]) -> None:
        self.sse, self.i, self.request, self.on_ready = sse, i, request, on_ready
        self.probe = i % sse.probe_every == 0
        self.head: bytes | None = b""  # None once the response headers are through
        self.subscribed = False
        self.tail = b""
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        cast(asyncio.WriteTransport, transport).write(self.request)

    def data_received(self, data: bytes) -> None:
        now = self.sse.last_rx = time.time()
        self.sse.chunks += 1
        if self.head is not None:
            head = self.head + data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                self.head = head
                return
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"feed answered {head[:40]!r}")
            self.head, data = None, head[end + 4 :]
        if not self.subscribed and b"retry:" in data:
            # The feed's first frame: it is yielded once the bus subscription exists.
            self.subscribed = True
            self.on_ready()
        buf = self.tail + data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self.tail = buf
            return
        done, self.tail = buf[:cut], buf[cut + 2 :]
        self.sse.counts[self.i] += done.count(b"\ndata: ")
        if self.probe:
            self.sse.latencies.extend(now - float(ts) for ts in TS.findall(done))

    def connection_lost(self, exc: Exception | None) -> None:
        self.sse.ended += 1
        if not self.lost.done():
            self.lost.set_result(None)


async def _until_quiet(load_done: Any, last_rx: Any, complete: Any, deadline_s: float) -> None:
    """Until everything arrived, or the load is over and nothing came for IDLE_S."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and not complete():
        if load_done.is_set() and time.time() - last_rx() > IDLE_S:
            return
        await asyncio.sleep(0.1)


async def measure_sse(
    base_url: str, plan: Plan, expected: int, ready_flag: Any, load_done: Any
) -> dict[str, Any]:
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    request = (
        f"GET /api/v1/feed HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {API_KEY}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    sse = _Sse([0] * plan.clients, plan.probe_every)
    ready = asyncio.Event()

    def on_ready() -> None:
        sse.ready += 1
        if sse.ready == plan.clients:
            ready.set()

    loop = asyncio.get_running_loop()
    readers = [_FeedReader(sse, i, request, on_ready) for i in range(plan.clients)]
    transports = [(await loop.create_connection(_factory(r), host, int(port)))[0] for r in readers]
    try:
        async with asyncio.timeout(60):
            await ready.wait()
        ready_flag.set()
        cpu0 = time.process_time()
        await _until_quiet(
            load_done, lambda: sse.last_rx, lambda: min(sse.counts) >= expected,
            plan.seconds * 4 + 60,
        )  # fmt: skip
        cpu = time.process_time() - cpu0
        ended = sse.ended
    finally:
        for transport in transports:
            transport.close()
    counts = sorted(sse.counts)
    return {
        "clients": plan.clients,
        "probe_clients": len(range(0, plan.clients, plan.probe_every)),
        "expected_per_client": expected,
        "delivered": sum(counts),
        "delivered_share": round(sum(counts) / (expected * plan.clients), 6),
        "clients_complete": sum(c >= expected for c in counts),
        "per_client_min_median_max": [counts[0], counts[len(counts) // 2], counts[-1]],
        "streams_ended_by_server": ended,
        "reads": sse.chunks,
        "events_per_read": round(sum(counts) / max(1, sse.chunks), 1),
        "measurer_cpu_s": round(cpu, 2),
        "last_rx": sse.last_rx,
        "latency": summarize(sse.latencies),
    }


def _factory(reader: _FeedReader) -> Callable[[], _FeedReader]:
    return lambda: reader


async def measure_mqtt(
    port: int, plan: Plan, expected: int, ready_flag: Any, load_done: Any
) -> dict[str, Any]:
    latencies: array[float] = array("d")
    last = [time.time()]

    async def receive(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            now = last[0] = time.time()
            payload = message.payload
            assert isinstance(payload, bytes)
            latencies.append(now - orjson.loads(payload)["ts"])

    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="bench-latency-bare", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(f"{PREFIX}/+/pos", qos=1)
        task = asyncio.create_task(receive(client), name="bare-subscriber")
        ready_flag.set()
        cpu0 = time.process_time()
        await _until_quiet(
            load_done, lambda: last[0], lambda: len(latencies) >= expected, plan.seconds * 4 + 60
        )
        cpu = time.process_time() - cpu0
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return {
        "received": len(latencies),
        "expected": expected,
        "measurer_cpu_s": round(cpu, 2),
        "last_rx": last[0],
        "latency": summarize(latencies),
    }


def _measurer_main(kind: str, target: Any, plan: Plan, expected: int, flags: Any) -> None:
    ready_flag, load_done, results = flags
    try:
        if kind == "sse":
            coro = measure_sse(target, plan, expected, ready_flag, load_done)
        else:
            coro = measure_mqtt(target, plan, expected, ready_flag, load_done)
        results.put(uvloop.run(coro))
    except BaseException as exc:  # reported to the parent, which raises
        ready_flag.set()
        results.put({"error": repr(exc)})


# -- orchestration ----------------------------------------------------------------------


def _measured_load(
    kind: str, target: Any, plan: Plan, port: int, pid: int | None = None
) -> tuple[dict[str, Any], LoadResult, float | None]:
    """Start a measuring process, publish the plan's load once it is ready, collect.

    Returns the measurer's result, the generator's, and the CPU cores process ``pid``
    used from the first publish until the measurer was done (drain included)."""
    ctx = multiprocessing.get_context("spawn")
    ready_flag, load_done, results = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(
        target=_measurer_main,
        args=(kind, target, plan, plan.messages, (ready_flag, load_done, results)),
    )
    proc.start()
    try:
        while not ready_flag.wait(0.2):
            if not proc.is_alive():
                raise RuntimeError(f"{kind} measurer exited with {proc.exitcode}")
        cpu0, t0, wall0 = _cpu_s(pid), time.monotonic(), time.time()
        load = run_load(
            "127.0.0.1", port, messages=plan.messages, devices=DEVICES, qos=1, batch=1,
            connections=1, topic_prefix=PREFIX, rate=plan.rate, device_prefix="lat-",
        )  # fmt: skip
        load_done.set()
        load_end = time.time()
        out: dict[str, Any] = results.get(timeout=plan.seconds * 4 + 120)
        cores = (_cpu_s(pid) - cpu0) / (time.monotonic() - t0) if pid is not None else None
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
    if "error" in out:
        raise RuntimeError(f"{kind} measurer failed: {out['error']}")
    last_rx = out.pop("last_rx")
    # How long delivery went on after the last publish: a backlog that built up.
    out["last_delivery_after_load_s"] = round(max(0.0, last_rx - load_end), 2)
    delivered = out.get("delivered", out.get("received", 0))
    out["delivered_per_s"] = round(delivered / max(1e-9, last_rx - wall0))
    return out, load, None if cores is None else round(cores, 2)


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 without one)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def gateway_process(broker: Mosquitto) -> Iterator[tuple[str, int]]:
    """``fieldtrack run`` against the broker, in-memory state; yields its URL and pid."""
    http = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDTRACK_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "--mqtt", broker.url, "--http", http,
         "--api-key", API_KEY, "--topic-prefix", PREFIX, "--mqtt-protocol", "5",
         "--mqtt-client-id", f"bench-latency-{os.getpid()}", "--log-level", "WARNING"],
        env=env,
    )  # fmt: skip
    url = f"http://{http}"
    try:
        _wait_ready(url, proc)
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError("gateway not ready after 30 s")


def _gateway_metrics(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    wanted = ("fieldtrack_positions_total", "fieldtrack_sse_dropped_total",
              "fieldtrack_duplicates_total", "fieldtrack_pipeline_seconds_count")  # fmt: skip
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            out[name.removeprefix("fieldtrack_")] = float(value)
    return out


def _point(sse: dict[str, Any], cores: float | None) -> dict[str, Any]:
    return {
        "clients": sse["clients"],
        **sse["latency"],
        "delivered_share": sse["delivered_share"],
        "delivered_per_s": sse["delivered_per_s"],
        "gateway_cpu_cores": cores,
    }


def run(quick: bool) -> dict[str, Any]:
    plan = Plan(2000, 8, 50, 1) if quick else Plan(5000, 15, 200, 5)
    # Full runs first measure fewer clients at the same rate: where delivery saturates.
    sweep = () if quick else (1, 20)
    load_before = os.getloadavg()[0]
    points = []
    with mosquitto() as broker:
        bare, bare_load, _ = _measured_load("mqtt", broker.port, plan, broker.port)
        with gateway_process(broker) as (url, pid):
            for clients in sweep:
                small = Plan(plan.rate, plan.seconds, clients, 1)
                sse, _, cores = _measured_load("sse", url, small, broker.port, pid)
                points.append(_point(sse, cores))
            sse, load, cores = _measured_load("sse", url, plan, broker.port, pid)
            metrics = _gateway_metrics(url)
    out: dict[str, Any] = {
        "target_rate": plan.rate,
        "messages": plan.messages,
        "baseline_bare_aiomqtt": {**bare, "achieved_rate": bare_load.rate},
        "gateway_sse": {**sse, "achieved_rate": load.rate, "gateway_cpu_cores": cores},
        "gateway_metrics": metrics,
        "fewer_clients_same_rate": points,
        # Other work on the machine skews every figure: shown so runs can be compared.
        "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    for key in ("p50_ms", "p99_ms", "p999_ms"):
        gw_ms, bare_ms = sse["latency"].get(key), bare["latency"].get(key)
        if gw_ms is not None and bare_ms:
            out[f"added_{key}"] = round(gw_ms - bare_ms, 2)
            out[f"ratio_{key.removesuffix('_ms')}_sse_vs_bare"] = round(gw_ms / bare_ms, 1)
    return out
