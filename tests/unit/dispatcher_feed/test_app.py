"""Public endpoints of the app: health, metrics, OsmAnd / Traccar, session, pages, errors."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from dispatcher_feed.app import create_app
from dispatcher_feed.auth import COOKIE
from dispatcher_feed.context import AppContext

CONTRACT_METRICS = [
    "fieldtrack_positions_total",
    "fieldtrack_rejected_total",
    "fieldtrack_duplicates_total",
    "fieldtrack_events_total",
    "fieldtrack_pipeline_seconds",
    "fieldtrack_sse_clients",
]
KNOT = 1852.0 / 3600.0


async def history(api: httpx.AsyncClient, device: str) -> list[dict[str, Any]]:
    r = await api.get(f"/api/v1/devices/{device}/positions")
    assert r.status_code == 200
    fixes: list[dict[str, Any]] = r.json()
    return fixes


# -- health and metrics -----------------------------------------------------------------------


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(("ready", "status"), [(True, 200), (False, 503)])
async def test_readyz(ctx: AppContext, ready: bool, status: int) -> None:
    async def probe() -> bool:
        return ready

    ctx.ready = probe
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        r = await http.get("/readyz")
    assert (r.status_code, r.json()) == (status, {"ready": ready})


async def test_metrics_has_every_contract_name(
    client: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    fixes = [{"ts": time.time() - 1, "lat": 60.1, "lon": 24.9}, {"ts": 1, "lat": 1, "lon": 1}]
    await api.post("/api/v1/positions", json={"device_id": "d1", "positions": fixes})
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    for name in CONTRACT_METRICS:
        assert f"# TYPE {name} " in r.text
    lines = r.text.splitlines()
    assert "fieldtrack_positions_total 1" in lines
    assert 'fieldtrack_rejected_total{reason="bad_ts"} 1' in lines
    assert 'fieldtrack_events_total{type="position"} 1' in lines
    assert "fieldtrack_sse_clients 0" in lines


# -- OsmAnd / Traccar Client ------------------------------------------------------------------

QUERY = {"id": "phone-1", "lat": "60.17", "lon": "24.94", "timestamp": "1700000000",
         "speed": "10", "bearing": "90", "altitude": "12", "accuracy": "5",
         "batt": "77"}  # fmt: skip
STORED = {"ts": 1_700_000_000.0, "lat": 60.17, "lon": 24.94, "spd": 10 * KNOT, "hdg": 90.0,
          "acc": 5.0, "alt": 12.0, "bat": 77.0}  # fmt: skip


async def test_osmand_get(client: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    r = await client.get("/osmand", params=QUERY)
    assert (r.status_code, r.json()) == (200, {"accepted": 1, "duplicates": 0})
    assert await history(api, "phone-1") == [STORED]
    r = await client.get("/osmand", params=QUERY)
    assert r.json() == {"accepted": 0, "duplicates": 1}


async def test_osmand_without_timestamp_is_the_time_of_receipt(
    client: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    before = time.time()
    r = await client.get("/osmand", params={"deviceid": "phone-1", "location": "60.17,24.94"})
    after = time.time()
    assert r.status_code == 200
    [stored] = await history(api, "phone-1")
    assert before <= stored["ts"] <= after


async def test_osmand_post_with_the_query_in_the_url(
    client: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    # Traccar Client's default: POST, parameters in the URL, empty body.
    r = await client.post("/osmand", params=QUERY)
    assert (r.status_code, r.json()) == (200, {"accepted": 1, "duplicates": 0})
    assert await history(api, "phone-1") == [STORED]


async def test_osmand_post_form(client: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    r = await client.post("/osmand", data=QUERY)
    assert (r.status_code, r.json()) == (200, {"accepted": 1, "duplicates": 0})
    assert await history(api, "phone-1") == [STORED]


TRACCAR_9 = {
    "device_id": "phone-9",
    "location": {
        "timestamp": "2023-11-14T22:13:20.000Z",
        "coords": {"latitude": 60.17, "longitude": 24.94, "speed": 4.5, "heading": 180,
                   "accuracy": 6, "altitude": 22},
        "battery": {"level": 0.85, "is_charging": False},
        "is_moving": True,
    },
}  # fmt: skip


async def test_osmand_post_traccar_9_json(
    client: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    r = await client.post("/osmand", json=TRACCAR_9)
    assert (r.status_code, r.json()) == (200, {"accepted": 1, "duplicates": 0})
    assert await history(api, "phone-9") == [
        {"ts": 1_700_000_000.0, "lat": 60.17, "lon": 24.94, "spd": 4.5, "hdg": 180.0,
         "acc": 6.0, "alt": 22.0, "bat": 85.0},
    ]  # fmt: skip


NO_COORDS = "missing_field: lat and lon (or location=lat,lon)"
BAD_ID = "bad_id: id must be 1-64 chars of [A-Za-z0-9_.:-]"
NULL_ISLAND = "null_island: lat=0, lon=0 is a tracker without a fix"
AS_JSON = {"content-type": "application/json"}
OSMAND_400: list[tuple[str, dict[str, Any], str]] = [
    ("GET", {"params": {"lat": "60.1", "lon": "24.9"}}, "missing_field: id"),
    ("GET", {"params": {"id": "p1"}}, NO_COORDS),
    ("GET", {"params": {"id": "p 1", "lat": "1", "lon": "1"}}, BAD_ID),
    ("GET", {"params": {"id": "p1", "lat": "0", "lon": "0"}}, NULL_ISLAND),
    ("GET", {"params": {"id": "p1", "lat": "1", "lon": "1", "timestamp": "soon"}},
     "bad_ts: unreadable timestamp 'soon'"),
    ("POST", {"json": {"location": TRACCAR_9["location"]}}, "missing_field: device_id"),
    ("POST", {"json": [TRACCAR_9]}, "not_an_object: expected an object, got list"),
    ("POST", {"content": b"{oops", "headers": AS_JSON}, "bad_encoding"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "kwargs", "reason"), OSMAND_400, ids=[o[2][:30] for o in OSMAND_400]
)
async def test_osmand_refusals_are_400_json(
    client: httpx.AsyncClient, ctx: AppContext, method: str, kwargs: dict[str, Any], reason: str
) -> None:
    r = await client.request(method, "/osmand", **kwargs)
    assert r.status_code == 400
    body = r.json()
    assert body["reason"].startswith(reason)
    assert body["error"] == reason.partition(":")[0]
    assert ctx.metrics.rejected.get(body["error"]) == 1


async def test_osmand_post_form_without_id_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/osmand", data={"lat": "60.1", "lon": "24.9"})
    assert (r.status_code, r.json()) == (
        400,
        {"error": "missing_field", "reason": "missing_field: id"},
    )


# -- the browser session ------------------------------------------------------------------------


async def test_session_cookie_flow(client: httpx.AsyncClient, api_key: str) -> None:
    assert (await client.get("/api/v1/technicians")).status_code == 401
    r = await client.post("/session", json={"api_key": api_key})
    assert (r.status_code, r.json()) == (200, {"ok": True})
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("fieldtrack_session=")
    assert api_key not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    r = await client.get("/api/v1/technicians")
    assert (r.status_code, r.json()) == (200, [])
    assert (await client.delete("/session")).status_code == 200
    assert (await client.get("/api/v1/technicians")).status_code == 401


async def test_signing_out_ends_the_session_for_a_copy_of_the_cookie_too(
    client: httpx.AsyncClient, api_key: str
) -> None:
    """Sessions are signed, not stored; signing out stores the session's id as revoked."""
    first = (await client.post("/session", json={"api_key": api_key})).cookies[COOKIE]
    second = (await client.post("/session", json={"api_key": api_key})).cookies[COOKIE]
    client.cookies.clear()

    def as_cookie(value: str) -> dict[str, str]:
        return {"Cookie": f"{COOKIE}={value}"}

    assert first != second  # each sign-in is its own session
    for cookie in (first, second):
        r = await client.get("/api/v1/technicians", headers=as_cookie(cookie))
        assert r.status_code == 200
    await client.delete("/session", headers=as_cookie(first))
    # The copy of the signed-out cookie (another tab, a stolen one) is refused, and the map
    # says signed out; the other session is untouched.
    r = await client.get("/api/v1/technicians", headers=as_cookie(first))
    assert r.status_code == 401
    assert (await client.get("/map/config.json", headers=as_cookie(first))).json()[
        "signed_in"
    ] is False
    r = await client.get("/api/v1/technicians", headers=as_cookie(second))
    assert r.status_code == 200
    assert (await client.get("/map/config.json", headers=as_cookie(second))).json()["signed_in"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [({"api_key": "wrong"}, 401, "unauthorized"), ({"api_key": ""}, 422, "invalid_request"),
     ({}, 422, "invalid_request")],
)  # fmt: skip
async def test_session_refuses_a_wrong_key(
    client: httpx.AsyncClient, body: dict[str, str], status: int, error: str
) -> None:
    r = await client.post("/session", json=body)
    assert (r.status_code, r.json()["error"]) == (status, error)
    assert "set-cookie" not in r.headers
    assert (await client.get("/api/v1/technicians")).status_code == 401


