"""Small spherical-earth helpers shared by the fence builders, the index and the tests.

Everything works on a sphere of mean radius `EARTH_RADIUS_M`; over the sizes a fence
may have (at most 50 km across) the error against WGS84 is a fraction of a percent,
far below GPS accuracy.  `LocalProjection` is an equirectangular projection around a
fence's own centre: it is *affine* in (lon, lat), so a point is inside a projected
polygon exactly when it is inside the lon/lat polygon, while distances come out in
metres (error below 1 % within 25 km of the origin, except very close to the poles,
which fences may not approach).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import shapely

EARTH_RADIUS_M = 6_371_008.8
M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0

Geometry: TypeAlias = Any  # shapely ships no type information


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def destination(lat: float, lon: float, bearing_deg: float, dist_m: float) -> tuple[float, float]:
    """Where a great circle from (lat, lon) leads after dist_m; bearing clockwise from north."""
    p1, l1 = math.radians(lat), math.radians(lon)
    th, d = math.radians(bearing_deg), dist_m / EARTH_RADIUS_M
    sin_p2 = math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(th)
    p2 = math.asin(max(-1.0, min(1.0, sin_p2)))
    l2 = l1 + math.atan2(
        math.sin(th) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * sin_p2
    )
    lon2 = (math.degrees(l2) + 540.0) % 360.0 - 180.0
    return math.degrees(p2), lon2


@dataclass(frozen=True, slots=True)
class LocalProjection:
    """Equirectangular projection (lon, lat) -> metres east/north of (lon0, lat0)."""

    lon0: float
    lat0: float

    @classmethod
    def around(cls, geometry: Geometry) -> LocalProjection:
        """A projection centred on the middle of the geometry's bounding box."""
        minx, miny, maxx, maxy = shapely.bounds(geometry).tolist()
        return cls((minx + maxx) / 2.0, (miny + maxy) / 2.0)

    @property
    def kx(self) -> float:
        return M_PER_DEG * math.cos(math.radians(self.lat0))

    def point(self, lat: float, lon: float) -> tuple[float, float]:
        return ((lon - self.lon0) * self.kx, (lat - self.lat0) * M_PER_DEG)

    def to_metres(self, geometry: Geometry) -> Geometry:
        scale = np.array([self.kx, M_PER_DEG])
        origin = np.array([self.lon0, self.lat0])

        def fwd(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            out: npt.NDArray[np.float64] = (xy - origin) * scale
            return out

        return shapely.transform(geometry, fwd)

    def to_lonlat(self, geometry: Geometry) -> Geometry:
        scale = np.array([self.kx, M_PER_DEG])
        origin = np.array([self.lon0, self.lat0])

        def inv(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            out: npt.NDArray[np.float64] = xy / scale + origin
            return out

        return shapely.transform(geometry, inv)
