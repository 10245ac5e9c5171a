"""`fieldtrack run --redis`: a worker and an API node share state and events through Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence

import aiomqtt
import httpx
import pytest

from dispatcher_feed.app import create_app
from gateway.bus import parse_id
from gateway.engine import Engine
from gateway.learning import ModelKeeper
from gateway.model import Event, Job, Site, StatusUpdate, Technician
from gateway.redis_store import RedisStore
from gateway.server import build_runtime
from gateway.service import Inbound
from tests.support.gateway import API_KEY, gateway_settings, running_gateway
from tests.support.procs import Mosquitto, RedisServer, free_port, redis_server
from tests.support.sse import SseEvent, sse_events
from tests.support.tasks import stop_task

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


async def until(events: object, wanted: set[str], timeout: float = 15.0) -> list[SseEvent]:
    seen: list[SseEvent] = []
    async with asyncio.timeout(timeout):
        async for event in events:  # type: ignore[attr-defined]
            seen.append(event)
            if wanted <= {e.event for e in seen}:
                return seen
    return seen


async def test_worker_ingests_leader_runs_engine_api_node_streams(
    broker: Mosquitto, redis: RedisServer, prefix: str
) -> None:
    common = {"redis": redis.url, "redis_prefix": f"{prefix}:"}
    worker = gateway_settings(broker.url, prefix, role="worker", **common)
    api = gateway_settings(
        broker.url, prefix, role="api", http=f"127.0.0.1:{free_port()}", **common
    )
    now = time.time()
    async with (
        running_gateway(worker, background=True) as w,
        running_gateway(api, background=True) as a,
        httpx.AsyncClient(base_url=api.base_url, headers=AUTH, timeout=10) as http,
    ):
        assert w.leader is not None
        async with asyncio.timeout(10):
            await w.leader.is_leader.wait()
        r = await http.put("/api/v1/technicians/t1", json={"name": "Aino", "device_ids": ["d1"]})
        assert r.status_code == 200
        job = {"technician_id": "t1", "site": {"lat": 60.2, "lon": 24.9, "radius_m": 80}}
        assert (await http.put("/api/v1/jobs/j1", json=job)).status_code == 200
        await asyncio.sleep(2.5)  # the worker's directory refresh picks up the technician
        async with http.stream("GET", "/api/v1/feed") as feed:
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                for i, lat in enumerate((60.19, 60.2, 60.2)):
                    fix = {"ts": now - 30 + i, "lat": lat, "lon": 24.9, "acc": 5}
                    await client.publish(f"{prefix}/d1/pos", json.dumps(fix), qos=1)
            events = await until(sse_events(feed), {"position", "geofence"})
        positions = [e for e in events if e.event == "position"]
        assert positions[0].data["technician_id"] == "t1"
        enter = next(e for e in events if e.event == "geofence")
        assert (enter.data["transition"], enter.data["geofence_id"]) == ("enter", "job:j1")
        r = await http.get("/api/v1/devices/d1/positions")
        assert [p["lat"] for p in r.json()] == [60.19, 60.2, 60.2]
        # Who leads shows in the worker's metrics; an API node has no broker gauge.
        assert "fieldtrack_engine_leader 1" in w.metrics.render()
        assert "fieldtrack_broker_connected" not in a.metrics.render()
        assert "fieldtrack_engine_leader" not in a.metrics.render()
        # A tracking link issued on the HTTP-only node reaches MQTT out through the leader.
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe(f"{prefix}/out/notify", qos=1)
            link = (await http.post("/api/v1/jobs/j1/tracking-link")).json()
            async with asyncio.timeout(10):
                async for message in client.messages:  # the engine's own come too
                    assert isinstance(message.payload, bytes)
                    notice = json.loads(message.payload)
                    if notice["notification"] == "tracking_link":
                        break
        assert notice["url"] == link["url"]


async def test_learned_model_survives_a_new_leader(redis: RedisServer, prefix: str) -> None:
    store = await RedisStore.connect(redis.url, key_prefix=f"{prefix}:")
    try:
        taught = Engine()
        for i in range(40):
            taught.model.observe(
                60.1 + i * 5e-4,
                24.9,
                1.8e9 + i * 5,
                60.1 + (i + 1) * 5e-4,
                24.9,
                1.8e9 + (i + 1) * 5,
            )
        await ModelKeeper(blobs=store).save(taught)
        successor = Engine()
        assert await ModelKeeper(blobs=store).load_into(successor) is True
        assert successor.model.snapshot() == taught.model.snapshot()
    finally:
        await store.close()


class Died(Exception):
    """The worker process ending right after a store call returned (SIGKILL, OOM)."""


async def test_a_worker_dying_right_after_storing_loses_no_event(
    redis: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker 1 stores a batch and dies before anything else; the broker redelivers the
    un-acked batch to worker 2, whose store finds duplicates only. The position and status
    events still reach the stream, once each: the store appended them with the data."""
    settings = gateway_settings(
        "mqtt://127.0.0.1:1", prefix, role="worker", redis=redis.url, redis_prefix=f"{prefix}:"
    )
    now = time.time()
    batch = [
        Inbound(f"{prefix}/d1/{kind}", json.dumps(body).encode(), now)
        for kind, body in (
            ("pos", {"ts": now - 3, "lat": 60.19, "lon": 24.9}),
            ("status", {"ts": now - 2, "job": "j1", "status": "en_route"}),
            ("pos", {"ts": now - 1, "lat": 60.2, "lon": 24.9}),
        )
    ]
    first = await build_runtime(settings)
    try:
        await first.gateway.put_technician(Technician("t1", "Aino", ("d1",)))
        await first.gateway.put_job(Job("j1", "t1", Site(60.2, 24.9, 80.0)))
        store = first.store
        assert isinstance(store, RedisStore)
        real_put_job = store.put_job

        async def put_job_then_die(job: Job, events: Sequence[Event] = ()) -> None:
            await real_put_job(job, events)
            raise Died

        monkeypatch.setattr(store, "put_job", put_job_then_die)
        with pytest.raises(Died):  # the first fix is stored, then the status: then death
            await first.gateway.handle_batch(batch)
    finally:
        await first.close()
    second = await build_runtime(settings)
    try:
        await second.gateway.start()
        await second.gateway.handle_batch(batch)  # the redelivery
        rows = await second.store.client.xrange(f"{prefix}:events")  # type: ignore[attr-defined]
    finally:
        await second.close()
    events = [json.loads(fields[b"d"]) for _, fields in rows]
    assert [(e["type"], e.get("ts")) for e in events if e["type"] != "job"] == [
        ("position", now - 3),
        ("status", now - 2),
        ("position", now - 1),
    ]


