"""Headless Debian chromium driven by Playwright's async API.

Chromium is the system's (``/usr/bin/chromium``), never a downloaded build. Without it
the browser tests are skipped on a developer machine and fail under ``CI=true``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Belt and braces with the request routing of pages.py: no name but ours resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        if "CI" in os.environ:
            pytest.fail(f"{CHROMIUM} is missing under CI (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    # Without the vendored Leaflet the pages cannot draw: that is a build error, not a skip.
    leaflet = resources.files("dispatcher_feed") / "static" / "vendor" / "leaflet.js"
    if not leaflet.is_file():
        pytest.fail("dispatcher_feed/static/vendor is empty: run scripts/build_assets.sh")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(chromium), args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()
