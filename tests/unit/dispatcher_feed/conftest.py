"""An app around in-memory parts, and HTTP clients for it (no server, no sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from dispatcher_feed.app import create_app
from dispatcher_feed.context import AppContext
from gateway.bus import MemoryBus
from gateway.metrics import Metrics
from gateway.service import Gateway
from gateway.settings import Secret, Settings
from gateway.store import MemoryStore

API_KEY = "unit-test-key"


@pytest.fixture
def ctx() -> AppContext:
    settings = Settings(api_keys=(Secret(API_KEY),), signing_key=Secret("unit-test-signing"))
    store, bus, metrics = MemoryStore(), MemoryBus(), Metrics()
    return AppContext(settings, store, bus, metrics, Gateway(store, bus, metrics))


@pytest.fixture
async def client(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """No credentials: for public endpoints and for proving the API refuses it."""
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def api(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """A dispatcher integration: every request carries the Bearer key."""
    transport = httpx.ASGITransport(app=create_app(ctx))
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as http:
        yield http


@pytest.fixture
def api_key() -> str:
    return API_KEY
