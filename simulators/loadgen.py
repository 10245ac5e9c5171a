"""Load generator: saturate a broker with position fixes from many devices.

Each connection is its own process with a raw-socket MQTT client (see mqttwire):
PUBLISH packets are pre-encoded once per device and only the timestamps, a small
position jitter and the packet id are patched in per message, so a process pushes
well past what paho manages. QoS 1 runs with a bounded window of un-acknowledged
packets; QoS 0 ends with a PINGREQ whose PINGRESP proves the broker read everything.

Every fix carries the contract fields plus ``sent`` (epoch s, float) for latency.
Timestamps are unique per device (microsecond steps), so a gateway dedupes nothing.

    python -m simulators.loadgen --port 1883 --messages 200000 --devices 1000 --qos 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from simulators import mqttwire

Encoding = Literal["json", "msgpack"]
_TS_LEN = 17  # "1700000000.000000"
_CHUNK = 128


@dataclass(frozen=True, slots=True)
class LoadResult:
    """`sent` PUBLISH packets (each `batch` fixes) in `seconds`: `rate` packets/s."""

    sent: int
    seconds: float
    rate: float
    fixes: int = 0
    acked: int = 0
    connections: int = 1


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    host: str
    port: int
    worker: int
    workers: int
    messages: int
    devices: tuple[int, ...]
    qos: int
    batch: int
    topic_prefix: str
    encoding: Encoding
    protocol: int
    rate: float | None
    window: int
    device_prefix: str
    timeout: float | None = None


@dataclass(slots=True)
class _Template:
    """One device's pre-encoded PUBLISH and where to patch it."""

    packet: bytearray
    pid_at: int
    ts_at: list[int]
    lat_at: list[int]
    sent_at: list[int]


def _json_fix(lat: float, lon: float) -> tuple[bytes, dict[str, int]]:
    """A JSON fix with fixed-width fields; returns bytes and field offsets in them."""
    parts = [
        (b'{"ts":', "ts", b"0" * _TS_LEN),
        (b',"lat":', "lat", b"%.3f0000" % lat),
        (b',"lon":', None, b"%.7f" % lon),
        (b',"acc":6.0,"spd":8.5,"hdg":90.0,"sent":', "sent", b"0" * _TS_LEN),
    ]
    out, offsets = bytearray(), {}
    for prefix, name, value in parts:
        out += prefix
        if name is not None:
            offsets[name] = len(out) + (len(value) - 4 if name == "lat" else 0)
        out += value
    out += b"}"
    return bytes(out), offsets


def _msgpack_fix(lat: float, lon: float) -> tuple[bytes, dict[str, int]]:
    """A MessagePack map with float64 values (0xcb), patchable at fixed offsets."""
    fields = [("ts", 0.0), ("lat", lat), ("lon", lon), ("acc", 6.0), ("spd", 8.5), ("hdg", 90.0)]
    fields.append(("sent", 0.0))
    out, offsets = bytearray([0x80 | len(fields)]), {}
    for name, value in fields:
        out += bytes([0xA0 | len(name)]) + name.encode() + b"\xcb"
        offsets[name] = len(out)
        out += struct.pack(">d", value)
    return bytes(out), offsets


def build_template(spec: WorkerSpec, device: int, rng: random.Random) -> _Template:
    lat, lon = 60.17 + rng.uniform(-0.05, 0.05), 24.94 + rng.uniform(-0.1, 0.1)
    encode = _json_fix if spec.encoding == "json" else _msgpack_fix
    fixes = [encode(lat, lon) for _ in range(spec.batch)]
    if spec.batch == 1:
        payload, starts = fixes[0][0], [0]
    elif spec.encoding == "json":
        payload = b"[" + b",".join(f for f, _ in fixes) + b"]"
        starts = [1 + i * (len(fixes[0][0]) + 1) for i in range(spec.batch)]
    else:
        head = (
            bytes([0x90 | spec.batch])
            if spec.batch < 16
            else b"\xdc" + struct.pack(">H", spec.batch)
        )
        payload = head + b"".join(f for f, _ in fixes)
        starts = [len(head) + i * len(fixes[0][0]) for i in range(spec.batch)]
    topic = f"{spec.topic_prefix}/{spec.device_prefix}{device:06d}/pos"
    packet = mqttwire.publish_packet(
        topic, payload, qos=spec.qos, packet_id=1 if spec.qos else 0, protocol=spec.protocol
    )
    base = len(packet) - len(payload)
    offs = fixes[0][1]
    return _Template(
        bytearray(packet),
        mqttwire.packet_id_offset(packet) if spec.qos else -1,
        [base + s + offs["ts"] for s in starts],
        [base + s + offs["lat"] for s in starts],
        [base + s + offs["sent"] for s in starts],
    )


