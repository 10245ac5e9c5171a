"""Great-circle helpers for the ETA package: distance, bearing, points along a line.

Plain floats in and out so the gateway can call them on every fix without building objects.
Distances use a spherical Earth of the IUGG mean radius; over the tens of kilometres of a
service tour the error against the WGS84 ellipsoid (< 0.5 %) is far below the error of a
straight-line travel model, and the formula costs a fraction of a microsecond.
"""

from __future__ import annotations

from math import asin, atan2, cos, degrees, radians, sin, sqrt

EARTH_RADIUS_M = 6_371_008.8
"""IUGG mean Earth radius, metres."""


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 points given in degrees."""
    p1 = radians(lat1)
    p2 = radians(lat2)
    dp = p2 - p1
    dl = radians(lon2 - lon1)
    h = sin(dp * 0.5) ** 2 + cos(p1) * cos(p2) * sin(dl * 0.5) ** 2
    # min() guards against h drifting just above 1 for antipodal points.
    return 2.0 * EARTH_RADIUS_M * asin(sqrt(min(1.0, h)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from point 1 to point 2, degrees clockwise from north in [0, 360)."""
    p1 = radians(lat1)
    p2 = radians(lat2)
    dl = radians(lon2 - lon1)
    y = sin(dl) * cos(p2)
    x = cos(p1) * sin(p2) - sin(p1) * cos(p2) * cos(dl)
    b = degrees(atan2(y, x)) % 360.0
    # -0.0 % 360 is 0.0 but a tiny negative can round to 360.0 itself.
    return 0.0 if b >= 360.0 else b


def points_along(
    lat1: float, lon1: float, lat2: float, lon2: float, n: int
) -> list[tuple[float, float]]:
    """``n`` points at the centres of ``n`` equal pieces of the segment from 1 to 2.

    Linear interpolation in degrees: for legs of a few tens of kilometres it departs from
    the great circle by metres, which is irrelevant for picking the speed cell of a sample.
    The longitude difference is wrapped so a leg across the antimeridian stays short.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    dlat = lat2 - lat1
    dlon = (lon2 - lon1 + 180.0) % 360.0 - 180.0
    out: list[tuple[float, float]] = []
    for i in range(n):
        f = (i + 0.5) / n
        lon = (lon1 + f * dlon + 180.0) % 360.0 - 180.0
        out.append((lat1 + f * dlat, lon))
    return out
