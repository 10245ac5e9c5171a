"""The ``/api/v1`` REST handlers through ASGI: auth, technicians, jobs, positions, errors."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from dispatcher_feed.app import create_app
from dispatcher_feed.context import AppContext
from gateway.bus import MemoryBus
from gateway.metrics import Metrics
from gateway.model import Event
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.store import MemoryStore

# -- auth ---------------------------------------------------------------------------------

ENDPOINTS: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/technicians", None),
    ("GET", "/api/v1/technicians/t1", None),
    ("PUT", "/api/v1/technicians/t1", {"name": "Ann"}),
    ("PUT", "/api/v1/technicians/t1", {"bogus": True}),  # auth before validation
    ("GET", "/api/v1/jobs", None),
    ("PUT", "/api/v1/jobs/j1", {"site": {"lat": 60, "lon": 24}}),
    ("GET", "/api/v1/jobs/j1", None),
    ("POST", "/api/v1/jobs/j1/status", {"status": "cancelled"}),
    ("POST", "/api/v1/positions", {"device_id": "d", "positions": [{}]}),
    ("GET", "/api/v1/devices/d/positions", None),
    ("GET", "/api/v1/alerts", None),
]
BAD_CREDENTIALS: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dW5pdC10ZXN0LWtleQ=="},
    {"Authorization": "unit-test-key"},
    {"Cookie": "fieldtrack_session=forged.cookie.value"},
]


@pytest.mark.parametrize(
    ("method", "path", "body"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS]
)
@pytest.mark.parametrize("headers", BAD_CREDENTIALS, ids=[str(h) for h in BAD_CREDENTIALS])
async def test_api_refuses_without_a_valid_key(
    client: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    r = await client.request(method, path, json=body, headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {
        "error": "unauthorized",
        "reason": "missing or wrong API key (Authorization: Bearer <key>)",
    }


async def test_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient, api_key: str) -> None:
    r = await client.get("/api/v1/technicians", headers={"Authorization": f"bearer {api_key}"})
    assert (r.status_code, r.json()) == (200, [])


async def test_a_blank_configured_key_does_not_open_the_api() -> None:
    settings = Settings.from_env({"FIELDTRACK_API_KEY": "k1, "})
    store, bus, metrics = MemoryStore(), MemoryBus(), Metrics()
    app = create_app(AppContext(settings, store, bus, metrics, Gateway(store, bus, metrics)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (
            await http.get("/api/v1/technicians", headers={"Authorization": "Bearer"})
        ).status_code == 401
        assert (
            await http.get("/api/v1/technicians", headers={"Authorization": "Bearer k1"})
        ).status_code == 200


# -- technicians ----------------------------------------------------------------------------


def idle(
    tech: str, name: str, devices: list[str], skills: list[str] | None = None
) -> dict[str, Any]:
    return {
        "technician_id": tech, "name": name, "device_ids": devices, "skills": skills or [],
        "position": None, "status": "idle", "job_id": None, "eta": None,
    }  # fmt: skip


async def test_put_and_get_technicians(api: httpx.AsyncClient) -> None:
    r = await api.put(
        "/api/v1/technicians/t2", json={"name": "Bo", "device_ids": ["d2"], "skills": ["gas"]}
    )
    assert (r.status_code, r.json()) == (200, idle("t2", "Bo", ["d2"], ["gas"]))
    await api.put("/api/v1/technicians/t1", json={"name": "Ann"})
    r = await api.get("/api/v1/technicians")
    assert r.json() == [idle("t1", "Ann", []), idle("t2", "Bo", ["d2"], ["gas"])]
    assert (await api.get("/api/v1/technicians/t2")).json() == idle("t2", "Bo", ["d2"], ["gas"])
    r = await api.put("/api/v1/technicians/t2", json={"name": "Bo B.", "device_ids": ["d3"]})
    assert r.json() == idle("t2", "Bo B.", ["d3"])


async def test_unknown_technician_is_404(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/technicians/nobody")
    assert (r.status_code, r.json()) == (
        404,
        {"error": "not_found", "reason": "no technician 'nobody'"},
    )


async def test_technician_shows_the_newest_fix_of_their_devices(api: httpx.AsyncClient) -> None:
    await api.put("/api/v1/technicians/t1", json={"name": "Ann", "device_ids": ["d1", "d2"]})
    now = time.time()
    await api.post("/api/v1/positions", json={"device_id": "d1", "positions": [fix(now - 5)]})
    await api.post(
        "/api/v1/positions", json={"device_id": "d2", "positions": [fix(now - 50, spd=2)]}
    )
    position = (await api.get("/api/v1/technicians/t1")).json()["position"]
    assert position == {"device_id": "d1", "ts": now - 5, "lat": 60.17, "lon": 24.94}


TECH, JOB, POS = "/api/v1/technicians/t1", "/api/v1/jobs/j1", "/api/v1/positions"
HISTORY = "/api/v1/devices/d1/positions"
PATTERN = "String should match pattern '^[A-Za-z0-9_.:-]{1,64}$'"
SITE = {"lat": 60, "lon": 24}
STATES = "'en_route', 'on_site', 'paused', 'resumed', 'done', 'cancelled' or 'failed'"
VALIDATION: list[tuple[str, str, Any, str]] = [
    ("PUT", TECH, {}, "name: Field required"),
    ("PUT", TECH, {"name": ""}, "name: String should have at least 1 character"),
    ("PUT", TECH, {"name": "A", "extra": 1}, "extra: Extra inputs are not permitted"),
    ("PUT", TECH, {"name": "A", "device_ids": ["bad id"]}, f"device_ids.0: {PATTERN}"),
    ("PUT", "/api/v1/technicians/bad%20id", {"name": "A"}, f"path.technician_id: {PATTERN}"),
    ("PUT", JOB, {"site": {"lat": 91, "lon": 24}},
     "site.lat: Input should be less than or equal to 90"),
    ("PUT", JOB, {"site": {"lat": 0, "lon": 0}},
     "site: Value error, site at lat=0, lon=0 is almost certainly a missing location"),
    ("PUT", JOB, {"site": SITE, "window": {"start": 10, "end": 5}},
     "window: Value error, window.end is before window.start"),
    ("PUT", JOB, {"site": SITE, "window": {"start": 10, "end": 1e300}},
     "window.end: Input should be less than or equal to 4102444800"),
    ("PUT", JOB, {"site": SITE, "priority": "asap"},
     "priority: Input should be 'normal' or 'urgent'"),
    ("POST", f"{JOB}/status", {"status": "planned"}, f"status: Input should be {STATES}"),
    ("POST", f"{JOB}/status", {"status": "en_route", "ts": 100},
     "ts: Input should be greater than or equal to 946684800"),
    ("POST", POS, {"device_id": "d1", "positions": []},
     "positions: List should have at least 1 item after validation, not 0"),
    ("POST", POS, {"positions": [{}]}, "device_id: Field required"),
    ("GET", f"{HISTORY}?limit=0", None, "query.limit: Input should be greater than or equal to 1"),
    ("GET", f"{HISTORY}?since=yesterday", None,
     "query.since: Input should be a valid number, unable to parse string as a number"),
    ("GET", f"{HISTORY}?since=nan", None, "query.since: Input should be a finite number"),
    ("GET", "/api/v1/kpis?until=inf", None, "query.until: Input should be a finite number"),
    ("GET", "/api/v1/feed?technician_id=bad%20id", None, f"query.technician_id: {PATTERN}"),
    ("GET", "/api/v1/kpis?technician_id=bad%20id", None, f"query.technician_id: {PATTERN}"),
    ("GET", "/api/v1/jobs?technician_id=bad%20id", None, f"query.technician_id: {PATTERN}"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "reason"), VALIDATION, ids=[v[3][:40] for v in VALIDATION]
)
async def test_validation_errors_are_422_json_with_a_reason(
    api: httpx.AsyncClient, method: str, path: str, body: Any, reason: str
) -> None:
    r = await api.request(method, path, json=body)
    assert r.status_code == 422
    got = r.json()
    assert (got["error"], got["reason"]) == ("invalid_request", reason)
    assert got["detail"][0]["msg"] in reason


async def test_history_until_before_since_is_422_as_for_kpis(api: httpx.AsyncClient) -> None:
    r = await api.get(HISTORY, params={"since": 10, "until": 5})
    assert (r.status_code, r.json()) == (
        422, {"error": "invalid_request", "reason": "until must not be before since"},
    )  # fmt: skip


async def test_body_that_is_not_json_is_422(api: httpx.AsyncClient) -> None:
    r = await api.put(
        "/api/v1/technicians/t1", content=b"{name", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request"
    assert r.json()["reason"].startswith("1: JSON decode error")


# -- jobs ---------------------------------------------------------------------------------

JOB_BODY = {
    "technician_id": "t1",
    "site": {"lat": 60.2, "lon": 24.9, "radius_m": 80},
    "window": {"start": 1_700_000_000, "end": 1_700_003_600},
    "planned_duration_s": 2700,
    "sequence": 2,
    "customer": {"name": "Oy Ab"},
}
JOB_VIEW = {
    "job_id": "j1", "technician_id": "t1", "site": {"lat": 60.2, "lon": 24.9, "radius_m": 80.0},
    "window": {"start": 1_700_000_000.0, "end": 1_700_003_600.0}, "planned_duration_s": 2700.0,
    "sequence": 2, "customer": {"name": "Oy Ab", "ref": None}, "priority": "normal",
    "state": "planned", "history": [], "eta": None, "eta_p90": None, "delay_s": None,
    "notified": [], "follow_up_of": None,
}  # fmt: skip


async def test_put_and_get_job(api: httpx.AsyncClient) -> None:
    r = await api.put("/api/v1/jobs/j1", json=JOB_BODY)
    assert (r.status_code, r.json()) == (200, JOB_VIEW)
    assert (await api.get("/api/v1/jobs/j1")).json() == JOB_VIEW
    minimal = (await api.put("/api/v1/jobs/j2", json={"site": {"lat": 1, "lon": 2}})).json()
    assert (minimal["technician_id"], minimal["window"], minimal["site"]["radius_m"]) == (
        None,
        None,
        100.0,
    )
    r = await api.get("/api/v1/jobs/j9")
    assert (r.status_code, r.json()) == (404, {"error": "not_found", "reason": "no job 'j9'"})


async def test_a_site_that_cannot_be_a_fence_is_422_and_not_stored(
    api: httpx.AsyncClient,
) -> None:
    # Valid latitude, but its automatic site fence cannot be built that close to a pole.
    for site in ({"lat": 88, "lon": 24}, {"lat": 84.99, "lon": 24, "radius_m": 5000}):
        r = await api.put("/api/v1/jobs/polar", json={**JOB_BODY, "site": site})
        assert r.status_code == 422
        assert r.json() == {
            "error": "invalid_site",
            "reason": "site: fence too close to a pole (|lat| > 85)",
        }
    assert (await api.get("/api/v1/jobs/polar")).status_code == 404
    assert (await api.get("/api/v1/geofences")).status_code == 200


async def test_jobs_list_and_tour_order(api: httpx.AsyncClient) -> None:
    for job_id, tech, seq in [("j1", "t1", 3), ("j2", "t1", 1), ("j3", "t2", 0), ("j4", "t1", 2)]:
        await api.put(
            f"/api/v1/jobs/{job_id}", json={**JOB_BODY, "technician_id": tech, "sequence": seq}
        )
    assert [j["job_id"] for j in (await api.get("/api/v1/jobs")).json()] == ["j1", "j2", "j3", "j4"]
    tour = (await api.get("/api/v1/jobs", params={"technician_id": "t1"})).json()
    assert [j["job_id"] for j in tour] == ["j2", "j4", "j1"]


async def test_jobs_closed_before_closed_since_are_left_out(api: httpx.AsyncClient) -> None:
    now = time.time()
    for job_id in ("j1", "j2", "j3", "j4"):
        await api.put(f"/api/v1/jobs/{job_id}", json={**JOB_BODY, "technician_id": "t1"})
    changes = [("j1", now - 7300, "on_site"), ("j1", now - 7200, "done"),
               ("j2", now - 60, "cancelled"), ("j3", now - 7200, "en_route")]  # fmt: skip
    for job_id, ts, status in changes:
        r = await api.post(f"/api/v1/jobs/{job_id}/status", json={"status": status, "ts": ts})
        assert r.status_code == 200
    since = {"closed_since": now - 3600}
    recent = (await api.get("/api/v1/jobs", params=since)).json()
    assert [j["job_id"] for j in recent] == ["j2", "j3", "j4"]  # j1 closed two hours ago
    tour = (await api.get("/api/v1/jobs", params={**since, "technician_id": "t1"})).json()
    assert [j["job_id"] for j in tour] == ["j2", "j3", "j4"]
    assert len((await api.get("/api/v1/jobs")).json()) == 4
    r = await api.get("/api/v1/jobs", params={"closed_since": "nan"})
    assert r.status_code == 422


async def test_alerts_lists_those_standing_oldest_first(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    def alert(name: str, tech: str, job: str, ts: float, cleared: bool = False) -> Event:
        event: Event = {"type": "alert", "alert": name, "severity": "warning", "ts": ts,
                        "technician_id": tech, "job_id": job, "eta": 1.7e9}  # fmt: skip
        return {**event, "cleared": True} if cleared else event

    await ctx.store.put_alerts([
        alert("late_risk", "t1", "j2", 20.0), alert("overrun", "t1", "j1", 10.0),
        alert("late_risk", "t2", "j3", 30.0), alert("stale_device", "t2", "j3", 40.0),
        alert("stale_device", "t2", "j3", 50.0, cleared=True),
    ])  # fmt: skip
    listed = (await api.get("/api/v1/alerts")).json()
    assert [(a["alert"], a["job_id"], a["ts"]) for a in listed] == [
        ("overrun", "j1", 10.0), ("late_risk", "j2", 20.0), ("late_risk", "j3", 30.0),
    ]  # fmt: skip
    assert listed[0] == alert("overrun", "t1", "j1", 10.0)  # the event as raised
    by_tech = (await api.get("/api/v1/alerts", params={"technician_id": "t1"})).json()
    assert [a["job_id"] for a in by_tech] == ["j1", "j2"]
    by_job = (await api.get("/api/v1/alerts", params={"job_id": "j3"})).json()
    assert [a["alert"] for a in by_job] == ["late_risk"]
    r = await api.get("/api/v1/alerts", params={"technician_id": "no spaces"})
    assert r.status_code == 422


async def test_job_status_history(api: httpx.AsyncClient) -> None:
    await api.put("/api/v1/technicians/t1", json={"name": "Ann", "device_ids": ["d1"]})
    await api.put("/api/v1/jobs/j1", json=JOB_BODY)
    r = await api.post("/api/v1/jobs/j1/status", json={"status": "en_route", "ts": 1_700_000_100})
    assert r.json()["state"] == "en_route"
    r = await api.post(
        "/api/v1/jobs/j1/status", json={"status": "on_site", "ts": 1_700_000_200, "note": "gate"}
    )
    assert (await api.get("/api/v1/jobs/j1")).json()["history"] == [
        {"ts": 1_700_000_100.0, "status": "en_route", "previous": "planned", "source": "api"},
        {
            "ts": 1_700_000_200.0,
            "status": "on_site",
            "previous": "en_route",
            "source": "api",
            "note": "gate",
        },
    ]
    tech = (await api.get("/api/v1/technicians/t1")).json()
    assert (tech["status"], tech["job_id"]) == ("on_site", "j1")
    # Re-sending the job keeps its live state and history.
    again = (await api.put("/api/v1/jobs/j1", json={**JOB_BODY, "sequence": 5})).json()
    assert (again["state"], len(again["history"]), again["sequence"]) == ("on_site", 2, 5)


@pytest.mark.parametrize(
    ("setup", "body", "status", "error"),
    [
        ([], {"status": "en_route"}, 404, "unknown_job"),
        ([{"status": "done", "ts": 1_700_000_000}], {"status": "en_route"}, 404, "unknown_job"),
        ([None], {"status": "done"}, 409, "bad_transition"),
        ([None, {"status": "en_route", "ts": 1_700_000_500}],
         {"status": "on_site", "ts": 1_700_000_400}, 409, "stale_status"),
        # From the future (it would lock the job until then) or before 2000: as over MQTT.
        ([None], {"status": "en_route", "ts": time.time() + 86_400}, 422, "future_ts"),
    ],
)  # fmt: skip
async def test_refused_status_changes(
    api: httpx.AsyncClient, setup: list[Any], body: dict[str, Any], status: int, error: str
) -> None:
    for step in setup:
        if step is None:
            await api.put("/api/v1/jobs/j1", json=JOB_BODY)
        else:
            await api.post("/api/v1/jobs/j1/status", json=step)
    r = await api.post("/api/v1/jobs/j1/status", json=body)
    assert (r.status_code, r.json()["error"]) == (status, error)
    assert r.json()["reason"].startswith(error + ": ")


# -- positions ------------------------------------------------------------------------------


def fix(ts: float, **extra: Any) -> dict[str, Any]:
    return {"ts": ts, "lat": 60.17, "lon": 24.94, **extra}


async def test_post_positions_keeps_the_good_ones(api: httpx.AsyncClient, ctx: AppContext) -> None:
    now = time.time()
    body = {
        "device_id": "d1",
        "positions": [fix(now - 20), fix(now - 10, lat=95), "x", fix(now - 5)],
    }
    r = await api.post("/api/v1/positions", json=body)
    assert (r.status_code, r.json()) == (200, {
        "accepted": 2, "duplicates": 0, "late": 0,
        "rejected": ["lat_out_of_range: lat=95.0",
                     "not_an_object: expected a position object, got str"],
    })  # fmt: skip
    assert ctx.metrics.rejected.get("lat_out_of_range") == 1
    assert ctx.metrics.positions.get() == 2
    r = await api.post(
        "/api/v1/positions", json={"device_id": "d1", "positions": [fix(now - 5), fix(now - 30)]}
    )
    assert r.json() == {"accepted": 1, "duplicates": 1, "late": 1, "rejected": []}


async def test_post_positions_all_bad_is_422(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/api/v1/positions", json={"device_id": "d1", "positions": [fix(time.time(), lat=0, lon=0)]}
    )
    assert r.status_code == 422
    assert r.json() == {
        "accepted": 0, "duplicates": 0, "late": 0,
        "rejected": ["null_island: lat=0, lon=0 is a tracker without a fix"],
        "error": "invalid_positions",
        "reason": "null_island: lat=0, lon=0 is a tracker without a fix",
    }  # fmt: skip
    r = await api.post("/api/v1/positions", json={"device_id": "d1", "positions": [{"lat": 1}, 7]})
    assert (r.status_code, r.json()["reason"]) == (
        422,
        "2 of 2 fixes rejected; first: missing_field: ts",
    )


async def test_batch_of_1001_positions_is_422(api: httpx.AsyncClient) -> None:
    now = time.time()
    body = {"device_id": "d1", "positions": [fix(now - i) for i in range(1001)]}
    r = await api.post("/api/v1/positions", json=body)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_request")
    assert r.json()["reason"].startswith("positions: List should have at most 1000 items")


async def test_device_positions_history(api: httpx.AsyncClient) -> None:
    base = float(int(time.time()) - 1000)
    stamps = [base + i * 10 for i in range(10)]
    body = {
        "device_id": "d1",
        "positions": [fix(ts, seq=i) for i, ts in enumerate(reversed(stamps))],
    }
    assert (await api.post("/api/v1/positions", json=body)).json()["accepted"] == 10

    async def window(**params: float) -> list[float]:
        r = await api.get("/api/v1/devices/d1/positions", params=params)
        assert r.status_code == 200
        return [p["ts"] for p in r.json()]

    assert await window() == stamps
    assert await window(since=base + 20, until=base + 50) == stamps[2:6]
    assert await window(since=base + 25, limit=2) == stamps[3:5]
    assert await window(limit=1) == stamps[:1]
    assert await window(until=base - 1) == []
    first = (await api.get("/api/v1/devices/d1/positions", params={"limit": 1})).json()
    assert first == [{"ts": base, "lat": 60.17, "lon": 24.94, "seq": 9}]
    assert (await api.get("/api/v1/devices/nobody/positions")).json() == []
