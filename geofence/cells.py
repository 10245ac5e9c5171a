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
records, over its 343 descendants SUB_DEPTH = 3 resolutions finer (res 13, ~3.5 m
edges), which are inside (no test) and which still need the test; the others hold
no point of the fence.  They are not keys of their own: the three base-7 digits of
the fix's leaf below the key (`sub_slot`, 9 bits) pick one of 512 slots of a bytes
map that names the slot's entry, so this costs two indexings per fix and no extra
dict (res-13 keys for 10 000 fences would be millions of dict entries; a map costs
545 bytes per border key).  Sub-cells are classified from their centres
(`_split_by_centres`), cautious by a cell radius, res 12 first and res 13 only
under the res-12 cells near the boundary; the fence's inner and outer discs settle
most of them without GEOS.  The exact test then runs only in a band ~10 m wide.
The price is build time: ~2x without sub-cells.
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
SUB_DEPTH = 3  # sub-cells of a border key: its descendants this many resolutions finer
SLOTS = 1 << (3 * SUB_DEPTH)  # slots per border key: SUB_DEPTH base-7 digits, 3 bits each
SUB_MAX_CELLS = 4 * MAX_CELLS
PROTRUSION = 0.3  # margin as a fraction of the circumradius (measured bound: 0.18)
RADIUS_SLACK = 1.1  # cells vary in size across a fence up to 50 km wide
HALO_M = 100.0
_SAFETY = 1e-7  # relative margin on disc radii, clear of rounding

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


def cell_centre(cell: int) -> tuple[float, float]:
    """(lat, lon) of an H3 cell's centre."""
    lat, lon = h3.cell_to_latlng(cell)
    return lat, lon


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


def disc_m(geometry_m: Geometry) -> tuple[float, float, float, float]:
    """(x, y, r_in, r_out) in metres: the geometry holds the disc of radius r_in around
    its centroid (0 if the centroid is outside it) and lies within the one of r_out."""
    centre = shapely.centroid(geometry_m)
    x, y = float(shapely.get_x(centre)), float(shapely.get_y(centre))
    r_in = 0.0
    if shapely.contains(geometry_m, centre):
        r_in = float(shapely.distance(centre, shapely.boundary(geometry_m)))
    coords = shapely.get_coordinates(geometry_m)
    r_out = float(np.hypot(coords[:, 0] - x, coords[:, 1] - y).max())
    return x, y, r_in, r_out


def sub_shift(res: int) -> int:
    """Right shift that brings the sub-cell slot of a key at `res` to a cell's low bits."""
    return 3 * max(0, 15 - res - SUB_DEPTH)


def sub_slot(leaf: int, res: int) -> int:
    """Which of its key's SLOTS sub-cell slots a res-15 cell falls in: its next 3 digits."""
    return (leaf >> sub_shift(res)) & (SLOTS - 1)


def _sub_masks(
    border: list[int], geometry_m: Geometry, boundary_m: Geometry, proj: LocalProjection
) -> dict[int, tuple[int, int]]:
    """For each border key: which sub-cells are inside and which still need a test.

    Bit s of a mask is sub-cell slot s.  Sub-cells in neither mask hold no point of
    the fence.  Keys where every sub-cell needs a test are left out: the key's own
    check applies, as without sub-cells.  Classified two levels at a time, then one:
    only the res + 2 cells near the boundary have their 7 children looked at.
    """
    if not border or len(border) * 49 > SUB_MAX_CELLS:
        return {}
    disc = disc_m(geometry_m)
    masks: dict[int, tuple[int, int]] = {}
    for res in sorted({resolution_of(k) for k in border}):
        if res + SUB_DEPTH > LEAF_RES:
            continue
        keys = [k for k in border if resolution_of(k) == res]
        mid, mid_of = descendants(keys, res, 2)
        inside, near = _split_by_centres(mid, res + 2, geometry_m, boundary_m, proj, disc)
        fine, fine_of_mid = descendants(mid[near].tolist(), res + 2, 1)
        fine_of = mid_of[near][fine_of_mid]
        f_inside, f_near = _split_by_centres(fine, res + 3, geometry_m, boundary_m, proj, disc)
        ins = np.zeros((len(keys), SLOTS), dtype=bool)
        tested = np.zeros((len(keys), SLOTS), dtype=bool)
        gain = np.zeros(len(keys), dtype=bool)
        gain[mid_of[~near]] = True  # inside or out: none of its 8 slots needs a test
        gain[fine_of[~f_near]] = True
        pairs = ((mid[inside] >> np.uint64(3 * (13 - res))) & np.uint64(63)).astype(np.int64)
        ins[mid_of[inside][:, None], pairs[:, None] * 8 + np.arange(8)] = True
        slots = ((fine >> np.uint64(sub_shift(res))) & np.uint64(SLOTS - 1)).astype(np.int64)
        ins[fine_of[f_inside], slots[f_inside]] = True
        tested[fine_of[f_near], slots[f_near]] = True
        ins_bytes = np.packbits(ins, axis=1, bitorder="little")
        tested_bytes = np.packbits(tested, axis=1, bitorder="little")
        for i in np.flatnonzero(gain).tolist():
            masks[keys[i]] = (
                int.from_bytes(ins_bytes[i].tobytes(), "little"),
                int.from_bytes(tested_bytes[i].tobytes(), "little"),
            )
    return masks


