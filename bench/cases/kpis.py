"""``kpis``: how long ``GET /api/v1/kpis`` takes over a soak-sized store, and how much it
holds up the event loop (a ``/healthz`` sent meanwhile, and the loop's worst lag).

A MemoryStore is filled directly (no engine): 80 technicians with one phone each, 8 days
of 5-6 jobs each (~3 500 jobs, each with its status history and 12 predictions), and a
fix every 110 s of an 8-hour working day per phone, ~160 000 fixes in all (quick: 20
technicians, 2 days). The endpoint is called through httpx's ASGI transport, in process,
for the whole period, one day, and one technician on one day; each call is timed alone
and then with a ``/healthz`` issued 20 ms into it, while a ticker task records how late
its 5 ms sleeps wake up.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any

import httpx

from dispatcher_feed.app import create_app
from dispatcher_feed.context import AppContext
from gateway.bus import MemoryBus
from gateway.metrics import Metrics
from gateway.model import Fix, Job, Site, StatusChange, Technician, Window
from gateway.service import Gateway
from gateway.settings import Secret, Settings
from gateway.store import MemoryStore

DAY0 = 1_709_528_400.0  # 2024-03-04 05:00 UTC, 07:00 in Helsinki
DAY_S = 86_400.0
KEY = "bench-kpis"


async def fill(store: MemoryStore, technicians: int, days: int) -> dict[str, int]:
    rng = random.Random(1)
    jobs = fixes = 0
    for t in range(technicians):
        tid, dev = f"t{t:03d}", f"d{t:03d}"
        await store.put_technician(Technician(tid, tid, (dev,)))
        lat, lon = 60.15 + rng.random() * 0.1, 24.85 + rng.random() * 0.2
        for day in range(days):
            start = DAY0 + day * DAY_S
            batch = []
            for k in range(int(8 * 3600 / 110)):
                lat += rng.gauss(0, 0.0005)
                lon += rng.gauss(0, 0.001)
                spd = rng.choice((0.0, 0.0, 8.0, 12.0))
                batch.append(Fix(dev, start + 110.0 * k, lat, lon, spd=spd, acc=rng.uniform(3, 20)))
            fixes += len(batch)
            await store.record_fixes(batch)
            for seq in range(1, 6 + (t + day) % 2):
                arrive = start + seq * 4800.0 + rng.uniform(-600, 600)
                history = (
                    StatusChange(arrive - 1500, "en_route", "planned", "device"),
                    StatusChange(arrive, "on_site", "en_route", "geofence"),
                    StatusChange(arrive + 60, "on_site", "on_site", "device"),
                    StatusChange(arrive + 2400, "done", "on_site", "device"),
                )
                preds = tuple(
                    (arrive - 3600 + 300 * i, arrive + rng.gauss(0, 300)) for i in range(12)
                )
                job = Job(
                    f"j{t:03d}-{day}-{seq}", tid, Site(lat, lon),
                    Window(start + seq * 4800 - 3600, start + seq * 4800 + 3600),
                    sequence=seq, state="done", history=history, predictions=preds,
                )  # fmt: skip
                await store.put_job(job)
                jobs += 1
    return {"technicians": technicians, "days": days, "jobs": jobs, "fixes": fixes}


async def measure(api: httpx.AsyncClient, query: str) -> dict[str, Any]:
    alone = []
    for _ in range(3):
        t0 = time.perf_counter()
        r = await api.get(f"/api/v1/kpis{query}")
        alone.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    lags: list[float] = []
    stop = False

    async def ticker() -> None:
        while not stop:
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - t0 - 0.005)

    async def healthz() -> float:
        """From when it was due (20 ms in) to its answer: a blocked loop delays both."""
        due = time.perf_counter() + 0.02
        await asyncio.sleep(0.02)
        assert (await api.get("/healthz")).status_code == 200
        return time.perf_counter() - due

    tick = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    _, health = await asyncio.gather(api.get(f"/api/v1/kpis{query}"), healthz())
    busy = time.perf_counter() - t0
    stop = True
    await tick
    return {
        "kpis_s": round(statistics.median(alone), 3),
        "kpis_with_healthz_s": round(busy, 3),
        "healthz_meanwhile_s": round(health, 3),
        "max_loop_lag_s": round(max(lags), 3),
    }


async def main(quick: bool) -> dict[str, Any]:
    settings = Settings(api_keys=(Secret(KEY),), signing_key=Secret("bench"))
    store, bus, metrics = MemoryStore(), MemoryBus(), Metrics()
    ctx = AppContext(settings, store, bus, metrics, Gateway(store, bus, metrics))
    size = await fill(store, *((20, 2) if quick else (80, 8)))
    transport = httpx.ASGITransport(app=create_app(ctx))
    headers = {"Authorization": f"Bearer {KEY}"}
    out: dict[str, Any] = {"store": size}
    day = f"since={DAY0 + DAY_S}&until={DAY0 + 2 * DAY_S}"
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench", headers=headers
    ) as api:
        for name, query in (
            ("all_time", ""),
            ("one_day", f"?{day}"),
            ("one_technician_one_day", f"?{day}&technician_id=t001"),
        ):
            out[name] = await measure(api, query)
    return out


def run(quick: bool) -> dict[str, Any]:
    return asyncio.run(main(quick))


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=False), indent=1))