@pytest.mark.parametrize(
    ("statuses", "told"),
    [
        (("en_route", "on_site"), ["arrived"]),
        (("en_route", "on_site", "done"), ["arrived", "done"]),
    ],
)
async def test_a_new_leader_still_notifies_a_change_its_predecessor_died_handling(
    redis: RedisServer, prefix: str, statuses: tuple[str, ...], told: list[str]
) -> None:
    """The old leader checkpointed the job's creation, then died before it handled the
    technician's arrival (and, in the second case, the job being done). Its successor
    rebuilds the engine from the store, where the job is already in its last state, and
    replays every change from the checkpoint: the customer is still told each."""
    settings = gateway_settings(
        "mqtt://127.0.0.1:1", prefix, role="worker", redis=redis.url, redis_prefix=f"{prefix}:"
    )
    now = time.time()
    runtime = await build_runtime(settings)
    try:
        gateway, leader, client = runtime.gateway, runtime.leader, runtime.store.client  # type: ignore[attr-defined]
        assert leader is not None
        await gateway.put_technician(Technician("t1", "Aino", ("d1",)))
        await gateway.put_job(Job("j1", "t1", Site(60.2, 24.9, 80.0)))
        [(checkpoint, _)] = await client.xrevrange(f"{prefix}:events", "+", "-", count=1)
        await client.set(leader.checkpoint_key, checkpoint)  # what the old leader finished
        batch = [
            Inbound(f"{prefix}/d1/status", json.dumps(body).encode(), now)
            for body in (
                {"ts": now - 60 + 20 * i, "job": "j1", "status": status}
                for i, status in enumerate(statuses)
            )
        ]
        await gateway.handle_batch(batch)  # stored, announced; nobody led meanwhile
        leading = asyncio.create_task(leader.run())
        try:
            async with asyncio.timeout(15):
                while True:
                    rows = await client.xrange(f"{prefix}:events")
                    notices = [
                        e for e in (json.loads(f[b"d"]) for _, f in rows)
                        if e["type"] == "notify" and e["job_id"] == "j1"
                    ]  # fmt: skip
                    if len(notices) >= len(told):
                        break
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # and nothing more
            rows = await client.xrange(f"{prefix}:events")
        finally:
            await stop_task(leading)
        notices = [
            e for e in (json.loads(f[b"d"]) for _, f in rows)
            if e["type"] == "notify" and e["job_id"] == "j1"
        ]  # fmt: skip
        assert [e["notification"] for e in notices] == told
    finally:
        await runtime.close()


