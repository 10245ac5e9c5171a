"""The routing engine as a prior, over real HTTP: an OSRM-shaped server on a free port
(``tests.support.osrm``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from eta.speeds import RouteLeg, SpeedModel, SpeedPrior
from gateway.metrics import Metrics
from gateway.routing import OsrmRouting, RoutingConfig
from gateway.server import build_runtime
from gateway.settings import Settings
from tests.support.osrm import osrm_server
from tests.support.procs import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def drained(routing: OsrmRouting) -> None:
    """Let the background fetcher take what is queued."""
    for _ in range(200):
        if not routing._queued:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("routing queue not drained")


@contextlib.asynccontextmanager
async def running(routing: OsrmRouting) -> AsyncIterator[OsrmRouting]:
    task = asyncio.create_task(routing.run())
    try:
        yield routing
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await routing.aclose()


LEG = (60.170712, 24.941521, 60.18, 24.95)


async def test_a_miss_is_fetched_in_the_background_and_answered_from_the_cache() -> None:
    metrics = Metrics()
    async with osrm_server() as (osrm, url), running(OsrmRouting(url, metrics)) as routing:
        assert routing.route(*LEG) is None  # the estimate never waits
        assert routing.route(*LEG) is None  # queued once
        await drained(routing)
        assert routing.route(*LEG) == RouteLeg(1500.0, 150.0)
        # Another position in the same ~110 m cell: the same leg, no new request.
        assert routing.route(60.17089, 24.94171, 60.18, 24.95) == RouteLeg(1500.0, 150.0)
    # Origin snapped to 3 decimals, the site to 4; OSRM's lon,lat order.
    assert osrm.asked == [(60.171, 24.942, 60.18, 24.95)]
    assert metrics.render().count('fieldtrack_routing_requests_total{outcome="ok"} 1') == 1


async def test_legs_without_a_route_are_remembered() -> None:
    async with osrm_server() as (osrm, url):
        osrm.answer = {"code": "NoRoute", "message": "Impossible route between points"}
        async with running(OsrmRouting(url)) as routing:
            routing.route(*LEG)
            await drained(routing)
            assert routing.route(*LEG) is None
            await asyncio.sleep(0.05)
            assert len(osrm.asked) == 1
            assert routing.requests.get("no_route") == 1


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ("upstream down", 502),
        ("<html>not OSRM</html>", 200),
        ({"code": "InvalidQuery", "message": "bad"}, 400),
        ({"code": "Ok", "routes": []}, 200),
        ({"code": "Ok", "routes": [{"distance": -1.0, "duration": 10.0}]}, 200),
    ],
)
async def test_a_failing_engine_is_left_alone_for_a_while(answer: Any, status: int) -> None:
    clock = Clock()
    async with osrm_server() as (osrm, url):
        osrm.answer, osrm.status = answer, status
        config = RoutingConfig(retry_after_s=30.0)
        async with running(OsrmRouting(url, config=config, clock=clock)) as routing:
            routing.route(*LEG)
            await drained(routing)
            assert routing.requests.get("error") == 1
            other = (60.2, 24.9, 60.18, 24.95)
            assert routing.route(*other) is None and routing.route(*LEG) is None
            await asyncio.sleep(0.05)
            assert len(osrm.asked) == 1  # nothing asked while it is away
            clock.now += 30.0
            osrm.answer, osrm.status = None, 200
            routing.route(*LEG)
            await drained(routing)
            assert routing.route(*LEG) == RouteLeg(1500.0, 150.0)


async def test_an_engine_that_does_not_answer_is_an_error_not_a_hang() -> None:
    port = free_port()  # nobody listens
    routing = OsrmRouting(f"http://127.0.0.1:{port}", config=RoutingConfig(timeout_s=0.5))
    async with running(routing):
        routing.route(*LEG)
        await drained(routing)
        assert routing.requests.get("error") == 1
        assert routing.route(*LEG) is None


async def test_a_full_queue_drops_and_counts() -> None:
    routing = OsrmRouting("http://127.0.0.1:9", config=RoutingConfig(queue_size=2))
    for i in range(4):  # not running: nothing is taken from the queue
        routing.route(60.0 + i / 100, 24.0, 60.5, 24.5)
    assert routing.dropped.get() == 2
    await routing.aclose()


async def test_the_learned_model_takes_road_distance_and_speed_from_the_route() -> None:
    async with osrm_server() as (_, url), running(OsrmRouting(url)) as routing:
        prior = SpeedPrior(speed_mps=8.0, detour_factor=1.3)
        alone, routed = SpeedModel(prior), SpeedModel(prior, routing=routing)
        at = 1_700_000_000.0
        before = routed.travel_time(*LEG, at)
        assert before == alone.travel_time(*LEG, at)  # a miss: the model alone
        await drained(routing)
        after = routed.travel_time(*LEG, at)
    assert after.distance_m == pytest.approx(1500.0)
    # Nothing learned yet: the route's own free-flow time (1500 m at 10 m/s).
    assert after.mean_s == pytest.approx(150.0, rel=0.01)
    assert before.mean_s != pytest.approx(150.0, rel=0.1)


async def test_the_gateway_runs_the_fetcher_where_the_engine_runs() -> None:
    settings = Settings(routing_url="http://127.0.0.1:5000", http=f"127.0.0.1:{free_port()}")
    runtime = await build_runtime(settings)
    try:
        assert isinstance(runtime.routing, OsrmRouting)
        assert runtime.gateway.engine.model.routing is runtime.routing
        assert "routing" in runtime.background()
        assert "fieldtrack_routing_requests_total" in runtime.metrics.render()
    finally:
        await runtime.close()
    plain = await build_runtime(Settings(http=f"127.0.0.1:{free_port()}"))
    try:
        assert plain.routing is None and plain.gateway.engine.model.routing is None
        assert "routing" not in plain.background()
    finally:
        await plain.close()
