"""``eta_micro``: µs per ETA operation the gateway runs on every fix of a technician on tour.

Measured: ``SpeedModel.observe`` on a seeded drive, ``travel_time`` for a leg between two
stops (cells cached) and from a moving position (cells looked up), ``estimate_tour`` of an
8-stop tour from a moving position (and with the first job on site and a duration model),
``evaluate`` and ``customer_notifications`` on its result, ``extend_trip``, and the sum per
fix. Baselines in the same run: bare haversine + one EWMA update (FACTS.md's 1.2 µs figure)
and a constant-speed straight-line travel time.

``estimate_tour_8_stops_routing_prior_us``: the same estimate with ``--routing-url``'s adapter
as the prior, every leg in its cache: a routed leg's cells blend with its own prior speed,
which cannot use the per-cell cache of the plain blend.

``engine_tick_after_a_year_us``: the engine's periodic re-estimate of one technician with
five jobs open and a year of done jobs (five a day) filed, with the done jobs retired from
the tour after a day (the default) and kept for ever (as before retirement existed).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from itertools import pairwise
from math import cos, radians
from typing import Any

import msgspec

from eta.delay import AlertState, NotifyState, customer_notifications, evaluate
from eta.durations import DurationModel
from eta.estimate import TourStop, estimate_tour
from eta.geo import haversine_m
from eta.speeds import RouteLeg, SpeedModel
from eta.trips import begin_trip, extend_trip
from gateway.engine import Engine, EngineConfig
from gateway.model import Fix, Job, Site, StatusChange, Window
from gateway.routing import OsrmRouting, leg_key

T0 = 1_700_467_200.0  # Monday 08:00 UTC
LAT0, LON0 = 60.17, 24.94


def _per_op_us(fn: Callable[[int], object], n: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean µs per call of ``fn(i)`` for i in range(n)."""
    fn(0)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(runs)


def _drive(rng: random.Random, n: int) -> list[tuple[float, float, float]]:
    """A wandering drive over central Helsinki: a fix every 10 s at 3-14 m/s."""
    lat, lon, ts, heading = LAT0, LON0, T0 - n * 10.0, rng.uniform(0, 360)
    out = []
    m_per_deg_lon = 111_195.0 * cos(radians(LAT0))
    for _ in range(n):
        heading += rng.gauss(0, 25)
        step = rng.uniform(3, 14) * 10.0
        lat += step * cos(radians(heading)) / 111_195.0
        lon += step * cos(radians(90 - heading)) / m_per_deg_lon
        # Stay within ~6 km of the centre, like a city fleet.
        if abs(lat - LAT0) > 0.05 or abs(lon - LON0) > 0.1:
            heading += 180
        ts += 10.0
        out.append((lat, lon, ts))
    return out


def _tour(rng: random.Random) -> list[TourStop]:
    stops = []
    for i in range(8):
        start = T0 + 1800 + i * 3600
        stops.append(
            TourStop(
                job_id=f"J{i}",
                lat=LAT0 + rng.uniform(-0.04, 0.04),
                lon=LON0 + rng.uniform(-0.08, 0.08),
                window_start=start,
                window_end=start + 7200,
                planned_duration_s=2400.0,
                state="en_route" if i == 0 else "planned",
            )
        )
    return stops


def _year_of_jobs(rng: random.Random, days: int) -> list[Job]:
    jobs = []
    for d in range(-days, 1):
        for k in range(5):
            ws = T0 + d * 86400.0 + k * 5400.0
            site = Site(LAT0 + rng.uniform(-0.05, 0.05), LON0 + rng.uniform(-0.1, 0.1))
            job = Job(f"j{d}-{k}", "t1", site, Window(ws, ws + 3600.0), 1800.0, k + 1)
            if d < 0:
                done = (
                    StatusChange(ws, "on_site", "en_route", "device"),
                    StatusChange(ws + 1800.0, "done", "on_site", "device"),
                )
                job = msgspec.structs.replace(job, state="done", history=done)
            jobs.append(job)
    return jobs


def _engine_tick_us(jobs: list[Job], kept_s: float, n: int) -> float:
    """µs per ``Engine.tick`` 10 s apart, each re-estimating the technician's tour."""
    engine = Engine(EngineConfig(closed_kept_s=kept_s))
    engine.load_jobs(jobs)
    engine.on_fix(Fix("d1", T0, LAT0, LON0), "t1", T0)
    return _per_op_us(lambda i: engine.tick(T0 + 10.0 * (i + 1)), n, repeats=3)


def _routed_tour_us(
    fixes: list[tuple[float, float, float]], stops: list[TourStop], model: SpeedModel, n: int
) -> float:
    """``estimate_tour`` with ``--routing-url``'s adapter as the prior, every leg in its
    cache (as once the fetcher has answered): the cost of asking it on the hot path."""
    routing = OsrmRouting("http://127.0.0.1:9")
    # The same learned state as ``model``, with the routing prior.
    routed = SpeedModel.restore(model.snapshot(), model.prior, model.config, routing)
    first = stops[0]
    legs = [(*f[:2], first.lat, first.lon) for f in fixes]
    legs += [(a.lat, a.lon, b.lat, b.lon) for a, b in pairwise(stops)]
    for lat1, lon1, lat2, lon2 in legs:
        leg = RouteLeg(haversine_m(lat1, lon1, lat2, lon2) * 1.3, 100.0)
        routing._cache[leg_key(routing.config, lat1, lon1, lat2, lon2)] = leg  # a warm cache
    try:
        return _per_op_us(
            lambda i: estimate_tour(T0 + i, fixes[i % len(fixes)][:2], stops, routed), n
        )
    finally:
        asyncio.run(routing.aclose())


