"""The dispatcher's live map page: its headers, its map configuration, its vendored Leaflet.

Leaflet comes from the npm registry and is copied into ``static/vendor/`` by
``scripts/build_assets.sh`` (never a CDN). The tile server is configurable;
the page's Content-Security-Policy admits images from that one origin and
nothing else from outside, and the page works without tiles (markers, tours
and panels are drawn by the page itself).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse

from dispatcher_feed.auth import COOKIE, session_valid
from dispatcher_feed.context import AppContext
from dispatcher_feed.routes import ApiError

OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = (
    '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
)
_ORIGIN = re.compile(r"(https?)://([A-Za-z0-9.{}-]+)(:\d{1,5})?/[^\s;,'\"]*")
_RELATIVE = re.compile(r"/[^/\s;,'\"][^\s;,'\"]*")
_VENDOR_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
_VENDOR_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)?")


def tile_origin(url: str) -> str | None:
    """The CSP source a tile URL template needs: None for same-origin, else its origin.

    ``{s}`` subdomains become a ``*.`` wildcard. Anything that could smuggle a
    directive into the policy (spaces, ``;``, quotes) is refused.
    """
    if _RELATIVE.fullmatch(url):
        return None
    match = _ORIGIN.fullmatch(url)
    if match is None:
        raise ValueError(f"tile URL must be http(s)://host/... or /path, not {url!r}")
    scheme, host, port = match.group(1), match.group(2), match.group(3) or ""
    if host.startswith("{s}."):
        host = "*." + host[4:]
    if "{" in host or "}" in host:
        raise ValueError(f"only a leading {{s}} may vary the tile host: {url!r}")
    return f"{scheme}://{host}{port}"


def page_headers(image_origins: Iterable[str | None] = ()) -> dict[str, str]:
    """Headers of every HTML page: no cache, no referrer, a CSP that allows only this origin."""
    images = " ".join(["'self'", "data:", *(o for o in image_origins if o)])
    return {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": (
            f"default-src 'self'; img-src {images}; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
            "object-src 'none'"
        ),
    }


@dataclass(frozen=True, slots=True)
class MapConfig:
    tile_url: str = OSM_TILES
    attribution: str = OSM_ATTRIBUTION
    max_zoom: int = 19
    stale_after_s: float = 300.0

    def __post_init__(self) -> None:
        tile_origin(self.tile_url)

    @classmethod
    def from_settings(cls, settings: Any) -> MapConfig:
        """``map_tile_url``, ``map_attribution``, ``map_stale_after_s``, where Settings has them."""
        return cls(
            tile_url=getattr(settings, "map_tile_url", None) or OSM_TILES,
            attribution=getattr(settings, "map_attribution", None) or OSM_ATTRIBUTION,
            stale_after_s=float(getattr(settings, "map_stale_after_s", 300.0)),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "tile_url": self.tile_url,
            "attribution": self.attribution,
            "max_zoom": self.max_zoom,
            "stale_after_s": self.stale_after_s,
        }


def static_text(name: str) -> str:
    return (resources.files("dispatcher_feed") / "static" / name).read_text(encoding="utf-8")


def map_config(request: Request) -> MapConfig:
    config: MapConfig | None = getattr(request.app.state, "map_config", None)
    if config is None:
        ctx: AppContext = request.app.state.ctx
        config = request.app.state.map_config = MapConfig.from_settings(ctx.settings)
    return config


livemap = APIRouter(include_in_schema=False)


@livemap.get("/")
async def dispatcher_page(request: Request) -> HTMLResponse:
    config = map_config(request)
    headers = page_headers([tile_origin(config.tile_url)])
    return HTMLResponse(static_text("index.html"), headers=headers)


@livemap.get("/map/config.json")
async def config_json(request: Request) -> dict[str, Any]:
    """Tiles, whether the session cookie is still good and which optional panels exist.

    The page asks here rather than probing: a 401 or 404 would be a console error.
    """
    ctx: AppContext = request.app.state.ctx
    signed_in = await session_valid(ctx.keys, ctx.store, request.cookies.get(COOKIE))
    # From the OpenAPI description (built once, then cached): FastAPI 0.165 no longer
    # flattens included routers into app.routes, which made both panels look absent.
    paths = request.app.openapi().get("paths", {})
    panels = {name: "get" in paths.get(f"/api/v1/{name}", {}) for name in ("kpis", "geofences")}
    return {**map_config(request).as_json(), "signed_in": signed_in, "panels": panels}


VendorPath = Annotated[str, Path(max_length=200)]


@livemap.get("/static/vendor/{path:path}")
async def vendor(path: VendorPath) -> Response:
    suffix = path[path.rfind(".") :] if "." in path else ""
    if suffix not in _VENDOR_TYPES or not _VENDOR_PATH.fullmatch(path):
        raise ApiError(404, "not_found", "no such file")
    file = resources.files("dispatcher_feed") / "static" / "vendor" / path
    try:
        body = file.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ApiError(404, "not_found", "no such file (run scripts/build_assets.sh)") from None
    # The vendored files change only with package-lock.json; a day is safe.
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    return Response(body, media_type=_VENDOR_TYPES[suffix], headers=headers)
