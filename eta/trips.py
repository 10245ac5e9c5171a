"""A drive in progress, followed fix by fix, so the speed model can learn from whole trips.

The gateway begins a trip when a job goes ``en_route`` (at the current fix), extends it with
each newer fix of the device, and finishes it on ``on_site``; ``finish_trip`` hands the
model the straight-line and travelled distances (the detour factor) and the total and moving
times (the stop factor: speed samples leave out the time stood at lights and in queues).
Moving time is counted by the same rules ``SpeedModel.observe`` uses to accept a pair.
"""

from __future__ import annotations

from dataclasses import dataclass

from eta.geo import bearing_deg, haversine_m
from eta.speeds import ModelConfig, SpeedModel

DEFAULT_MODEL_CONFIG = ModelConfig()


@dataclass(frozen=True, slots=True)
class Trip:
    """Where a drive began, the last counted point, path length and time spent moving."""

    start_lat: float
    start_lon: float
    start_ts: float
    lat: float
    lon: float
    ts: float
    travelled_m: float = 0.0
    moving_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.ts - self.start_ts

    @property
    def straight_m(self) -> float:
        return haversine_m(self.start_lat, self.start_lon, self.lat, self.lon)

    @property
    def bearing(self) -> float:
        """Direction from start to the last counted point, degrees clockwise from north."""
        return bearing_deg(self.start_lat, self.start_lon, self.lat, self.lon)


def begin_trip(lat: float, lon: float, ts: float) -> Trip:
    """A trip starting at this fix."""
    return Trip(lat, lon, ts, lat, lon, ts)


def extend_trip(
    trip: Trip, lat: float, lon: float, ts: float, cfg: ModelConfig = DEFAULT_MODEL_CONFIG
) -> Trip:
    """The trip after one more fix; an older or same-time fix changes nothing."""
    dt = ts - trip.ts
    if dt <= 0.0:
        return trip
    d = haversine_m(trip.lat, trip.lon, lat, lon)
    if d < cfg.min_move_m:
        # GPS jitter: time passes standing still, and the point stays put so wobble never
        # adds up to distance.
        return Trip(
            trip.start_lat,
            trip.start_lon,
            trip.start_ts,
            trip.lat,
            trip.lon,
            ts,
            trip.travelled_m,
            trip.moving_s,
        )
    moving = trip.moving_s
    if cfg.min_gap_s <= dt <= cfg.max_gap_s and (cfg.stop_speed_mps <= d / dt <= cfg.max_speed_mps):
        moving += dt
    return Trip(
        trip.start_lat, trip.start_lon, trip.start_ts, lat, lon, ts, trip.travelled_m + d, moving
    )


def finish_trip(
    model: SpeedModel,
    trip: Trip,
    lat: float,
    lon: float,
    ts: float,
    predicted_s: float | None = None,
) -> Trip:
    """Extend the trip to its last fix and teach the model from it; returns the final trip.

    ``predicted_s``: what the model (uncalibrated) predicted for this drive at departure.
    """
    trip = extend_trip(trip, lat, lon, ts, model.config)
    model.observe_trip(
        trip.straight_m, trip.travelled_m, trip.duration_s, trip.moving_s, predicted_s, trip.bearing
    )
    return trip
