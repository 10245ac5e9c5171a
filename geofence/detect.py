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
* A fence removed from the index while the device is inside it yields an ``exit``
  on the next `detect` or `tick` (one that stops applying to the device's
  technician: on the next `detect`), so every enter is eventually closed; its
  ``dwell_s`` is the time spent inside.

Transitions of one call come in a fixed order: exits, crosses, enters, dwells,
each group sorted by fence id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from geofence.cells import leaf_of
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
    kinds: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # at entry
    leaf: int | None = None  # res-15 H3 cell of `last`: saves an h3 call in crossing checks

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
    leaf = leaf_of(lat, lon)
    here = index.containing(lat, lon, leaf=leaf)
    if here and not all(fences[f].applies_to(technician_id) for f in here):
        here = frozenset(f for f in here if fences[f].applies_to(technician_id))
    crosses = _crosses(index, prev, ts, lat, lon, leaf, here, cfg, technician_id)
    if not here and not prev.inside:  # the common case: nothing to exit, enter or dwell
        return Presence(prev.inside, prev.dwelled, (ts, lat, lon), prev.kinds, leaf), crosses
    exits = _exits(index, prev, here, ts, lat, lon, acc_m, cfg, technician_id)
    entering = sorted(here - prev.inside.keys()) if acc_m <= cfg.enter_max_accuracy_m else []
    enters = [Transition(fid, fences[fid].kind, "enter", ts) for fid in entering]
    inside, kinds, dwelled = prev.inside, prev.kinds, prev.dwelled
    if exits or enters:  # copy only when something changed
        gone = {t.fence_id for t in exits}
        inside_d = {f: t for f, t in inside.items() if f not in gone}
        kinds_d = {f: k for f, k in kinds.items() if f not in gone}
        for t in enters:
            inside_d[t.fence_id], kinds_d[t.fence_id] = ts, t.kind
        inside, kinds, dwelled = (
            MappingProxyType(inside_d),
            MappingProxyType(kinds_d),
            dwelled - gone,
        )
    dwells = _dwells(index, inside, dwelled, kinds, ts, cfg)
    if dwells:
        dwelled = dwelled | {t.fence_id for t in dwells}
    presence = Presence(inside, dwelled, (ts, lat, lon), kinds, leaf)
    return presence, [*exits, *crosses, *enters, *dwells]


def tick(
    index: FenceIndex, prev: Presence, now: float, cfg: DetectorConfig
) -> tuple[Presence, list[Transition]]:
    """Fire dwells that are due at `now` and exits for fences gone from the index."""
    fences = index.fences
    gone = sorted(fid for fid in prev.inside if fid not in fences)
    exits = [
        Transition(fid, prev.kinds.get(fid, ""), "exit", now, now - prev.inside[fid])
        for fid in gone
    ]
    inside, kinds, dwelled = prev.inside, prev.kinds, prev.dwelled
    if gone:
        inside = MappingProxyType({f: t for f, t in inside.items() if f not in gone})
        kinds = MappingProxyType({f: k for f, k in kinds.items() if f not in gone})
        dwelled = dwelled - set(gone)
    dwells = _dwells(index, inside, dwelled, kinds, now, cfg)
    if not exits and not dwells:
        return prev, []
    dwelled = dwelled | {t.fence_id for t in dwells}
    return Presence(inside, dwelled, prev.last, kinds, prev.leaf), [*exits, *dwells]


def _exits(
    index: FenceIndex,
    prev: Presence,
    here: frozenset[str],
    ts: float,
    lat: float,
    lon: float,
    acc_m: float,
    cfg: DetectorConfig,
    technician_id: str | None,
) -> list[Transition]:
    """Exits from fences the device was inside: clearly outside, gone, or no longer its."""
    out: list[Transition] = []
    fences = index.fences
    for fid in sorted(prev.inside.keys() - here):
        fence = fences.get(fid)
        if fence is not None and fence.applies_to(technician_id):
            limit = cfg.exit_buffer_m(fence) + acc_m
            if not index.outside_by_more_than(fid, lat, lon, limit):
                continue  # hysteresis: not clearly outside yet
        entered = prev.inside[fid]
        out.append(Transition(fid, prev.kinds.get(fid, ""), "exit", ts, ts - entered))
    return out


def _crosses(
    index: FenceIndex,
    prev: Presence,
    ts: float,
    lat: float,
    lon: float,
    leaf: int,
    here: frozenset[str],
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
        leaves=None if prev.leaf is None else (prev.leaf, leaf),
    )
    return [
        Transition(fid, fences[fid].kind, "cross", ts)
        for fid in sorted(touched)
        if not index.covers(fid, last_lat, last_lon)
    ]


def _dwells(
    index: FenceIndex,
    inside: Mapping[str, float],
    dwelled: frozenset[str],
    kinds: Mapping[str, str],
    ts: float,
    cfg: DetectorConfig,
) -> list[Transition]:
    """Dwell transitions due at `ts`, for visits that have not had theirs."""
    pending = inside.keys() - dwelled
    if not pending:
        return []
    out: list[Transition] = []
    fences = index.fences
    for fid in sorted(pending):
        fence = fences.get(fid)
        if fence is None:
            continue
        needed = cfg.default_dwell_s if fence.dwell_s is None else fence.dwell_s
        if ts - inside[fid] >= needed:
            out.append(Transition(fid, kinds.get(fid, fence.kind), "dwell", ts, ts - inside[fid]))
    return out
