"""Customer tracking links over HTTP: issue, revoke, 404/410, headers, rate limit, SSE scoping.

Handlers run through ``httpx.ASGITransport``; the streams run on a real uvicorn
(ASGITransport buffers whole responses) fed through the real gateway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from dispatcher_feed import links
from dispatcher_feed.app import create_app
from dispatcher_feed.context import AppContext
from gateway.bus import MemoryBus
from gateway.metrics import Metrics
from gateway.model import Fix, StatusUpdate
from gateway.service import Gateway
from gateway.settings import Secret, Settings
from gateway.store import MemoryStore
from tests.support.gateway import API_KEY, gateway_settings, running_gateway
from tests.support.procs import Mosquitto
from tests.support.sse import SseEvent, sse_events

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SITE = {"lat": 48.8566, "lon": 2.3522, "radius_m": 80}


@pytest.fixture
def ctx() -> AppContext:
    settings = Settings(api_keys=(Secret(API_KEY),), signing_key=Secret("signing-0123456789"))
    store, bus, metrics = MemoryStore(), MemoryBus(), Metrics()
    return AppContext(settings, store, bus, metrics, Gateway(store, bus, metrics))


@pytest.fixture
async def http(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def setup_fleet(http: httpx.AsyncClient, window_end: float) -> None:
    for tech, name, device in (("t1", "Alice Martin", "d1"), ("t2", "Bob Durand", "d2")):
        r = await http.put(
            f"/api/v1/technicians/{tech}", json={"name": name, "device_ids": [device]}, headers=AUTH
        )
        assert r.status_code == 200
    window = {"start": window_end - 7200, "end": window_end}
    for job_id, tech, seq in (("j0", "t1", 0), ("j1", "t1", 1), ("j2", "t2", 0)):
        body = {"technician_id": tech, "site": SITE, "window": window, "sequence": seq,
                "customer": {"name": f"Customer of {job_id}"}}  # fmt: skip
        assert (
            await http.put(f"/api/v1/jobs/{job_id}", json=body, headers=AUTH)
        ).status_code == 200


async def issue(http: httpx.AsyncClient, job_id: str, **body: Any) -> dict[str, Any]:
    r = await http.post(f"/api/v1/jobs/{job_id}/tracking-link", json=body or None, headers=AUTH)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def test_issue_returns_the_link_and_announces_it(
    ctx: AppContext, http: httpx.AsyncClient
) -> None:
    end = time.time() + 3600
    await setup_fleet(http, end)
    async with ctx.bus.subscribe(None, lambda e: e["type"] == "notify", 10) as sub:
        link = await issue(http, "j1")
        _, kind, data = sub.queue.get_nowait()
    assert link["url"] == f"http://127.0.0.1:8080/track/{link['token']}"
    assert link["expires_at"] == int(end + 7200)
    assert links.verify(["signing-0123456789"], link["token"], time.time()).job_id == "j1"
    event = orjson.loads(data)
    assert kind == "notify"
    assert {k: v for k, v in event.items() if k != "ts"} == {
        "type": "notify", "notification": "tracking_link", "job_id": "j1", "technician_id": "t1",
        "url": link["url"], "expires_at": link["expires_at"],
    }  # fmt: skip
    assert ctx.metrics.events.get("notify") == 1
    assert list(ctx.gateway.outbox) == [event]  # for fleet/out/notify


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "error"),
    [
        ("POST", "/api/v1/jobs/j1/tracking-link", {}, 401, "unauthorized"),
        ("DELETE", "/api/v1/jobs/j1/tracking-link", {}, 401, "unauthorized"),
        ("POST", "/api/v1/jobs/nope/tracking-link", AUTH, 404, "not_found"),
        ("DELETE", "/api/v1/jobs/nope/tracking-link", AUTH, 404, "not_found"),
        ("POST", "/api/v1/jobs/bad%20id/tracking-link", AUTH, 422, "invalid_request"),
    ],
)
async def test_issue_and_revoke_refusals(
    http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], status: int,
    error: str,
) -> None:  # fmt: skip
    await setup_fleet(http, time.time() + 3600)
    r = await http.request(method, path, headers=headers)
    assert (r.status_code, r.json()["error"]) == (status, error)


async def test_no_link_for_an_ended_job_nor_one_expiring_in_the_past(
    ctx: AppContext, http: httpx.AsyncClient
) -> None:
    await setup_fleet(http, time.time() + 3600)
    r = await http.post("/api/v1/jobs/j1/tracking-link", json={"expires_at": 1000}, headers=AUTH)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_request")
    await ctx.gateway.report_status(StatusUpdate("", time.time(), "j1", "cancelled"))
    r = await http.post("/api/v1/jobs/j1/tracking-link", headers=AUTH)
    assert (r.status_code, r.json()["error"]) == (409, "job_closed")


def closed_paths(token: str) -> list[str]:
    return [f"/track/{token}", f"/track/{token}/state", f"/track/{token}/events"]


async def assert_answers(http: httpx.AsyncClient, token: str, status: int) -> None:
    for path in closed_paths(token):
        r = await http.get(path)
        assert r.status_code == status, path
        body = r.text
        # No data: nothing about the job, its customer or its technician.
        for secret in ("j1", "Alice", "Customer", "48.85", "t1"):
            assert secret not in body, (path, secret)


async def test_forged_tampered_expired_revoked_and_ended_links(
    ctx: AppContext, http: httpx.AsyncClient
) -> None:
    await setup_fleet(http, time.time() + 3600)
    good = (await issue(http, "j1"))["token"]
    other = (await issue(http, "j2"))["token"]
    key = ctx.settings.signing_key.value
    now = time.time()
    forged = links.sign(["not-our-key"], "j1", now, now + 3600)
    spliced = other.rpartition(".")[0] + "." + good.rpartition(".")[2]
    for token in (forged, good[:-2] + ("AA" if good[-2:] != "AA" else "BB"), spliced, "x"):
        await assert_answers(http, token, 404)
    await assert_answers(http, links.sign([key], "j1", now - 7200, now - 1), 410)
    # The genuine links each open their own job and nothing else.
    state = (await http.get(f"/track/{good}/state")).json()
    assert (state["phase"], state["technician"], state["site"]["lat"]) == (
        "scheduled", {"first_name": "Alice"}, SITE["lat"]
    )  # fmt: skip
    assert "j1" not in str(state) and "Customer" not in str(state) and "t1" not in str(state)
    assert (await http.get(f"/track/{other}/state")).json()["technician"] == {"first_name": "Bob"}
    # Revocation closes every link of the job issued so far; a new one works.
    r = await http.delete("/api/v1/jobs/j1/tracking-link", headers=AUTH)
    assert (r.status_code, r.json()["revoked"]) == (200, True)
    await assert_answers(http, good, 410)
    assert (await http.get(f"/track/{other}/state")).status_code == 200
    fresh = (await issue(http, "j1"))["token"]
    assert (await http.get(f"/track/{fresh}/state")).status_code == 200
    # The job ending closes the link for good.
    await ctx.gateway.report_status(StatusUpdate("", time.time(), "j1", "on_site"))
    await ctx.gateway.report_status(StatusUpdate("", time.time() + 1, "j1", "done"))
    await assert_answers(http, fresh, 410)


def csp(headers: httpx.Headers) -> dict[str, str]:
    parts = (d.partition(" ") for d in headers["content-security-policy"].split("; "))
    return {name: value for name, _, value in parts}


async def test_track_pages_headers(ctx: AppContext, http: httpx.AsyncClient) -> None:
    await setup_fleet(http, time.time() + 3600)
    token = (await issue(http, "j1"))["token"]
    for path, status in ((f"/track/{token}", 200), (f"/track/{token}/state", 200),
                         ("/track/forged", 404), ("/track/forged/state", 404)):  # fmt: skip
        r = await http.get(path)
        assert r.status_code == status
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"
        policy = csp(r.headers)
        assert policy["default-src"] == policy["script-src"] == policy["style-src"] == "'self'"
        assert policy["img-src"] == "'self' data:"  # no third-party tiles for customers
        assert policy["connect-src"] == "'self'"
        assert policy["frame-ancestors"] == "'none'"
    page = (await http.get(f"/track/{token}")).text
    # Only same-origin assets: no scheme-qualified URL appears in the page at all.
    assert (
        "http://" not in page
        and "https://" not in page
        and "//" not in page.replace("<!doctype", "")
    )


async def test_public_endpoints_are_rate_limited_per_client(ctx: AppContext) -> None:
    app = create_app(ctx)
    one = httpx.ASGITransport(app=app, client=("192.0.2.1", 1000))
    two = httpx.ASGITransport(app=app, client=("192.0.2.2", 1000))
    async with httpx.AsyncClient(transport=one, base_url="http://testserver") as a:
        codes = [(await a.get("/track/forged")).status_code for _ in range(31)]
        limited = await a.get("/track/forged/state")
    assert codes == [404] * 30 + [429]
    assert limited.status_code == 429
    assert limited.json() == {"error": "rate_limited", "reason": limited.json()["reason"]}
    assert limited.json()["reason"] == "too many requests; retry in 1 s"
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["referrer-policy"] == "no-referrer"
    async with httpx.AsyncClient(transport=two, base_url="http://testserver") as b:
        assert (await b.get("/track/forged")).status_code == 404


# -- streams on a real server ------------------------------------------------------------------


async def read_until(
    events: AsyncIterator[SseEvent], stop: str | None = None, limit_s: float = 8.0
) -> list[SseEvent]:
    """Events until one of type ``stop`` (or the end of the stream)."""
    out: list[SseEvent] = []
    async with asyncio.timeout(limit_s):
        async for event in events:
            out.append(event)
            if event.event == stop:
                break
    return out


async def opened(response: httpx.Response) -> tuple[AsyncIterator[SseEvent], list[SseEvent]]:
    """The stream's events, once its first event proves the server has subscribed."""
    events = sse_events(response)
    return events, await read_until(events, stop="snapshot")


