"""``geofence``: which fences contain a fix — H3 FenceIndex vs shapely STRtree vs brute force.

A seeded 20 km x 20 km city around central Helsinki with 10 000 fences (quick: 2 000):
80 % job-site circles (radius 30-200 m), 19.5 % customer premises and depots (star-shaped
polygons of 6-50 vertices, radius 40-400 m) and 0.5 % zones (same shapes, 0.5-3 km),
radii log-uniform; and 10^5 fixes (quick: 2·10^4), half uniform over the city and half
in or near a random fence.  The full run repeats the comparison on a "dense" city (half
circles of 30-300 m, half 50-400 m polygons, uniform radii) where ~2.8 fences cover an
average fix, as a stress test.

All methods run on the same fixes in the same process, interleaved chunk by chunk so a
busy machine slows them alike, each fix once (cold caches, as with real traffic), and
their answers must be identical (brute force on a 2 000-fix sample):

* ``h3``: ``FenceIndex.containing(lat, lon)`` -> frozenset of ids.
* ``strtree``: ``tree.query(Point(lon, lat), predicate="intersects")`` (GEOS does the
  exact test; indices out, no id mapping: the baseline's most favourable form).
* ``strtree_query_only``: the same with the Points built beforehand.
* ``brute``: ``shapely.intersects_xy(all_geometries, lon, lat)`` per fix (vectorised).

Also: index build time, Python memory of the index (tracemalloc: GEOS's own memory for
prepared geometries is not included), µs per ``with_fence`` (moving an existing fence)
and ``without``, and µs per ``detect`` call (100 devices driving through the city).

``overlapping_sites``: the job sites of one simulated Helsinki day (80 technicians, seed
104: 447 circles of 60-150 m, many overlapping in the small centre) added one by one
to an empty index, as the engine does when the morning's jobs are uploaded, then each
removed from the full index: ms per ``with_fence`` (with its ``Placed.of``, ~2.5 ms of
cell work per circle whatever the overlap) and per ``without``.
"""

from __future__ import annotations

import gc
import math
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from geofence.detect import DetectorConfig, Presence, detect
from geofence.geodesy import destination
from geofence.index import FenceIndex
from geofence.shapes import Fence, circle_fence, fence_from_geojson

SEED = 20_240_601
CENTRE = (60.17, 24.94)
HALF_SIDE_M = 10_000.0
BRUTE_SAMPLE = 2_000
CHUNK = 1_000


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _city_point(rng: random.Random) -> tuple[float, float]:
    north, east = rng.uniform(-HALF_SIDE_M, HALF_SIDE_M), rng.uniform(-HALF_SIDE_M, HALF_SIDE_M)
    lat, _ = destination(*CENTRE, 0.0, north)
    return destination(lat, CENTRE[1], 90.0, east)


