"""What a fence is, and how one is built from GeoJSON or from a job site.

Fences live in lon/lat order (GeoJSON order, shapely's x/y) and are validated once,
here, so the index and the detector never see a bad geometry.  Every rejection is a
`FenceError` whose `reason` is short enough to return over HTTP as is.

Shapes accepted:

* ``Polygon`` / ``MultiPolygon`` (holes included): rings must be closed, have at least
  4 positions and form a valid polygon (no self-intersection, holes inside shells).
* ``Point`` with ``properties.radius_m``: a true circle of that radius in metres,
  built by walking great circles from the centre; the polygon has at least 64
  vertices, more for big circles, so it stays within 0.25 m of the true circle
  (vertices sit slightly outside and edge midpoints slightly inside, to balance).
* ``LineString`` with ``properties.width_m``: a corridor of that total width, i.e.
  every point within ``width_m / 2`` metres of the line (round ends and joins).

Points on the boundary of a fence count as inside it (shapely ``covers``).

``size_m`` is the fence's characteristic size in metres, used for hysteresis: the
diameter of a circle, the width of a corridor, and for polygons the diameter of the
circle of equal area, ``2 * sqrt(area / pi)``.  "Across" in the size limit is the
diameter of the smallest circle enclosing the fence; fences may not cross the
antimeridian or reach beyond 85 degrees of latitude.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import shapely

from geofence.errors import FenceError
from geofence.geodesy import Geometry, LocalProjection, destination

KINDS = ("depot", "restricted", "site", "zone")
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_ACROSS_M = 50_000.0
MAX_VERTICES = 10_000
MAX_RADIUS_M = 50_000.0
MAX_WIDTH_M = 10_000.0
MAX_DWELL_S = 7 * 86_400.0
MAX_ABS_LAT = 85.0
CIRCLE_TOLERANCE_M = 0.25
MIN_CIRCLE_VERTICES = 64
MAX_CIRCLE_VERTICES = 1024


def _no_properties() -> Mapping[str, object]:
    return MappingProxyType({})


@dataclass(frozen=True, kw_only=True)
class Fence:
    """One validated geofence.  Build it with `fence_from_geojson` or `circle_fence`."""

    fence_id: str
    kind: str = "zone"
    geometry: Geometry
    dwell_s: float | None = None
    technician_ids: frozenset[str] | None = None
    size_m: float
    properties: Mapping[str, object] = field(default_factory=_no_properties, compare=False)
    # The GeoJSON geometry as given (a Point for circles, the line for corridors),
    # with coordinates as nested tuples; `fence_to_geojson` shows it back.
    source: Mapping[str, object] = field(default_factory=_no_properties, compare=False)

    def applies_to(self, technician_id: str | None) -> bool:
        """Whether this fence concerns that technician (None = fences for everyone only)."""
        ids = self.technician_ids
        return ids is None or (technician_id is not None and technician_id in ids)


def fence_from_geojson(fence_id: str, feature: object) -> Fence:
    """Validate a GeoJSON Feature and build its `Fence`; raises `FenceError`."""
    _check_id(fence_id)
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        raise FenceError("not a GeoJSON Feature")
    props = feature.get("properties")
    if props is None:
        props = {}
    elif not isinstance(props, Mapping):
        raise FenceError("properties must be an object or null")
    geometry = feature.get("geometry")
    if not isinstance(geometry, Mapping) or "coordinates" not in geometry:
        raise FenceError("feature has no geometry")
    kind = _kind(props.get("kind", "zone"))
    dwell_s = _dwell(props.get("dwell_s"))
    technician_ids = _technicians(props.get("technician_ids"))
    gtype = geometry.get("type")
    coords = geometry["coordinates"]
    if gtype == "Polygon":
        geom, size_m, source = _polygon(coords)
    elif gtype == "MultiPolygon":
        geom, size_m, source = _multipolygon(coords)
    elif gtype == "Point":
        lon, lat = _position(coords)
        if lat == 0.0 and lon == 0.0:
            # As for fixes and job sites: a tracker or a form with no location.
            raise FenceError("a circle at lat=0, lon=0 is almost certainly a missing location")
        geom, size_m, source = _circle(lat, lon, props.get("radius_m"))
    elif gtype == "LineString":
        geom, size_m, source = _corridor(coords, props.get("width_m"))
    else:
        raise FenceError(f"unsupported geometry type {gtype!r}")
    return Fence(
        fence_id=fence_id,
        kind=kind,
        geometry=geom,
        dwell_s=dwell_s,
        technician_ids=technician_ids,
        size_m=size_m,
        properties=MappingProxyType(dict(props)),
        source=MappingProxyType(source),
    )


def circle_fence(
    fence_id: str,
    lat: float,
    lon: float,
    radius_m: float,
    *,
    kind: str = "site",
    dwell_s: float | None = None,
    technician_ids: frozenset[str] | None = None,
) -> Fence:
    """A circular fence of `radius_m` true metres around (lat, lon), e.g. a job site."""
    _check_id(fence_id)
    lon, lat = _position([lon, lat])
    geom, size_m, source = _circle(lat, lon, radius_m)
    return Fence(
        fence_id=fence_id,
        kind=_kind(kind),
        geometry=geom,
        dwell_s=_dwell(dwell_s),
        technician_ids=_technicians(None if technician_ids is None else sorted(technician_ids)),
        size_m=size_m,
        properties=MappingProxyType({"radius_m": float(radius_m)}),
        source=MappingProxyType(source),
    )


def fence_to_geojson(fence: Fence) -> dict[str, object]:
    """The fence as a GeoJSON Feature: its source geometry and normalised properties."""
    props: dict[str, object] = dict(fence.properties)
    props["kind"] = fence.kind
    props.pop("dwell_s", None)
    props.pop("technician_ids", None)
    if fence.dwell_s is not None:
        props["dwell_s"] = fence.dwell_s
    if fence.technician_ids is not None:
        props["technician_ids"] = sorted(fence.technician_ids)
    if fence.source:
        geometry: object = {k: _as_lists(v) for k, v in fence.source.items()}
    else:
        geometry = shapely.geometry.mapping(fence.geometry)
    return {"type": "Feature", "id": fence.fence_id, "geometry": geometry, "properties": props}


# --- properties -------------------------------------------------------------------


def _check_id(fence_id: object) -> None:
    if not isinstance(fence_id, str) or not ID_PATTERN.fullmatch(fence_id):
        raise FenceError("fence_id must be 1-64 characters of [A-Za-z0-9_.:-]")


def _kind(value: object) -> str:
    if not isinstance(value, str) or value not in KINDS:
        raise FenceError(f"kind must be one of {', '.join(KINDS)}")
    return value


def _dwell(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FenceError(f"dwell_s must be null or a number in [0, {MAX_DWELL_S:g}]")
    seconds = float(value)
    if not 0.0 <= seconds <= MAX_DWELL_S:  # also rejects NaN
        raise FenceError(f"dwell_s must be null or a number in [0, {MAX_DWELL_S:g}]")
    return seconds


def _technicians(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(t, str) and ID_PATTERN.fullmatch(t) for t in value)
    ):
        raise FenceError("technician_ids must be null or a non-empty list of ids")
    return frozenset(value)


def _length(value: object, name: str, limit: float) -> float:
    message = f"{name} must be a number in (0, {limit:g}]"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FenceError(message)
    try:
        metres = float(value)
    except OverflowError:
        raise FenceError(message) from None
    if not 0.0 < metres <= limit:  # also rejects NaN
        raise FenceError(message)
    return metres


# --- coordinates --------------------------------------------------------------------


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FenceError("coordinate is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise FenceError("coordinate is not finite") from None
    if not math.isfinite(number):
        raise FenceError("coordinate is not finite")
    return number


def _position(value: object) -> tuple[float, float]:
    """A GeoJSON position -> (lon, lat); an altitude is checked and dropped."""
    if not isinstance(value, list | tuple) or not 2 <= len(value) <= 3:
        raise FenceError("position must be [lon, lat] or [lon, lat, alt]")
    lon, lat = _number(value[0]), _number(value[1])
    if len(value) == 3:
        _number(value[2])
    if not -90.0 <= lat <= 90.0:
        raise FenceError("latitude out of range")
    if not -180.0 <= lon <= 180.0:
        raise FenceError("longitude out of range")
    return lon, lat


class _Budget:
    """Counts positions across all rings so a huge fence is refused before parsing it all."""

    def __init__(self) -> None:
        self.left = MAX_VERTICES

    def take(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise FenceError(f"too many vertices (> {MAX_VERTICES})")


def _ring(value: object, budget: _Budget) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list | tuple):
        raise FenceError("polygon ring must be a list of positions")
    if len(value) < 4:
        raise FenceError("polygon ring has fewer than 4 positions")
    budget.take(len(value))
    ring = tuple(_position(p) for p in value)
    if ring[0] != ring[-1]:
        raise FenceError("polygon ring is not closed")
    return ring


def _rings(value: object, budget: _Budget) -> tuple[tuple[tuple[float, float], ...], ...]:
    if not isinstance(value, list | tuple) or not value:
        raise FenceError("polygon has no rings")
    return tuple(_ring(r, budget) for r in value)


# --- geometries -----------------------------------------------------------------------

_Built = tuple[Geometry, float, dict[str, object]]


def _polygon(coords: object) -> _Built:
    rings = _rings(coords, _Budget())
    geom = shapely.Polygon(rings[0], rings[1:])
    return geom, _checked_area_size(geom), {"type": "Polygon", "coordinates": rings}


def _multipolygon(coords: object) -> _Built:
    if not isinstance(coords, list | tuple) or not coords:
        raise FenceError("multipolygon has no polygons")
    budget = _Budget()
    polygons = tuple(_rings(p, budget) for p in coords)
    geom = shapely.MultiPolygon([(p[0], p[1:]) for p in polygons])
    return geom, _checked_area_size(geom), {"type": "MultiPolygon", "coordinates": polygons}


def _checked_area_size(geom: Geometry) -> float:
    reason = shapely.is_valid_reason(geom)
    if reason != "Valid Geometry":
        if "Self-intersection" in reason:
            raise FenceError("self-intersecting polygon")
        raise FenceError(f"invalid polygon: {reason.split('[')[0].strip().lower()}")
    geom_m = _check_extent(geom)
    return 2.0 * math.sqrt(float(geom_m.area) / math.pi)


def _check_bounds(geom: Geometry) -> None:
    minx, miny, maxx, maxy = shapely.bounds(geom).tolist()
    if maxx - minx > 180.0:
        raise FenceError("fence crosses the antimeridian")
    if miny < -MAX_ABS_LAT or maxy > MAX_ABS_LAT:
        raise FenceError(f"fence too close to a pole (|lat| > {MAX_ABS_LAT:g})")


def _check_extent(geom: Geometry) -> Geometry:
    """Refuse fences across the antimeridian, near a pole or too large; -> metres geometry."""
    _check_bounds(geom)
    geom_m = LocalProjection.around(geom).to_metres(geom)
    if 2.0 * shapely.minimum_bounding_radius(geom_m) > MAX_ACROSS_M:
        raise FenceError(f"fence too large (> {MAX_ACROSS_M / 1000:g} km across)")
    return geom_m


def circle_vertex_count(radius_m: float) -> int:
    """Vertices so the polygon stays within CIRCLE_TOLERANCE_M of the true circle."""
    half_angle = math.acos(max(-1.0, 1.0 - CIRCLE_TOLERANCE_M / radius_m))
    wanted = math.ceil(math.pi / half_angle) if half_angle > 0 else MAX_CIRCLE_VERTICES
    return max(MIN_CIRCLE_VERTICES, min(MAX_CIRCLE_VERTICES, wanted))


def _circle(lat: float, lon: float, radius: object) -> _Built:
    radius_m = _length(radius, "radius_m", MAX_RADIUS_M)
    if 2.0 * radius_m > MAX_ACROSS_M:
        raise FenceError(f"fence too large (> {MAX_ACROSS_M / 1000:g} km across)")
    n = circle_vertex_count(radius_m)
    # Vertices a little outside the circle so edge midpoints fall as far inside:
    # the polygon's radial error is then +-r(1-cos(pi/n))/(1+cos(pi/n)).
    vertex_r = 2.0 * radius_m / (1.0 + math.cos(math.pi / n))
    shell = [destination(lat, lon, 360.0 * i / n, vertex_r)[::-1] for i in range(n)]
    geom = shapely.Polygon(shell)
    _check_bounds(geom)
    return geom, 2.0 * radius_m, {"type": "Point", "coordinates": (lon, lat)}


def _corridor(coords: object, width: object) -> _Built:
    if not isinstance(coords, list | tuple):
        raise FenceError("linestring must be a list of positions")
    _Budget().take(len(coords))
    line_pts = tuple(_position(p) for p in coords)
    if len(set(line_pts)) < 2:
        raise FenceError("linestring needs at least 2 distinct positions")
    width_m = _length(width, "width_m", MAX_WIDTH_M)
    line = shapely.LineString(line_pts)
    _check_bounds(line)
    proj = LocalProjection.around(line)
    geom = proj.to_lonlat(shapely.buffer(proj.to_metres(line), width_m / 2.0, quad_segs=8))
    _check_extent(geom)
    return geom, width_m, {"type": "LineString", "coordinates": line_pts}


def _as_lists(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_as_lists(v) for v in value]
    return value
