"""A routing engine over HTTP as the travel-time model's prior (``--routing-url``).

Speaks OSRM's route service (``GET {url}/route/v1/driving/{lon},{lat};{lon},{lat}``,
answered by ``osrm-routed`` and by engines with an OSRM-compatible endpoint). The learned
model (``eta.speeds``) then takes a leg's road distance and free-flow speed from the
engine instead of straight line x detour and its area prior, and keeps learning on top
(``eta.speeds.RoutingPrior``). Without it, or while it is away, the model answers alone.

The tour estimate is synchronous and runs on every fix, so it never waits for HTTP:
``route`` answers from a cache and, on a miss, queues the leg and returns None; ``run``
fetches queued legs in the background. Both ends are snapped to a grid (the origin,
usually a moving technician, to ~110 m: ``origin_decimals``; the destination, a site, to
~11 m), which bounds the requests to one per technician per grid cell driven through.
A leg the engine has no route for is remembered as such; when the engine fails (refused,
timed out, 5xx, not OSRM's answer), nothing is asked of it for ``retry_after_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from math import isfinite
from typing import Any, Final

import httpx

from eta.speeds import RouteLeg
from gateway.metrics import Counter, Metrics

log = logging.getLogger("fieldtrack.routing")

Key = tuple[float, float, float, float]
_NO_ROUTE: Final = RouteLeg(0.0, 0.0)  # cached answer for a leg without a route


@dataclass(frozen=True)
class RoutingConfig:
    """``cache_size``: legs kept (least recently used go first); ``queue_size``: legs
    waiting to be fetched (more are dropped and asked again on a later estimate);
    ``concurrency``: requests in flight; ``timeout_s``: per request."""

    origin_decimals: int = 3
    destination_decimals: int = 4
    cache_size: int = 65_536
    queue_size: int = 1_024
    concurrency: int = 4
    timeout_s: float = 2.0
    retry_after_s: float = 30.0
    profile: str = "driving"


def leg_key(config: RoutingConfig, lat1: float, lon1: float, lat2: float, lon2: float) -> Key:
    """A leg's ends snapped to the grid the engine is asked on (and the cache is keyed by)."""
    o, d = config.origin_decimals, config.destination_decimals
    return round(lat1, o), round(lon1, o), round(lat2, d), round(lon2, d)


class OsrmRouting:
    """``eta.speeds.RoutingPrior`` backed by an OSRM-style HTTP engine."""

    def __init__(
        self,
        url: str,
        metrics: Metrics | None = None,
        config: RoutingConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url.rstrip("/")
        self.config = cfg = config if config is not None else RoutingConfig()
        self.clock = clock
        self._cache: OrderedDict[Key, RouteLeg] = OrderedDict()
        self._queue: asyncio.Queue[Key] = asyncio.Queue(cfg.queue_size)
        self._queued: set[Key] = set()
        self._down_until = float("-inf")
        self._client = httpx.AsyncClient(timeout=cfg.timeout_s)
        self.requests = Counter(
            "fieldtrack_routing_requests_total",
            "Requests to the routing engine by outcome (ok, no_route, error).",
            ("outcome",),
        )
        self.dropped = Counter(
            "fieldtrack_routing_dropped_total", "Legs not queued for the routing engine: full."
        )
        if metrics is not None:
            metrics.extra += [self.requests, self.dropped]

    # -- the estimate's side: synchronous, never waits ------------------------------------

    def route(self, lat1: float, lon1: float, lat2: float, lon2: float) -> RouteLeg | None:
        """The cached route of the leg, or None (queued for fetching unless known unroutable
        or the engine is away)."""
        key = leg_key(self.config, lat1, lon1, lat2, lon2)
        leg = self._cache.get(key)
        if leg is not None:
            self._cache.move_to_end(key)
            return None if leg is _NO_ROUTE else leg
        if key in self._queued or self.clock() < self._down_until:
            return None
        try:
            self._queue.put_nowait(key)
        except asyncio.QueueFull:
            self.dropped.inc()
            return None
        self._queued.add(key)
        return None

    # -- the background side ---------------------------------------------------------------

    async def run(self) -> None:
        """Fetch queued legs until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for i in range(self.config.concurrency):
                tg.create_task(self._worker(), name=f"routing-{i}")

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            try:
                if self.clock() >= self._down_until:
                    await self._fetch(key)
            finally:
                self._queued.discard(key)

    async def _fetch(self, key: Key) -> None:
        lat1, lon1, lat2, lon2 = key
        url = (
            f"{self.url}/route/v1/{self.config.profile}/{lon1},{lat1};{lon2},{lat2}"
            "?overview=false&alternatives=false&steps=false"
        )
        try:
            response = await self._client.get(url)
            leg = _parse(response)
        except (httpx.HTTPError, ValueError) as exc:
            self.requests.inc(1.0, "error")
            if self.clock() >= self._down_until:
                log.warning(
                    "routing engine failed (%s); routing again in %.0f s",
                    exc or type(exc).__name__,
                    self.config.retry_after_s,
                )
            self._down_until = self.clock() + self.config.retry_after_s
            return
        self.requests.inc(1.0, "ok" if leg is not _NO_ROUTE else "no_route")
        self._cache[key] = leg
        if len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)


def _parse(response: httpx.Response) -> RouteLeg:
    """The first route of an OSRM answer; ``_NO_ROUTE`` when it found none; ValueError if
    the answer is not OSRM's (or a server error)."""
    if response.status_code >= 500:
        raise ValueError(f"HTTP {response.status_code}")
    try:
        body: Any = response.json()
        code = body["code"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"HTTP {response.status_code}, not an OSRM answer") from exc
    if code in ("NoRoute", "NoSegment"):
        return _NO_ROUTE
    if code != "Ok":
        raise ValueError(f"HTTP {response.status_code}, code {code!r}")
    try:
        first = body["routes"][0]
        distance, duration = float(first["distance"]), float(first["duration"])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError("OSRM answer without a route's distance and duration") from exc
    if not (isfinite(distance) and isfinite(duration) and distance >= 0.0 and duration >= 0.0):
        raise ValueError("OSRM route with a negative or infinite distance or duration")
    return RouteLeg(distance, duration)
