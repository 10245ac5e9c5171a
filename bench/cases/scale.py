"""``scale``: 1 vs 2 gateway workers on one shared subscription, same broker and Redis, same run.

Method: each worker's persistent session is created first (its client id
subscribes to the gateway's ``$share/g/...`` filters and leaves), then a
backlog of N QoS 1 fixes from 1 000 devices is queued in Mosquitto, which
splits it round robin between the sessions. Then the worker processes
(``python -m gateway.cli run --role worker``) start together and drain it; the
clock runs from the first fix stored in Redis to the N-th, counted in Redis.
Draining a queued backlog measures the consumers alone, whatever the publisher.

Also measured, over the same drains: Redis's own time per fix (INFO
commandstats, all commands the workers sent) and Redis's CPU per fix (INFO
cpu, including its network I/O); the CPU the worker processes, Mosquitto and
Redis used per fix (/proc); and Mosquitto's resident memory per queued message.
Everything shares the machine's cores: with 2 cores, two workers, Mosquitto and
Redis compete for them, which caps the speed-up (see ``cores``). The engine
leader also follows the event stream and runs the engine for every fix; that
extra is reported, since adding workers does not divide it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from redis.asyncio import Redis

from gateway.topics import TopicScheme
from simulators.loadgen import run_load
from tests.support.procs import Mosquitto, RedisServer, free_port, mosquitto, redis_server

REPO = Path(__file__).resolve().parents[2]
DEVICES = 1000
GROUP = "g"
# Redis 7 counts the commands a script runs in commandstats too (and inside the
# script's own time): these are the record and publish scripts' inner commands.
SCRIPT_INNER = frozenset({"zrange", "zcount", "zadd", "zremrangebyrank", "zcard", "set", "xadd",
                          "hget", "hset", "hdel", "sadd", "srem", "smembers", "del", "hmget",
                          "pexpire"})  # fmt: skip
# The bench's own commands (its stored-count script is an EVAL; the workers use EVALSHA,
# apart from the leader's lease renewal every few seconds).
OWN_COMMANDS = frozenset({"eval", "info", "config|resetstat", "config", "ping", "hello"})
COUNT_LUA = "local n = 0 for _, k in ipairs(KEYS) do n = n + redis.call('ZCARD', k) end return n"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/<pid>/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _pid(proc: subprocess.Popen[bytes] | None) -> int:
    assert proc is not None, "process not started"
    return proc.pid


async def broker_bytes_per_queued(broker: Mosquitto, n: int) -> int:
    """Mosquitto's resident memory per QoS 1 fix queued for an offline gateway session."""
    prefix = f"q{uuid.uuid4().hex[:8]}"
    filters = TopicScheme(prefix, f"{prefix}-ot", GROUP).subscriptions()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    client_id, v5 = f"{prefix}-w", aiomqtt.ProtocolVersion.V5
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=client_id, protocol=v5,
                              clean_start=False, properties=props) as client:  # fmt: skip
        await client.subscribe([(f, 1) for f in filters])
    before = rss_bytes(_pid(broker.proc))
    await asyncio.to_thread(
        run_load, "127.0.0.1", broker.port, messages=n, devices=DEVICES, qos=1, batch=1,
        connections=1, topic_prefix=prefix, protocol=5, device_prefix=f"{prefix}-",
    )  # fmt: skip
    grown = rss_bytes(_pid(broker.proc)) - before
    # Clean start discards the session and its queue.
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, identifier=client_id, protocol=v5, clean_start=True
    ):
        pass
    return round(grown / n)


