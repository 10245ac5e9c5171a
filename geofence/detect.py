"""Geofence transitions for one device: enter, exit, dwell and cross, with hysteresis.

Pure functions over small frozen values: ``detect(index, presence, fix...)`` and
``tick(index, presence, now)`` return the new `Presence` and the transitions, and
read no clock.  The caller keeps one `Presence` per device.

Rules (defaults in `DetectorConfig`):

* A fix no newer than the last used one (``ts <= presence.last[0]``) changes
  nothing.  A fix whose accuracy ``acc`` is worse than ``max_accuracy_m`` (or NaN,
  or whose coordinates are not usable) is ignored entirely, as if it never came: it
  is not remembered as the last fix either.  ``acc=None`` (unknown) is trusted.
* Enter: the fix is inside the fence (boundary included) and ``acc <=
  enter_max_accuracy_m``.
* Exit: the fix is outside the fence by more than ``max(exit_buffer_min_m,
  exit_buffer_frac * fence.size_m) + acc`` metres.  In between, the device stays
  inside: GPS jitter along a boundary gives one enter and one exit, not dozens.
* Dwell: once per visit, on the first fix (or `tick`) at least ``dwell_s`` (the
  fence's, else ``default_dwell_s``) after the enter.
* Cross: the straight segment from the last used fix to this one touches a fence
  that neither fix is inside (geometrically, and the device was not inside it),
  provided the fixes are at least ``cross_min_gap_m`` apart and at most
  ``cross_max_gap_s`` apart in time (beyond that a straight line says little about
  the path).  Both fixes passed the ``max_accuracy_m`` test by construction.
* Fences with ``technician_ids`` only apply to those technicians.
* A fence removed from the index (or no longer applying to the technician) while
  the device is inside it yields an ``exit`` on the next `detect` or `tick`, so
  every enter is eventually closed; its ``dwell_s`` is the time spent inside.

Transitions of one call come in a fixed order: exits, crosses, enters, dwells,
each group sorted by fence id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from geofence.geodesy import haversine_m
from geofence.index import FenceIndex
from geofence.shapes import Fence


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds of the detector; every default is explained next to it."""

    # Phones report 3-20 m outdoors, 30-65 m indoors on Wi-Fi; beyond 100 m the fix
    # is a cell-tower guess and should not move anyone in or out.
    max_accuracy_m: float = 100.0
    # Entering needs a fix good enough to tell a 100 m job site from the next street.
    enter_max_accuracy_m: float = 50.0
    # Hysteresis: leave only when clearly outside, by 20 m or 10 % of the fence's
    # size (whichever is larger) plus the fix's own accuracy.
    exit_buffer_min_m: float = 20.0
    exit_buffer_frac: float = 0.10
    # Two minutes inside counts as a stop rather than driving past.
    default_dwell_s: float = 120.0
    # 0: any segment may cross; raise it to ignore crossings between nearby fixes.
    cross_min_gap_m: float = 0.0
    # Fixes more than 15 min apart are not joined by a straight line.
    cross_max_gap_s: float = 900.0

    def exit_buffer_m(self, fence: Fence) -> float:
        return max(self.exit_buffer_min_m, self.exit_buffer_frac * fence.size_m)


@dataclass(frozen=True)
class Presence:
    """Where one device is: fences it is inside (-> time entered) and what was said."""

    inside: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    dwelled: frozenset[str] = frozenset()
    last: tuple[float, float, float] | None = None  # (ts, lat, lon) of the last used fix
    kinds: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    EMPTY: ClassVar[Presence]

    @classmethod
    def empty(cls) -> Presence:
        return cls.EMPTY


Presence.EMPTY = Presence()


@dataclass(frozen=True)
class Transition:
    fence_id: str
    kind: str  # the fence's kind: site, depot, zone, restricted
    transition: str  # enter, exit, dwell, cross
    ts: float
    dwell_s: float | None = None  # time inside, for exit and dwell