class _Patcher:
    """Writes per-message values into templates: unique µs timestamps per device."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.json = spec.encoding == "json"
        self.step, self.phase = spec.workers, spec.worker
        self.last_us = 0
        self.k = spec.worker

    def next_us(self) -> int:
        # Every worker owns one residue class of microseconds, so even workers sharing a
        # device never send the same `ts` twice.
        us = max(time.time_ns() // 1000, self.last_us + self.step)
        us += (self.phase - us) % self.step
        self.last_us = us
        return us

    def patch(self, t: _Template) -> None:
        sent = self._num(self.next_us())
        self.k = (self.k + 7919) % 10_000
        for i, at in enumerate(t.ts_at):
            ts = sent if i == 0 else self._num(self.next_us())
            t.packet[at : at + len(ts)] = ts
            t.packet[t.sent_at[i] : t.sent_at[i] + len(sent)] = sent
            self._jitter(t.packet, t.lat_at[i])

    def _jitter(self, packet: bytearray, at: int) -> None:
        """Move the fix by up to ~110 m north so successive fixes differ."""
        if self.json:
            packet[at : at + 4] = b"%04d" % self.k
        else:
            base = struct.unpack_from(">d", packet, at)[0]
            struct.pack_into(">d", packet, at, round(base, 3) + self.k * 1e-7)

    def _num(self, us: int) -> bytes:
        if self.json:
            return b"%d.%06d" % divmod(us, 1_000_000)
        return struct.pack(">d", us / 1e6)


class _Acks:
    """Reads the broker's side of the connection: PUBACKs, PINGRESP, errors."""

    def __init__(self) -> None:
        self.acked = 0
        self.failed = 0
        self.changed = asyncio.Event()
        self.pong = asyncio.Event()

    async def read(self, reader: asyncio.StreamReader) -> None:
        buf = bytearray()
        while chunk := await reader.read(65536):
            buf += chunk
            for pkt in mqttwire.split_packets(buf):
                if pkt.kind == mqttwire.PUBACK:
                    self.acked += 1
                    self.failed += mqttwire.puback_reason(pkt.body) >= 0x80
                elif pkt.kind == mqttwire.PINGRESP:
                    self.pong.set()
                elif pkt.kind == mqttwire.DISCONNECT:
                    raise ConnectionError(f"broker disconnected us: {pkt.body.hex()}")
            self.changed.set()
        raise ConnectionError("broker closed the connection")


async def _connect(spec: WorkerSpec) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    reader, writer = await asyncio.open_connection(spec.host, spec.port)
    client_id = f"loadgen-{spec.worker}-{time.time_ns() % 10**9}"
    writer.write(mqttwire.connect_packet(client_id, protocol=spec.protocol))
    buf = bytearray()
    while not (packets := mqttwire.split_packets(buf)):
        chunk = await reader.read(4096)
        if not chunk:
            raise ConnectionError("broker closed the connection before CONNACK")
        buf += chunk
    if packets[0].kind != mqttwire.CONNACK:
        raise mqttwire.ProtocolError(f"expected CONNACK, got packet type {packets[0].kind}")
    code, receive_max = mqttwire.connack_result(packets[0].body, spec.protocol)
    if code:
        raise ConnectionError(f"broker refused the connection: reason 0x{code:02x}")
    return reader, writer, receive_max


async def _publish_all(
    spec: WorkerSpec, writer: asyncio.StreamWriter, acks: _Acks, receive_max: int
) -> tuple[int, float, float]:
    rng = random.Random(spec.worker)
    templates = [build_template(spec, d, rng) for d in spec.devices]
    patcher = _Patcher(spec)
    window = min(spec.window, receive_max, 65_000) if spec.qos else 0
    sent, pid, i = 0, 0, 0
    t0 = time.time()
    while sent < spec.messages:
        n = min(_CHUNK, spec.messages - sent)
        if spec.rate:
            ahead = t0 + (sent + n) / spec.rate - time.time()
            if ahead > 0:
                await asyncio.sleep(ahead)
        while spec.qos and sent + n - acks.acked > window:
            acks.changed.clear()
            await acks.changed.wait()
        out = bytearray()
        for _ in range(n):
            t = templates[i]
            i = (i + 1) % len(templates)
            patcher.patch(t)
            if spec.qos:
                pid = pid % 0xFFFF + 1
                t.packet[t.pid_at : t.pid_at + 2] = pid.to_bytes(2, "big")
            out += t.packet
        writer.write(out)
        sent += n
        if writer.transport.get_write_buffer_size() > 1 << 20:
            await writer.drain()
    await writer.drain()
    return sent, t0, await _finish(spec, writer, acks, sent)


async def _finish(spec: WorkerSpec, writer: asyncio.StreamWriter, acks: _Acks, sent: int) -> float:
    """Wait until the broker has everything: all PUBACKs (QoS 1) or a PINGRESP (QoS 0)."""
    if spec.qos:
        while acks.acked < sent:
            acks.changed.clear()
            await acks.changed.wait()
    else:
        writer.write(mqttwire.PINGREQ_PACKET)
        await acks.pong.wait()
    return time.time()


