"""With Redis and several workers: one elected engine, fed from the event stream.

Why not per-device engine state in Redis: Mosquitto's shared subscriptions are
strict round robin, so consecutive fixes of a device land on different
workers, and geofence inside-sets, stop anchors, trips and alert state would
need a Redis read-modify-write per fix. Ingest (decode, dedupe, history, live
state, position events) is what scales with message rate, and it is
stateless: the store decides newest/late/duplicate atomically. The engine is
cheap by comparison (a few µs a fix, one tour estimate per technician per
10 s), so exactly one worker runs it, chosen by a Redis lease:

* ``SET {prefix}engine:leader <worker> NX PX <lease>``, renewed at a third of
  the lease by a compare-and-extend script; a worker that cannot renew stops
  feeding its engine at once.
* The leader follows the bus from a checkpoint stored in Redis (the id of the
  last event it finished), so a new leader resumes where the old one stopped:
  nothing is skipped; events after the last checkpoint may be seen twice.
* On taking over it rebuilds the engine from the store (tours, fences, the alerts
  standing: ``Gateway.take_over_alerts``, so none is raised twice and each is
  cleared when it ends); the other in-memory parts (inside-sets, stop anchors)
  start empty, so a device already inside a fence is reported entering it again.
* The store already holds every status change up to the stream's head at takeover
  (the store scripts write a change and its event together), so the rebuilt tours
  are ahead of the events replayed from the checkpoint. A replayed status event is
  therefore handled with its job as it was around that change (``around_change``):
  set back to just before it in the engine, then changed to just after it, so that
  the engine sees every transition in turn and makes what it makes of it
  (``arrived`` and ``done`` notifications, durations learned): a predecessor that
  died before publishing them loses nothing, one that had published them sends them
  twice. These past versions never reach the store: what the engine writes back is
  its own fields alone (ETA, predictions, notifications sent: ``Store.put_eta``), and
  the replay ends on the job's last change, as stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Final

import msgspec
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.bus import END, parse_id
from gateway.cancel import raise_if_cancelling
from gateway.engine import Effects, Engine
from gateway.learning import ModelKeeper
from gateway.model import Event, Fix, Job
from gateway.service import Gateway

log = logging.getLogger("fieldtrack.leader")

RENEW_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
FOLLOWED: Final = frozenset({"position", "status", "job", "fence"})
# Notifications made outside the engine, which the leader relays to MQTT out.
RELAYED: Final = frozenset({"tracking_link"})
CHECKPOINT_EVERY_S: Final = 1.0


class EngineLeader:
    def __init__(
        self,
        gateway: Gateway,
        redis: Redis,
        key_prefix: str = "ft:",
        lease_s: float = 10.0,
        worker_id: str | None = None,
        keeper: ModelKeeper | None = None,
    ) -> None:
        self.gateway = gateway
        self.keeper = keeper
        self.redis = redis
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        # The lease holds this process's token, not its name: two workers started with
        # the same --worker-id must not both renew it and both lead.
        self.token = f"{self.worker_id}:{uuid.uuid4().hex[:8]}"
        self.lease_ms = int(lease_s * 1000)
        self.leader_key = f"{key_prefix}engine:leader"
        self.stream_key = f"{key_prefix}events"  # RedisBus.stream
        self._rebuilt_after: tuple[int, int] | None = None
        self.checkpoint_key = f"{key_prefix}engine:checkpoint"
        self.is_leader = asyncio.Event()
        # Leading when last seen (a shutdown cancels the term without losing the lease),
        # and the last event finished: close() checkpoints it and hands the lease back.
        self._held = False
        self._done_id: str | None = None

    async def run(self) -> None:
        """Campaign forever; while elected, feed the engine and tick it.

        Redis going away ends a term, not the worker: it campaigns again once
        Redis answers, and the lease (if it outlived the outage) expires or is
        taken back by its holder.
        """
        while True:
            try:
                await self._term()
            except* RedisError as group:
                error = _first_leaf(group)
                log.warning("engine election: Redis failed (%s: %s)", type(error).__name__, error)
            # An error raised while cancelling (a last save) must not eat the cancel.
            raise_if_cancelling()
            await asyncio.sleep(self.lease_ms / 3000)

    async def _term(self) -> None:
        """Win the lease (or find it still ours) and lead until it is lost."""
        won = await self.redis.set(self.leader_key, self.token, nx=True, px=self.lease_ms)
        if not won and not await self._renew():
            return
        log.info("worker %s is the engine leader", self.worker_id)
        self.is_leader.set()
        self._held = True
        try:
            async with asyncio.TaskGroup() as tg:
                keep = tg.create_task(self._keep_lease(), name="engine-lease")
                work = tg.create_task(self._lead(), name="engine-follow")
                await keep  # returns when the lease is lost
                work.cancel()
        finally:
            self.is_leader.clear()
        self._held = False
        log.warning("worker %s lost the engine lease", self.worker_id)

    async def close(self) -> None:
        """Stopping: checkpoint the last event finished and hand the lease back, so that
        another worker leads within a third of the lease (its next campaign) rather than
        after the whole lease; then close Redis."""
        if self._held:
            with contextlib.suppress(RedisError, OSError):
                if self._done_id is not None and not self.gateway.outbox:
                    await self.redis.set(self.checkpoint_key, self._done_id)
                await self.redis.eval(RELEASE_LUA, 1, self.leader_key, self.token)
                log.info("worker %s handed the engine lease back", self.worker_id)
            self._held = False
        await self.redis.aclose()

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            if not await self._renew():
                return
            raise_if_cancelling()

    async def _renew(self) -> bool:
        lease = str(self.lease_ms)
        renewed = await self.redis.eval(RENEW_LUA, 1, self.leader_key, self.token, lease)
        return bool(renewed)

    async def _lead(self) -> None:
        gateway = self.gateway
        # Before the rebuild: every event up to here is in the store it reads.
        self._rebuilt_after = await self._stream_head()
        gateway.engine = await fresh_engine(gateway)
        await gateway.take_over_alerts()
        raw = await self.redis.get(self.checkpoint_key)
        last_id = raw.decode() if isinstance(raw, bytes) else None
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._ticks(), name="engine-tick")
            if self.keeper is not None:
                await self.keeper.load_into(gateway.engine)
                # Only the leader learns, so only the leader saves the model.
                tg.create_task(self.keeper.keep(lambda: gateway.engine), name="eta-model")
            await self._follow(last_id)

    async def _follow(self, last_id: str | None) -> None:
        bus, saved_at = self.gateway.bus, time.monotonic()
        # The leader is one reader that must see everything: a large queue, and
        # on overflow it resumes from the last event it finished.
        while True:
            async with bus.subscribe(last_id, _followed, 100_000) as sub:
                while not (sub.overflowed.is_set() and sub.queue.empty()):
                    raise_if_cancelling()  # after the Redis calls of the last turn
                    item = await sub.queue.get()
                    if item is END:
                        # Subscription.end (the HTTP server's shutdown ends the feeds'
                        # subscriptions): the leader follows on until it is stopped.
                        continue
                    event_id, _, data = item
                    await self.handle(orjson.loads(data), event_id)
                    last_id = self._done_id = event_id
                    # Not while MQTT-out events wait in memory (the broker away): a
                    # successor must replay what made them, or they are lost with us.
                    due = time.monotonic() - saved_at >= CHECKPOINT_EVERY_S
                    if due and not self.gateway.outbox:
                        await self.redis.set(self.checkpoint_key, last_id)
                        saved_at = time.monotonic()

    async def _stream_head(self) -> tuple[int, int] | None:
        rows = await self.redis.xrevrange(self.stream_key, "+", "-", count=1)
        if not rows:
            return None
        raw = rows[0][0]
        return parse_id(raw.decode() if isinstance(raw, bytes) else str(raw))

    async def handle(self, event: Event, event_id: str | None = None) -> None:
        """Feed one followed event to the engine and publish what it makes of it;
        ``event_id``: its stream id, to know a status change the rebuild already holds."""
        gateway, engine = self.gateway, self.gateway.engine
        kind = event["type"]
        effects = Effects()
        if kind == "position":
            fix = Fix(
                event["device_id"], event["ts"], event["lat"], event["lon"],
                spd=event.get("spd"), hdg=event.get("hdg"), acc=event.get("acc"),
            )  # fmt: skip
            effects = engine.on_fix(fix, event.get("technician_id"), gateway.clock())
        elif kind in ("status", "job"):
            job = await gateway.store.get_job(event["job_id"])
            if job is not None and kind == "status" and self._replayed(event_id):
                around = around_change(job, event)
                if around is not None:
                    before, job = around
                    engine.tours.put(before)
            if job is not None:
                created = bool(event.get("created")) and kind == "job"
                effects = engine.job_changed(job, float(event["ts"]), created)
        elif kind == "fence":
            await reload_fence(gateway, engine, event["geofence_id"])
        elif kind == "notify":
            # Made by an HTTP request in any process (Gateway.publish_notice): the
            # stream has it; MQTT out gets it from here.
            gateway.relay(event)
        await gateway.publish_effects(effects)

    def _replayed(self, event_id: str | None) -> bool:
        """Whether the event was in the stream when the engine was rebuilt."""
        head = self._rebuilt_after
        key = parse_id(event_id) if event_id is not None else None
        return head is not None and key is not None and key <= head

    async def _ticks(self, interval_s: float = 5.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.gateway.tick()
            raise_if_cancelling()


def around_change(job: Job, event: Event) -> tuple[Job, Job] | None:
    """The stored ``job`` as it was just before and just after the status change
    ``event`` announced (found in its history by status, previous status and time), or
    None if it is not there. A replay after a takeover feeds the engine each change in
    turn, as the old leader would have seen it, however many came since."""
    status, previous, ts = event.get("status"), event.get("previous"), event.get("ts")
    if not previous or previous == status:
        return None
    history = job.history
    for i in range(len(history) - 1, -1, -1):
        change = history[i]
        if (change.status, change.previous, change.ts) == (status, previous, ts):
            before = msgspec.structs.replace(job, state=previous, history=history[:i])
            after = msgspec.structs.replace(job, state=status, history=history[: i + 1])
            return before, after
    return None


def _first_leaf(group: BaseExceptionGroup[RedisError]) -> BaseException:
    """The error itself, out of the task groups' nesting (whose message names none)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _followed(event: Event) -> bool:
    kind = event.get("type")
    return kind in FOLLOWED or (kind == "notify" and event.get("notification") in RELAYED)


async def fresh_engine(gateway: Gateway) -> Engine:
    old = gateway.engine
    engine = Engine(
        old.config, old.model, old.durations, old.pauses, old.bands, old.paces, old.starts
    )
    for fence in (await gateway.stored_fences()).values():
        engine.put_fence(fence)
    engine.load_jobs(await gateway.store.list_jobs())
    return engine


async def reload_fence(gateway: Gateway, engine: Engine, fence_id: str) -> None:
    fence = (await gateway.stored_fences()).get(fence_id)
    if fence is None:
        engine.remove_fence(fence_id)
    else:
        engine.put_fence(fence)
