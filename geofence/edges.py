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
    found = shapely.STRtree(segments_m).query(regions_m, predicate="intersects")
    return _checks(fid, geom, (starts, ends, following), found, len(regions_m))


def edge_checks_near(
    fid: str,
    geom: Geometry,
    proj: LocalProjection,
    points_m: npt.NDArray[np.object_],
    reach: float,
) -> list[Check | None]:
    """`edge_checks` for regions given as discs: within `reach` metres of each point.

    Checks of the same edge or corner are one shared object.
    """
    starts, ends, following = _segments(shapely.orient_polygons(geom))
    segments_m = proj.to_metres(shapely.linestrings(np.stack([starts, ends], axis=1)))
    found = shapely.STRtree(segments_m).query(points_m, predicate="dwithin", distance=reach)
    return _checks(fid, geom, (starts, ends, following), found, len(points_m))


def _checks(
    fid: str,
    geom: Geometry,
    segments: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list[int]],
    found: npt.NDArray[np.intp],
    count: int,
) -> list[Check | None]:
    """Per region, the check its nearby edges (pairs region index, edge index) allow."""
    starts, ends, following = segments
    near: list[list[int]] = [[] for _ in range(count)]
    for r, s in zip(found[0].tolist(), found[1].tolist(), strict=True):
        near[r].append(s)
    made: dict[tuple[int, ...], Check | None] = {}
    out: list[Check | None] = []
    for edges in near:
        key = tuple(sorted(edges))
        if key not in made:
            made[key] = _check(fid, geom, starts, ends, following, edges)
        out.append(made[key])
    return out


def _check(
    fid: str,
    geom: Geometry,
    starts: npt.NDArray[np.float64],
    ends: npt.NDArray[np.float64],
    following: list[int],
    edges: list[int],
) -> Check | None:
    if len(edges) == 1:
        return _line(fid, geom, starts[edges[0]], ends[edges[0]])
    if len(edges) == 2 and following[edges[0]] == edges[1]:
        return _wedge(fid, geom, starts[edges[0]], ends[edges[0]], ends[edges[1]])
    if len(edges) == 2 and following[edges[1]] == edges[0]:
        return _wedge(fid, geom, starts[edges[1]], ends[edges[1]], ends[edges[0]])
    return None


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