async def test_a_new_leader_takes_over_the_alerts_standing(redis: RedisServer, prefix: str) -> None:
    """What the old leader raised and nothing cleared stays raised, once: the new leader
    does not raise it again (the dispatchers have it), and clears at once an alert whose
    job closed while nobody led."""
    settings = gateway_settings(
        "mqtt://127.0.0.1:1", prefix, role="worker", redis=redis.url, redis_prefix=f"{prefix}:"
    )
    now = time.time()
    runtime = await build_runtime(settings)
    try:
        gateway, leader, store = runtime.gateway, runtime.leader, runtime.store
        client = store.client  # type: ignore[attr-defined]
        assert leader is not None
        await gateway.put_technician(Technician("t1", "Aino", ("d1",)))
        await gateway.put_job(Job("j1", "t1", Site(60.2, 24.9, 80.0), planned_duration_s=1800.0))
        await gateway.put_job(Job("j2", "t1", Site(60.21, 24.9, 80.0), sequence=1))
        await gateway.report_status(StatusUpdate("", now - 3000, "j1", "on_site"))
        await gateway.report_status(StatusUpdate("", now - 2900, "j2", "cancelled"))

        def raised(alert: str, job_id: str) -> Event:
            return {"type": "alert", "alert": alert, "severity": "warning", "ts": now - 600,
                    "technician_id": "t1", "job_id": job_id}  # fmt: skip

        await store.put_alerts([raised("overrun", "j1"), raised("late_risk", "j2")])
        [(before, _)] = await client.xrevrange(f"{prefix}:events", "+", "-", count=1)
        await client.set(leader.checkpoint_key, before)  # what the old leader finished
        leading = asyncio.create_task(leader.run())
        try:
            async with asyncio.timeout(10):
                await leader.is_leader.wait()
            fix = json.dumps({"ts": now, "lat": 60.2, "lon": 24.9, "acc": 5.0}).encode()
            await gateway.handle_batch([Inbound(f"{prefix}/d1/pos", fix, time.time())])
            rows = await client.xrange(f"{prefix}:events", f"({before.decode()}", "+")
            [fixed] = [parse_id(i.decode()) for i, f in rows if b'"position"' in f[b"d"]]
            assert fixed is not None

            def done() -> tuple[int, int]:
                return parse_id(leader._done_id or "") or (0, 0)

            async with asyncio.timeout(10):  # until the engine has had the fix
                while done() < fixed:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # and nothing more
            rows = await client.xrange(f"{prefix}:events", f"({before.decode()}", "+")
        finally:
            await stop_task(leading)
        alerts = [e for e in (json.loads(f[b"d"]) for _, f in rows) if e["type"] == "alert"]
        assert [(e["alert"], e["job_id"], e.get("cleared")) for e in alerts] == [
            ("late_risk", "j2", True)
        ]
        assert [(a["alert"], a["job_id"]) for a in await store.list_alerts()] == [("overrun", "j1")]
    finally:
        await runtime.close()


async def test_a_status_right_after_its_device_was_registered_elsewhere_is_applied(
    redis: RedisServer, prefix: str
) -> None:
    """Workers refresh their device directory every 2 s; a status must not wait for it
    (refused as wrong_technician, its job stayed planned all day and its customer was
    told "delayed"): the store says whose device it is."""
    settings = gateway_settings(
        "mqtt://127.0.0.1:1", prefix, role="worker", redis=redis.url, redis_prefix=f"{prefix}:"
    )
    worker, api = await build_runtime(settings), await build_runtime(settings)
    try:
        now = time.time()

        async def status(device: str, job_id: str, ts: float) -> list[str]:
            body = json.dumps({"ts": ts, "job": job_id, "status": "en_route"}).encode()
            inbound = Inbound(f"{prefix}/{device}/status", body, time.time())
            result = await worker.gateway.handle_batch([inbound])
            return [d.reason for d in result.dead_letters]

        await api.gateway.put_technician(Technician("t1", "Aino", ("d1",)))
        await api.gateway.put_job(Job("j1", "t1", Site(60.2, 24.9, 80.0)))
        assert await status("d1", "j1", now - 10) == []
        # Handed over on the API node: the worker's directory still says t1.
        await api.gateway.put_technician(Technician("t2", "Bo", ("d1",)))
        await api.gateway.put_job(Job("j2", "t2", Site(60.21, 24.9, 80.0)))
        assert await status("d1", "j2", now) == []
        states = {j: (await worker.store.get_job(j)).state for j in ("j1", "j2")}  # type: ignore[union-attr]
        assert states == {"j1": "en_route", "j2": "en_route"}
    finally:
        await worker.close()
        await api.close()