def descendants(
    cells: list[int], res: int, depth: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.intp]]:
    """The descendants `depth` resolutions finer of cells at `res`, and their parents' indices.

    Integer operations: a hexagon's descendants are the cell with each of the next
    `depth` digits set to 0..6.  Pentagons skip a digit, so h3 lists theirs.
    """
    if any(h3.is_pentagon(c) for c in cells):
        groups = [h3.cell_to_children(c, res + depth) for c in cells]
        children = np.array([c for g in groups for c in g], dtype=np.uint64)
        parents = np.repeat(np.arange(len(cells)), [len(g) for g in groups])
        return children, parents
    shifts = [3 * (15 - res - i) for i in range(1, depth + 1)]
    digits = sum(7 << s for s in shifts)
    base = np.array(cells, dtype=np.uint64) & np.uint64(_CLEAR_RES & ~digits)
    base |= np.uint64((res + depth) << 52)
    offsets = np.array(
        [sum(d << s for d, s in zip(ds, shifts, strict=True)) for ds in _digit_tuples(depth)],
        dtype=np.uint64,
    )
    children = (base[:, None] | offsets[None, :]).ravel()
    return children, np.repeat(np.arange(len(cells)), len(offsets))


def sub_cells(key: int, mask: int) -> list[tuple[int, int]]:
    """(slot, cell) of the sub-cells of `key` (res + SUB_DEPTH) whose bit `mask` sets."""
    shift = sub_shift(resolution_of(key))
    base = (key & _CLEAR_RES & ~((SLOTS - 1) << shift)) | ((resolution_of(key) + SUB_DEPTH) << 52)
    out = []
    while mask:
        low = mask & -mask
        slot = low.bit_length() - 1
        out.append((slot, base | (slot << shift)))
        mask ^= low
    return out


def sub_reach(proj: LocalProjection, res: int) -> float:
    """How far from its centre a point of a res-`res` key can be: R x slack + delta."""
    delta = margin_m(proj, res)
    return delta / PROTRUSION + delta


def _digit_tuples(depth: int) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = [()]
    for _ in range(depth):
        out = [(*t, d) for t in out for d in range(7)]
    return out


def _split_by_centres(
    keys: npt.NDArray[np.uint64],
    res: int,
    geometry_m: Geometry,
    boundary_m: Geometry,
    proj: LocalProjection,
    disc: tuple[float, float, float, float],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(inside, near) flags of small cells, from their centres: thousands of them, quickly.

    A hexagon lies within its circumradius R of its centre and the points of its key
    within R + delta, so a centre inside the fence and farther than R + delta from its
    boundary makes an inside cell, and one within R + delta of the fence a near cell:
    `_classify`'s answer or a more cautious one (a cell it would call inside may be
    near).  R is taken as delta / PROTRUSION (the radius with its slack, see margin_m).
    The fence's `disc_m` settles most cells without GEOS: those well within r_in, or
    beyond r_out; a circle's boundary lies between the two, so its other cells are near.
    """
    reach = sub_reach(proj, res)
    centres = np.array([h3.cell_to_latlng(k) for k in keys.tolist()], dtype=np.float64).reshape(
        -1, 2
    )
    x = (centres[:, 1] - proj.lon0) * proj.kx
    y = (centres[:, 0] - proj.lat0) * M_PER_DEG
    cx, cy, r_in, r_out = disc
    d = np.hypot(x - cx, y - cy)
    inside = d + reach < r_in * (1.0 - _SAFETY)
    near = ~inside & (d - reach <= r_out * (1.0 + _SAFETY))
    if r_out - r_in > 0.25 * reach:  # not a circle: GEOS decides between the discs
        ask = np.flatnonzero(near)
        pts = shapely.points(x[ask], y[ask])
        close = shapely.dwithin(boundary_m, pts, reach)  # prepared: fast
        inside[ask] = shapely.contains_xy(geometry_m, x[ask], y[ask]) & ~close
        near[ask] = close
    return inside, near


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
    """The outer rings of a lon/lat (Multi)Polygon as an H3 shape, without the slow
    __geo_interface__ path.

    Holes are left out: h3's "overlap" polyfill misses cells that overlap a polygon
    around a hole smaller than the cell (hypothesis found a res-8 cell touching a holed
    square left out, and points 140 m inside the fence answered "outside"). The cover
    is only the candidates; `_classify` drops the cells that lie in a hole.
    """
    polys = []
    for part in shapely.get_parts(geometry):
        outer = shapely.get_coordinates(shapely.get_exterior_ring(part))[:, ::-1].tolist()
        polys.append(h3.LatLngPoly(outer))
    return polys[0] if len(polys) == 1 else h3.LatLngMultiPoly(*polys)
