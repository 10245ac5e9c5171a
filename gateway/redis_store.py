"""Live state, history, technicians and jobs in Redis: the ``Store`` for several workers.

Same semantics as ``MemoryStore``; what changes is who decides. Every batch of
fixes is one ``EVALSHA`` of ``RECORD_LUA`` (one round trip), and the script
decides per fix, atomically in Redis, whether it is a duplicate, a late fix or
the device's newest. Two workers receiving consecutive fixes of one device in
any order (Mosquitto's shared subscriptions are strict round robin) therefore
end with the newest as live state.

Keys (``P`` is the prefix, ``ft:`` by default; device keys carry a hash tag):

* ``P d:{device}:h`` ZSET, score = fix ts, member = the fix as a msgpack array
  without the device id (~60 bytes for a typical fix). It is history *and*
  dedupe index: a fix is a duplicate when its ts is already a score. A
  Stream cannot hold a late fix (an offline buffer flushed after newer fixes)
  in its place, because an XADD id must exceed the last one; the ZSET can, at
  O(log n) per insert and twice a Stream's memory (161 vs 82 bytes per fix,
  ``python -m bench redis_store``). Like
  ``MemoryStore``, it keeps at least ``history_per_device`` newest fixes and
  trims once an eighth more have piled up, so the dedupe window is that count
  and verdicts equal ``MemoryStore``'s for the same inputs.
* ``P d:{device}:l`` the newest fix (same encoding), written only by the script.
* ``P techs`` / ``P jobs`` HASH id -> msgpack struct (the engine's ETA write-back,
  ``put_eta``, merges into the stored job by compare-and-set); ``P owner`` HASH device ->
  technician; ``P techdevs:{tid}`` and ``P tour:{tid}`` SETs; ``P jobtech``
  HASH job -> technician; ``P blob:{name}`` opaque bytes (ETA model, fences);
  ``P alerts`` HASH ``alert_key`` -> the JSON event that raised an alert still standing;
  ``P revoked:{job}`` up to when the job's customer links are revoked, and
  ``P signedout:{session}`` a dispatcher session signed out (both expire).
* ``P rec:{token}:{chunk}`` the verdicts of one ``record_fixes`` attempt, for
  ``RECORD_TTL_S``: its retry after a lost reply gets them back (``Store``).
* ``P events`` the ``RedisBus`` stream, when the store is built with ``events``: the
  record and job scripts append the events they are given to it (the outbox).

The record script builds device key names itself, so it needs standalone
Redis (or one primary), not Redis Cluster. Redis errors are not wrapped: when
Redis is down ``record_fixes`` raises ``redis.ConnectionError`` or
``redis.TimeoutError`` and the ingest loop does not acknowledge (backpressure).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Final, cast

import msgspec
import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, NoScriptError

from gateway.model import Event, Fix, Job, Technician
from gateway.store import Verdict, _tour_order, alert_key, oldest_first, with_eta

log = logging.getLogger("fieldtrack.store")

# One script call handles at most this many fixes, so Redis is never blocked
# for more than a few milliseconds by one batch; bigger batches are pipelined.
SCRIPT_CHUNK: Final = 1000
# How long the verdicts of a call made with an attempt token are kept for its retry: an
# outage longer than this makes a lost reply's fixes duplicates again (their events are
# lost). One small key per batch: ~2 MB of Redis at 10 000 fixes/s in 50-fix batches.
RECORD_TTL_S: Final = 120
# Compare-and-set rounds of ``put_eta`` before it gives up (each lost round means another
# writer changed that very job in between).
PUT_ETA_TRIES: Final = 5

# ARGV: prefix, history limit, attempt token ('' for none), its TTL in seconds, the
# event stream ('' for none) and its MAXLEN, then (device, ts, fix, event) per fix.
# With a token the verdicts are also kept for RECORD_TTL_S under P rec:<token>, and a
# call with a token already seen returns those instead of deciding again: the retry of
# a call whose reply was lost (Redis died after running it) learns what it stored.
# With a stream, the event of each fix that becomes the newest is appended to it in the
# same script: a fix is never stored without its event (the outbox, see ``Store``).
RECORD_LUA: Final = """
local prefix = ARGV[1]
local limit = tonumber(ARGV[2])
local slack = math.floor(limit / 8)
local stream, maxlen = ARGV[5], ARGV[6]
local memo = nil
if ARGV[3] ~= '' then
  memo = prefix .. 'rec:' .. ARGV[3]
  local seen = redis.call('GET', memo)
  if seen then
    local out = {}
    for k = 1, #seen do
      out[k] = tonumber(string.sub(seen, k, k))
    end
    return out
  end