# -- pages and errors --------------------------------------------------------------------------


async def test_dispatcher_page(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    assert "<html" in r.text.lower()


@pytest.mark.parametrize(
    ("name", "status", "media"),
    [("dispatcher.js", 200, "text/javascript"), ("dispatcher.css", 200, "text/css"),
     ("index.html", 404, None), ("nope.js", 404, None), (".hidden.js", 404, None),
     ("..%2Fapp.py", 404, None)],
)  # fmt: skip
async def test_static_files(
    client: httpx.AsyncClient, name: str, status: int, media: str | None
) -> None:
    r = await client.get(f"/static/{name}")
    assert r.status_code == status
    if media is None:
        assert r.json()["error"] == "not_found"
    else:
        assert r.headers["content-type"].startswith(media)


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/nowhere")
    assert (r.status_code, r.json()) == (404, {"error": "not_found", "reason": "Not Found"})
    r = await client.delete("/healthz")
    assert (r.status_code, r.json()) == (
        405,
        {"error": "method_not_allowed", "reason": "Method Not Allowed"},
    )
    assert r.headers["allow"] == "GET"
    # Every method of the path, though FastAPI makes one route per method.
    r = await client.post("/api/v1/geofences/g1")
    assert (r.status_code, r.headers["allow"]) == (405, "DELETE, GET, PUT")


async def test_openapi_lists_the_contract_paths_with_unique_operation_ids(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/openapi.json")
    paths = r.json()["paths"]
    for path in ("/api/v1/technicians/{technician_id}", "/api/v1/technicians",
                 "/api/v1/jobs/{job_id}", "/api/v1/positions",
                 "/api/v1/devices/{device_id}/positions", "/api/v1/feed", "/osmand"):  # fmt: skip
        assert path in paths
    ids = [op["operationId"] for methods in paths.values() for op in methods.values()]
    assert sorted(ids) == sorted(set(ids))
    # Errors are documented as what the API answers ({error, reason, detail}), not as
    # FastAPI's default validation error.
    schemas = r.json()["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ErrorOut" in schemas
    put_job = paths["/api/v1/jobs/{job_id}"]["put"]["responses"]
    for status in ("401", "404", "409", "422"):
        ref = put_job[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/ErrorOut"
    osmand = {p["name"] for p in paths["/osmand"]["get"]["parameters"]}
    assert {"id", "lat", "lon", "timestamp", "speed"} <= osmand
