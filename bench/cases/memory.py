"""``memory``: bytes of gateway state per tracked device at 10⁵ devices (quick: 2·10⁴).

Method: a fresh process (spawned, so nothing of the parent's heap counts) builds the
in-memory gateway (``Gateway`` with ``MemoryStore``, ``MemoryBus`` and its ``Engine``),
fills the bus's bounded replay buffer first (a fixed cost, not a per-device one), then
feeds N devices x K fixes through ``Gateway.ingest_fixes`` in batches of 1 000, round
by round (every device's first fix, then every device's second...). Fixes are 5 s apart,
moving 0-15 m/s around Helsinki with a realistic ``acc``; each fix gets its own
``device_id`` string, as each single-fix MQTT message does. RSS (``/proc/self/statm``,
after ``gc.collect()``) is read before the first fix, after one fix per device and after
K, so

* bytes per stored fix = (RSS after K - RSS after 1) / (N x (K - 1)),
* live state per device = RSS after 1 / N - bytes per fix (history containers, live
  position, engine track, dict slots).

A second process repeats the run under ``tracemalloc`` for the Python-heap view (what
Python allocated, without allocator slack) and the files that allocated it. The ETA
model's leg cache (capped at 4 096 legs) is emptied before each reading: a cache, not
state. A second variant registers a technician for 10 % of the devices, each with two
planned jobs (so job-site fences, tours and ETA state exist), and reports what that adds
per technician.
"""

from __future__ import annotations

import asyncio
import gc
import math
import multiprocessing
import os
import random
import time
import tracemalloc
from array import array
from typing import Any

from gateway.bus import MemoryBus
from gateway.metrics import Metrics
from gateway.model import Customer, Fix, Job, Site, Technician, Window
from gateway.pipeline import position_event
from gateway.service import Gateway
from gateway.settings import Settings
from gateway.store import MemoryStore

PAGE = os.sysconf("SC_PAGE_SIZE")
BATCH = 1_000
FIX_EVERY_S = 5.0
JOBS_PER_TECHNICIAN = 2
M_PER_DEG_LAT = 111_320.0


