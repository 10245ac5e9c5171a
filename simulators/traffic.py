"""Traffic on the simulated roads: time-of-day congestion per road class plus incidents.

The speed a vehicle actually drives is ``limit x congestion(class, local time) x incident
factor x driver factor``; the resulting travel times are the ground truth an ETA is
scored against. Drivers (and routing) know rush hours but not incidents.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from simulators.roads import Edge, RoadGraph

HOUR = 3600.0
# Rush hours in local time, (start, end) seconds of day; the slowdown ramps in and out
# over RAMP_S on both sides.
RUSH_HOURS = ((7.5 * HOUR, 9.0 * HOUR), (16.0 * HOUR, 18.0 * HOUR))
RAMP_S = 0.5 * HOUR
# Speed multiplier at the height of a rush hour, and during the rest of the day (06-22).
PEAK_FACTOR = {"arterial": 0.5, "secondary": 0.65, "residential": 0.85}
DAY_FACTOR = {"arterial": 0.9, "secondary": 0.92, "residential": 0.95}
DAY_HOURS = (6.0 * HOUR, 22.0 * HOUR)


def rush_weight(second_of_day: float) -> float:
    """0 outside rush hours, 1 inside, linear over the ramps."""
    w = 0.0
    for start, end in RUSH_HOURS:
        if start <= second_of_day <= end:
            return 1.0
        if start - RAMP_S < second_of_day < start:
            w = max(w, 1 - (start - second_of_day) / RAMP_S)
        elif end < second_of_day < end + RAMP_S:
            w = max(w, 1 - (second_of_day - end) / RAMP_S)
    return w


def congestion(road_class: str, second_of_day: float) -> float:
    """Speed multiplier (<= 1) for a road class at a local time of day."""
    if not DAY_HOURS[0] <= second_of_day < DAY_HOURS[1]:
        return 1.0
    base = DAY_FACTOR[road_class]
    return base - (base - PEAK_FACTOR[road_class]) * rush_weight(second_of_day)


@dataclass(frozen=True, slots=True)
class Incident:
    """A stretch of road driven at `factor` x normal speed between `start` and `end`."""

    incident_id: str
    edges: tuple[int, ...]
    start: float
    end: float
    factor: float
    lat: float
    lon: float


def generate_incidents(
    graph: RoadGraph,
    rng: random.Random,
    start: float,
    end: float,
    per_hour: float,
    *,
    stretch_m: tuple[float, float] = (200.0, 800.0),
    duration_s: tuple[float, float] = (900.0, 3600.0),
    factor: tuple[float, float] = (0.15, 0.5),
) -> list[Incident]:
    """Poisson incidents over [start, end): each slows a connected run of edges for a while."""
    incidents: list[Incident] = []
    t = start
    while per_hour > 0:
        t += rng.expovariate(per_hour / HOUR)
        if t >= end:
            break
        first = rng.randrange(len(graph.edges))
        edges = _stretch(graph, first, rng.uniform(*stretch_m), rng)
        lat, lon = graph.coords[graph.edges[first].u]
        incidents.append(
            Incident(
                f"incident-{len(incidents) + 1}",
                edges,
                round(t, 3),
                round(t + rng.uniform(*duration_s), 3),
                round(rng.uniform(*factor), 3),
                lat,
                lon,
            )
        )
    return incidents


def _stretch(graph: RoadGraph, first: int, length_m: float, rng: random.Random) -> tuple[int, ...]:
    """Follow the road onward from `first` until `length_m` is covered (or a dead end)."""
    edges = [first]
    covered = graph.edges[first].length_m
    while covered < length_m:
        here = graph.edges[edges[-1]]
        onward = [e for e in graph.out_edges(here.v) if graph.edges[e].v != here.u]
        onward = [e for e in onward if e not in edges]
        if not onward:
            break
        edges.append(rng.choice(onward))
        covered += graph.edges[edges[-1]].length_m
    # Both directions of a blocked street are slowed.
    reverse = {(graph.edges[e].v, graph.edges[e].u) for e in edges}
    for node in {graph.edges[e].v for e in edges}:
        edges.extend(e for e in graph.out_edges(node) if (node, graph.edges[e].v) in reverse)
    return tuple(sorted(set(edges)))


class TrafficModel:
    """Speeds on a graph at a given epoch time: congestion by local time, then incidents."""

    def __init__(self, graph: RoadGraph, tz: tzinfo, incidents: Sequence[Incident] = ()) -> None:
        self.graph = graph
        self.tz = tz
        self.incidents = tuple(incidents)
        self._by_edge: dict[int, list[Incident]] = {}
        for inc in self.incidents:
            for e in inc.edges:
                self._by_edge.setdefault(e, []).append(inc)
        self._offset_cache: dict[int, float] = {}

    def second_of_day(self, t: float) -> float:
        hour = math.floor(t / HOUR)
        off = self._offset_cache.get(hour)
        if off is None:
            # UTC offsets change at most on the hour, so one lookup per hour is exact.
            utc_offset = datetime.fromtimestamp(hour * HOUR, self.tz).utcoffset()
            off = utc_offset.total_seconds() if utc_offset is not None else 0.0
            self._offset_cache[hour] = off
        return (t + off) % 86400.0

    def congestion(self, edge: Edge, t: float) -> float:
        return congestion(edge.road_class, self.second_of_day(t))

    def incident_factor(self, edge_id: int, t: float) -> float:
        f = 1.0
        for inc in self._by_edge.get(edge_id, ()):
            if inc.start <= t < inc.end:
                f = min(f, inc.factor)
        return f

    def speed_mps(self, edge: Edge, t: float) -> float:
        """The speed traffic allows on `edge` at time `t` (before the driver's own factor)."""
        return edge.speed_mps * self.congestion(edge, t) * self.incident_factor(edge.edge_id, t)

    def expected_slowdown(self, t: float) -> dict[str, float]:
        """Travel-time multiplier by road class at `t` as a driver expects it (no incidents)."""
        sod = self.second_of_day(t)
        return {cls: 1.0 / congestion(cls, sod) for cls in PEAK_FACTOR}