async def run_worker(spec: WorkerSpec, ready: Callable[[], None] | None = None) -> dict[str, Any]:
    """One connection's whole run; `ready` blocks until every worker has connected."""
    reader, writer, receive_max = await _connect(spec)
    acks = _Acks()
    try:
        if ready is not None:
            await asyncio.get_running_loop().run_in_executor(None, ready)
        async with asyncio.TaskGroup() as tg:
            reading = tg.create_task(acks.read(reader), name="loadgen acks")
            sent, t0, t1 = await _publish_all(spec, writer, acks, receive_max)
            reading.cancel()
        writer.write(mqttwire.DISCONNECT_PACKET)
        await writer.drain()
    finally:
        writer.close()
    if acks.failed:
        raise RuntimeError(f"broker refused {acks.failed} PUBLISH packets")
    return {"sent": sent, "acked": acks.acked, "t0": t0, "t1": t1, "fixes": sent * spec.batch}


def _run_loop(spec: WorkerSpec, ready: Callable[[], None] | None = None) -> dict[str, Any]:
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but stay runnable
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(asyncio.wait_for(run_worker(spec, ready), spec.timeout))


def _process_main(spec: WorkerSpec, barrier: Any, results: Any) -> None:
    try:
        results.put(_run_loop(spec, lambda: barrier.wait(timeout=30)))
    except BaseException as exc:  # reported to the parent, which raises
        barrier.abort()
        results.put({"error": f"worker {spec.worker}: {exc!r}"})


def run_load(
    host: str,
    port: int,
    *,
    messages: int,
    devices: int,
    qos: int,
    batch: int,
    connections: int,
    topic_prefix: str = "fleet",
    encoding: str = "json",
    protocol: int = mqttwire.V311,
    rate: float | None = None,
    window: int = 20_000,
    device_prefix: str = "load-",
    timeout: float | None = None,
) -> LoadResult:
    """Publish `messages` PUBLISH packets (each `batch` fixes) from `devices` devices over
    `connections` connections (one process each when > 1); blocks until the broker has
    them all. `rate` caps the total packets/s (None: as fast as possible). `timeout`
    bounds each connection's whole run (TimeoutError): a broker that stops acknowledging
    would otherwise keep the caller waiting for ever."""
    if encoding not in ("json", "msgpack") or qos not in (0, 1):
        raise ValueError("encoding must be json or msgpack and qos 0 or 1")
    if min(messages, devices, batch, connections) < 1 or batch > 65535:
        raise ValueError("messages, devices, batch and connections must be >= 1")
    specs = [
        WorkerSpec(
            host=host,
            port=port,
            worker=w,
            workers=connections,
            messages=messages // connections + (w < messages % connections),
            devices=tuple(range(w, devices, connections)) or (w % devices,),
            qos=qos,
            batch=batch,
            topic_prefix=topic_prefix,
            encoding="json" if encoding == "json" else "msgpack",
            protocol=protocol,
            rate=rate / connections if rate else None,
            window=window,
            device_prefix=device_prefix,
            timeout=timeout,
        )
        for w in range(connections)
    ]
    parts = [_run_loop(specs[0])] if connections == 1 else _run_processes(specs)
    sent = sum(p["sent"] for p in parts)
    seconds = max(p["t1"] for p in parts) - min(p["t0"] for p in parts)
    return LoadResult(
        sent=sent,
        seconds=round(seconds, 6),
        rate=round(sent / seconds, 1) if seconds > 0 else 0.0,
        fixes=sum(p["fixes"] for p in parts),
        acked=sum(p["acked"] for p in parts),
        connections=connections,
    )


def _run_processes(specs: list[WorkerSpec]) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(specs))
    results = ctx.Queue()
    procs = [ctx.Process(target=_process_main, args=(s, barrier, results)) for s in specs]
    for p in procs:
        p.start()
    try:
        parts = [results.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    errors = [p["error"] for p in parts if "error" in p]
    if errors:
        raise RuntimeError("; ".join(errors))
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.loadgen", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--batch", type=int, default=1, help="fixes per message (array if > 1)")
    parser.add_argument("--connections", type=int, default=1, help="one process each")
    parser.add_argument("--topic-prefix", default="fleet")
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="json")
    parser.add_argument("--protocol", type=int, choices=(4, 5), default=4, help="4 = 3.1.1")
    parser.add_argument("--rate", type=float, default=None, help="messages/s cap (total)")
    parser.add_argument("--window", type=int, default=20_000, help="QoS 1 un-acked limit")
    args = parser.parse_args(argv)
    result = run_load(
        args.host,
        args.port,
        messages=args.messages,
        devices=args.devices,
        qos=args.qos,
        batch=args.batch,
        connections=args.connections,
        topic_prefix=args.topic_prefix,
        encoding=args.encoding,
        protocol=args.protocol,
        rate=args.rate,
        window=args.window,
    )
    json.dump(asdict(result), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