SHOWN_FIELD = {"snapshot": "phase", "status": "status", "eta": "eta", "notify": "notification",
               "end": "reason"}  # fmt: skip


def without_eta(shown: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Leave out what the gateway's own ETA model predicts (ETAs, "arriving soon")."""
    return [item for item in shown if item[0] != "eta" and item != ("notify", "arriving_soon")]


def status_ids(events: list[SseEvent]) -> list[str | None]:
    return [e.id for e in events if e.event == "status"]


def shown(events: list[SseEvent]) -> list[tuple[str, Any]]:
    """Each event as (type, the field that tells it apart)."""
    return [
        (
            e.event,
            (e.data["lat"], e.data["lon"])
            if e.event == "position"
            else e.data[SHOWN_FIELD[e.event]],
        )
        for e in events
    ]


async def test_customer_stream_carries_only_this_job(broker: Mosquitto, prefix: str) -> None:
    settings = gateway_settings(broker.url, prefix)
    async with (
        running_gateway(settings) as rt,
        httpx.AsyncClient(base_url=settings.base_url, timeout=10) as http,
    ):
        gw, t0 = rt.gateway, time.time()
        await setup_fleet(http, t0 + 3600)
        token = (await issue(http, "j1"))["token"]

        async def status(job_id: str, value: str, dt: float) -> None:
            await gw.report_status(StatusUpdate("", t0 + dt, job_id, value))

        async def fix(device: str, dt: float, lat: float) -> None:
            await gw.ingest_fixes([Fix(device, t0 + dt, lat, 2.3522, hdg=10.0, spd=8.0)])

        async def eta(job_id: str, value: float) -> None:
            tech = "t2" if job_id == "j2" else "t1"
            event = {"type": "eta", "ts": time.time(), "job_id": job_id, "technician_id": tech,
                     "eta": value, "eta_p90": value + 300, "delay_s": 0.0}  # fmt: skip
            await rt.bus.publish([event])

        async with http.stream("GET", f"/track/{token}/events") as stream:
            assert stream.headers["referrer-policy"] == "no-referrer"
            assert stream.headers["cache-control"] == "no-store"
            reader, events = await opened(stream)
            await fix("d1", 1, 48.80)  # t1 before anything
            await status("j0", "en_route", 2)  # t1 drives to another job first
            await fix("d1", 3, 48.81)
            await eta("j0", t0 + 600)
            await eta("j1", t0 + 1800)
            await status("j2", "en_route", 4)  # another technician, another job
            await fix("d2", 5, 48.82)
            await status("j0", "on_site", 6)
            await status("j0", "done", 7)
            await status("j1", "en_route", 8)
            await fix("d1", 9, 48.85)
            await fix("d2", 10, 48.86)
            await eta("j2", t0 + 900)
            await fix("d1", 11, 48.852)
            await status("j1", "on_site", 12)
            await fix("d1", 13, 48.8566)
            await status("j1", "done", 14)
            await fix("d1", 15, 48.857)
            events += await read_until(reader)  # the server ends the stream after "done"
        # The gateway's own ETA model may add ETAs of j1: legitimate, so judged apart.
        assert without_eta(shown(events)) == [
            ("snapshot", "scheduled"),
            ("status", "en_route"),
            ("position", (48.85, 2.3522)),
            ("position", (48.852, 2.3522)),
            ("status", "on_site"),
            ("notify", "arrived"),  # the gateway's customer notification on arrival
            ("status", "done"),
        ]
        etas = {e.data["eta"] for e in events if e.event == "eta"}
        assert t0 + 1800 in etas and not etas & {t0 + 600, t0 + 900}
        for event in events[1:]:
            assert set(event.data) <= {"type", "ts", "status", "phase", "eta", "eta_p90",
                                       "delay_s", "lat", "lon", "coarse", "hdg",
                                       "notification"}  # fmt: skip
        assert [e.data["phase"] for e in events if e.event == "status"] == [
            "en_route", "arrived", "done"
        ]  # fmt: skip
        assert (await http.get(f"/track/{token}")).status_code == 410


async def test_resume_replays_without_leaking_the_earlier_drive(
    broker: Mosquitto, prefix: str
) -> None:
    settings = gateway_settings(broker.url, prefix)
    async with (
        running_gateway(settings) as rt,
        httpx.AsyncClient(base_url=settings.base_url, timeout=10) as http,
    ):
        gw, t0 = rt.gateway, time.time()
        await setup_fleet(http, t0 + 3600)
        token = (await issue(http, "j1"))["token"]
        async with http.stream("GET", f"/track/{token}/events") as stream:
            reader, first = await opened(stream)
            await gw.report_status(StatusUpdate("", t0 + 1, "j0", "en_route"))
            await gw.ingest_fixes([Fix("d1", t0 + 2, 48.84, 2.35)])  # towards j0: not shown
            await gw.report_status(StatusUpdate("", t0 + 3, "j0", "cancelled"))
            await gw.report_status(StatusUpdate("", t0 + 4, "j1", "en_route"))
            first += await read_until(reader, stop="status")
        assert without_eta(shown(first)) == [("snapshot", "scheduled"), ("status", "en_route")]
        await gw.ingest_fixes([Fix("d1", t0 + 5, 48.85, 2.35)])
        # Resume from before the drive to j0 began: the replay must skip it. An id from
        # before the bus began cannot be replayed in full: the state comes first.
        resume = {"Last-Event-ID": "1-0"}
        async with http.stream("GET", f"/track/{token}/events", headers=resume) as stream:
            replay = await read_until(sse_events(stream), stop="position")
        assert without_eta(shown(replay)) == [
            ("snapshot", "en_route"), ("status", "en_route"), ("position", (48.85, 2.35)),
        ]  # fmt: skip
        assert status_ids(replay)[0] == status_ids(first)[0]
        # From an id the bus still covers: the replay alone.
        resume = {"Last-Event-ID": status_ids(first)[0] or ""}
        async with http.stream("GET", f"/track/{token}/events", headers=resume) as stream:
            replay = await read_until(sse_events(stream), stop="position")
        assert without_eta(shown(replay)) == [("position", (48.85, 2.35))]


@pytest.mark.parametrize("how", ["expired", "revoked"])
async def test_open_stream_ends_on_expiry_or_revocation(
    broker: Mosquitto, prefix: str, how: str
) -> None:
    settings = gateway_settings(broker.url, prefix)
    async with (
        running_gateway(settings) as rt,
        httpx.AsyncClient(base_url=settings.base_url, timeout=10) as http,
    ):
        await setup_fleet(http, time.time() + 3600)
        now = time.time()
        if how == "expired":
            token = links.sign([settings.signing_key.value], "j1", now, now + 3)
        else:
            token = (await issue(http, "j1"))["token"]
        async with http.stream("GET", f"/track/{token}/events") as stream:
            reader, events = await opened(stream)
            if how == "revoked":
                r = await http.delete("/api/v1/jobs/j1/tracking-link", headers=AUTH)
                assert r.status_code == 200
            events += await read_until(reader, limit_s=6.0)
        assert without_eta(shown(events)) == [("snapshot", "scheduled"), ("end", how)]
        assert rt.metrics.sse_clients.read() == 0


async def test_a_customer_cut_off_for_falling_behind_resumes_without_loss(
    broker: Mosquitto, prefix: str
) -> None:
    settings = gateway_settings(broker.url, prefix, sse_queue_size=3)
    async with (
        running_gateway(settings) as rt,
        httpx.AsyncClient(base_url=settings.base_url, timeout=10) as http,
    ):
        await setup_fleet(http, time.time() + 3600)
        token = (await issue(http, "j1"))["token"]
        burst = [
            {"type": "eta", "ts": time.time(), "job_id": "j1", "technician_id": "t1",
             "eta": 1000.0 + i, "eta_p90": None, "delay_s": None}
            for i in range(7)
        ]  # fmt: skip
        async with http.stream("GET", f"/track/{token}/events") as stream:
            reader, _ = await opened(stream)
            await rt.bus.publish(burst)  # seven events into a queue of three
            batches = [await read_until(reader)]  # what was queued, then the cut
        # Each resume replays into a queue of three again: three, then the last one.
        for stop in (None, "eta"):
            resume = {"Last-Event-ID": str(batches[-1][-1].id)}
            async with http.stream("GET", f"/track/{token}/events", headers=resume) as stream:
                batches.append(await read_until(sse_events(stream), stop=stop))
        assert [[e.data["eta"] - 1000 for e in b] for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
