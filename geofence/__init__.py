"""Geofences for FieldTrack: validated fences, a fast immutable index, and a detector.

A pure library (no I/O, no clock, no asyncio): floats, ids and its own small types go in
and out.  `shapes` builds and validates fences, `cells` maps them to H3 keys, `index`
answers "which fences contain this point" in about a microsecond, and `detect` turns a
device's fixes into enter / exit / dwell / cross transitions with hysteresis.
"""

# `detect` (the function) is not re-exported: it would shadow the `geofence.detect`
# module as an attribute of the package.  Import it from geofence.detect.
from geofence.detect import DetectorConfig, Presence, Transition, tick
from geofence.errors import FenceError
from geofence.index import FenceIndex
from geofence.shapes import Fence, circle_fence, fence_from_geojson, fence_to_geojson

__all__ = [
    "DetectorConfig",
    "Fence",
    "FenceError",
    "FenceIndex",
    "Presence",
    "Transition",
    "circle_fence",
    "fence_from_geojson",
    "fence_to_geojson",
    "tick",
]
