"""Thin REST handlers: validate, call the gateway or read the store, shape the answer."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from dispatcher_feed.auth import COOKIE, session_valid
from dispatcher_feed.context import AppContext, context
from dispatcher_feed.schemas import JobIn, PositionsIn, StatusIn, TechnicianIn, error_responses
from dispatcher_feed.sse import event_stream
from dispatcher_feed.views import job_view, technician_view
from eta.estimate import CLOSED_STATES
from gateway import codec
from gateway.engine import check_site
from gateway.errors import BadPayload
from gateway.model import Customer, Event, Job, Site, StatusUpdate, Technician, Window
from geofence.errors import FenceError
from geofence.shapes import Fence, fence_to_geojson

Ctx = Annotated[AppContext, Depends(context)]
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"  # CONTRACT "Identifiers"
IdPath = Annotated[str, Path(pattern=ID_PATTERN)]


class ApiError(HTTPException):
    """A 4xx whose JSON body is ``{"error": code, "reason": text}``."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(status, reason)
        self.code = code
        self.reason = reason


async def require_key(request: Request, ctx: Ctx) -> None:
    if ctx.keys.check_bearer(request.headers.get("authorization")):
        return
    if await session_valid(ctx.keys, ctx.store, request.cookies.get(COOKIE)):
        return
    raise ApiError(401, "unauthorized", "missing or wrong API key (Authorization: Bearer <key>)")


api = APIRouter(
    prefix="/api/v1",
    dependencies=[Depends(require_key)],
    responses=error_responses(400, 401, 404, 409, 422),
)


@api.put("/technicians/{technician_id}")
async def put_technician(technician_id: IdPath, body: TechnicianIn, ctx: Ctx) -> dict[str, Any]:
    technician = Technician(technician_id, body.name, tuple(body.device_ids), tuple(body.skills))
    await ctx.gateway.put_technician(technician)
    return await technician_view(ctx.store, technician)


@api.get("/technicians")
async def list_technicians(ctx: Ctx) -> list[dict[str, Any]]:
    return [await technician_view(ctx.store, t) for t in await ctx.store.list_technicians()]


@api.get("/technicians/{technician_id}")
async def get_technician(technician_id: str, ctx: Ctx) -> dict[str, Any]:
    technician = await ctx.store.get_technician(technician_id)
    if technician is None:
        raise ApiError(404, "not_found", f"no technician {technician_id!r}")
    return await technician_view(ctx.store, technician)


@api.put("/jobs/{job_id}")
async def put_job(job_id: IdPath, body: JobIn, ctx: Ctx) -> dict[str, Any]:
    job = Job(
        job_id=job_id,
        technician_id=body.technician_id,
        site=Site(body.site.lat, body.site.lon, body.site.radius_m),
        window=Window(body.window.start, body.window.end) if body.window else None,
        planned_duration_s=body.planned_duration_s,
        sequence=body.sequence,
        customer=Customer(body.customer.name, body.customer.ref),
        priority=body.priority,
        follow_up_of=body.follow_up_of,
    )
    try:
        # The site becomes a geofence (``job:{job_id}``): refuse one that cannot be
        # (too close to a pole) before anything is stored.
        check_site(job.site)
    except FenceError as exc:
        raise ApiError(422, "invalid_site", f"site: {exc}") from None
    return job_view(await ctx.gateway.put_job(job))


@api.get("/jobs")
async def list_jobs(
    ctx: Ctx,
    technician_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    closed_since: Annotated[
        float | None,
        Query(
            allow_inf_nan=False,
            description="Closed jobs (done, cancelled, failed) only if closed at or after "
            "this epoch time; open jobs always. Without it, every job the store keeps.",
        ),
    ] = None,
) -> list[dict[str, Any]]:
    if technician_id is not None:
        jobs = await ctx.store.jobs_of(technician_id)
    else:
        jobs = await ctx.store.list_jobs()
    if closed_since is not None:
        jobs = [j for j in jobs if not _closed_before(j, closed_since)]
    return [job_view(j) for j in jobs]


def _closed_before(job: Job, ts: float) -> bool:
    return job.state in CLOSED_STATES and bool(job.history) and job.history[-1].ts < ts