class _Fleet:
    """Where each device starts, where it heads and how fast: arrays, not objects, so the
    generator's own footprint is small and fixed before the baseline is read."""

    def __init__(self, n: int, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.lat = array("d", (60.17 + rng.uniform(-0.12, 0.12) for _ in range(n)))
        self.lon = array("d", (24.94 + rng.uniform(-0.25, 0.25) for _ in range(n)))
        self.hdg = array("d", (rng.uniform(0.0, 360.0) for _ in range(n)))
        # A fifth of the fleet parked, the rest driving at city speeds.
        self.spd = array("d", (0.0 if rng.random() < 0.2 else rng.uniform(3, 15) for _ in range(n)))
        self.acc = array("d", (round(3 + 17 * rng.random() ** 2, 1) for _ in range(n)))
        self.t0 = time.time() - 3600.0

    def fix(self, i: int, k: int) -> Fix:
        """Device i's k-th fix (straight line at constant speed, small jitter)."""
        d = self.spd[i] * FIX_EVERY_S * k
        rad = math.radians(self.hdg[i])
        lat = self.lat[i] + d * math.cos(rad) / M_PER_DEG_LAT
        lon = self.lon[i] + d * math.sin(rad) / (M_PER_DEG_LAT * 0.497)
        moving = self.spd[i] > 0
        return Fix(
            device_id=f"dev-{i:06d}",
            ts=round(self.t0 + k * FIX_EVERY_S + (i % 1000) * 1e-3, 3),
            lat=round(lat + (k % 7) * 1e-6, 7),
            lon=round(lon, 7),
            spd=round(self.spd[i] + (k % 3) * 0.1, 2) if moving else 0.0,
            hdg=round(self.hdg[i], 1) if moving else None,
            acc=self.acc[i],
            bat=float(90 - k % 50),
        )

    def jobs(self, i: int, technician_id: str) -> list[Job]:
        """Planned jobs 1-3 km ahead of device i, windows in the next hours."""
        out = []
        for j in range(JOBS_PER_TECHNICIAN):
            ahead = 1000.0 * (j + 1) + 37.0 * (i % 20)
            rad = math.radians(self.hdg[i])
            start = self.t0 + 1800.0 * (j + 1)
            out.append(
                Job(
                    job_id=f"job-{i:06d}-{j}",
                    technician_id=technician_id,
                    site=Site(
                        round(self.lat[i] + ahead * math.cos(rad) / M_PER_DEG_LAT, 6),
                        round(self.lon[i] + ahead * math.sin(rad) / (M_PER_DEG_LAT * 0.497), 6),
                        100.0,
                    ),
                    window=Window(start, start + 7200.0),
                    planned_duration_s=1800.0,
                    sequence=j + 1,
                    customer=Customer(name=f"Customer {i}-{j}"),
                )
            )
        return out


def _sample(gateway: Gateway) -> dict[str, int]:
    # The ETA model's leg cache is capped (4 096 legs) and emptied whole when full, so
    # it is a fixed cost that would land on whichever figure its refill happens in.
    gateway.engine.model._legs.clear()
    gc.collect()
    with open("/proc/self/statm", encoding="ascii") as f:
        rss = int(f.read().split()[1]) * PAGE
    out = {"rss": rss}
    if tracemalloc.is_tracing():
        out["traced"] = tracemalloc.get_traced_memory()[0]
    return out


async def _warm_bus(gateway: Gateway, fleet: _Fleet, replay: int) -> None:
    """Fill the bounded replay buffer with position-shaped events: later events only
    replace these, so the buffer is in the baseline, not in the per-device figures."""
    events = [position_event(fleet.fix(0, -1 - i), None) for i in range(replay)]
    for i in range(0, replay, BATCH):
        await gateway.bus.publish(events[i : i + BATCH])


def _publish_outbox(gateway: Gateway) -> None:
    """What the MQTT ingest loop does with events made outside a broker batch (ETAs):
    publish and drop them. Without it the bounded outbox (10 000 events) would fill and
    count as per-technician state."""
    gateway.outbox.clear()


async def _register(gateway: Gateway, fleet: _Fleet, n: int, share: float) -> int:
    step = round(1 / share) if share else 0
    count = 0
    for i in range(0, n, step) if step else ():
        technician_id = f"tech-{i:06d}"
        await gateway.put_technician(
            Technician(technician_id, f"Technician {i}", (f"dev-{i:06d}",), ("hvac",))
        )
        for job in fleet.jobs(i, technician_id):
            await gateway.put_job(job)
        _publish_outbox(gateway)
        count += 1
    return count


async def _measure(n: int, k: int, share: float, traced: bool) -> dict[str, Any]:
    settings = Settings()
    fleet = _Fleet(n)
    if traced:
        tracemalloc.start()
    gateway = Gateway(
        MemoryStore(settings.history_per_device), MemoryBus(settings.replay_buffer), Metrics()
    )
    await gateway.start()
    await _warm_bus(gateway, fleet, settings.replay_buffer)
    points = {"empty": _sample(gateway)}
    before = tracemalloc.take_snapshot() if traced else None
    technicians = await _register(gateway, fleet, n, share)
    points["registered"] = _sample(gateway)
    for round_ in range(k):
        for lo in range(0, n, BATCH):
            await gateway.ingest_fixes(
                [fleet.fix(i, round_) for i in range(lo, min(n, lo + BATCH))]
            )
            _publish_outbox(gateway)
        if round_ == 0:
            points["one_fix"] = _sample(gateway)
    points["k_fixes"] = _sample(gateway)
    out: dict[str, Any] = {
        "points": points,
        "technicians": technicians,
        "stored_fixes": gateway.metrics.positions.get(),
    }
    if before is not None:
        after = tracemalloc.take_snapshot()
        out["top_files"] = _top_files(after.compare_to(before, "filename"), n)
        tracemalloc.stop()
    return out


def _top_files(diffs: list[tracemalloc.StatisticDiff], n: int) -> dict[str, float]:
    """Bytes per device by the file that allocated them, largest first."""
    here = os.path.abspath(__file__)
    out: dict[str, float] = {}
    for d in sorted(diffs, key=lambda d: d.size_diff, reverse=True)[:6]:
        name = d.traceback[0].filename
        # The generator stands in for the codec: what it allocates is the stored Fix
        # structs with their floats and device-id strings.
        label = "fixes (Fix structs, floats, ids)" if name == here else os.path.relpath(name)
        out[label] = round(d.size_diff / n, 1)
    return out


def _child(n: int, k: int, share: float, traced: bool, results: Any) -> None:
    try:
        results.put(asyncio.run(_measure(n, k, share, traced)))
    except BaseException as exc:  # reported to the parent, which raises
        results.put({"error": repr(exc)})


def _in_fresh_processes(jobs: list[tuple[int, int, float, bool]]) -> list[dict[str, Any]]:
    """Run each (n, k, share, traced) in its own spawned process, all at once."""
    ctx = multiprocessing.get_context("spawn")
    started = []
    for args in jobs:
        results = ctx.Queue()
        proc = ctx.Process(target=_child, args=(*args, results))
        proc.start()
        started.append((proc, results))
    outs = []
    try:
        for _, results in started:
            outs.append(results.get(timeout=900))
    finally:
        for proc, _ in started:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    errors = [o["error"] for o in outs if "error" in o]
    if errors:
        raise RuntimeError(f"memory child failed: {'; '.join(errors)}")
    return outs


def _per_device(run: dict[str, Any], key: str, n: int, k: int) -> dict[str, float]:
    p = run["points"]
    one = p["one_fix"][key] - p["registered"][key]
    per_fix = (p["k_fixes"][key] - p["one_fix"][key]) / (n * (k - 1))
    return {
        "bytes_per_device_total": round((p["k_fixes"][key] - p["registered"][key]) / n, 1),
        "bytes_per_stored_fix": round(per_fix, 1),
        "bytes_live_state_per_device": round(one / n - per_fix, 1),
    }


def _variant(n: int, k: int, share: float) -> dict[str, Any]:
    # tracemalloc slows the feed ~6x: its run is a quarter of the size (the figures are
    # per device and per fix, so the size hardly matters), alongside the plain one.
    n_traced = n // 4
    plain, traced = _in_fresh_processes([(n, k, share, False), (n_traced, k, share, True)])
    out: dict[str, Any] = {
        "rss": _per_device(plain, "rss", n, k),
        "tracemalloc": _per_device(traced, "traced", n_traced, k),
        "tracemalloc_devices": n_traced,
        "rss_mib_empty": round(plain["points"]["empty"]["rss"] / 2**20, 1),
        "rss_mib_after": round(plain["points"]["k_fixes"]["rss"] / 2**20, 1),
        "stored_fixes": plain["stored_fixes"],
        "tracemalloc_bytes_per_device_by_file": traced["top_files"],
    }
    if plain["technicians"]:
        p, q = plain["points"], traced["points"]
        out["technicians"] = plain["technicians"]
        out["rss_bytes_per_technician_registered"] = round(
            (p["registered"]["rss"] - p["empty"]["rss"]) / plain["technicians"], 1
        )
        out["traced_bytes_per_technician_registered"] = round(
            (q["registered"]["traced"] - q["empty"]["traced"]) / traced["technicians"], 1
        )
    return out


def run(quick: bool) -> dict[str, Any]:
    n = 20_000 if quick else 100_000
    k = 10
    settings = Settings()
    devices_only = _variant(n, k, 0.0)
    with_techs = _variant(n, k, 0.1)
    extra = (
        with_techs["rss"]["bytes_per_device_total"] - devices_only["rss"]["bytes_per_device_total"]
    )
    traced_extra = (
        with_techs["tracemalloc"]["bytes_per_device_total"]
        - devices_only["tracemalloc"]["bytes_per_device_total"]
    )
    rss = devices_only["rss"]
    # A device that has filled its history window holds at least this much.
    at_limit = (
        rss["bytes_live_state_per_device"]
        + settings.history_per_device * rss["bytes_per_stored_fix"]
    )
    return {
        "devices": n,
        "fixes_per_device": k,
        "history_limit_per_device": settings.history_per_device,
        "replay_buffer_events": settings.replay_buffer,
        "devices_only": devices_only,
        "technicians_10pct": with_techs,
        # What tracking a technician's device adds (engine trip/ETA/alert state and learned
        # legs), on top of its registration, per technician.
        "rss_engine_bytes_per_technician_tracked": round(extra * n / with_techs["technicians"], 1),
        "traced_engine_bytes_per_technician_tracked": round(
            traced_extra * n / with_techs["technicians"], 1
        ),
        "projected_rss_mib_per_1000_devices_at_history_limit": round(1000 * at_limit / 2**20, 1),
    }
