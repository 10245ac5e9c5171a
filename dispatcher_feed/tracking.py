"""Customer tracking links: issue and revoke them (API key), and the public page and stream.

``POST /api/v1/jobs/{id}/tracking-link`` signs a token bound to one job (see
``links``) and announces it with a ``notify``/``tracking_link`` event; ``DELETE``
revokes every link of the job issued so far. ``/track/{token}`` is a page,
``/track/{token}/events`` its SSE stream (scoped by ``customer.JobWatch``) and
``/track/{token}/state`` a JSON snapshot. A forged or tampered token is a 404;
an expired or revoked link, or one whose job has ended, is a 410 with no data.
The public endpoints are rate-limited per client address.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from dispatcher_feed import links
from dispatcher_feed.context import AppContext, context
from dispatcher_feed.customer import Coarsening, JobWatch, event_view, snapshot
from dispatcher_feed.livemap import livemap, page_headers, static_text, tile_origin
from dispatcher_feed.ratelimit import RateLimiter
from dispatcher_feed.routes import ApiError, IdPath, require_key
from dispatcher_feed.schemas import error_responses
from dispatcher_feed.sse import RETRY_MS, frame
from gateway.bus import END, Subscription
from gateway.model import TERMINAL_STATES, Event, Fix, Job
from gateway.store import Store

Ctx = Annotated[AppContext, Depends(context)]
GONE = "this tracking link is no longer active"


@dataclass(frozen=True, slots=True)
class TrackingConfig:
    """Link lifetime, rate limits and the customer map; read from ``Settings``."""

    keys: tuple[str, ...] = field(repr=False)
    base_url: str
    link_ttl_s: float = 2 * 3600.0  # after the job's window ends
    max_ttl_s: float = 7 * 86400.0  # from the moment of issue, whatever the window
    rate_per_s: float = 1.0
    burst: int = 30
    # No background map for customers by default: a third-party tile server
    # would learn where they live. A same-origin tile proxy may be configured.
    tile_url: str = ""
    tile_attribution: str = ""
    coarsening: Coarsening = field(default_factory=Coarsening)
    check_s: float = 2.0  # how often an open stream re-checks expiry and revocation

    @classmethod
    def from_settings(cls, settings: Any) -> TrackingConfig:
        previous = getattr(settings, "previous_signing_keys", ())
        keys = (settings.signing_key.value, *(k.value for k in previous))
        config = cls(
            keys=keys,
            base_url=settings.base_url,
            link_ttl_s=float(getattr(settings, "tracking_link_ttl_s", 2 * 3600.0)),
            max_ttl_s=float(getattr(settings, "tracking_max_ttl_s", 7 * 86400.0)),
            rate_per_s=float(getattr(settings, "tracking_rate_per_s", 1.0)),
            burst=int(getattr(settings, "tracking_burst", 30)),
            tile_url=getattr(settings, "tracking_tile_url", "") or "",
            tile_attribution=getattr(settings, "tracking_tile_attribution", "") or "",
        )
        if config.tile_url:
            tile_origin(config.tile_url)
        return config

    def expiry(self, job: Job, now: float, requested: float | None) -> float:
        """Window end (or now, if later or no window) + ``link_ttl_s``, capped at ``max_ttl_s``."""
        end = max(job.window.end, now) if job.window is not None else now
        wanted = requested if requested is not None else end + self.link_ttl_s
        return min(wanted, now + self.max_ttl_s)


class Revocations:
    """Per job, the moment up to which its issued links are revoked. In the store: every
    API node honours a revocation made on any one, and a restart forgets none."""

    def __init__(self, store: Store, max_ttl_s: float) -> None:
        self._store = store
        self._max_ttl_s = max_ttl_s

    async def revoke(self, job_id: str, now: float) -> None:
        await self._store.revoke_links(job_id, now, self._max_ttl_s)

    async def revoked(self, job_id: str, issued_at: float) -> bool:
        before = await self._store.links_revoked(job_id)
        return before is not None and issued_at <= before

    async def last(self, job_id: str) -> float | None:
        return await self._store.links_revoked(job_id)


@dataclass
class TrackingState:
    config: TrackingConfig
    revocations: Revocations
    limiter: RateLimiter

    @classmethod
    def from_settings(cls, settings: Any, store: Store) -> TrackingState:
        config = TrackingConfig.from_settings(settings)
        revocations = Revocations(store, config.max_ttl_s)
        return cls(config, revocations, RateLimiter(config.rate_per_s, config.burst))

    @classmethod
    def of(cls, app: FastAPI) -> TrackingState:
        """The app's, made on first use unless ``create_app`` made it (and so checked it) first."""
        state: TrackingState | None = getattr(app.state, "tracking", None)
        if state is None:
            ctx: AppContext = app.state.ctx
            state = app.state.tracking = cls.from_settings(ctx.settings, ctx.store)
        return state


