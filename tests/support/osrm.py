"""An HTTP server answering OSRM's route service, on a free port in the test's loop.

No OSRM package installs on these machines (Debian has none, PyPI none), so this answers
in the service's documented shape: ``code``, ``routes[].distance`` (m) and
``routes[].duration`` (s) for ``GET /route/v1/driving/{lon},{lat};{lon},{lat}``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.procs import free_port


@dataclass
class Osrm:
    """What the server answers next and the (lat, lon, lat, lon) legs it was asked for.

    ``answer``: a JSON body, or a string sent as is; None is a route of ``distance_m``
    in ``duration_s``."""

    answer: Any = None
    status: int = 200
    distance_m: float = 1500.0
    duration_s: float = 150.0
    asked: list[tuple[float, float, float, float]] = field(default_factory=list)

    async def route(self, request: Request) -> Response:
        a, b = request.path_params["coords"].split(";")
        lon1, lat1 = (float(x) for x in a.split(","))
        lon2, lat2 = (float(x) for x in b.split(","))
        self.asked.append((lat1, lon1, lat2, lon2))
        if isinstance(self.answer, str):
            return Response(self.answer, self.status)
        body = self.answer or {
            "code": "Ok",
            "routes": [{"distance": self.distance_m, "duration": self.duration_s, "weight": 1.0}],
            "waypoints": [],
        }
        return JSONResponse(body, self.status)


@contextlib.asynccontextmanager
async def osrm_server() -> AsyncIterator[tuple[Osrm, str]]:
    """The server and its base URL, for as long as the block runs."""
    osrm = Osrm()
    app = Starlette(routes=[Route("/route/v1/driving/{coords}", osrm.route)])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    try:
        yield osrm, f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        await task
