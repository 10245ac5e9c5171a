"""Small spherical-geometry helpers shared by the simulator modules.

Distances are metres, angles degrees. City-scale accuracy is all we need, so the
local projections are equirectangular around a reference latitude.
"""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8
_M_PER_DEG_LAT = math.pi * EARTH_RADIUS_M / 180.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two WGS84 points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial course from point 1 to point 2, 0-360 clockwise from north."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(x, y)) % 360.0


def offset(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point `east_m` east and `north_m` north of (lat, lon)."""
    dlat = north_m / _M_PER_DEG_LAT
    dlon = east_m / (_M_PER_DEG_LAT * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


def to_local(lat: float, lon: float, ref_lat: float, ref_lon: float) -> tuple[float, float]:
    """(east, north) metres of (lat, lon) from a reference point."""
    east = (lon - ref_lon) * _M_PER_DEG_LAT * math.cos(math.radians(ref_lat))
    return east, (lat - ref_lat) * _M_PER_DEG_LAT


def lerp(lat1: float, lon1: float, lat2: float, lon2: float, f: float) -> tuple[float, float]:
    """The point a fraction `f` of the way from 1 to 2 (straight in degrees: short edges)."""
    return lat1 + (lat2 - lat1) * f, lon1 + (lon2 - lon1) * f


def point_segment_m(
    lat: float, lon: float, lat1: float, lon1: float, lat2: float, lon2: float
) -> float:
    """Distance from a point to the segment 1-2, in metres."""
    px, py = to_local(lat, lon, lat1, lon1)
    bx, by = to_local(lat2, lon2, lat1, lon1)
    seg2 = bx * bx + by * by
    f = 0.0 if seg2 == 0 else max(0.0, min(1.0, (px * bx + py * by) / seg2))
    return math.hypot(px - f * bx, py - f * by)