def tracking_state(request: Request) -> TrackingState:
    return TrackingState.of(request.app)


State = Annotated[TrackingState, Depends(tracking_state)]


def rate_limit(request: Request, state: State) -> None:
    client = request.client.host if request.client is not None else "unknown"
    wait = state.limiter.take(client, time.monotonic())
    if wait > 0:
        seconds = math.ceil(wait)
        exc = ApiError(429, "rate_limited", f"too many requests; retry in {seconds} s")
        exc.headers = {"Retry-After": str(seconds)}
        raise exc


class PublicRoute(APIRoute):
    """Every answer of a public endpoint, errors and 429s included, carries the page headers.

    (The app's ``ApiError`` handler would answer without them.)
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_headers(request: Request) -> Response:
            try:
                response = await handler(request)
            except ApiError as exc:
                body = {"error": exc.code, "reason": exc.reason}
                response = JSONResponse(body, exc.status_code, headers=exc.headers)
            for name, value in _customer_headers(tracking_state(request)).items():
                response.headers.setdefault(name, value)
            return response

        return with_headers


tracking = APIRouter(responses=error_responses(400, 401, 404, 409, 422))
tracking.include_router(livemap)
public = APIRouter(
    dependencies=[Depends(rate_limit)], include_in_schema=False, route_class=PublicRoute
)


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Sooner than the default, never later than the cap.
    expires_at: Annotated[float | None, Field(gt=0, allow_inf_nan=False)] = None


@tracking.post("/api/v1/jobs/{job_id}/tracking-link", dependencies=[Depends(require_key)])
async def issue_link(
    job_id: IdPath, ctx: Ctx, state: State, body: Annotated[LinkIn | None, Body()] = None
) -> dict[str, Any]:
    """A customer link to follow this job: ``{url, token, expires_at}``."""
    return await create_link(ctx, state, job_id, body.expires_at if body else None)


async def create_link(
    ctx: AppContext, state: TrackingState, job_id: str, expires_at: float | None = None
) -> dict[str, Any]:
    """Sign a link for ``job_id`` and announce it on the bus (also for ``fieldtrack demo``).

    ``ApiError`` 404 for an unknown job, 409 for an ended one, 422 for a past expiry.
    """
    job = await ctx.store.get_job(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    if job.state in TERMINAL_STATES:
        raise ApiError(409, "job_closed", f"job {job_id!r} is {job.state}")
    now = time.time()
    # A link issued in the same millisecond as a revocation must not fall under it.
    last = await state.revocations.last(job_id)
    issued = now if last is None else max(now, last + 0.002)
    expires = int(state.config.expiry(job, now, expires_at))
    if expires <= issued:
        raise ApiError(422, "invalid_request", "expires_at: must be in the future")
    token = links.sign(state.config.keys, job_id, issued, expires)
    url = f"{state.config.base_url}/track/{token}"
    event: Event = {
        "type": "notify",
        "notification": "tracking_link",
        "ts": now,
        "job_id": job_id,
        "technician_id": job.technician_id,
        "url": url,
        "expires_at": expires,
    }
    await ctx.gateway.publish_notice(event)
    return {"url": url, "token": token, "expires_at": expires, "job_id": job_id}


@tracking.delete("/api/v1/jobs/{job_id}/tracking-link", dependencies=[Depends(require_key)])
async def revoke_links(job_id: IdPath, ctx: Ctx, state: State) -> dict[str, Any]:
    """Revoke every link of this job issued so far (a new one may be issued after)."""
    if await ctx.store.get_job(job_id) is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    now = time.time()
    await state.revocations.revoke(job_id, now)
    return {"job_id": job_id, "revoked": True, "revoked_at": now}


class _Closed(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def _open(token: str, store: Store, state: TrackingState) -> tuple[links.LinkClaims, Job]:
    try:
        claims = links.verify(state.config.keys, token, time.time())
    except links.LinkError as exc:
        raise _Closed(410 if exc.gone else 404) from None
    if await state.revocations.revoked(claims.job_id, claims.issued_at):
        raise _Closed(410)
    job = await store.get_job(claims.job_id)
    if job is None or job.state in TERMINAL_STATES:
        raise _Closed(410)
    return claims, job


async def _open_json(
    token: str, store: Store, state: TrackingState
) -> tuple[links.LinkClaims, Job]:
    try:
        return await _open(token, store, state)
    except _Closed as exc:
        if exc.status == 404:
            raise ApiError(404, "not_found", "no such tracking link") from None
        raise ApiError(410, "gone", GONE) from None


def _customer_headers(state: TrackingState) -> dict[str, str]:
    origin = tile_origin(state.config.tile_url) if state.config.tile_url else None
    return {**page_headers([origin]), "X-Robots-Tag": "noindex, nofollow"}


@public.get("/track/{token}")
async def track_page(token: str, ctx: Ctx, state: State) -> HTMLResponse:
    try:
        await _open(token, ctx.store, state)
    except _Closed as exc:
        page = "track-gone.html" if exc.status == 410 else "track-missing.html"
        return HTMLResponse(static_text(page), status_code=exc.status)
    return HTMLResponse(static_text("track.html"))


@public.get("/track/{token}/state")
async def track_state(token: str, ctx: Ctx, state: State) -> JSONResponse:
    claims, job = await _open_json(token, ctx.store, state)
    body = await _snapshot(ctx.store, job, JobWatch(job), state)
    body["expires_at"] = claims.expires_at
    return JSONResponse(body)


@public.get("/track/{token}/events")
async def track_events(
    token: str,
    ctx: Ctx,
    state: State,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    last_id: Annotated[str | None, Query(alias="lastEventId", max_length=64)] = None,
) -> Response:
    """This job's events as the customer may see them; a snapshot first unless resuming."""
    claims, _ = await _open_json(token, ctx.store, state)
    body = _customer_stream(ctx, state, claims, last_event_id or last_id)
    return EventSourceResponse(
        body,
        ping=ctx.settings.sse_ping_s,
        send_timeout=ctx.settings.sse_send_timeout_s,
        headers={"X-Accel-Buffering": "no"},
    )


