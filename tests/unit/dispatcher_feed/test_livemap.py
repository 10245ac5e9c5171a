"""Tile URL -> CSP image source, page headers, map configuration from settings."""

from __future__ import annotations

import types

import httpx
import pytest

from dispatcher_feed.livemap import OSM_TILES, MapConfig, page_headers, tile_origin


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        (OSM_TILES, "https://tile.openstreetmap.org"),
        ("https://{s}.tile.example.org/{z}/{x}/{y}.png", "https://*.tile.example.org"),
        ("http://127.0.0.1:8081/tiles/{z}/{x}/{y}.png", "http://127.0.0.1:8081"),
        ("/tiles/{z}/{x}/{y}.png", None),
    ],
)
def test_tile_origin(url: str, origin: str | None) -> None:
    assert tile_origin(url) == origin


@pytest.mark.parametrize(
    "url",
    [
        "https://tiles.example.org; script-src *",
        "https://tiles.example.org/{z} 'unsafe-inline'",
        "javascript:alert(1)",
        "//tiles.example.org/{z}/{x}/{y}.png",
        "https://{z}.example.org/{x}.png",
        "ftp://tiles.example.org/{z}.png",
        "",
    ],
)
def test_unsafe_tile_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        tile_origin(url)


def directives(headers: dict[str, str]) -> dict[str, str]:
    parts = (d.partition(" ") for d in headers["Content-Security-Policy"].split("; "))
    return {name: value for name, _, value in parts}


def test_page_headers_admit_only_self_and_the_tile_origin() -> None:
    headers = page_headers(["https://tile.openstreetmap.org", None])
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    csp = directives(headers)
    assert csp["img-src"] == "'self' data: https://tile.openstreetmap.org"
    assert csp["script-src"] == csp["style-src"] == csp["connect-src"] == "'self'"
    assert csp["default-src"] == "'self'"
    assert csp["frame-ancestors"] == csp["base-uri"] == csp["object-src"] == "'none'"
    assert directives(page_headers())["img-src"] == "'self' data:"


def test_map_config_from_settings_with_and_without_the_fields() -> None:
    assert MapConfig.from_settings(types.SimpleNamespace()) == MapConfig()
    custom = types.SimpleNamespace(
        map_tile_url="/tiles/{z}/{x}/{y}.png", map_attribution="mine", map_stale_after_s="60"
    )
    assert MapConfig.from_settings(custom) == MapConfig("/tiles/{z}/{x}/{y}.png", "mine", 19, 60.0)
    with pytest.raises(ValueError):
        MapConfig.from_settings(types.SimpleNamespace(map_tile_url="https://x.org; a"))


# -- over HTTP (the app of conftest.py, with the tracking router included) --------------------


async def test_dispatcher_page_admits_the_tile_server_and_nothing_else(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    policy = directives({"Content-Security-Policy": r.headers["content-security-policy"]})
    assert policy["img-src"] == "'self' data: https://tile.openstreetmap.org"
    assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'"
    assert '<script src="/static/vendor/leaflet.js"></script>' in r.text
    assert "https://" not in r.text and "http://" not in r.text


async def test_config_says_whether_signed_in_and_which_panels_exist(
    client: httpx.AsyncClient, api_key: str
) -> None:
    before = (await client.get("/map/config.json")).json()
    assert before == {
        "tile_url": OSM_TILES, "attribution": MapConfig().attribution, "max_zoom": 19,
        "stale_after_s": 300.0, "signed_in": False,
        "panels": {"kpis": True, "geofences": True},  # this app serves both
    }  # fmt: skip
    assert (await client.post("/session", json={"api_key": api_key})).status_code == 200
    assert (await client.get("/map/config.json")).json()["signed_in"] is True


@pytest.mark.parametrize(
    ("path", "status", "content_type"),
    [
        ("leaflet.js", 200, "text/javascript"),
        ("leaflet.css", 200, "text/css"),
        ("images/layers.png", 200, "image/png"),
        ("LEAFLET-LICENSE.txt", 404, None),
        ("missing.js", 404, None),
        ("..%2F..%2Fapp.py", 404, None),
        ("..%2Fdispatcher.js", 404, None),
        ("images/deeper/x.png", 404, None),
    ],
)
async def test_vendored_files(
    client: httpx.AsyncClient, path: str, status: int, content_type: str | None
) -> None:
    """Needs ``scripts/build_assets.sh`` (``make install``) to have run."""
    r = await client.get(f"/static/vendor/{path}")
    assert r.status_code == status
    if content_type is not None:
        assert r.headers["content-type"].startswith(content_type)
        assert len(r.content) > 500
