"""``redis_store``: µs per fix of ``RedisStore.record_fixes`` against a private redis-server.

Batches of 1, 50 and 500 fixes from 1 000 devices. In the same run: MemoryStore
on the same fixes (the ratio), the literal design the batch script replaced (a
pipeline of one EVALSHA per fix), Redis's own time per fix (INFO commandstats),
one awaited round trip, bytes per stored fix (ZSET history vs a Stream), and
``RedisBus.publish`` per event against a pipeline of XADDs. With each fix's position
event: appended by the store's own script (the outbox, what ingest does) against a
store call then ``RedisBus.publish``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from gateway.model import Fix
from gateway.pipeline import position_event
from gateway.redis_bus import RedisBus
from gateway.redis_store import LuaScript, RedisStore, encode_fix, redis_client
from gateway.store import MemoryStore
from tests.support.procs import redis_server

T0 = 1_700_000_000.0
DEVICES = 1000
REPEATS = 3  # medians of three runs: the machine is shared

# The baseline: what the batch script replaced, one script call per fix.
PER_FIX_LUA = """
local ts = ARGV[1]
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local verdict = 2
if top[2] == nil or tonumber(ts) > tonumber(top[2]) then
  verdict = 1
elseif redis.call('ZCOUNT', KEYS[1], ts, ts) > 0 then
  return 0