async def _snapshot(store: Store, job: Job, watch: JobWatch, state: TrackingState) -> Event:
    name = None
    fix: Fix | None = None
    if job.technician_id is not None:
        technician = await store.get_technician(job.technician_id)
        if technician is not None:
            name = technician.name
            for device_id in technician.device_ids:
                latest = await store.latest(device_id)
                if latest is not None and (fix is None or latest.ts > fix.ts):
                    fix = latest
    body = snapshot(job, watch, name, fix, state.config.coarsening)
    body["map"] = {"tile_url": state.config.tile_url, "attribution": state.config.tile_attribution}
    return body


async def _customer_stream(
    ctx: AppContext, state: TrackingState, claims: links.LinkClaims, last_id: str | None
) -> AsyncIterator[bytes]:
    job = await ctx.store.get_job(claims.job_id)
    if job is None:
        return
    # The predicate's watch runs at publish time, the view's as frames go out.
    watch, view = JobWatch(job), JobWatch(job)
    size = ctx.settings.sse_queue_size
    async with ctx.bus.subscribe(last_id, watch.observe, size) as sub:
        ctx.sse_clients.n += 1
        try:
            yield b"retry: %d\n\n" % RETRY_MS
            # A resume the bus cannot replay in full gets the whole state again.
            if last_id is None or sub.gap:
                first = await _snapshot(ctx.store, job, view, state)
                yield b"event: snapshot\ndata: %s\n\n" % orjson.dumps(first)
            async for chunk in _customer_frames(sub, view, job, claims, state):
                yield chunk
        finally:
            ctx.sse_clients.n -= 1
    if sub.overflowed.is_set():
        ctx.metrics.sse_dropped.inc()


async def _customer_frames(
    sub: Subscription, view: JobWatch, job: Job, claims: links.LinkClaims, state: TrackingState
) -> AsyncIterator[bytes]:
    rule = state.config.coarsening
    queue = sub.queue
    while not view.ended and not sub.ended:
        # Cut off for falling behind: send what was queued, so that the resume
        # (from the last id sent) always makes progress, then end.
        if sub.overflowed.is_set() and queue.empty():
            return
        remaining = claims.expires_at - time.time()
        if remaining <= 0 or await state.revocations.revoked(claims.job_id, claims.issued_at):
            reason = "expired" if remaining <= 0 else "revoked"
            yield b"event: end\ndata: %s\n\n" % orjson.dumps({"type": "end", "reason": reason})
            return
        try:
            async with asyncio.timeout(min(remaining, state.config.check_s)):
                items = [await queue.get()]
        except TimeoutError:
            continue
        while not queue.empty():
            items.append(queue.get_nowait())
        chunk = []
        for item in items:
            if item is END:  # the server is shutting down
                break
            event_id, event_type, data = item
            event = orjson.loads(data)
            view.observe(event)
            chunk.append(
                frame(event_id, event_type, orjson.dumps(event_view(event, view, job.site, rule)))
            )
            if view.ended:
                break
        yield b"".join(chunk)


tracking.include_router(public)