end
local verdicts = {}
for i = 7, #ARGV, 4 do
  local dev = prefix .. 'd:{' .. ARGV[i] .. '}:'
  local hist = dev .. 'h'
  local ts = ARGV[i + 1]
  local top = redis.call('ZRANGE', hist, -1, -1, 'WITHSCORES')
  local verdict = 2
  if top[2] == nil or tonumber(ts) > tonumber(top[2]) then
    verdict = 1
  elseif redis.call('ZCOUNT', hist, ts, ts) > 0 then
    verdict = 0
  end
  if verdict ~= 0 then
    redis.call('ZADD', hist, ts, ARGV[i + 2])
    if verdict == 1 then
      redis.call('SET', dev .. 'l', ARGV[i + 2])
      if stream ~= '' and ARGV[i + 3] ~= '' then
        redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 't', 'position', 'd', ARGV[i + 3])
      end
    end
    local excess = redis.call('ZCARD', hist) - limit
    if excess > slack then
      redis.call('ZREMRANGEBYRANK', hist, 0, excess - 1)
    end
  end
  verdicts[#verdicts + 1] = verdict
end
if memo then
  redis.call('SET', memo, table.concat(verdicts), 'EX', ARGV[4])
end
return verdicts
"""
_VERDICTS: Final = (Verdict.DUPLICATE, Verdict.NEWEST, Verdict.LATE)

# KEYS: techs, owner, techdevs:{tid}; ARGV: tid, packed technician, device ids...
PUT_TECHNICIAN_LUA: Final = """
local tid = ARGV[1]
local previous = redis.call('HGET', KEYS[1], tid)
for _, device in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('HGET', KEYS[2], device) == tid then
    redis.call('HDEL', KEYS[2], device)
  end
end
redis.call('DEL', KEYS[3])
for i = 3, #ARGV do
  redis.call('HSET', KEYS[2], ARGV[i], tid)
  redis.call('SADD', KEYS[3], ARGV[i])
end
redis.call('HSET', KEYS[1], tid, ARGV[2])
return previous
"""

# KEYS: jobs, jobtech; ARGV: prefix, job id, packed job, technician id or '', the event
# stream ('' for none) and its MAXLEN, then (type, data) per event to append with the job.
PUT_JOB_LUA: Final = """
local prefix, job, tid = ARGV[1], ARGV[2], ARGV[4]
local old = redis.call('HGET', KEYS[2], job)
if old and old ~= tid then
  redis.call('SREM', prefix .. 'tour:' .. old, job)
end
if tid == '' then
  redis.call('HDEL', KEYS[2], job)
else
  redis.call('HSET', KEYS[2], job, tid)
  redis.call('SADD', prefix .. 'tour:' .. tid, job)
end
redis.call('HSET', KEYS[1], job, ARGV[3])
for i = 7, #ARGV, 2 do
  redis.call('XADD', ARGV[5], 'MAXLEN', '~', ARGV[6], '*', 't', ARGV[i], 'd', ARGV[i + 1])
end
"""

# KEYS: jobs; ARGV: job id, packed job, the packed job it must replace. Returns 1 if stored
# (compare and set: ``put_eta`` reads, merges and retries). Both have the same technician,
# so the tour sets are unchanged.
UPDATE_JOB_LUA: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: fences; ARGV: fence id, the GeoJSON ('' to delete), the event stream ('' for none),
# its MAXLEN, the event's (type, data). Returns 1 if the fence was stored or deleted; the
# event is appended only then (deleting an absent fence changes nothing to announce).
PUT_FENCE_LUA: Final = """
local changed
if ARGV[2] == '' then
  changed = redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  changed = 1
end
if changed == 1 and ARGV[3] ~= '' then
  redis.call('XADD', ARGV[3], 'MAXLEN', '~', ARGV[4], '*', 't', ARGV[5], 'd', ARGV[6])
end
return changed
"""

# KEYS: tour:{tid}, jobs. HMGET in slices: Lua's unpack has a stack limit.
JOBS_OF_LUA: Final = """
local ids = redis.call('SMEMBERS', KEYS[1])
local out = {}
for i = 1, #ids, 1000 do
  local part = redis.call('HMGET', KEYS[2], unpack(ids, i, math.min(i + 999, #ids)))
  for _, packed in ipairs(part) do
    if packed then out[#out + 1] = packed end
  end
end
return out
"""


class _Row(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    """A stored fix: ``Fix`` without the device id (it is in the key), as an array."""

    ts: float
    lat: float
    lon: float
    spd: float | None = None
    hdg: float | None = None
    acc: float | None = None
    alt: float | None = None
    bat: float | None = None
    seq: int | None = None
    sent: float | None = None


_ENCODER: Final = msgspec.msgpack.Encoder()
_ROW: Final = msgspec.msgpack.Decoder(_Row)
_TECHNICIAN: Final = msgspec.msgpack.Decoder(Technician)
_JOB: Final = msgspec.msgpack.Decoder(Job)


def encode_fix(fix: Fix) -> bytes:
    # Trailing absent fields are left out of the array (omit_defaults).
    f = fix
    return _ENCODER.encode(
        _Row(f.ts, f.lat, f.lon, f.spd, f.hdg, f.acc, f.alt, f.bat, f.seq, f.sent)
    )


def decode_fix(device_id: str, data: bytes) -> Fix:
    r = _ROW.decode(data)
    return Fix(device_id, r.ts, r.lat, r.lon, r.spd, r.hdg, r.acc, r.alt, r.bat, r.seq, r.sent)


def _raw(value: object) -> bytes:
    """A reply value; our clients never decode responses, so it is bytes."""
    return cast(bytes, value)


def redis_client(
    url: str,
    *,
    socket_timeout: float = 2.0,
    connect_timeout: float = 1.0,
    health_check_interval: int = 5,
) -> Redis:
    """A client that fails fast: the caller's backpressure needs an error, not a wait.

    One retry, only on ``ConnectionError``, so a connection left stale by a
    Redis restart is replaced transparently; a timeout is never retried, since
    the command may have run. (If a connection dies after Redis ran a batch
    but before the reply, the retry answers DUPLICATE for those fixes: they
    are stored once, only their position events are not sent again.)
    """
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        health_check_interval=health_check_interval,
        retry=Retry(NoBackoff(), 1, supported_errors=(ConnectionError,)),
    )


class LuaScript:
    """A script called by ``EVALSHA``; reloaded when Redis answers NOSCRIPT.

    Redis forgets cached scripts on restart and on ``SCRIPT FLUSH``. A NOSCRIPT
    reply means the call did not run, so loading and calling again is safe.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def load(self, client: Redis) -> None:
        await client.script_load(self.source)

    async def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return await client.execute_command(*command)  # type: ignore[no-untyped-call]
        except NoScriptError:
            await self.load(client)
            return await client.execute_command(*command)  # type: ignore[no-untyped-call]

    async def pipelined(self, client: Redis, calls: Sequence[Sequence[Any]]) -> list[Any]:
        """Several key-less calls in one round trip; NOSCRIPT-failed ones are redone in order."""
        async with client.pipeline(transaction=False) as pipe:
            for args in calls:
                pipe.execute_command("EVALSHA", self.sha, 0, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        for i, result in enumerate(results):
            if isinstance(result, NoScriptError):
                results[i] = await self(client, (), calls[i])
            elif isinstance(result, Exception):
                raise result
        return results


class RedisStore:
    """The ``Store`` Protocol on Redis; see the module docstring for the key layout."""

    def __init__(
        self,
        client: Redis,
        *,
        history_per_device: int = 10_000,
        key_prefix: str = "ft:",
        owns_client: bool = False,
        events: tuple[str, int] | None = None,
    ) -> None:
        """``events``: (stream, MAXLEN) of the deployment's event bus (``RedisBus.stream``
        and its replay length) -- the store then appends the events given to
        ``record_fixes`` and ``put_job`` in the same script as the data."""
        if history_per_device < 1:
            raise ValueError("history_per_device must be at least 1")
        self.client = client
        self._stream, self._maxlen = events if events is not None else ("", 0)
        self.history_limit = history_per_device
        self.prefix = key_prefix
        self._owns_client = owns_client
        self._record = LuaScript(RECORD_LUA)
        self._put_technician = LuaScript(PUT_TECHNICIAN_LUA)
        self._put_job = LuaScript(PUT_JOB_LUA)
        self._jobs_of = LuaScript(JOBS_OF_LUA)
        self._put_fence = LuaScript(PUT_FENCE_LUA)
        self._update_job = LuaScript(UPDATE_JOB_LUA)

    @property
    def publishes_events(self) -> bool:
        return self._stream != ""

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        history_per_device: int = 10_000,
        key_prefix: str = "ft:",
        events: tuple[str, int] | None = None,
    ) -> RedisStore:
        """Open a client for ``url`` (owned and closed by the store) and load the scripts.

        Raises ``redis.ConnectionError`` when Redis cannot be reached.
        """
        client = redis_client(url)
        store = cls(client, history_per_device=history_per_device, key_prefix=key_prefix,
                    owns_client=True, events=events)  # fmt: skip
        try:
            for script in (
                store._record, store._put_technician, store._put_job, store._jobs_of,
                store._put_fence, store._update_job,
            ):  # fmt: skip
                await script.load(client)
        except BaseException:
            await client.aclose()
            raise
        return store

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _device_key(self, device_id: str, kind: str) -> str:
        return f"{self.prefix}d:{{{device_id}}}:{kind}"

    # -- fixes ------------------------------------------------------------------

    async def record_fixes(
        self,
        fixes: Sequence[Fix],
        token: str | None = None,
        events: Sequence[Event] | None = None,
    ) -> list[Verdict]:
        if not fixes:
            return []
        stream = self._stream if events is not None else ""
        if events is not None and len(events) != len(fixes):
            raise ValueError("one event per fix")
        calls: list[list[Any]] = []
        for start in range(0, len(fixes), SCRIPT_CHUNK):
            memo = "" if token is None else f"{token}:{start}"
            args: list[Any] = [
                self.prefix, self.history_limit, memo, RECORD_TTL_S, stream, self._maxlen
            ]  # fmt: skip
            end = min(start + SCRIPT_CHUNK, len(fixes))
            for k in range(start, end):
                fix = fixes[k]
                data = orjson.dumps(events[k]) if events is not None and stream else b""
                args += (fix.device_id, repr(float(fix.ts)), encode_fix(fix), data)
            calls.append(args)
        if len(calls) == 1:
            replies = [await self._record(self.client, (), calls[0])]
        else:
            replies = await self._record.pipelined(self.client, calls)
        return [_VERDICTS[code] for reply in replies for code in reply]

    async def latest(self, device_id: str) -> Fix | None:
        data = await self.client.get(self._device_key(device_id, "l"))
        return None if data is None else decode_fix(device_id, _raw(data))

    async def history(
        self, device_id: str, since: float | None, until: float | None, limit: int
    ) -> list[Fix]:
        if limit <= 0:
            return []
        rows = await self.client.zrange(
            self._device_key(device_id, "h"),
            "-inf" if since is None else repr(float(since)),
            "+inf" if until is None else repr(float(until)),
            byscore=True,
            offset=0,
            num=limit,
        )
        return [decode_fix(device_id, _raw(row)) for row in rows]

    # -- technicians ------------------------------------------------------------

    async def put_technician(self, technician: Technician) -> Technician | None:
        tid = technician.technician_id
        keys = (self._key("techs"), self._key("owner"), self._key("techdevs", tid))
        args = (tid, _ENCODER.encode(technician), *technician.device_ids)
        previous = await self._put_technician(self.client, keys, args)
        return None if previous is None else _TECHNICIAN.decode(previous)

    async def get_technician(self, technician_id: str) -> Technician | None:
        data = await self.client.hget(self._key("techs"), technician_id)
        return None if data is None else _TECHNICIAN.decode(_raw(data))

    async def list_technicians(self) -> list[Technician]:
        values = await self.client.hvals(self._key("techs"))
        return sorted((_TECHNICIAN.decode(_raw(v)) for v in values), key=lambda t: t.technician_id)

    async def technician_of(self, device_id: str) -> str | None:
        owner = await self.client.hget(self._key("owner"), device_id)
        return None if owner is None else _raw(owner).decode()

    # -- jobs -------------------------------------------------------------------

    async def put_job(self, job: Job, events: Sequence[Event] = ()) -> None:
        keys = (self._key("jobs"), self._key("jobtech"))
        args: list[Any] = [self.prefix, job.job_id, _ENCODER.encode(job), job.technician_id or ""]
        args += (self._stream, self._maxlen)
        if self._stream:
            for event in events:
                args += (str(event.get("type", "message")), orjson.dumps(event))
        await self._put_job(self.client, keys, args)

    async def put_eta(self, job: Job) -> None:
        key = self._key("jobs")
        for _ in range(PUT_ETA_TRIES):
            raw = await self.client.hget(key, job.job_id)
            if raw is None:
                return  # deleted meanwhile
            packed = _raw(raw)
            merged = _ENCODER.encode(with_eta(_JOB.decode(packed), job))
            if await self._update_job(self.client, (key,), (job.job_id, merged, packed)):
                return
        # Changed under us every time: the next estimate writes the ETA again.
        log.warning("ETA of job %s not stored: the job kept changing", job.job_id)

    async def revoke_links(self, job_id: str, before: float, keep_s: float) -> None:
        # Expires with the last link it can cover: nothing to clean up.
        await self.client.set(self._key("revoked", job_id), repr(before), px=int(keep_s * 1000))

    async def links_revoked(self, job_id: str) -> float | None:
        raw = await self.client.get(self._key("revoked", job_id))
        return None if raw is None else float(_raw(raw))

    async def get_job(self, job_id: str) -> Job | None:
        data = await self.client.hget(self._key("jobs"), job_id)
        return None if data is None else _JOB.decode(_raw(data))

    async def jobs_of(self, technician_id: str) -> list[Job]:
        keys = (self._key("tour", technician_id), self._key("jobs"))
        values = await self._jobs_of(self.client, keys, ())
        jobs = (_JOB.decode(v) for v in values)
        return _tour_order(j for j in jobs if j.technician_id == technician_id)

    async def list_jobs(self) -> list[Job]:
        values = await self.client.hvals(self._key("jobs"))
        return sorted((_JOB.decode(_raw(v)) for v in values), key=lambda j: j.job_id)

    # -- opaque blobs (learned ETA model snapshot, fences) -----------------------

    # -- geofences (the GeoJSON as given, one hash field per fence) ----------------

    async def put_fence(self, fence_id: str, feature: bytes, events: Sequence[Event] = ()) -> None:
        await self._fence_change(fence_id, feature, events)

    async def delete_fence(self, fence_id: str, events: Sequence[Event] = ()) -> bool:
        return await self._fence_change(fence_id, b"", events)

    async def _fence_change(self, fence_id: str, feature: bytes, events: Sequence[Event]) -> bool:
        if len(events) > 1:
            raise ValueError("one event per fence change")
        args: list[Any] = [fence_id, feature, "", 0, "", ""]
        if self._stream and events:
            event = events[0]
            args[2:] = (self._stream, self._maxlen, str(event["type"]), orjson.dumps(event))
        return bool(await self._put_fence(self.client, (self._key("fences"),), args))

    async def list_fences(self) -> dict[str, bytes]:
        raw = await self.client.hgetall(self._key("fences"))
        return {_raw(k).decode(): _raw(v) for k, v in raw.items()}

    async def revoke_session(self, session_id: str, keep_s: float) -> None:
        await self.client.set(self._key("signedout", session_id), b"1", px=int(keep_s * 1000))

    async def session_revoked(self, session_id: str) -> bool:
        return bool(await self.client.exists(self._key("signedout", session_id)))

    async def put_alerts(self, events: Sequence[Event]) -> None:
        key = self._key("alerts")
        async with self.client.pipeline(transaction=True) as pipe:
            for event in events:
                if event.get("cleared"):
                    pipe.hdel(key, alert_key(event))
                else:
                    pipe.hset(key, alert_key(event), orjson.dumps(event))
            await pipe.execute()

    async def list_alerts(self) -> list[Event]:
        values = await self.client.hvals(self._key("alerts"))
        return oldest_first(orjson.loads(_raw(v)) for v in values)

    async def put_blob(self, name: str, data: bytes) -> None:
        await self.client.set(self._key("blob", name), data)

    async def get_blob(self, name: str) -> bytes | None:
        data = await self.client.get(self._key("blob", name))
        return None if data is None else _raw(data)

    # -- health -----------------------------------------------------------------

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except Exception:  # readiness probe: any failure is "not ready"
            return False

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()