def run(quick: bool) -> dict[str, Any]:
    rng = random.Random(7)
    n = 20_000 if quick else 200_000
    fixes = _drive(rng, 20_000)
    pairs = list(pairwise(fixes))
    model = SpeedModel()

    def observe(i: int) -> None:
        (a1, o1, t1), (a2, o2, t2) = pairs[i % len(pairs)]
        model.observe(a1, o1, t1, a2, o2, t2)

    observe_us = _per_op_us(observe, n)

    ewma = [0.0, 0.0]

    def baseline_observe(i: int) -> None:
        (a1, o1, t1), (a2, o2, t2) = pairs[i % len(pairs)]
        v = haversine_m(a1, o1, a2, o2) / (t2 - t1)
        ewma[0] += 0.05 * (v - ewma[0])
        ewma[1] = 0.95 * (ewma[1] + 0.05 * (v - ewma[0]) ** 2)

    baseline_observe_us = _per_op_us(baseline_observe, n)

    stops = _tour(rng)
    s0, s1 = stops[0], stops[1]
    cached_us = _per_op_us(lambda i: model.travel_time(s0.lat, s0.lon, s1.lat, s1.lon, T0), n)
    moving_us = _per_op_us(
        lambda i: model.travel_time(*fixes[i % len(fixes)][:2], s1.lat, s1.lon, T0), n
    )
    constant_us = _per_op_us(
        lambda i: haversine_m(*fixes[i % len(fixes)][:2], s1.lat, s1.lon) * 1.35 / 8.3, n
    )
    n_tour = n // 10
    tour_us = _per_op_us(
        lambda i: estimate_tour(T0 + i, fixes[i % len(fixes)][:2], stops, model), n_tour
    )
    routed_us = _routed_tour_us(fixes, stops, model, n_tour)
    durations = DurationModel()
    for _ in range(200):
        durations.observe_job(2400.0, 2400.0 * rng.choice((0.9, 1.0, 1.1, 1.5)))
    on_site = [replace(stops[0], state="on_site", arrived_at=T0 - 2000.0), *stops[1:]]
    tour_dur_us = _per_op_us(
        lambda i: estimate_tour(
            T0 + i, fixes[i % len(fixes)][:2], on_site, model, durations=durations
        ),
        n_tour,
    )
    trip = begin_trip(*fixes[0])

    def extend(i: int) -> None:
        extend_trip(trip, *fixes[1 + i % (len(fixes) - 1)])

    trip_us = _per_op_us(extend, n)
    etas = estimate_tour(T0, fixes[0][:2], stops, model)
    alerts = AlertState()
    evaluate_us = _per_op_us(
        lambda i: evaluate(T0 + i, "t1", etas, stops, T0 + i, None, False, alerts), n
    )
    notify_state = NotifyState()
    notify_us = _per_op_us(
        lambda i: customer_notifications(
            T0 + i, "t1", fixes[i % len(fixes)][:2], etas, stops, notify_state
        ),
        n,
    )
    per_fix = observe_us + tour_us + evaluate_us + notify_us + trip_us
    year = _year_of_jobs(rng, 365)
    n_ticks = 100 if quick else 1000
    tick_retired_us = _engine_tick_us(year, 86400.0, n_ticks)
    tick_kept_us = _engine_tick_us(year, float("inf"), n_ticks)
    return {
        "observe_us": round(observe_us, 3),
        "baseline_haversine_ewma_us": round(baseline_observe_us, 3),
        "observe_vs_baseline": round(observe_us / baseline_observe_us, 2),
        "travel_time_cached_leg_us": round(cached_us, 3),
        "travel_time_moving_origin_us": round(moving_us, 3),
        "baseline_constant_speed_us": round(constant_us, 3),
        "estimate_tour_8_stops_us": round(tour_us, 2),
        "estimate_tour_8_stops_on_site_with_durations_us": round(tour_dur_us, 2),
        "estimate_tour_8_stops_routing_prior_us": round(routed_us, 2),
        "extend_trip_us": round(trip_us, 3),
        "evaluate_8_jobs_us": round(evaluate_us, 3),
        "customer_notifications_8_jobs_us": round(notify_us, 3),
        "per_fix_total_us": round(per_fix, 2),
        "fixes_per_s_per_core_eta_only": round(1e6 / per_fix),
        "engine_tick_after_a_year_us": {
            "done_jobs_retired": round(tick_retired_us, 1),
            "done_jobs_kept": round(tick_kept_us, 1),
            "kept_vs_retired": round(tick_kept_us / tick_retired_us, 1),
        },
        "cells_learned": model.cell_count,
        "snapshot_cells_json_kib": round(len(str(model.snapshot())) / 1024, 1),
    }