def _star(fid: str, rng: random.Random, lat: float, lon: float, radius: float) -> Fence:
    n = rng.randint(6, 50)
    ring = []
    for i in range(n):
        r = radius * rng.uniform(0.5, 1.0)
        vlat, vlon = destination(lat, lon, 360.0 * i / n, r)
        ring.append([vlon, vlat])
    feature = {"type": "Feature", "properties": {"kind": "zone"},
               "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}}  # fmt: skip
    return fence_from_geojson(fid, feature)


def make_fences(rng: random.Random, count: int, dense: bool = False) -> list[Fence]:
    """City: 80 % job sites, 19.5 % premises and depots, 0.5 % zones; dense: see module doc."""
    fences = []
    for i in range(count):
        lat, lon = _city_point(rng)
        u = rng.random()
        if dense:
            if u < 0.5:
                fences.append(circle_fence(f"site-{i}", lat, lon, rng.uniform(30, 300)))
            else:
                fences.append(_star(f"zone-{i}", rng, lat, lon, rng.uniform(50, 400)))
        elif u < 0.8:
            fences.append(circle_fence(f"site-{i}", lat, lon, _log_uniform(rng, 30, 200)))
        elif u < 0.995:
            fences.append(_star(f"place-{i}", rng, lat, lon, _log_uniform(rng, 40, 400)))
        else:
            fences.append(_star(f"zone-{i}", rng, lat, lon, _log_uniform(rng, 500, 3_000)))
    return fences


def make_fixes(rng: random.Random, fences: list[Fence], count: int) -> list[tuple[float, float]]:
    fixes = []
    for _ in range(count):
        if rng.random() < 0.5:
            fixes.append(_city_point(rng))
            continue
        minx, miny, maxx, maxy = rng.choice(fences).geometry.bounds
        dx, dy = (maxx - minx) / 4, (maxy - miny) / 4
        fixes.append((rng.uniform(miny - dy, maxy + dy), rng.uniform(minx - dx, maxx + dx)))
    return fixes


def _timed(fn: Callable[..., object], *args: Any) -> float:
    """µs spent in fn(*args)."""
    t0 = time.perf_counter_ns()
    fn(*args)
    return (time.perf_counter_ns() - t0) / 1e3


def compare(
    fences: list[Fence], fixes: list[tuple[float, float]]
) -> tuple[dict[str, Any], FenceIndex]:
    """Time the three methods on the same fixes, interleaved, and check the answers agree.

    Also returns the index it built, for the other measurements."""
    t0 = time.perf_counter()
    index = FenceIndex.build(fences)
    build_s = time.perf_counter() - t0
    geoms = np.array([f.geometry for f in fences])
    ids = [f.fence_id for f in fences]
    t0 = time.perf_counter()
    tree = shapely.STRtree(geoms)
    tree.query(shapely.Point(CENTRE[1], CENTRE[0]), predicate="intersects")
    strtree_build_s = time.perf_counter() - t0
    points = [shapely.Point(lon, lat) for lat, lon in fixes]
    containing, query, point = index.containing, tree.query, shapely.Point
    ours: list[frozenset[str]] = []
    theirs: list[Any] = []

    def h3_chunk(chunk: list[tuple[float, float]]) -> None:
        ours.extend([containing(a, o) for a, o in chunk])

    def strtree_chunk(chunk: list[tuple[float, float]]) -> None:
        theirs.extend([query(point(o, a), predicate="intersects") for a, o in chunk])

    def query_only_chunk(pts: list[Any]) -> None:
        for p in pts:
            query(p, predicate="intersects")

    chunks: dict[str, list[float]] = {"h3": [], "strtree": [], "strtree_query_only": []}
    gc.disable()
    try:
        for start in range(0, len(fixes), CHUNK):
            chunk = fixes[start : start + CHUNK]
            chunks["h3"].append(_timed(h3_chunk, chunk))
            chunks["strtree"].append(_timed(strtree_chunk, chunk))
            chunks["strtree_query_only"].append(
                _timed(query_only_chunk, points[start : start + CHUNK])
            )
    finally:
        gc.enable()
    spent = {name: sum(times) for name, times in chunks.items()}
    for mine, other in zip(ours, theirs, strict=True):
        assert mine == frozenset(ids[i] for i in other), "H3 index and STRtree disagree"
    sample = fixes[:BRUTE_SAMPLE]
    brute: list[frozenset[str]] = []
    intersects_xy = shapely.intersects_xy

    def brute_force() -> None:
        for a, o in sample:
            brute.append(frozenset(ids[i] for i in np.flatnonzero(intersects_xy(geoms, o, a))))

    brute_us = _timed(brute_force)
    assert brute == ours[: len(sample)], "H3 index and brute force disagree"
    per_fix = {name: us / len(fixes) for name, us in spent.items()}
    per_fix["brute"] = brute_us / len(sample)
    return {
        "fences": len(fences),
        "fixes": len(fixes),
        "fixes_inside_any": round(sum(1 for r in ours if r) / len(ours), 3),
        "fences_per_fix": round(sum(len(r) for r in ours) / len(ours), 3),
        "us_per_fix": {k: round(v, 3) for k, v in per_fix.items()},
        "speedup": {
            "vs_strtree": round(per_fix["strtree"] / per_fix["h3"], 2),
            "vs_strtree_query_only": round(per_fix["strtree_query_only"] / per_fix["h3"], 2),
            "vs_brute": round(per_fix["brute"] / per_fix["h3"], 1),
            # Load spikes on a shared machine hit single chunks: the median is steadier.
            "vs_strtree_chunk_median": _median_ratio(chunks["strtree"], chunks["h3"]),
            "vs_strtree_query_only_chunk_median": _median_ratio(
                chunks["strtree_query_only"], chunks["h3"]
            ),
        },
        "answers_identical": True,
        "brute_sample_fixes": len(sample),
        "build_s": {"h3": round(build_s, 2), "strtree": round(strtree_build_s, 3)},
        "index_keys": index.key_count(),
        "resolutions": index.resolutions(),
    }, index


def _median_ratio(slow: list[float], fast: list[float]) -> float:
    return round(statistics.median(s / f for s, f in zip(slow, fast, strict=True)), 2)


def index_memory_mb(fences: list[Fence]) -> float:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        index = FenceIndex.build(fences)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(index) == len(fences)
    return round((after - before) / 2**20, 1)


def update_costs(
    index: FenceIndex, rng: random.Random, fences: list[Fence], count: int
) -> dict[str, float]:
    """µs per with_fence (an existing fence moved ~100 m) and per without, on the full index."""
    moved = []
    for fence in rng.sample(fences, count):
        centre = fence.geometry.centroid
        lat, lon = destination(centre.y, centre.x, rng.uniform(0, 360), 100.0)
        moved.append(circle_fence(fence.fence_id, lat, lon, max(30.0, fence.size_m / 2)))
    with_us = [_timed(index.with_fence, f) for f in moved]
    without_us = [_timed(index.without, f.fence_id) for f in moved]
    return {
        "with_fence_us_median": round(statistics.median(with_us), 1),
        "with_fence_us_mean": round(statistics.fmean(with_us), 1),
        "without_us_median": round(statistics.median(without_us), 1),
    }


def job_sites(seed: int = 104, technicians: int = 80) -> list[Fence]:
    """The site fences of a simulated Helsinki day's jobs, in upload order."""
    from zoneinfo import ZoneInfo

    from gateway.engine import SITE_PREFIX
    from simulators.config import SimConfig
    from simulators.fleet import Router, plan_fleet
    from simulators.scenario import load_network
    from simulators.traffic import TrafficModel

    cfg = SimConfig(network="helsinki", technicians=technicians, seed=seed)
    graph = load_network(cfg)
    router = Router(graph, TrafficModel(graph, ZoneInfo(cfg.timezone)))
    plans = plan_fleet(graph, router, cfg.fleet, technicians, 1_700_000_000.0, seed)
    return [
        circle_fence(SITE_PREFIX + job.job_id, job.lat, job.lon, job.radius_m, kind="site",
                     technician_ids=frozenset({job.technician_id}))
        for plan in plans for job in plan.jobs
    ]  # fmt: skip


def overlapping_sites() -> dict[str, float]:
    """ms per with_fence as the index fills with one day's overlapping job sites, and per
    without from the full index."""
    fences = job_sites()
    index = FenceIndex.build(())
    add_ms = []
    for fence in fences:
        t0 = time.perf_counter_ns()
        index = index.with_fence(fence)
        add_ms.append((time.perf_counter_ns() - t0) / 1e6)
    remove_ms = [_timed(index.without, f.fence_id) / 1e3 for f in fences]
    last = add_ms[-50:]
    return {
        "sites": len(fences),
        "index_keys": index.key_count(),
        "add_all_s": round(sum(add_ms) / 1e3, 2),
        "with_fence_ms_mean_last_50": round(statistics.fmean(last), 2),
        "with_fence_ms_median_last_50": round(statistics.median(last), 2),
        "with_fence_ms_max": round(max(add_ms), 1),
        "without_ms_mean": round(statistics.fmean(remove_ms), 2),
        "without_ms_median": round(statistics.median(remove_ms), 2),
        "without_ms_max": round(max(remove_ms), 1),
    }


@dataclass
class _Device:
    presence: Presence
    lat: float
    lon: float
    heading: float


def detect_cost(index: FenceIndex, rng: random.Random, steps: int) -> dict[str, float]:
    """µs per detect() for 100 devices driving at 15 m/s, a fix every 5 s."""
    cfg = DetectorConfig()
    devices = [
        _Device(Presence.empty(), *_city_point(rng), rng.uniform(0, 360)) for _ in range(100)
    ]
    transitions = 0
    spent_ns = 0
    for step in range(steps):
        for dev in devices:
            dev.heading = (dev.heading + rng.gauss(0, 25)) % 360
            dev.lat, dev.lon = destination(dev.lat, dev.lon, dev.heading, 75.0)
            t0 = time.perf_counter_ns()
            dev.presence, found = detect(
                index, dev.presence, step * 5.0, dev.lat, dev.lon, 8.0, cfg
            )
            spent_ns += time.perf_counter_ns() - t0
            transitions += len(found)
    calls = steps * len(devices)
    return {"detect_us_per_fix": round(spent_ns / 1e3 / calls, 2), "transitions": transitions}


def run(quick: bool) -> dict[str, Any]:
    n_fences, n_fixes = (2_000, 20_000) if quick else (10_000, 100_000)
    rng = random.Random(SEED)
    fences = make_fences(rng, n_fences)
    fixes = make_fixes(rng, fences, n_fixes)
    city, index = compare(fences, fixes)
    result: dict[str, Any] = {"city": city}
    result["city"]["index_python_mb"] = index_memory_mb(fences)
    result["city"] |= update_costs(index, rng, fences, 200)
    result["city"] |= detect_cost(index, rng, 40 if quick else 100)
    result["overlapping_sites"] = overlapping_sites()
    if not quick:
        dense = make_fences(rng, n_fences, dense=True)
        result["dense"] = compare(dense, make_fixes(rng, dense, n_fixes))[0]
    return result
