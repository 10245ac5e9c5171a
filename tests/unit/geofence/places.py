"""Test helper: places given in metres from an origin, so scenarios read like a map."""

from __future__ import annotations

import math

from geofence.geodesy import destination

ORIGIN = (60.17, 24.94)  # central Helsinki


def offset(
    north_m: float, east_m: float, origin: tuple[float, float] = ORIGIN
) -> tuple[float, float]:
    """(lat, lon) of the point north_m / east_m metres from origin (great circle)."""
    dist = math.hypot(north_m, east_m)
    if dist == 0:
        return origin
    bearing = math.degrees(math.atan2(east_m, north_m))
    return destination(origin[0], origin[1], bearing, dist)


def square(half_m: float, centre: tuple[float, float] = (0.0, 0.0)) -> list[list[float]]:
    """A closed GeoJSON ring: a square of side 2 * half_m around centre (north, east metres)."""
    n, e = centre
    corners = [(-half_m, -half_m), (-half_m, half_m), (half_m, half_m), (half_m, -half_m)]
    ring = []
    for dn, de in corners:
        lat, lon = offset(n + dn, e + de)
        ring.append([lon, lat])
    return [*ring, ring[0]]
