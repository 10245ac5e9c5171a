"""``create_app(ctx) -> FastAPI``: the API, the feed, the public endpoints and pages.

The app owns no client of its own: the composition root (``gateway.cli``)
builds store, bus and gateway, and hands them in through ``AppContext``, so
tests build an app around in-memory parts with no process to start.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dispatcher_feed.auth import COOKIE, SESSION_MAX_AGE_S
from dispatcher_feed.context import AppContext
from dispatcher_feed.kpis import kpis
from dispatcher_feed.livemap import MapConfig, static_text
from dispatcher_feed.routes import ApiError, api
from dispatcher_feed.schemas import SessionIn, error_responses
from dispatcher_feed.tracking import TrackingState, tracking
from gateway import codec
from gateway.codec import is_json
from gateway.errors import BadPayload
from gateway.model import Fix


def _query(name: str, kind: str, text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind},
            "description": text}  # fmt: skip


# The OsmAnd / Traccar Client protocol is read by hand (query, form or JSON), so OpenAPI
# is told its parameters here.
_OSMAND_PARAMS = [
    _query("id", "string", "device id (or `deviceid`)"),
    _query("lat", "number", "latitude, with `lon`; or `location=lat,lon`"),
    _query("lon", "number", "longitude"),
    _query("timestamp", "string", "epoch s, epoch ms, ISO 8601 or `yyyy-MM-dd HH:mm:ss`; "
           "none: the time of receipt"),
    _query("speed", "number", "knots"),
    _query("bearing", "number", "degrees (or `heading`)"),
    _query("altitude", "number", "metres"),
    _query("accuracy", "number", "metres"),
    _query("batt", "number", "battery, 0-100"),
]  # fmt: skip
OSMAND_OPENAPI: dict[str, dict[str, Any]] = {
    "GET": {"parameters": _OSMAND_PARAMS},
    "POST": {
        "parameters": _OSMAND_PARAMS,
        "requestBody": {
            "required": False,
            "description": "The same fields as a form, or Traccar Client 9+ JSON "
            "`{device_id, location: {timestamp, coords: {latitude, longitude, speed, heading, "
            "accuracy, altitude}, battery: {level}}}`",
            "content": {
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                "application/json": {"schema": {"type": "object"}},
            },
        },
    },
}


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(
        title="FieldTrack",
        version="1",
        summary="Real-time telematics gateway for field-service fleets",
    )
    app.state.ctx = ctx
    app.include_router(api)
    app.include_router(kpis)
    # Before _public: the map page's own CSP admits the configured tile server.
    app.include_router(tracking)
    app.state.tracking = TrackingState.from_settings(ctx.settings, ctx.store)
    app.state.map_config = MapConfig.from_settings(ctx.settings)
    _errors(app)
    _public(app, ctx)
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        body = {"error": exc.code, "reason": exc.reason}
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        reason = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors]
        return JSONResponse(
            {"error": "invalid_request", "reason": reason, "detail": detail}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = {"error": code, "reason": str(exc.detail)}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the one route it matched (FastAPI makes a
            # route per method): every method of the path, as the API documents them.
            headers["Allow"] = _allowed(app, request.url.path) or headers.get("Allow", "")
        return JSONResponse(body, exc.status_code, headers=headers)


def _allowed(app: FastAPI, path: str) -> str | None:
    """The methods OpenAPI lists for the path template ``path`` matches, or None."""
    for template, operations in app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\{[^}/]+\}", "[^/]+", template), path):
            return ", ".join(sorted(m.upper() for m in operations))
    return None


def _public(app: FastAPI, ctx: AppContext) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ok = await ctx.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def osmand(request: Request) -> JSONResponse:
        """Traccar Client / OsmAnd: query, urlencoded form, or Traccar Client 9+ JSON."""
        now = time.time()
        try:
            fix = await _osmand_fix(request, now)
        except BadPayload as exc:
            ctx.metrics.reject(exc.code)
            return JSONResponse({"error": exc.code, "reason": exc.reason}, status_code=400)
        summary = await ctx.gateway.ingest_fixes([fix])
        return JSONResponse({"accepted": summary.accepted, "duplicates": summary.duplicates})

    for method in ("GET", "POST"):
        app.add_api_route(
            "/osmand", osmand, methods=[method], operation_id=f"osmand_{method.lower()}",
            responses=error_responses(400), openapi_extra=OSMAND_OPENAPI[method],
        )  # fmt: skip

    @app.post("/session", include_in_schema=False)
    async def login(body: SessionIn) -> Response:
        if not ctx.keys.check_key(body.api_key):
            raise ApiError(401, "unauthorized", "wrong API key")
        response = JSONResponse({"ok": True})
        response.set_cookie(
            COOKIE, ctx.keys.issue_session(body.api_key), max_age=SESSION_MAX_AGE_S,
            httponly=True, samesite="strict", secure=ctx.settings.base_url.startswith("https"),
        )  # fmt: skip
        return response

    @app.delete("/session", include_in_schema=False)
    async def logout(request: Request) -> Response:
        # Signed out everywhere (the store is every API node's), not only in this
        # browser: a copy of the cookie stops working too.
        sid = ctx.keys.session_id(request.cookies.get(COOKIE))
        if sid:
            await ctx.store.revoke_session(sid, SESSION_MAX_AGE_S)
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE)
        return response

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        types = {".js": "text/javascript", ".css": "text/css"}
        suffix = name[name.rfind(".") :] if "." in name else ""
        if suffix not in types or "/" in name or name.startswith("."):
            raise ApiError(404, "not_found", "no such file")
        try:
            body = static_text(name)
        except FileNotFoundError:
            raise ApiError(404, "not_found", "no such file") from None
        return Response(body, media_type=types[suffix], headers={"Cache-Control": "no-cache"})


async def _osmand_fix(request: Request, now: float) -> Fix:
    params: dict[str, str] = dict(request.query_params)
    if request.method == "POST":
        body = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/json" or (not content_type and is_json(body)):
            return codec.decode_traccar_json(codec.decode_any(body), now)
        if body:
            # Traccar Client posts its parameters in the URL with an empty body;
            # other OsmAnd senders use an urlencoded form.
            try:
                form = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
            except (UnicodeDecodeError, ValueError):
                raise BadPayload("bad_encoding", "body is not an urlencoded form") from None
            params |= dict(form)
    return codec.decode_osmand(params, now)
