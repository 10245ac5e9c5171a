"""H3 cells for fences: the only module of the index that imports h3.

**Keys.**  A fix costs one h3 call whatever the resolutions in use: the index takes
``leaf = latlng_to_cell(lat, lon, 15)`` once and derives the key at resolution r with
two integer operations (`key_of`: the res-15 cell's ancestor).  H3 is not exactly
hierarchical: the points whose res-15 cell descends from key K (call them U(K)) fill
K's hexagon give or take a fringe reaching up to 0.145 x the cell's circumradius out
of it (measured at every resolution; 0.18 next to pentagons; tests/unit/geofence
checks it).  Keys, unlike hexagons, nest exactly: U(K) is the union of U(child) over
K's children.  Covers keep a margin ``delta = 0.3 x 1.1 x the circumradius`` of the
cell at the fence:

* *interior* keys: the hexagon lies inside the fence and more than ``delta`` from its
  boundary, so every point of U(K) is inside: no exact test;
* *border* keys: the hexagon comes within ``delta`` of the fence: U(K) may touch it,
  the index tests points exactly (see edges and placed);
* *halo* keys: within ``delta + HALO_M``.  They never hold fence points but let
  `FenceIndex.crossed` find every fence a segment touches by sampling it every
  ``0.9 x HALO_M``: such a fence lies within ``0.45 x HALO_M`` of some sample.
  HALO_M is 100 m so that consecutive fixes of a moving device (5-10 s apart,
  50-100 m) need no sample between them.

**Resolutions.**  A fence is classified first at the finest LADDER resolution where
it spans at most START_CELLS cells (one ``h3shape_to_cells_experimental(...,
contain="overlap")`` call on the fence grown by the halo: the default centre rule
would miss border cells), by exact distances in metres in the fence's local
projection (geodesy).  Interior cells are kept at that resolution (a 40 km region
needs a few hundred); border and halo cells are replaced by their 49 grandchildren
and classified again, down to resolution 10 (76 m edges).  So every fence's border
is at most ~100 m wide whatever its size, exact tests happen only there, and a fix
probes one dict per LADDER resolution in use (usually just 10: every fence up to
~2 km across starts there).  A refinement step that would need more than MAX_CELLS
cells stops early; that fence keeps a coarser border.

**Sub-cells.**  A res-10 border band is ~100 m wide: for a 30-200 m job site that is
most of the fence, and a fix there would still need an exact test (for a many-sided
polygon, often a GEOS call on a cold cache, ~1-2 us).  So each border key also
records, over its 49 descendants SUB_DEPTH = 2 resolutions finer (res 12, ~9 m
edges), which are inside (no test) and which still need the test; the others hold
no point of the fence.  They are not keys of their own: the two base-7 digits of
the fix's leaf below the key (`sub_slot`) pick one of 64 slots, so this costs one
tuple index per fix and no extra dict (1.2 M res-12 keys for 10 000 fences would
cost 150 MB; slots, shared between keys, cost a few).  Sub-cells are classified
from their centres (`_split_by_centres`), cautious by a cell radius: cheap enough
for thousands per fence.  The exact test then runs only in a ~20 m band.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import h3.api.basic_int as h3
import numpy as np
import numpy.typing as npt
import shapely

from geofence.geodesy import M_PER_DEG, Geometry, LocalProjection, haversine_m

LEAF_RES = 15
LADDER = (6, 8, 10)  # resolutions of keys: refinement goes two at a time (49 children)
FINE_RES = LADDER[-1]
START_CELLS = 256
MAX_CELLS = 32_768
SUB_DEPTH = 2  # sub-cells of a border key: its descendants this many resolutions finer
SUB_MAX_CELLS = 4 * MAX_CELLS
PROTRUSION = 0.3  # margin as a fraction of the circumradius (measured bound: 0.18)
RADIUS_SLACK = 1.1  # cells vary in size across a fence up to 50 km wide
HALO_M = 100.0

_RES_FIELD = 0xF << 52
_CLEAR_RES = ((1 << 64) - 1) ^ _RES_FIELD
# OR-ing one of these into a res-15 cell with its resolution field cleared gives its
# ancestor: the resolution in bits 52-55, and digits below r all set to 7 (unused).
KEY_BITS = tuple((r << 52) | ((1 << (3 * (15 - r))) - 1) for r in range(16))
EDGE_M: tuple[float, ...] = tuple(float(h3.average_hexagon_edge_length(r, "m")) for r in range(16))
AREA_M2: tuple[float, ...] = tuple(float(h3.average_hexagon_area(r, "m^2")) for r in range(16))


@dataclass(frozen=True, slots=True)
class Cover:
    """A fence's keys (of resolutions in LADDER); the three sets are disjoint."""

    interior: frozenset[int]
    border: frozenset[int]
    halo: frozenset[int]
    # border key -> (inside, border) bit masks over its sub-cells (see `sub_slot`)
    subs: Mapping[int, tuple[int, int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.interior) + len(self.border) + len(self.halo)

    @property
    def levels(self) -> frozenset[int]:
        """The resolutions of its keys."""
        return frozenset(resolution_of(k) for k in (*self.interior, *self.border, *self.halo))


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


def start_resolution(geometry_m: Geometry) -> int:
    """Finest LADDER resolution where the fence (metres) needs at most START_CELLS cells."""
    area = float(shapely.area(geometry_m))
    perimeter = float(shapely.length(geometry_m))
    for res in reversed(LADDER):
        # Width of everything registered around the fence: margin, halo, one cell.
        band = PROTRUSION * RADIUS_SLACK * EDGE_M[res] + HALO_M + 2.0 * EDGE_M[res]
        estimate = (area + perimeter * band + math.pi * band * band) / AREA_M2[res]
        if estimate <= START_CELLS:
            return res
    return LADDER[0]


def cover(geometry: Geometry, res: int) -> tuple[frozenset[int], frozenset[int]]:
    """(interior, border) keys of a lon/lat geometry, all at resolution `res`."""
    found = place(geometry, start=res, finest=res)
    return found.interior, found.border


def place(geometry: Geometry, start: int | None = None, finest: int = FINE_RES) -> Cover:
    """Interior, border and halo keys of a lon/lat geometry (see the module docstring).

    Classify cells at `start` (None: `start_resolution`), keep the interior ones, and
    refine the others two resolutions at a time down to `finest`, unless a step would
    need more than MAX_CELLS cells.
    """
    proj = LocalProjection.around(geometry)
    geometry_m = proj.to_metres(geometry)
    shapely.prepare(geometry_m)
    boundary_m = shapely.boundary(geometry_m)
    shapely.prepare(boundary_m)
    res = start_resolution(geometry_m) if start is None else start
    # Buffers approximate arcs by chords (quad_segs=8: at most 2 % short of the true
    # offset), so grow 5 % more: the polyfill must see every cell within reach.
    reach = 1.05 * (margin_m(proj, res) + HALO_M)
    grown = shapely.buffer(geometry_m, reach, quad_segs=8)
    keys = [
        int(k)
        for k in h3.h3shape_to_cells_experimental(_h3shape(proj.to_lonlat(grown)), res, "overlap")
    ]
    interior: list[int] = []
    border: list[int] = []
    halo: list[int] = []
    while keys:
        inside, near, around = _classify(keys, res, geometry_m, boundary_m, proj)
        interior += inside
        finer = min(res + 2, finest)
        if res >= finest or (len(near) + len(around)) * 7 ** (finer - res) > MAX_CELLS:
            border += near
            halo += around
            break
        keys = [int(c) for k in (*near, *around) for c in h3.cell_to_children(k, finer)]
        res = finer
    subs = _sub_masks(border, geometry_m, boundary_m, proj)
    return Cover(frozenset(interior), frozenset(border), frozenset(halo), subs)


def sub_slot(leaf: int, res: int) -> int:
    """Which of its key's 64 sub-cell slots (res + SUB_DEPTH) a res-15 cell falls in."""
    return (leaf >> (3 * (15 - res - SUB_DEPTH))) & 63


def _sub_masks(
    border: list[int], geometry_m: Geometry, boundary_m: Geometry, proj: LocalProjection
) -> dict[int, tuple[int, int]]:
    """For each border key: which sub-cells are inside and which still need a test.

    Sub-cells in neither mask hold no point of the fence.  Keys where every sub-cell
    needs a test are left out: the key's own check applies, as without sub-cells.
    """
    if not border or len(border) * 7**SUB_DEPTH > SUB_MAX_CELLS:
        return {}
    masks: dict[int, tuple[int, int]] = {}
    for res in sorted({resolution_of(k) for k in border}):
        if res + SUB_DEPTH > LEAF_RES:
            continue
        keys = [k for k in border if resolution_of(k) == res]
        children = [[int(c) for c in h3.cell_to_children(k, res + SUB_DEPTH)] for k in keys]
        flat = [c for group in children for c in group]
        inside, near = _split_by_centres(flat, res + SUB_DEPTH, geometry_m, boundary_m, proj)
        at = 0
        for key, group in zip(keys, children, strict=True):
            bits = [1 << sub_slot(c, res) for c in group]
            ins = sum(b for b, i in zip(bits, inside[at : at + len(group)], strict=True) if i)
            bor = sum(b for b, n in zip(bits, near[at : at + len(group)], strict=True) if n)
            at += len(group)
            if ins or bor != sum(bits):
                masks[key] = (ins, bor)
    return masks


def _split_by_centres(
    keys: list[int],
    res: int,
    geometry_m: Geometry,
    boundary_m: Geometry,
    proj: LocalProjection,
) -> tuple[list[bool], list[bool]]:
    """(inside, near) flags of small cells, from their centres: thousands of them, quickly.

    A hexagon lies within its circumradius R of its centre and the points of its key
    within R + delta, so a centre inside the fence and farther than R + delta from its
    boundary makes an inside cell, and one within R + delta of the fence a near cell:
    `_classify`'s answer or a more cautious one (a cell it would call inside may be
    near).  R is taken as delta / PROTRUSION (the radius with its slack, see margin_m).
    """
    delta = margin_m(proj, res)
    reach = delta / PROTRUSION + delta
    centres = np.array([h3.cell_to_latlng(k) for k in keys], dtype=np.float64)
    x = (centres[:, 1] - proj.lon0) * proj.kx
    y = (centres[:, 0] - proj.lat0) * M_PER_DEG
    inside_pt = shapely.contains_xy(geometry_m, x, y)
    close = shapely.dwithin(boundary_m, shapely.points(x, y), reach)  # prepared: fast
    inside = inside_pt & ~close
    near = close
    return inside.tolist(), near.tolist()


def margin_m(proj: LocalProjection, res: int) -> float:
    """delta: how far U(K) may stick out of K's hexagon near the projection origin."""
    cell = h3.latlng_to_cell(proj.lat0, proj.lon0, res)
    lat, lon = h3.cell_to_latlng(cell)
    radius = max(haversine_m(lat, lon, vlat, vlon) for vlat, vlon in h3.cell_to_boundary(cell))
    return PROTRUSION * RADIUS_SLACK * radius


def _classify(
    keys: list[int],
    res: int,
    geometry_m: Geometry,
    boundary_m: Geometry,
    proj: LocalProjection,
) -> tuple[list[int], list[int], list[int]]:
    """Split cells into interior, border and halo by exact distances in metres."""
    delta = margin_m(proj, res)
    hexagons = proj.to_metres(_cell_polygons(keys))
    inside = shapely.covers(geometry_m, hexagons) & ~shapely.dwithin(boundary_m, hexagons, delta)
    near = shapely.dwithin(geometry_m, hexagons, delta) & ~inside
    around = shapely.dwithin(geometry_m, hexagons, delta + HALO_M) & ~inside & ~near
    array = np.array(keys, dtype=np.uint64)
    return array[inside].tolist(), array[near].tolist(), array[around].tolist()


def regions_m(keys: list[int], proj: LocalProjection) -> npt.NDArray[np.object_]:
    """Where the points of each key can lie: its hexagon grown by the margin, in metres.

    quad_segs=2 keeps the grown corners within 8 % of the margin, still far more than
    the measured protrusion.
    """
    if not keys:
        return np.array([], dtype=object)
    hexagons = proj.to_metres(_cell_polygons(keys))
    margins = {r: margin_m(proj, r) for r in {resolution_of(k) for k in keys}}
    deltas = np.array([margins[resolution_of(k)] for k in keys])
    return shapely.buffer(hexagons, deltas, quad_segs=2)  # type: ignore[no-any-return]


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
