"""H3 cells for fences: the only module of the index that imports h3.

**Keys.**  A fix costs one h3 call whatever the number of resolutions in use: the
index looks up ``leaf = latlng_to_cell(lat, lon, 15)`` once and derives the key at
resolution r with two integer operations (`key_of`: the res-15 cell's ancestor).  H3
is not exactly hierarchical: the set of points whose res-15 cell descends from key K
(call it U(K)) is K's hexagon plus a fringe sticking out by up to 0.145 x the cell's
circumradius and minus similar slivers (measured on every resolution, pentagons
included: at most 0.18).  Covers therefore work with a margin ``delta = 0.3 x 1.1 x
the local circumradius``:

* *interior* keys: cells entirely inside the fence shrunk by ``delta``
  (``contain="full"``); every point of U(K) is inside the fence, no exact test needed;
* *border* keys: cells overlapping the fence grown by ``delta`` (``contain="overlap"``,
  so border cells are never missed), minus interior ones; U(K) may touch the fence,
  the index confirms with an exact shapely test;
* *halo* keys: cells overlapping the fence grown by ``delta + halo_m(res)``, minus the
  above.  They never contain the fence but let `FenceIndex.crossed` find a fence by
  sampling a segment every ``0.9 x halo_m``: any fence the segment touches lies
  within ``halo_m`` of some sample.

Buffers are computed in metres in the fence's local projection (geodesy).

**Resolution.**  Per fence, the finest resolution in [MIN_RES, MAX_RES] whose cell
count (estimated from area and perimeter: Steiner's formula on the fence grown by
the band width) stays within TARGET_CELLS.  A 200 m job site gets resolution 11
(29 m edges), a 5 km zone resolution 7 or 8, a 50 km region resolution 5 or 6, and a
thin corridor a resolution coarse enough not to need thousands of cells.  Finer
cells would shrink the border band (fewer exact tests) but cost memory and build
time; an exact test on a prepared geometry costs ~0.1 us, so a few dozen cells per
fence is the sweet spot (see bench/cases/geofence.py).  MAX_CELLS caps a fence's
cells if the estimate was wrong.  The index keeps one table for all resolutions;
cell ids carry their resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import h3.api.basic_int as h3
import numpy as np
import numpy.typing as npt
import shapely

from geofence.geodesy import Geometry, LocalProjection, haversine_m

LEAF_RES = 15
MIN_RES = 5
MAX_RES = 10
TARGET_CELLS = 128
MAX_CELLS = 4096
PROTRUSION = 0.3  # margin as a fraction of the circumradius (measured bound: 0.18)
RADIUS_SLACK = 1.1  # cells vary in size across a fence up to 50 km wide
HALO_EDGES = 1.0
HALO_MIN_M = 30.0

_RES_FIELD = 0xF << 52
_CLEAR_RES = ((1 << 64) - 1) ^ _RES_FIELD
# OR-ing one of these into a res-15 cell with its resolution field cleared gives its
# ancestor: the resolution in bits 52-55, and digits below r all set to 7 (unused).
KEY_BITS = tuple((r << 52) | ((1 << (3 * (15 - r))) - 1) for r in range(16))
EDGE_M: tuple[float, ...] = tuple(float(h3.average_hexagon_edge_length(r, "m")) for r in range(16))
AREA_M2: tuple[float, ...] = tuple(float(h3.average_hexagon_area(r, "m^2")) for r in range(16))


@dataclass(frozen=True, slots=True)
class Cover:
    """A fence's keys at one resolution; the three sets are disjoint."""

    res: int
    interior: frozenset[int]
    border: frozenset[int]
    halo: frozenset[int]

    def __len__(self) -> int:
        return len(self.interior) + len(self.border) + len(self.halo)


# Re-exported so the index's hot path calls h3 directly, without a wrapper frame.
latlng_to_cell = h3.latlng_to_cell


def cell_of(lat: float, lon: float, res: int) -> int:
    """The standard H3 cell (``latlng_to_cell``) of a point, as an int."""
    return int(h3.latlng_to_cell(lat, lon, res))


def leaf_of(lat: float, lon: float) -> int:
    """The res-15 cell every index key of a point derives from."""
    return int(h3.latlng_to_cell(lat, lon, LEAF_RES))


def key_of(leaf: int, res: int) -> int:
    """The index key at `res` of a res-15 cell (its H3 ancestor; a few ns of integer ops)."""
    return (leaf & _CLEAR_RES) | KEY_BITS[res]


def point_key(lat: float, lon: float, res: int) -> int:
    return key_of(leaf_of(lat, lon), res)


def resolution_of(cell: int) -> int:
    return (cell >> 52) & 0xF


def halo_m(res: int) -> float:
    """How far around a fence its halo keys reach, in metres."""
    return max(HALO_MIN_M, HALO_EDGES * EDGE_M[res])