end
redis.call('ZADD', KEYS[1], ts, ARGV[2])
if verdict == 1 then redis.call('SET', KEYS[2], ARGV[2]) end
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if excess > math.floor(tonumber(ARGV[3]) / 8) then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
end
return verdict
"""


def fixes(n: int) -> list[Fix]:
    """``n`` in-order fixes round robin over the devices, like a busy broker delivers them."""
    return [
        Fix(f"dev-{i % DEVICES}", T0 + i, 60.17 + i * 1e-6, 24.94, 8.3, 91.0, 6.0, None, 80)
        for i in range(n)
    ]


def batches(total: int, size: int) -> list[list[Fix]]:
    all_fixes = fixes(total)
    return [all_fixes[i : i + size] for i in range(0, total, size)]


async def per_fix_us(
    record: Callable[[list[Fix]], Awaitable[object]], work: list[list[Fix]]
) -> float:
    await record(work[0])  # warm: connection, script cache
    started = time.perf_counter()
    for batch in work[1:]:
        await record(batch)
    return (time.perf_counter() - started) / sum(len(b) for b in work[1:]) * 1e6


async def evalsha_usec(client: Redis) -> float:
    stats = await client.info("commandstats")
    return float(stats.get("cmdstat_evalsha", {}).get("usec", 0))


async def round_trip_us(client: Redis, n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await client.ping()
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


async def redis_run(
    url: str, work: list[list[Fix]], tokens: bool = False, events: str = ""
) -> tuple[float, float]:
    """(wall µs per fix, Redis's own µs per fix) on fresh keys; with ``tokens``, every
    call names its attempt, as the gateway's ingest does (the script keeps its verdicts).

    ``events``: also each fix's position event, as Redis-mode ingest sends it --
    "outbox": given to the store, which appends it in its script (what the gateway
    does); "bus": published by ``RedisBus.publish`` after the store call (what it did).
    """
    prefix = f"b{uuid.uuid4().hex[:8]}:"
    bus = RedisBus(url, key_prefix=prefix)
    store = await RedisStore.connect(
        url, key_prefix=prefix, events=(bus.stream, 10_000) if events == "outbox" else None
    )

    async def attempt(batch: list[Fix]) -> object:
        token = uuid.uuid4().hex if tokens else None
        if not events:
            return await store.record_fixes(batch, token)
        made = [position_event(f, "t-1") for f in batch]
        if events == "outbox":
            return await store.record_fixes(batch, token, made)
        verdicts = await store.record_fixes(batch, token)
        await bus.publish(made)
        return verdicts

    try:
        before = await evalsha_usec(store.client)
        wall = await per_fix_us(attempt, work)
        server = (await evalsha_usec(store.client) - before) / sum(len(b) for b in work)
    finally:
        await store.close()
        await bus.close()
    return wall, server


async def store_figures(url: str, size: int, total: int) -> dict[str, float]:
    work = batches(total, size)
    runs = [await redis_run(url, work) for _ in range(REPEATS)]
    redis_us = statistics.median(r[0] for r in runs)
    server_us = statistics.median(r[1] for r in runs)
    memory_us = statistics.median([await per_fix_us(MemoryStore().record_fixes, work)
                                   for _ in range(REPEATS)])  # fmt: skip
    out = {
        "redis_us_per_fix": round(redis_us, 2),
        "redis_server_us_per_fix": round(server_us, 2),
        "memory_us_per_fix": round(memory_us, 3),
        "redis_over_memory": round(redis_us / memory_us, 1),
    }
    if size > 1:
        tokened = [await redis_run(url, work, tokens=True) for _ in range(REPEATS)]
        out["redis_us_per_fix_with_attempt_token"] = round(
            statistics.median(r[0] for r in tokened), 2
        )
        out["redis_server_us_per_fix_with_attempt_token"] = round(
            statistics.median(r[1] for r in tokened), 2
        )
        for how in ("bus", "outbox"):
            both = [await redis_run(url, work, True, how) for _ in range(REPEATS)]
            out[f"with_position_events_{how}_us_per_fix"] = round(
                statistics.median(r[0] for r in both), 2
            )
        baseline = statistics.median([await per_fix_pipeline_us(url, work)
                                      for _ in range(REPEATS)])  # fmt: skip
        out["baseline_pipeline_per_fix_evalsha_us"] = round(baseline, 2)
        out["speedup_vs_per_fix_evalsha"] = round(baseline / redis_us, 2)
    return out


async def per_fix_pipeline_us(url: str, work: list[list[Fix]]) -> float:
    client = redis_client(url)
    script = LuaScript(PER_FIX_LUA)
    await script.load(client)
    prefix = f"p{uuid.uuid4().hex[:8]}:"

    async def record(batch: list[Fix]) -> object:
        async with client.pipeline(transaction=False) as pipe:
            for fix in batch:
                h, latest = f"{prefix}d:{{{fix.device_id}}}:h", f"{prefix}d:{{{fix.device_id}}}:l"
                pipe.execute_command("EVALSHA", script.sha, 2, h, latest, repr(fix.ts),
                                     encode_fix(fix), 10_000)  # fmt: skip
            return await pipe.execute()

    try:
        return await per_fix_us(record, work)
    finally:
        await client.aclose()


async def bytes_per_fix(url: str, n: int) -> dict[str, float]:
    """One device's history as our ZSET and as a Stream with ts-derived ids, same rows."""
    client = redis_client(url)
    store = await RedisStore.connect(url, history_per_device=n, key_prefix="mem:")
    try:
        one = [Fix("dev-m", T0 + i, 60.17, 24.94, 8.3, 91.0, 6.0, None, 80) for i in range(n)]
        for i in range(0, n, 500):
            await store.record_fixes(one[i : i + 500])
        zset = await client.memory_usage("mem:d:{dev-m}:h", samples=0)
        async with client.pipeline(transaction=False) as pipe:
            for fix in one:
                pipe.xadd("mem:stream", {"f": encode_fix(fix)}, id=f"{int(fix.ts * 1000)}-0")
            await pipe.execute()
        stream = await client.memory_usage("mem:stream", samples=0)
    finally:
        await store.close()
        await client.aclose()
    return {
        "row_bytes": len(encode_fix(one[0])),
        "zset_bytes_per_fix": round((zset or 0) / n, 1),
        "stream_bytes_per_fix": round((stream or 0) / n, 1),
    }


async def publish_figures(url: str, size: int, rounds: int) -> dict[str, float]:
    bus = RedisBus(url, key_prefix=f"e{uuid.uuid4().hex[:8]}:")
    events = [
        {"type": "position", "device_id": f"dev-{i}", "technician_id": "t-1", "ts": T0 + i,
         "lat": 60.17, "lon": 24.94, "spd": 8.3, "hdg": 91.0}
        for i in range(size)
    ]  # fmt: skip
    try:
        await bus.publish(events)
        started = time.perf_counter()
        for _ in range(rounds):
            await bus.publish(events)
        ours = (time.perf_counter() - started) / (rounds * size) * 1e6
        started = time.perf_counter()
        for _ in range(rounds):
            async with bus.client.pipeline(transaction=False) as pipe:
                for event in events:
                    fields: dict[Any, Any] = {"t": event["type"], "d": orjson.dumps(event)}
                    pipe.xadd(f"{bus.stream}:baseline", fields, maxlen=10_000, approximate=True)
                await pipe.execute()
        baseline = (time.perf_counter() - started) / (rounds * size) * 1e6
    finally:
        await bus.close()
    return {
        f"bus_publish_us_per_event_batch{size}": round(ours, 2),
        f"baseline_pipelined_xadd_us_per_event_batch{size}": round(baseline, 2),
    }


async def measure(url: str, quick: bool) -> dict[str, Any]:
    scale = 1 if quick else 5
    result: dict[str, Any] = {}
    client = redis_client(url)
    try:
        result["redis_round_trip_us"] = round(await round_trip_us(client, 2000 * scale), 1)
    finally:
        await client.aclose()
    for size, total in ((1, 2_000), (50, 20_000), (500, 60_000)):
        result[f"batch_{size}"] = await store_figures(url, size, total * scale)
    result.update(await bytes_per_fix(url, 10_000))
    result.update(await publish_figures(url, 500, 20 * scale))
    return result


def run(quick: bool) -> dict[str, Any]:
    with redis_server() as server:
        return asyncio.run(measure(server.url, quick))