def detect(
    index: FenceIndex,
    prev: Presence,
    ts: float,
    lat: float,
    lon: float,
    acc: float | None,
    cfg: DetectorConfig,
    technician_id: str | None = None,
) -> tuple[Presence, list[Transition]]:
    """Apply one fix; see the module docstring for the rules."""
    if prev.last is not None and ts <= prev.last[0]:
        return prev, []
    acc_m = 0.0 if acc is None else float(acc)
    usable = -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0 and math.isfinite(ts)
    if not usable or not acc_m <= cfg.max_accuracy_m:  # `not <=` also catches NaN
        return prev, []
    fences = index.fences
    here = {f for f in index.containing(lat, lon) if fences[f].applies_to(technician_id)}
    inside = dict(prev.inside)
    kinds = dict(prev.kinds)
    dwelled = set(prev.dwelled)
    exits: list[Transition] = []
    for fid, entered in sorted(prev.inside.items()):
        fence = fences.get(fid)
        if fence is not None and fence.applies_to(technician_id):
            if fid in here:
                continue
            outside_m = index.distance_outside_m(fid, lat, lon)
            if outside_m <= cfg.exit_buffer_m(fence) + acc_m:
                continue
        exits.append(Transition(fid, kinds.pop(fid, ""), "exit", ts, ts - entered))
        del inside[fid]
        dwelled.discard(fid)
    crosses = _crosses(index, prev, ts, lat, lon, here, cfg, technician_id)
    enters: list[Transition] = []
    if acc_m <= cfg.enter_max_accuracy_m:
        for fid in sorted(here - inside.keys()):
            inside[fid] = ts
            kinds[fid] = fences[fid].kind
            enters.append(Transition(fid, fences[fid].kind, "enter", ts))
    dwells = _dwells(index, inside, dwelled, kinds, ts, cfg)
    presence = Presence(
        MappingProxyType(inside), frozenset(dwelled), (ts, lat, lon), MappingProxyType(kinds)
    )
    return presence, [*exits, *crosses, *enters, *dwells]


def tick(
    index: FenceIndex, prev: Presence, now: float, cfg: DetectorConfig
) -> tuple[Presence, list[Transition]]:
    """Fire dwells that are due at `now` and exits for fences gone from the index."""
    fences = index.fences
    gone = sorted(fid for fid in prev.inside if fid not in fences)
    inside = {fid: t for fid, t in prev.inside.items() if fid in fences}
    kinds = dict(prev.kinds)
    dwelled = set(prev.dwelled) - set(gone)
    exits = [
        Transition(fid, kinds.pop(fid, ""), "exit", now, now - prev.inside[fid]) for fid in gone
    ]
    dwells = _dwells(index, inside, dwelled, kinds, now, cfg)
    if not exits and not dwells:
        return prev, []
    presence = Presence(
        MappingProxyType(inside), frozenset(dwelled), prev.last, MappingProxyType(kinds)
    )
    return presence, [*exits, *dwells]


def _crosses(
    index: FenceIndex,
    prev: Presence,
    ts: float,
    lat: float,
    lon: float,
    here: set[str],
    cfg: DetectorConfig,
    technician_id: str | None,
) -> list[Transition]:
    if prev.last is None:
        return []
    last_ts, last_lat, last_lon = prev.last
    if ts - last_ts > cfg.cross_max_gap_s:
        return []
    if cfg.cross_min_gap_m > 0 and haversine_m(last_lat, last_lon, lat, lon) < cfg.cross_min_gap_m:
        return []
    fences = index.fences
    touched = index.crossed(
        last_lat,
        last_lon,
        lat,
        lon,
        skip=here | prev.inside.keys(),
        where=lambda fence: fence.applies_to(technician_id),
    )
    return [
        Transition(fid, fences[fid].kind, "cross", ts)
        for fid in sorted(touched)
        if not index.covers(fid, last_lat, last_lon)
    ]


def _dwells(
    index: FenceIndex,
    inside: Mapping[str, float],
    dwelled: set[str],
    kinds: Mapping[str, str],
    ts: float,
    cfg: DetectorConfig,
) -> list[Transition]:
    """Dwell transitions due at `ts`; marks them in `dwelled`."""
    out: list[Transition] = []
    fences = index.fences
    for fid in sorted(inside.keys() - dwelled):
        fence = fences.get(fid)
        if fence is None:
            continue
        needed = cfg.default_dwell_s if fence.dwell_s is None else fence.dwell_s
        if ts - inside[fid] >= needed:
            dwelled.add(fid)
            out.append(Transition(fid, kinds.get(fid, fence.kind), "dwell", ts, ts - inside[fid]))
    return out
