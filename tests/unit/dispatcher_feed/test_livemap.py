"""Tile URL -> CSP image source, page headers, map configuration from settings."""

from __future__ import annotations

import types

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
