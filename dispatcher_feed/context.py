"""What the HTTP app is handed: the composition root builds it, handlers read it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request

from dispatcher_feed.auth import ApiKeys
from dispatcher_feed.sse import ClientCount
from gateway.bus import Bus
from gateway.metrics import Metrics
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.store import Store


async def _always_ready() -> bool:
    return True


@dataclass
class AppContext:
    settings: Settings
    store: Store
    bus: Bus
    metrics: Metrics
    gateway: Gateway
    # True while the broker connection (and the store) are up; `run` wires the ingest in.
    ready: Callable[[], Awaitable[bool]] = _always_ready
    keys: ApiKeys = field(init=False)
    sse_clients: ClientCount = field(default_factory=ClientCount)

    def __post_init__(self) -> None:
        self.keys = ApiKeys(self.settings.api_keys, self.settings.signing_key)
        self.metrics.sse_clients.read = self.sse_clients.read


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx
