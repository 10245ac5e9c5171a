"""Helpers of the browser tests: a watch over each page, sessions, screenshots.

Every request that would leave the server under test is aborted before it reaches
the network (the pages must work without tiles, and tests never talk to the
outside world); the watch records those attempts and every console error and
uncaught exception.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Route
from playwright.async_api import Error as PlaywrightError

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@dataclass
class PageWatch:
    """What a page did wrong: console errors, uncaught exceptions, requests to elsewhere."""

    base_url: str
    errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("request", self._request)

    def _request(self, request: Any) -> None:
        if not request.url.startswith((self.base_url, "data:")):
            self.external.append(request.url)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        where = str(message.location.get("url", ""))
        # A blocked request to another origin is reported as a failed load; whether
        # any such request is acceptable is judged from ``external``.
        if message.text.startswith("Failed to load resource") and not where.startswith(
            self.base_url
        ):
            return
        self.errors.append(f"{message.text} @ {where}")

    def take_errors(self) -> list[str]:
        errors, self.errors = self.errors, []
        return errors


async def _abort(route: Route) -> None:
    await route.abort("blockedbyclient")


@dataclass
class Session:
    context: BrowserContext
    page: Page
    watch: PageWatch

    async def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@contextlib.asynccontextmanager
async def session(browser: Browser, base_url: str, **options: Any) -> AsyncIterator[Session]:
    """A fresh browser context whose requests may go to ``base_url`` only."""
    context = await browser.new_context(**options)
    local = re.compile(re.escape(base_url) + r"(/.*)?$")

    def elsewhere(url: str) -> bool:
        return local.match(url) is None and not url.startswith("data:")

    await context.route(elsewhere, _abort)
    page = await context.new_page()
    watch = PageWatch(base_url)
    watch.attach(page)
    try:
        yield Session(context, page, watch)
    finally:
        # Before the server goes: a live EventSource would log the refused reconnect.
        with contextlib.suppress(PlaywrightError):
            await context.close()
