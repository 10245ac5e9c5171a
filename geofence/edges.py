"""Exact point tests without GEOS where only one edge or one corner of a polygon is near.

For a border key K of a polygon fence, every point that maps to K lies in the region
R = K's hexagon grown by the cells module's margin.  If only one edge of the fence
crosses R, the fence splits R along that edge's line and a point's side is the sign of
one cross product; if only two consecutive edges do, the fence is a wedge at their
shared corner (inside both half-planes for a convex corner, inside either for a reflex
one).  Rings are oriented so the fence is always to the left of its edges (exterior
counter-clockwise, holes clockwise, in lon/lat).

Cross products use the fence's own vertex coordinates; a point whose value is within
``TOLERANCE x |edge|`` of zero (about 1e-12 degree, 0.1 micrometre, thousands of times
the rounding error) is left to GEOS, so the answers are GEOS's answers.  Keys where
more edges pass, and circles (see placed: their probe is better), keep the probe.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from geofence.geodesy import Geometry, LocalProjection

TOLERANCE = 1e-12
PROBE, LINE, WEDGE = 0, 1, 2

# (fence id, geometry, LINE, ax, ay, ux, uy, tol): inside iff u x (p - a) >= 0
# (fence id, geometry, WEDGE, ax, ay, ux, uy, vx, vy, wx, wy, tol, convex)
Check = tuple[Any, ...]  # a tagged tuple: the layouts above


def edge_checks(
    fid: str, geom: Geometry, proj: LocalProjection, regions_m: npt.NDArray[np.object_]
) -> list[Check | None]:
    """A check for each region (None: more than one edge or corner passes it)."""
    starts, ends, following = _segments(shapely.orient_polygons(geom))
    segments_m = proj.to_metres(shapely.linestrings(np.stack([starts, ends], axis=1)))
    region_idx, segment_idx = shapely.STRtree(segments_m).query(regions_m, predicate="intersects")
    near: list[list[int]] = [[] for _ in range(len(regions_m))]
    for r, s in zip(region_idx.tolist(), segment_idx.tolist(), strict=True):
        near[r].append(s)
    out: list[Check | None] = []
    for found in near:
        if len(found) == 1:
            out.append(_line(fid, geom, starts[found[0]], ends[found[0]]))
        elif len(found) == 2 and following[found[0]] == found[1]:
            out.append(_wedge(fid, geom, starts[found[0]], ends[found[0]], ends[found[1]]))
        elif len(found) == 2 and following[found[1]] == found[0]:
            out.append(_wedge(fid, geom, starts[found[1]], ends[found[1]], ends[found[0]]))
        else:
            out.append(None)
    return out


def _segments(
    geom: Geometry,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list[int]]:
    """Directed edges of every ring, and for each edge the index of the next one."""
    starts: list[npt.NDArray[np.float64]] = []
    ends: list[npt.NDArray[np.float64]] = []
    following: list[int] = []
    for part in shapely.get_parts(geom):
        rings = [shapely.get_exterior_ring(part)]
        rings += [
            shapely.get_interior_ring(part, i) for i in range(shapely.get_num_interior_rings(part))
        ]
        for ring in rings:
            coords = shapely.get_coordinates(ring)
            first, count = len(following), len(coords) - 1
            starts.append(coords[:-1])
            ends.append(coords[1:])
            following += [first + (i + 1) % count for i in range(count)]
    return np.vstack(starts), np.vstack(ends), following


def _line(
    fid: str, geom: Geometry, a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> Check | None:
    ax, ay = float(a[0]), float(a[1])
    ux, uy = float(b[0]) - ax, float(b[1]) - ay
    if ux == 0.0 and uy == 0.0:
        return None  # a repeated vertex: no direction
    return (fid, geom, LINE, ax, ay, ux, uy, TOLERANCE * (abs(ux) + abs(uy)))


def _wedge(
    fid: str,
    geom: Geometry,
    a: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
) -> Check | None:
    ax, ay, vx, vy = float(a[0]), float(a[1]), float(v[0]), float(v[1])
    ux, uy, wx, wy = vx - ax, vy - ay, float(b[0]) - vx, float(b[1]) - vy
    if (ux == 0.0 and uy == 0.0) or (wx == 0.0 and wy == 0.0):
        return None
    tol = TOLERANCE * max(abs(ux) + abs(uy), abs(wx) + abs(wy))
    convex = ux * wy - uy * wx >= 0.0  # a left turn: the fence is the wedge between
    return (fid, geom, WEDGE, ax, ay, ux, uy, vx, vy, wx, wy, tol, convex)
