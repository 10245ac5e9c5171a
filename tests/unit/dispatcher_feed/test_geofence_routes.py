"""``/api/v1/geofences`` through ASGI: shapes in and back, reasons for bad GeoJSON, job sites."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from dispatcher_feed.context import AppContext

SQUARE = [[24.9, 60.1], [24.91, 60.1], [24.91, 60.11], [24.9, 60.11], [24.9, 60.1]]
HOLE = [[24.903, 60.103], [24.906, 60.103], [24.906, 60.106], [24.903, 60.106], [24.903, 60.103]]
TRIANGLE = [[25.0, 60.0], [25.01, 60.0], [25.01, 60.01], [25.0, 60.0]]
LINE = [[24.9, 60.1], [24.95, 60.12]]
BOWTIE = [[24, 60], [25, 61], [25, 60], [24, 61], [24, 60]]
POLAR = [[24.9, 95], *SQUARE[1:4], [24.9, 95]]


def feature(geometry: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


GOOD: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "polygon",
        feature({"type": "Polygon", "coordinates": [SQUARE]}, kind="depot", dwell_s=300),
        {"kind": "depot", "dwell_s": 300.0},
    ),
    (
        "multi-with-hole",
        feature({"type": "MultiPolygon", "coordinates": [[SQUARE, HOLE], [TRIANGLE]]}),
        {"kind": "zone"},
    ),
    (
        "circle",
        feature({"type": "Point", "coordinates": [24.94, 60.17]}, radius_m=150,
                technician_ids=["t2", "t1"]),
        {"radius_m": 150, "kind": "zone", "technician_ids": ["t1", "t2"]},
    ),
    (
        "corridor",
        feature({"type": "LineString", "coordinates": LINE}, width_m=40, kind="restricted"),
        {"width_m": 40, "kind": "restricted"},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fence_id", "body", "properties"), GOOD, ids=[g[0] for g in GOOD])
async def test_put_returns_the_geojson_back(
    api: httpx.AsyncClient, ctx: AppContext, fence_id: str, body: dict[str, Any],
    properties: dict[str, Any],
) -> None:  # fmt: skip
    r = await api.put(f"/api/v1/geofences/{fence_id}", json=body)
    expected = {
        "geofence_id": fence_id,
        "kind": properties["kind"],
        "type": "Feature",
        "id": fence_id,
        "geometry": body["geometry"],
        "properties": properties,
    }
    assert (r.status_code, r.json()) == (200, expected)
    assert (await api.get(f"/api/v1/geofences/{fence_id}")).json() == expected
    # Live in the engine's index and stored (as sent) for the next start.
    assert fence_id in ctx.gateway.engine.fences.fences
    assert orjson.loads((await ctx.store.list_fences())[fence_id]) == body


async def test_a_hole_is_outside_and_the_other_part_inside(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    body = feature({"type": "MultiPolygon", "coordinates": [[SQUARE, HOLE], [TRIANGLE]]})
    assert (await api.put("/api/v1/geofences/m", json=body)).status_code == 200
    index = ctx.gateway.engine.fences
    assert index.containing(60.101, 24.901) == {"m"}  # shell
    assert index.containing(60.1045, 24.9045) == frozenset()  # hole
    assert index.containing(60.002, 25.008) == {"m"}  # second polygon
    assert index.containing(60.2, 24.95) == frozenset()


async def test_put_again_replaces(api: httpx.AsyncClient, ctx: AppContext) -> None:
    await api.put("/api/v1/geofences/g", json=GOOD[0][1])
    r = await api.put("/api/v1/geofences/g", json=GOOD[2][1])
    assert r.json()["geometry"]["type"] == "Point"
    assert ctx.gateway.engine.fences.containing(60.1005, 24.9005) == frozenset()
    assert ctx.gateway.engine.fences.containing(60.17, 24.94) == {"g"}


BAD: list[tuple[str, Any, str]] = [
    ("self-intersecting",
     feature({"type": "Polygon", "coordinates": [BOWTIE]}),
     "self-intersecting polygon"),
    ("unclosed", feature({"type": "Polygon", "coordinates": [[*SQUARE[:-1], [24.9, 60.12]]]}),
     "polygon ring is not closed"),
    ("too-few", feature({"type": "Polygon", "coordinates": [SQUARE[:3]]}),
     "polygon ring has fewer than 4 positions"),
    ("lat-range", feature({"type": "Polygon", "coordinates": [POLAR]}),
     "latitude out of range"),
    ("lon-range", feature({"type": "Point", "coordinates": [190, 60]}, radius_m=10),
     "longitude out of range"),
    ("huge", feature({"type": "Polygon",
                      "coordinates": [[[20, 60], [22, 60], [22, 61], [20, 61], [20, 60]]]}),
     "fence too large (> 50 km across)"),
    ("huge-circle", feature({"type": "Point", "coordinates": [24, 60]}, radius_m=30_000),
     "fence too large (> 50 km across)"),
    ("zero-radius", feature({"type": "Point", "coordinates": [24, 60]}, radius_m=0),
     "radius_m must be a number in (0, 50000]"),
    ("negative-radius", feature({"type": "Point", "coordinates": [24, 60]}, radius_m=-5),
     "radius_m must be a number in (0, 50000]"),
    ("no-radius", feature({"type": "Point", "coordinates": [24, 60]}),
     "radius_m must be a number in (0, 50000]"),
    ("text-radius", feature({"type": "Point", "coordinates": [24, 60]}, radius_m="10"),
     "radius_m must be a number in (0, 50000]"),
    ("no-width", feature({"type": "LineString", "coordinates": LINE}),
     "width_m must be a number in (0, 10000]"),
    ("one-point-line",
     feature({"type": "LineString", "coordinates": [LINE[0], LINE[0]]}, width_m=5),
     "linestring needs at least 2 distinct positions"),
    ("bare-geometry", {"type": "Polygon", "coordinates": [SQUARE]}, "not a GeoJSON Feature"),
    ("no-geometry", {"type": "Feature", "properties": {}}, "feature has no geometry"),
    ("collection", feature({"type": "GeometryCollection", "coordinates": []}),
     "unsupported geometry type 'GeometryCollection'"),
    ("bad-kind", feature({"type": "Polygon", "coordinates": [SQUARE]}, kind="garden"),
     "kind must be one of depot, restricted, site, zone"),
    ("bad-dwell", feature({"type": "Polygon", "coordinates": [SQUARE]}, dwell_s=-1),
     "dwell_s must be null or a number in [0, 604800]"),
    ("bad-technicians", feature({"type": "Polygon", "coordinates": [SQUARE]}, technician_ids=[]),
     "technician_ids must be null or a non-empty list of ids"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "reason"), BAD, ids=[b[0] for b in BAD])
async def test_bad_geojson_is_422_with_the_reason(
    api: httpx.AsyncClient, ctx: AppContext, name: str, body: Any, reason: str
) -> None:
    r = await api.put(f"/api/v1/geofences/{name}", json=body)
    assert (r.status_code, r.json()) == (422, {"error": "invalid_geofence", "reason": reason})
    assert name not in ctx.gateway.engine.fences.fences
    assert await ctx.store.list_fences() == {}


async def test_job_site_ids_are_reserved(api: httpx.AsyncClient) -> None:
    r = await api.put("/api/v1/geofences/job:j1", json=GOOD[0][1])
    reason = "ids starting with 'job:' are reserved for job sites"
    assert (r.status_code, r.json()) == (422, {"error": "invalid_geofence", "reason": reason})


@pytest.mark.parametrize(("path", "body"), [("/api/v1/geofences/bad%20id", GOOD[0][1]),
                                            ("/api/v1/geofences/g", [1, 2])])  # fmt: skip
async def test_bad_id_or_body_is_a_request_error(
    api: httpx.AsyncClient, path: str, body: Any
) -> None:
    r = await api.put(path, json=body)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_request")


async def test_list_includes_job_sites(api: httpx.AsyncClient) -> None:
    await api.put("/api/v1/geofences/zone-b", json=GOOD[3][1])
    await api.put("/api/v1/geofences/zone-a", json=GOOD[0][1])
    job = {"technician_id": "t1", "site": {"lat": 60.2, "lon": 24.9, "radius_m": 80}}
    await api.put("/api/v1/jobs/j1", json=job)
    await api.put("/api/v1/jobs/j2", json={"site": {"lat": 60.3, "lon": 24.9}})  # unassigned
    listed = (await api.get("/api/v1/geofences")).json()
    assert [f["geofence_id"] for f in listed] == ["job:j1", "zone-a", "zone-b"]
    assert listed[0] == {
        "geofence_id": "job:j1", "kind": "site", "type": "Feature", "id": "job:j1",
        "geometry": {"type": "Point", "coordinates": [24.9, 60.2]},
        "properties": {"radius_m": 80.0, "kind": "site", "dwell_s": 60.0, "technician_ids": ["t1"]},
    }  # fmt: skip
    # A job site goes with its job, not through DELETE.
    r = await api.delete("/api/v1/geofences/job:j1")
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    await api.post("/api/v1/jobs/j1/status", json={"status": "cancelled"})
    listed = (await api.get("/api/v1/geofences")).json()
    assert [f["geofence_id"] for f in listed] == ["zone-a", "zone-b"]


async def test_delete_then_404(api: httpx.AsyncClient, ctx: AppContext) -> None:
    await api.put("/api/v1/geofences/g", json=GOOD[2][1])
    r = await api.delete("/api/v1/geofences/g")
    assert (r.status_code, r.json()) == (200, {"geofence_id": "g", "deleted": True})
    assert "g" not in ctx.gateway.engine.fences.fences
    assert await ctx.store.list_fences() == {}
    for method in ("DELETE", "GET"):
        r = await api.request(method, "/api/v1/geofences/g")
        assert (r.status_code, r.json()["error"]) == (404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/api/v1/geofences/g"), ("GET", "/api/v1/geofences"),
     ("GET", "/api/v1/geofences/g"), ("DELETE", "/api/v1/geofences/g")],
)  # fmt: skip
async def test_geofences_need_the_api_key(
    client: httpx.AsyncClient, ctx: AppContext, method: str, path: str
) -> None:
    r = await client.request(method, path, json=GOOD[0][1])
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    assert ctx.gateway.engine.fences.fences == {}