def choose_resolution(geometry_m: Geometry) -> int:
    """Finest resolution whose estimated cell count fits TARGET_CELLS (metres geometry)."""
    area = float(shapely.area(geometry_m))
    perimeter = float(shapely.length(geometry_m))
    for res in range(MAX_RES, MIN_RES, -1):
        # Width of everything registered around the fence: margin, halo, one cell.
        band = PROTRUSION * RADIUS_SLACK * EDGE_M[res] + halo_m(res) + 2.0 * EDGE_M[res]
        estimate = (area + perimeter * band + math.pi * band * band) / AREA_M2[res]
        if estimate <= TARGET_CELLS:
            return res
    return MIN_RES


def cover(geometry: Geometry, res: int) -> tuple[frozenset[int], frozenset[int]]:
    """(interior, border) keys of a lon/lat geometry at `res` (see the module docstring)."""
    found = place(geometry, res)
    return found.interior, found.border


def place(geometry: Geometry, res: int | None = None) -> Cover:
    """Interior, border and halo keys of a lon/lat geometry; `res` None = choose one."""
    proj = LocalProjection.around(geometry)
    geometry_m = proj.to_metres(geometry)
    res = choose_resolution(geometry_m) if res is None else res
    while True:
        found = _cover_at(geometry_m, proj, res)
        if len(found) <= MAX_CELLS or res <= MIN_RES:
            return found
        res -= 1


def margin_m(proj: LocalProjection, res: int) -> float:
    """delta: how far U(K) may stick out of K's hexagon near the projection origin."""
    cell = h3.latlng_to_cell(proj.lat0, proj.lon0, res)
    lat, lon = h3.cell_to_latlng(cell)
    radius = max(haversine_m(lat, lon, vlat, vlon) for vlat, vlon in h3.cell_to_boundary(cell))
    return PROTRUSION * RADIUS_SLACK * radius


def _cover_at(geometry_m: Geometry, proj: LocalProjection, res: int) -> Cover:
    """One H3 polyfill for candidates, then exact classification by distance in metres."""
    delta = margin_m(proj, res)
    # quad_segs=4 keeps the grown polygon within 8 % of the true offset; the margins
    # above leave far more room than that (see the module docstring).
    grown = shapely.buffer(geometry_m, delta + halo_m(res), quad_segs=4)
    candidates = h3.h3shape_to_cells_experimental(_h3shape(proj.to_lonlat(grown)), res, "overlap")
    if not candidates:
        return Cover(res, frozenset(), frozenset(), frozenset())
    keys = np.array(candidates, dtype=np.uint64)
    polygons = proj.to_metres(_cell_polygons(candidates))
    shapely.prepare(geometry_m)
    edge_m = shapely.boundary(geometry_m)
    shapely.prepare(edge_m)
    inside = shapely.covers(geometry_m, polygons) & ~shapely.dwithin(edge_m, polygons, delta)
    near = shapely.dwithin(geometry_m, polygons, delta) & ~inside
    return Cover(
        res,
        frozenset(keys[inside].tolist()),
        frozenset(keys[near].tolist()),
        frozenset(keys[~inside & ~near].tolist()),
    )


def regions_m(keys: list[int], proj: LocalProjection) -> npt.NDArray[np.object_]:
    """Where the points of each key can lie: its hexagon grown by the margin, in metres.

    quad_segs=2 keeps the grown corners within 8 % of the margin, still far more than
    the measured protrusion.
    """
    if not keys:
        return np.array([], dtype=object)
    hexagons = proj.to_metres(_cell_polygons(keys))
    delta = margin_m(proj, resolution_of(keys[0]))
    return shapely.buffer(hexagons, delta, quad_segs=2)  # type: ignore[no-any-return]


def _cell_polygons(cells: list[int]) -> npt.NDArray[np.object_]:
    """Lon/lat polygons of H3 cells (5 to 10 vertices each)."""
    boundaries = [h3.cell_to_boundary(c) for c in cells]
    counts = [len(b) for b in boundaries]
    latlng = np.array([v for b in boundaries for v in b], dtype=np.float64)
    rings = shapely.linearrings(latlng[:, ::-1], indices=np.repeat(np.arange(len(cells)), counts))
    return shapely.polygons(rings)  # type: ignore[no-any-return]


def _h3shape(geometry: Geometry) -> h3.H3Shape:
    """A lon/lat (Multi)Polygon as an H3 shape, without the slow __geo_interface__ path."""
    polys = []
    for part in shapely.get_parts(geometry):
        outer = shapely.get_coordinates(shapely.get_exterior_ring(part))[:, ::-1].tolist()
        holes = [
            shapely.get_coordinates(shapely.get_interior_ring(part, i))[:, ::-1].tolist()
            for i in range(shapely.get_num_interior_rings(part))
        ]
        polys.append(h3.LatLngPoly(outer, *holes))
    return polys[0] if len(polys) == 1 else h3.LatLngMultiPoly(*polys)
