"""A vehicle's true path over time: contiguous constant-velocity segments.

The fleet model writes trajectories; the phone model samples them. Queries are by epoch
time and cost a binary search.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from simulators.geo import bearing_deg, haversine_m, lerp, to_local

STATIONARY = -1


@dataclass(frozen=True, slots=True)
class Segment:
    """From (lat0, lon0) at t0 to (lat1, lon1) at t1 along `edge` (-1: standing still)."""

    t0: float
    t1: float
    lat0: float
    lon0: float
    lat1: float
    lon1: float
    edge: int = STATIONARY

    @property
    def moving(self) -> bool:
        return self.edge != STATIONARY

    @property
    def speed_mps(self) -> float:
        if not self.moving or self.t1 <= self.t0:
            return 0.0
        return haversine_m(self.lat0, self.lon0, self.lat1, self.lon1) / (self.t1 - self.t0)


@dataclass(frozen=True, slots=True)
class State:
    """Where a vehicle truly is at one instant."""

    lat: float
    lon: float
    speed_mps: float
    heading: float | None
    edge: int


class Trajectory:
    """Append-only list of segments, each starting where and when the previous ended."""

    def __init__(self, t0: float, lat: float, lon: float) -> None:
        self.start = t0
        self._end = (t0, lat, lon)
        self.segments: list[Segment] = []
        self._starts: list[float] = []
        self._move_starts: list[float] = []

    @property
    def end(self) -> float:
        return self._end[0]

    @property
    def position(self) -> tuple[float, float]:
        return self._end[1], self._end[2]

    def move_to(self, t1: float, lat: float, lon: float, edge: int) -> None:
        t0, lat0, lon0 = self._end
        if t1 < t0:
            raise ValueError(f"segment ends before it starts ({t1} < {t0})")
        if t1 == t0 and edge == STATIONARY:
            return
        self.segments.append(Segment(t0, t1, lat0, lon0, lat, lon, edge))
        self._starts.append(t0)
        if edge != STATIONARY:
            self._move_starts.append(t0)
        self._end = (t1, lat, lon)

    def wait_until(self, t1: float) -> None:
        if t1 > self.end:
            self.move_to(t1, *self.position, STATIONARY)

    def index_at(self, t: float) -> int:
        """Index of the segment under way at `t` (the first or last one outside the span)."""
        return max(0, bisect.bisect_right(self._starts, t) - 1)

    def segment_at(self, t: float) -> Segment:
        return self.segments[self.index_at(t)]

    def at(self, t: float) -> State:
        if not self.segments or t >= self.end:
            lat, lon = self.position
            return State(lat, lon, 0.0, None, STATIONARY)
        seg = self.segment_at(t)
        span = seg.t1 - seg.t0
        f = 0.0 if span <= 0 else min(1.0, max(0.0, (t - seg.t0) / span))
        lat, lon = lerp(seg.lat0, seg.lon0, seg.lat1, seg.lon1, f)
        if not seg.moving:
            return State(lat, lon, 0.0, None, STATIONARY)
        heading = bearing_deg(seg.lat0, seg.lon0, seg.lat1, seg.lon1)
        return State(lat, lon, seg.speed_mps, heading, seg.edge)

    def next_move_start(self, t: float) -> float | None:
        """When the vehicle next starts a moving segment strictly after `t`."""
        i = bisect.bisect_right(self._move_starts, t)
        return self._move_starts[i] if i < len(self._move_starts) else None


def disk_interval(
    seg: Segment, lat: float, lon: float, radius_m: float
) -> tuple[float, float] | None:
    """Times within `seg` when the vehicle is inside the circle, or None if never."""
    ax, ay = to_local(seg.lat0, seg.lon0, lat, lon)
    bx, by = to_local(seg.lat1, seg.lon1, lat, lon)
    dx, dy = bx - ax, by - ay
    a = dx * dx + dy * dy
    c = ax * ax + ay * ay - radius_m * radius_m
    if a == 0:
        return (seg.t0, seg.t1) if c <= 0 else None
    b = 2 * (ax * dx + ay * dy)
    disc = b * b - 4 * a * c
    if disc < 0:
        return None
    root = math.sqrt(disc)
    s0, s1 = max(0.0, (-b - root) / (2 * a)), min(1.0, (-b + root) / (2 * a))
    if s0 > s1:
        return None
    span = seg.t1 - seg.t0
    return seg.t0 + s0 * span, seg.t0 + s1 * span


def inside_period(
    traj: Trajectory, t: float, lat: float, lon: float, radius_m: float
) -> tuple[float, float]:
    """The continuous stay inside the circle that contains time `t` (enter, exit)."""
    i = traj.index_at(t)
    enter = exit_ = t
    j = i
    while j >= 0:
        span = disk_interval(traj.segments[j], lat, lon, radius_m)
        if span is None:
            break
        enter = span[0]
        if span[0] > traj.segments[j].t0:
            break
        j -= 1
    j = i
    while j < len(traj.segments):
        span = disk_interval(traj.segments[j], lat, lon, radius_m)
        if span is None:
            break
        exit_ = span[1]
        if span[1] < traj.segments[j].t1:
            break
        j += 1
    return enter, exit_
