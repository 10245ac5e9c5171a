"""What the index derives from one fence, once: cells, prepared geometry and a probe.

The *probe* makes most exact tests free of GEOS.  Around a centre c (the centroid
when it lies inside the fence), every point closer than r_in (the distance from c
to the fence's boundary) is inside, and every point farther than r_out (the
distance from c to the farthest vertex) is outside.  For circles, the usual job
site, r_in and r_out differ by centimetres, so GEOS is almost never called; for
other shapes GEOS decides what falls in between.  GEOS calls are cheap on a hot
cache (~0.1 us) but cost ~1 us when fixes arrive in random order across thousands
of fences, while the probe is plain float arithmetic on one tuple.

Distances are computed in the fence's local projection (affine in lon/lat, so
nothing is approximated), expressed in degrees of latitude: ``dx = (lon - cx) *
sx`` with ``sx = cos(lat0)``, ``dy = lat - cy``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely

from geofence import cells
from geofence.edges import PROBE, Check, edge_checks, edge_checks_near
from geofence.geodesy import M_PER_DEG, Geometry, LocalProjection
from geofence.shapes import Fence

# Keep clear of rounding: decisions inside r_in / outside r_out get a relative margin.
_SAFETY = 1e-7

# (fence id, prepared geometry, PROBE, cx, cy, sx, r_in squared, r_out squared)
Probe = tuple[str, Geometry, int, float, float, float, float, float]


@dataclass(frozen=True, slots=True)
class Placed:
    """A fence with its prepared geometry, cells, projection and probe."""

    fence: Fence
    geom: Geometry
    cover: cells.Cover
    proj: LocalProjection
    geom_m: Geometry  # in metres, for distances
    bounds: tuple[float, float, float, float]
    probe: Probe
    checks: dict[int, Check]  # border keys with a cheaper test of their own (edges)
    levels: frozenset[int]  # resolutions of its keys
    # border key -> (slot mask, check) for its sub-cells near just one edge or corner
    sub_checks: dict[int, tuple[tuple[int, Check], ...]]

    @classmethod
    def of(cls, fence: Fence) -> Placed:
        # Preparing mutates the fence's geometry object in place (GEOS caches an
        # index on it); that is invisible to users and saves a copy.
        geom = fence.geometry
        shapely.prepare(geom)
        proj = LocalProjection.around(geom)
        geom_m = proj.to_metres(geom)
        minx, miny, maxx, maxy = shapely.bounds(geom).tolist()
        cover = cells.place(geom)
        checks: dict[int, Check] = {}
        circle = fence.source.get("type") == "Point"
        if not circle and cover.border:  # circles: the probe wins
            keys = sorted(cover.border)
            found = edge_checks(fence.fence_id, geom, proj, cells.regions_m(keys, proj))
            checks = {k: c for k, c in zip(keys, found, strict=True) if c is not None}
        sub_checks = {} if circle else _sub_checks(fence.fence_id, geom, proj, cover)
        return cls(
            fence=fence,
            geom=geom,
            cover=cover,
            proj=proj,
            geom_m=geom_m,
            bounds=(minx, miny, maxx, maxy),
            probe=_probe(fence.fence_id, geom, proj, geom_m),
            checks=checks,
            levels=cover.levels,
            sub_checks=sub_checks,
        )

    def check(self, key: int) -> Check:
        """The exact test for a point of border key `key`."""
        return self.checks.get(key, self.probe)

    def sub_masks(self, key: int) -> tuple[int, int, tuple[tuple[int, Check], ...]] | None:
        """A border key's sub-cells: (inside mask, tested mask, (mask, check) of those
        tested with an edge check of their own); None: every point needs `check(key)`."""
        masks = self.cover.subs.get(key)
        if masks is None:
            return None
        return (*masks, self.sub_checks.get(key, ()))

    def role(self, key: int) -> int | None:
        """0 interior, 1 border, 2 halo, None: the key is not this fence's."""
        if key in self.cover.interior:
            return 0
        if key in self.cover.border:
            return 1
        return 2 if key in self.cover.halo else None


def _sub_checks(
    fid: str, geom: Geometry, proj: LocalProjection, cover: cells.Cover
) -> dict[int, tuple[tuple[int, Check], ...]]:
    """Edge checks for the tested sub-cells that only one edge or corner comes near.

    At res 13 (~7 m across) that is most of them, so the probe, and after it GEOS,
    is left with the sub-cells at the fence's vertices.
    """
    out: dict[int, tuple[tuple[int, Check], ...]] = {}
    for res in sorted({cells.resolution_of(k) for k in cover.subs}):
        owners: list[tuple[int, int]] = []
        found: list[int] = []
        for key, (_, tested) in cover.subs.items():
            if cells.resolution_of(key) == res:
                for slot, cell in cells.sub_cells(key, tested):
                    owners.append((key, slot))
                    found.append(cell)
        if not found:
            continue
        centres = np.array([cells.cell_centre(c) for c in found], dtype=np.float64)
        x = (centres[:, 1] - proj.lon0) * proj.kx
        y = (centres[:, 0] - proj.lat0) * M_PER_DEG
        checks = edge_checks_near(
            fid, geom, proj, shapely.points(x, y), cells.sub_reach(proj, res + cells.SUB_DEPTH)
        )
        grouped: dict[int, dict[int, tuple[int, Check]]] = {}
        for (key, slot), check in zip(owners, checks, strict=True):
            if check is not None:
                by_check = grouped.setdefault(key, {})
                mask, _ = by_check.get(id(check), (0, check))
                by_check[id(check)] = (mask | 1 << slot, check)
        out.update((key, tuple(by_check.values())) for key, by_check in grouped.items())
    return out


def _probe(fid: str, geom: Geometry, proj: LocalProjection, geom_m: Geometry) -> Probe:
    x, y, r_in, r_out = cells.disc_m(geom_m)
    inner = max(0.0, r_in * (1.0 - _SAFETY)) / M_PER_DEG
    outer = r_out * (1.0 + _SAFETY) / M_PER_DEG
    cx, cy = proj.lon0 + x / proj.kx, proj.lat0 + y / M_PER_DEG
    return (fid, geom, PROBE, cx, cy, proj.kx / M_PER_DEG, inner * inner, outer * outer)


def _hits_xy_ufunc(geom: Geometry, x: float, y: float) -> bool:
    return bool(shapely.intersects_xy(geom, x, y))


# shapely >= 2.1 has scalar predicates without the ufunc machinery: ~0.1 us instead
# of ~2 us per call.  Same GEOS predicate, so the same answers.
hits_xy: Callable[[Geometry, float, float], bool] = getattr(
    shapely.lib, "intersects_xy_scalar", _hits_xy_ufunc
)