async def test_one_job_en_route_at_a_time_with_the_jobs_in_redis(
    redis: RedisServer, prefix: str
) -> None:
    """The set-backs read the technician's jobs from the store: Redis's, here."""
    settings = gateway_settings(
        "mqtt://127.0.0.1:1", prefix, role="worker", redis=redis.url, redis_prefix=f"{prefix}:"
    )
    runtime = await build_runtime(settings)
    try:
        gateway, now = runtime.gateway, time.time()
        await gateway.put_technician(Technician("t1", "Aino", ("d1",)))
        await gateway.put_technician(Technician("t2", "Bo", ("d2",)))
        for job_id in ("j1", "j2", "j3"):
            await gateway.put_job(Job(job_id, "t1", Site(60.2, 24.9, 80.0)))
        await gateway.report_status(StatusUpdate("", now - 30, "j1", "en_route"))
        await gateway.report_status(StatusUpdate("", now - 20, "j2", "en_route"))
        await gateway.put_job(Job("j2", "t2", Site(60.2, 24.9, 80.0)))  # handed to Bo
        states = {}
        for job_id in ("j1", "j2", "j3"):
            job = await runtime.store.get_job(job_id)
            assert job is not None
            states[job_id] = (job.state, job.history[-1].source if job.history else None)
        assert states == {
            "j1": ("planned", "gateway"),  # superseded by j2
            "j2": ("planned", "api"),  # reassigned while en route
            "j3": ("planned", None),
        }
    finally:
        await runtime.close()


async def test_a_stopping_leader_hands_over_at_once_and_one_name_leads_once(
    redis: RedisServer, prefix: str
) -> None:
    """Two workers started with the same --worker-id: one leads (the lease holds a token
    per process). The leader stopping hands the lease back, with a last checkpoint: the
    other leads at its next campaign (a third of the lease), not after the lease."""
    settings = gateway_settings(
        "mqtt://127.0.0.1:1", prefix, role="worker", redis=redis.url, redis_prefix=f"{prefix}:",
        worker_id="same-name",
    )  # fmt: skip
    first, second = await build_runtime(settings), await build_runtime(settings)
    a, b = first.leader, second.leader
    assert a is not None and b is not None
    a.lease_ms = b.lease_ms = 3000  # campaigns every second: a shorter test
    run_a = asyncio.create_task(a.run())
    run_b: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(5):
            await a.is_leader.wait()
        run_b = asyncio.create_task(b.run())
        await asyncio.sleep(2.5)  # more than two campaigns of b's
        assert a.is_leader.is_set() and not b.is_leader.is_set()
        await first.gateway.put_job(Job("j1", None, Site(60.2, 24.9, 80.0)))  # one event
        await asyncio.sleep(0.3)
        await stop_task(run_a)
        stopped = time.monotonic()
        await first.close()
        client = second.store.client  # type: ignore[attr-defined]
        assert await client.get(a.checkpoint_key) is not None
        async with asyncio.timeout(8):
            await b.is_leader.wait()
        # A campaign away (1 s), not the whole lease (3 s) and then one (as it was).
        assert time.monotonic() - stopped < 2.0
    finally:
        await stop_task(run_a)
        if run_b is not None:
            await stop_task(run_b)
        await second.close()


async def test_a_link_revoked_on_one_api_node_is_revoked_on_every_node_and_after_restarts(
    redis: RedisServer, prefix: str
) -> None:
    common = {"redis": redis.url, "redis_prefix": f"{prefix}:", "signing_key": "one-key-for-all"}
    node = gateway_settings("mqtt://127.0.0.1:1", prefix, role="api", **common)
    one, two = await build_runtime(node), await build_runtime(node)
    try:
        await one.gateway.put_technician(Technician("t1", "Aino", ("d1",)))
        await one.gateway.put_job(Job("j1", "t1", Site(60.2, 24.9, 80.0)))
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(rt.app_context)),
                base_url="http://testserver", headers=AUTH,
            )
            for rt in (one, two)
        ]  # fmt: skip
        async with clients[0] as http1, clients[1] as http2:
            token = (await http1.post("/api/v1/jobs/j1/tracking-link")).json()["token"]
            assert (await http2.get(f"/track/{token}/state")).status_code == 200
            assert (await http1.delete("/api/v1/jobs/j1/tracking-link")).status_code == 200
            assert (await http2.get(f"/track/{token}/state")).status_code == 410
    finally:
        await one.close()
        await two.close()
    again = await build_runtime(node)  # a node (re)started after the revocation
    try:
        transport = httpx.ASGITransport(app=create_app(again.app_context))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert (await http.get(f"/track/{token}/state")).status_code == 410
    finally:
        await again.close()