@api.get("/jobs/{job_id}")
async def get_job(job_id: str, ctx: Ctx) -> dict[str, Any]:
    job = await ctx.store.get_job(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    return job_view(job)


@api.get("/alerts")
async def list_alerts(
    ctx: Ctx,
    technician_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    job_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> list[Event]:
    """The alerts standing now, oldest first: each as the ``alert`` event that raised it
    (not yet followed by its ``cleared`` one). What a dispatcher opening the map has not
    seen of the feed."""
    alerts = await ctx.store.list_alerts()
    return [
        a for a in alerts
        if technician_id in (None, a.get("technician_id")) and job_id in (None, a.get("job_id"))
    ]  # fmt: skip


@api.post("/jobs/{job_id}/status")
async def set_job_status(job_id: str, body: StatusIn, ctx: Ctx) -> dict[str, Any]:
    """A dispatcher's status change (source ``api``), e.g. cancelling a job."""
    now = time.time()
    ts = body.ts if body.ts is not None else now
    try:
        # As for a device: a status from the future would lock the job against every
        # change until then (a later change must not be older than the last).
        codec.check_ts(ts, now)
    except BadPayload as exc:
        raise ApiError(422, exc.code, exc.reason) from None
    update = StatusUpdate("", ts, job_id, body.status, body.note)
    try:
        job = await ctx.gateway.report_status(update, source="api")
    except BadPayload as exc:
        status = 404 if exc.code == "unknown_job" else 409
        raise ApiError(status, exc.code, exc.reason) from None
    return job_view(job)


@api.post("/positions")
async def post_positions(body: PositionsIn, ctx: Ctx) -> JSONResponse:
    decoded = codec.positions_from_objects(body.device_id, body.positions, time.time())
    for error in decoded.errors:
        ctx.metrics.reject(error.code)
    summary = await ctx.gateway.ingest_fixes(decoded.fixes)
    rejected = [e.reason for e in decoded.errors]
    answer = {
        "accepted": summary.accepted,
        "duplicates": summary.duplicates,
        "late": summary.late,
        "rejected": rejected,
    }
    if rejected and not decoded.fixes:
        answer |= {"error": "invalid_positions", "reason": decoded.reason}
        return JSONResponse(answer, status_code=422)
    return JSONResponse(answer)


@api.get("/devices/{device_id}/positions")
async def device_positions(
    device_id: str,
    ctx: Ctx,
    since: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    until: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, Any]]:
    """The device's stored fixes in ``[since, until]``, oldest first: the first ``limit``."""
    if since is not None and until is not None and until < since:
        raise ApiError(422, "invalid_request", "until must not be before since")
    fixes = await ctx.store.history(device_id, since, until, limit)
    return [fix.to_wire() for fix in fixes]


@api.get("/feed", response_class=EventSourceResponse)
async def feed(
    ctx: Ctx,
    technician_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    last_id: Annotated[str | None, Query(alias="lastEventId", max_length=64)] = None,
) -> Response:
    """SSE for dispatchers; ``Last-Event-ID`` (or ``?lastEventId=``) resumes."""
    predicate = None
    if technician_id is not None:
        wanted = technician_id

        def predicate(event: Event) -> bool:
            return event.get("technician_id") == wanted

    s = ctx.settings
    return event_stream(
        ctx.bus, ctx.metrics, ctx.sse_clients, last_event_id or last_id, predicate,
        s.sse_queue_size, s.sse_send_timeout_s, s.sse_ping_s,
    )  # fmt: skip


@api.put("/geofences/{geofence_id}")
async def put_geofence(
    geofence_id: IdPath, ctx: Ctx, feature: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """A GeoJSON Feature: Polygon, MultiPolygon, Point + ``radius_m``, LineString + ``width_m``;
    properties ``kind`` (site, depot, zone, restricted), ``dwell_s``, ``technician_ids``."""
    try:
        fence = await ctx.gateway.put_fence(geofence_id, feature)
    except FenceError as exc:
        raise ApiError(422, "invalid_geofence", exc.reason) from None
    return fence_view(fence)


@api.get("/geofences")
async def list_geofences(ctx: Ctx) -> list[dict[str, Any]]:
    """Every fence, job sites included (ids ``job:{job_id}``)."""
    fences = await ctx.gateway.list_fences()
    return [fence_view(fences[k]) for k in sorted(fences)]


@api.get("/geofences/{geofence_id}")
async def get_geofence(geofence_id: str, ctx: Ctx) -> dict[str, Any]:
    fence = (await ctx.gateway.list_fences()).get(geofence_id)
    if fence is None:
        raise ApiError(404, "not_found", f"no geofence {geofence_id!r}")
    return fence_view(fence)


@api.delete("/geofences/{geofence_id}")
async def delete_geofence(geofence_id: str, ctx: Ctx) -> dict[str, Any]:
    if not await ctx.gateway.delete_fence(geofence_id):
        raise ApiError(
            404, "not_found", f"no geofence {geofence_id!r} (job sites go with their job)"
        )
    return {"geofence_id": geofence_id, "deleted": True}


def fence_view(fence: Fence) -> dict[str, Any]:
    return {"geofence_id": fence.fence_id, "kind": fence.kind, **fence_to_geojson(fence)}