def start_worker(broker: Mosquitto, redis: RedisServer, prefix: str, client_id: str) -> Any:
    port = free_port()
    args = [
        sys.executable, "-m", "gateway.cli", "run", "--mqtt", broker.url, "--redis", redis.url,
        "--role", "worker", "--share-group", GROUP, "--mqtt-client-id", client_id,
        "--worker-id", client_id, "--mqtt-protocol", "5", "--http", f"127.0.0.1:{port}",
        "--api-key", "bench-key-0123456789", "--redis-prefix", f"{prefix}:",
        "--topic-prefix", prefix, "--log-level", "WARNING",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDTRACK_")}
    env["FIELDTRACK_OWNTRACKS_PREFIX"] = f"{prefix}-ot"
    proc = subprocess.Popen(args, cwd=REPO, env=env, stderr=subprocess.PIPE)
    proc.http_port = port  # type: ignore[attr-defined]
    return proc


async def wait_ready(procs: dict[str, Any]) -> None:
    """Every worker subscribed and Redis reachable: /readyz answers 200."""
    async with asyncio.timeout(30), httpx.AsyncClient(timeout=2) as http:
        for proc in procs.values():
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited: {proc.stderr.read().decode()[-2000:]}")
                with contextlib.suppress(httpx.TransportError):
                    r = await http.get(f"http://127.0.0.1:{proc.http_port}/readyz")
                    if r.status_code == 200:
                        break
                await asyncio.sleep(0.05)


async def stored(redis: Redis, keys: list[str]) -> int:
    """Fixes in the devices' histories, summed in Redis: cheap enough to poll."""
    count = await redis.eval(COUNT_LUA, len(keys), *keys)
    return int(count)


async def redis_cost(redis: Redis) -> tuple[float, float, dict[str, float]]:
    """(µs in the workers' top-level commands, Redis CPU s, µs by top-level command)."""
    stats = await redis.info("commandstats")
    by_command = {
        name.removeprefix("cmdstat_"): float(value["usec"])
        for name, value in stats.items()
        if name.removeprefix("cmdstat_") not in OWN_COMMANDS | SCRIPT_INNER
    }
    cpu = await redis.info("cpu")
    return sum(by_command.values()), cpu["used_cpu_user"] + cpu["used_cpu_sys"], by_command


class Drain:
    """The clock and CPU meters of one drain, read while polling Redis."""

    def __init__(self, procs: dict[str, Any]) -> None:
        self.procs = procs
        self.first_at = 0.0
        self.first_count = 0
        self.cpu_at_first = dict.fromkeys(procs, 0.0)

    async def watch(self, redis: Redis, keys: list[str], n: int) -> float:
        """Poll until ``n`` fixes are stored; seconds from the first one stored (that
        count, and the CPU used until then, are left out of the rate)."""
        async with asyncio.timeout(300):
            while (count := await stored(redis, keys)) < n:
                if not self.first_count and count:
                    # From here on: the drain, not the workers' start-up.
                    self.first_at, self.first_count = time.perf_counter(), count
                    self.cpu_at_first = {c: cpu_seconds(p.pid) for c, p in self.procs.items()}
                for p in self.procs.values():
                    if p.poll() is not None:
                        raise RuntimeError(f"worker exited: {p.stderr.read().decode()[-2000:]}")
                await asyncio.sleep(0.05)
        return time.perf_counter() - self.first_at

    def worker_cpu(self) -> dict[str, float]:
        return {c: cpu_seconds(p.pid) - self.cpu_at_first[c] for c, p in self.procs.items()}


async def drain(broker: Mosquitto, server: RedisServer, workers: int, n: int) -> dict[str, Any]:
    prefix = f"s{uuid.uuid4().hex[:8]}"
    client_ids = [f"{prefix}-w{i}" for i in range(workers)]
    redis = Redis.from_url(server.url)
    keys = [f"{prefix}:d:{{{prefix}-{i:06d}}}:h" for i in range(DEVICES)]
    meter = Drain({c: start_worker(broker, server, prefix, c) for c in client_ids})
    try:
        await wait_ready(meter.procs)
        await redis.config_resetstat()
        _, redis_cpu0, _ = await redis_cost(redis)
        others = {"broker": _pid(broker.proc), "redis": _pid(server.proc)}
        cpu0 = {name: cpu_seconds(pid) for name, pid in others.items()}
        # Far faster than the workers drain: the broker queues it (round robin per session).
        publishing = asyncio.ensure_future(asyncio.to_thread(
            run_load, "127.0.0.1", broker.port, messages=n, devices=DEVICES, qos=1, batch=1,
            connections=1, topic_prefix=prefix, protocol=5, device_prefix=f"{prefix}-",
        ))  # fmt: skip
        seconds = await meter.watch(redis, keys, n)
        await publishing
        worker_cpu = meter.worker_cpu()
        leader = _text(await redis.get(f"{prefix}:engine:leader"))
    finally:
        for p in meter.procs.values():
            p.terminate()
            p.wait(15)
    usec, redis_cpu1, by_command = await redis_cost(redis)
    cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in others.items()}
    await redis.aclose()
    per_fix = 1e6 / (n - meter.first_count)
    return {
        "workers": workers,
        "fixes": n,
        "seconds": round(seconds, 3),
        "fixes_per_s": round((n - meter.first_count) / seconds),
        "redis_server_us_per_fix": round(usec / n, 2),
        "redis_cpu_us_per_fix": round((redis_cpu1 - redis_cpu0) * 1e6 / n, 2),
        "redis_us_per_fix_by_command": {k: round(v / n, 2) for k, v in sorted(by_command.items())},
        "cpu_us_per_fix": {
            # The engine leader also follows the event stream and runs the engine.
            "engine_leader": round(worker_cpu.pop(leader) * per_fix, 1),
            "other_workers": round(sum(worker_cpu.values()) * per_fix, 1),
            "broker": round(cpu["broker"] * 1e6 / n, 1),
            "redis": round(cpu["redis"] * 1e6 / n, 1),
        },
    }


async def _run(quick: bool) -> dict[str, Any]:
    n = 40_000 if quick else 200_000
    rounds = 1 if quick else 3
    conf = "max_queued_messages 0\nmax_inflight_messages 0"  # as deploy/: hold, never drop
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    with mosquitto(extra_conf=conf) as broker, redis_server() as server:
        queued_bytes = await broker_bytes_per_queued(broker, n)
        for _ in range(rounds):
            for workers in (1, 2):  # alternate, so drift on a shared machine hits both
                runs[workers].append(await drain(broker, server, workers, n))
    median = {w: _median_run(r) for w, r in runs.items()}
    one, two = median[1], median[2]
    return {
        "cores": os.cpu_count(),
        "note": (
            f"{os.cpu_count()} cores shared by the workers, Mosquitto, Redis and the "
            "publisher: with 2 cores they saturate the machine before the workers do"
        ),
        "one_worker": one,
        "two_workers": two,
        "speedup": round(two["fixes_per_s"] / one["fixes_per_s"], 2),
        # What the elected engine costs on top of ingest (stream + engine): the share
        # of the leader that more workers do not divide.
        "engine_leader_extra_us_per_fix": round(
            two["cpu_us_per_fix"]["engine_leader"] - two["cpu_us_per_fix"]["other_workers"], 1
        ),
        "broker_rss_bytes_per_queued_fix": queued_bytes,
        "rates_per_round": {w: [r["fixes_per_s"] for r in rs] for w, rs in runs.items()},
    }


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rate = statistics.median(r["fixes_per_s"] for r in runs)
    return min(runs, key=lambda r: abs(r["fixes_per_s"] - rate))


def run(quick: bool) -> dict[str, Any]:
    return asyncio.run(_run(quick))
