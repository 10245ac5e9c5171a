"""FenceIndex: which fences contain a point (or touch a segment), fast and immutable.

Lookup: one h3 call (the fix's res-15 cell), then for each resolution in use one
dict probe with the derived key (see cells).  A key's entry lists the fences whose
*interior* holds the whole key (answered without geometry), the probes of those on
its *border* (confirmed exactly, see placed) and every fence it is near: interior,
border or halo (the candidates of `crossed`).  A border key's entry also carries a
sub-cell map (see cells: "Sub-cells"): the fix's slot picks the entry that answers,
which most of the time needs no exact test either.  Points on a fence's
boundary count as inside it, i.e. ``shapely.covers`` / ``intersects`` semantics.

Immutability: an update returns a new index sharing almost everything with the old
one, so readers holding the old reference are never paused.  The key table is split
spatially, ``res-7 cell -> {key: entry}`` (keys coarser than res 7 live in one
small dict), so `with_fence` copies only the few dicts the fence's keys
fall in, plus the id -> fence maps.  In a border key it edits the sub-cell groups
(splits them by the new fence's masks, or drops the fence and merges the groups left
alike) rather than recomputing them from every fence at the key, so its cost follows
the fence's own cell count and the key's groups (at most one per slot), not the number
of fences overlapping it: ~5 ms for a job-site circle among 447 overlapping ones,
about half of it `Placed.of`.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import shapely

from geofence import cells
from geofence.cells import KEY_BITS
from geofence.edges import LINE, PROBE, Check
from geofence.geodesy import M_PER_DEG, Geometry
from geofence.placed import Placed, hits_xy
from geofence.shapes import Fence

_SHARD_RES = 7
_SHARD_BITS = KEY_BITS[_SHARD_RES]
_LEAF_RES = cells.LEAF_RES
_CLEAR_RES = ((1 << 64) - 1) ^ (0xF << 52)
_EMPTY: frozenset[str] = frozenset()
_ALL_SLOTS = (1 << cells.SLOTS) - 1
_SLOT_MASK = cells.SLOTS - 1
_RADIANS = math.pi / 180.0
_latlng_to_cell = cells.latlng_to_cell

# (interior fence ids, border checks sorted by fence id, ids of every fence at the key,
#  for a border key with sub-cells: slot -> index of its entry (bytes, or 16-bit
#  array past 256 entries), those entries)
Entry = tuple[
    frozenset[str],
    tuple[Check, ...],
    frozenset[str],
    "bytes | array[int] | None",
    "tuple[Entry, ...] | None",
]
# A border key's sub-cells while an entry is made: slot -> group, and per group the
# fence ids (the key's interior ones included) and checks that answer there.
_Groups = tuple["npt.NDArray[np.intp]", list[Entry]]
_Shared = dict[tuple[frozenset[str], tuple[int, ...]], Entry]  # sub-cell entries by content
_Masks = tuple[int, int, tuple[tuple[int, Check], ...]]
_Leaf = dict[int, Entry]
_Shards = dict[int, _Leaf]


class FenceIndex:
    """Immutable fence index: build once, then swap in what `with_fence`/`without` return."""

    __slots__ = (
        "_coarse",
        "_coarse_bits",
        "_fences",
        "_fences_view",
        "_fine_bits",
        "_placed",
        "_res",
        "_shards",
        "_spacing",
    )

    def __init__(
        self,
        placed: dict[str, Placed],
        fences: dict[str, Fence],
        shards: _Shards,
        coarse: _Leaf,
        res_counts: dict[int, int],
    ) -> None:
        self._placed = placed
        self._fences = fences
        self._fences_view: Mapping[str, Fence] = MappingProxyType(fences)
        self._shards = shards
        self._coarse = coarse
        self._res = res_counts
        used = sorted(r for r, n in res_counts.items() if n > 0)
        # (key bits, shift of the sub-cell slot) per resolution in use
        self._fine_bits = tuple((KEY_BITS[r], cells.sub_shift(r)) for r in used if r >= _SHARD_RES)
        self._coarse_bits = tuple((KEY_BITS[r], cells.sub_shift(r)) for r in used if r < _SHARD_RES)
        # crossed() samples segments closer than this, so no fence's halo is skipped
        self._spacing = 0.9 * cells.HALO_M

    # --- construction -------------------------------------------------------------

    @classmethod
    def build(cls, fences: Iterable[Fence]) -> FenceIndex:
        """Index fences (a later fence with the same id replaces an earlier one)."""
        placed = {f.fence_id: Placed.of(f) for f in fences}
        roles: dict[int, tuple[list[str], list[Check], list[str]]] = {}
        for fid in sorted(placed):
            p = placed[fid]
            for key in p.cover.interior:
                roles.setdefault(key, ([], [], []))[0].append(fid)
            for key in p.cover.border:
                roles.setdefault(key, ([], [], []))[1].append(p.check(key))
            for key in p.cover.halo:
                roles.setdefault(key, ([], [], []))[2].append(fid)
        # Most keys hold one fence in one role: share one entry object per content.
        shared: dict[tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]], Entry] = {}
        subs: _Shared = {}
        nears: dict[tuple[str, ...], frozenset[str]] = {}  # border keys' entries are not shared
        shards: _Shards = {}
        coarse: _Leaf = {}
        for key, (interior, border, halo) in roles.items():
            # Per-key checks differ from key to key; probes and id sets are shared.
            sig = (tuple(interior), tuple(id(b) for b in border), tuple(halo))
            masks = tuple(placed[b[0]].sub_masks(key) for b in border)
            entry = None if any(masks) else shared.get(sig)
            if entry is None:
                inner = frozenset(interior) if interior else _EMPTY
                ids = tuple(sorted((*interior, *sig[2], *(b[0] for b in border))))
                near = nears.get(ids)
                if near is None:
                    near = nears[ids] = frozenset(ids)
                entry = _entry(inner, tuple(border), near, masks, subs)
                if not any(masks):
                    shared[sig] = entry
            _leaf_for(shards, coarse, key)[key] = entry
        fence_map = {fid: p.fence for fid, p in placed.items()}
        return cls(placed, fence_map, shards, coarse, _count_res(placed.values()))

    def with_fence(self, fence: Fence) -> FenceIndex:
        """A new index with `fence` added, or replacing the fence with the same id."""
        return self._replace(fence.fence_id, Placed.of(fence))

    def without(self, fence_id: str) -> FenceIndex:
        """A new index without that fence (this same index if there is no such fence)."""
        if fence_id not in self._placed:
            return self
        return self._replace(fence_id, None)

    def _replace(self, fid: str, new: Placed | None) -> FenceIndex:
        """Edit the entries of the keys of the fence's old and new covers, nothing else.

        A border key's sub-cell groups are edited, not split again for every fence at
        the key, and groups the fence does not touch keep their entries: the cost of an
        update follows the fence's own keys and the number of groups there, not the
        number of fences that overlap it.
        """
        old = self._placed.get(fid)
        keys: set[int] = set()
        for p in (old, new):
            if p is not None:
                keys.update(p.cover.interior, p.cover.border, p.cover.halo)
        placed, fences, res = dict(self._placed), dict(self._fences), dict(self._res)
        if new is None:
            del placed[fid]
        else:
            placed[fid] = new
        changes: dict[int, Entry | None] = {}
        shared: _Shared = {}
        for key in keys:
            entry = before = self._entry(key)
            groups = None if entry is None else _groups_of(entry)
            edited = False
            if entry is not None and old is not None:
                entry = _drop(entry, fid)
                if groups is not None and old.role(key) != 2:  # a halo key's groups stay
                    checks = {id(old.check(key)), *(id(c) for _, c in old.sub_checks.get(key, ()))}
                    groups, edited = _drop_groups(groups, fid, checks, shared), True
            role = None if new is None else new.role(key)
            if new is not None and role is not None:
                entry = _add(entry, new, key, role)
                if role == 0 and groups is not None:
                    subs = [_sub(sub[0] | {fid}, sub[1], shared) for sub in groups[1]]
                    groups, edited = (groups[0], subs), True
                elif role == 1:
                    masks = new.sub_masks(key)
                    if groups is None and masks is not None:  # the key's first sub-cells
                        others = tuple(b for b in entry[1] if b[0] != fid)
                        first = [_sub(entry[0], others, shared)]
                        groups = (np.zeros(cells.SLOTS, dtype=np.intp), first)
                    if groups is not None:
                        groups, edited = _split(groups, new.check(key), masks, shared), True
            # Sub-cells while a border fence at the key has some (else a plain entry, as
            # `_drop`/`_add` made it): the groups edited, or the old ones if untouched.
            if (
                entry is not None
                and groups is not None
                and any(key in placed[b[0]].cover.subs for b in entry[1])
            ):
                if edited or before is None:
                    entry = _with_groups(entry, groups)
                else:
                    entry = (*entry[:3], before[3], before[4])
            changes[key] = entry
        shards, coarse = _write(self._shards, self._coarse, changes)
        if old is not None:
            for level in old.levels:
                res[level] -= 1
            del fences[fid]
        if new is not None:
            for level in new.levels:
                res[level] = res.get(level, 0) + 1
            fences[fid] = new.fence
        return FenceIndex(placed, fences, shards, coarse, res)

    # --- queries ------------------------------------------------------------------

    @property
    def fences(self) -> Mapping[str, Fence]:
        """fence_id -> Fence (read-only)."""
        return self._fences_view

    def __len__(self) -> int:
        return len(self._placed)

    def __repr__(self) -> str:
        return f"FenceIndex({len(self)} fences, {self.key_count()} keys)"

    def containing(self, lat: float, lon: float, *, leaf: int | None = None) -> frozenset[str]:
        """Ids of the fences covering the point (boundary included); exact.

        `leaf`: the point's res-15 H3 cell (`cells.leaf_of`) if the caller has it already.
        """
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise ValueError("latitude/longitude out of range")
        # The gateway's hot path, hence written out: one h3 call, a dict probe per
        # resolution in use, and most fixes meet zero or one entry.
        if leaf is None:
            leaf = _latlng_to_cell(lat, lon, _LEAF_RES)
        base = leaf & _CLEAR_RES
        found: frozenset[str] | set[str] = _EMPTY
        table = self._shards.get(base | _SHARD_BITS)
        if table is not None:
            for bits, shift in self._fine_bits:
                entry = table.get(base | bits)
                if entry is not None:
                    slots = entry[3]
                    if slots is not None:  # a border key: its sub-cell knows more
                        entry = entry[4][slots[(leaf >> shift) & _SLOT_MASK]]  # type: ignore[index]
                    if entry[1]:
                        found = _collect(found, entry, lon, lat)
                    elif not found:
                        # The common case: nothing to test, nothing found yet -> the
                        # entry's own frozenset is the answer, shared, not copied.
                        found = entry[0]
                    elif entry[0]:
                        found = found | entry[0]
        for bits, shift in self._coarse_bits:
            entry = self._coarse.get(base | bits)
            if entry is not None:
                slots = entry[3]
                if slots is not None:
                    entry = entry[4][slots[(leaf >> shift) & _SLOT_MASK]]  # type: ignore[index]
                if entry[1]:
                    found = _collect(found, entry, lon, lat)
                elif entry[0]:
                    found = found | entry[0] if found else entry[0]
        return found if type(found) is frozenset else frozenset(found)

    def crossed(
        self,
        lat1: float,
        lon1: float,
        lat2: float,
        lon2: float,
        *,
        skip: AbstractSet[str] = _EMPTY,
        where: Callable[[Fence], bool] | None = None,
        leaves: tuple[int, int] | None = None,
    ) -> frozenset[str]:
        """Ids of the fences the straight (lon/lat) segment between two points touches.

        Fences in `skip`, or for which `where(fence)` is false, are neither tested nor
        returned (the detector skips those it already knows about).  `leaves`: the two
        points' res-15 cells, if known, saves h3 calls.
        """
        if not (-90.0 <= lat1 <= 90.0 and -180.0 <= lon1 <= 180.0) or not (
            -90.0 <= lat2 <= 90.0 and -180.0 <= lon2 <= 180.0
        ):
            raise ValueError("latitude/longitude out of range")
        samples = self._samples(lat1, lon1, lat2, lon2)
        if leaves is None:
            leaves = (
                _latlng_to_cell(lat1, lon1, _LEAF_RES),
                _latlng_to_cell(lat2, lon2, _LEAF_RES),
            )
        candidates = self._near(leaves[0]) | self._near(leaves[1])
        for i in range(1, samples):
            t = i / samples
            lat, lon = lat1 + (lat2 - lat1) * t, lon1 + (lon2 - lon1) * t
            candidates |= self._near(_latlng_to_cell(lat, lon, _LEAF_RES))
        candidates -= skip
        segment = None
        hits = []
        placed = self._placed
        for fid in candidates:
            p = placed[fid]
            verdict = _probe_segment(p.probe, lon1, lat1, lon2, lat2)
            if verdict is False or (where is not None and not where(p.fence)):
                continue
            if verdict is None:
                if segment is None:  # built once, and only if a probe left it open
                    segment = _segment(lon1, lat1, lon2, lat2)
                verdict = p.geom.intersects(segment)
            if verdict:
                hits.append(fid)
        return frozenset(hits)

    def covers(self, fence_id: str, lat: float, lon: float) -> bool:
        """Whether that one fence covers the point (boundary included); KeyError if unknown."""
        return bool(hits_xy(self._placed[fence_id].geom, lon, lat))

    def distance_outside_m(self, fence_id: str, lat: float, lon: float) -> float:
        """Metres from the point to the fence, 0.0 inside; KeyError for an unknown id.

        Measured in the fence's local projection (error < 1 % within 25 km of it).
        """
        p = self._placed[fence_id]
        if hits_xy(p.geom, lon, lat):
            return 0.0
        x, y = p.proj.point(lat, lon)
        return float(shapely.distance(p.geom_m, shapely.Point(x, y)))

    def outside_by_more_than(self, fence_id: str, lat: float, lon: float, metres: float) -> bool:
        """``distance_outside_m(...) > metres``, mostly without GEOS (the detector's exit test).

        The probe bounds the distance: from a point at d from the probe's centre it is
        at least d - r_out and at most d - r_in (the boundary crosses the ray from the
        centre between r_in and r_out).  Only when `metres` falls in between is the
        distance computed.
        """
        _, _, _, cx, cy, sx, inner2, outer2 = self._placed[fence_id].probe
        dx, dy = (lon - cx) * sx, lat - cy
        d = math.sqrt(dx * dx + dy * dy) * M_PER_DEG
        if d - math.sqrt(outer2) * M_PER_DEG > metres:
            return True
        if inner2 > 0.0 and d - math.sqrt(inner2) * M_PER_DEG <= metres:
            return False
        return self.distance_outside_m(fence_id, lat, lon) > metres

    def key_count(self) -> int:
        """Number of keys in the table (statistics)."""
        fine = sum(len(leaf) for leaf in self._shards.values())
        return fine + len(self._coarse)

    def resolutions(self) -> dict[int, int]:
        """Resolution -> number of fences with keys at it (statistics)."""
        return {r: n for r, n in sorted(self._res.items()) if n > 0}

    # --- internals ----------------------------------------------------------------

    def _near(self, leaf: int) -> frozenset[str]:
        """Every fence whose interior, border or halo holds the point's keys."""
        base = leaf & _CLEAR_RES
        found = _EMPTY
        table = self._shards.get(base | _SHARD_BITS)
        if table is not None:
            for bits, _ in self._fine_bits:
                entry = table.get(base | bits)
                if entry is not None:
                    found = found | entry[2] if found else entry[2]
        for bits, _ in self._coarse_bits:
            entry = self._coarse.get(base | bits)
            if entry is not None:
                found = found | entry[2] if found else entry[2]
        return found

    def _entry(self, key: int) -> Entry | None:
        if cells.resolution_of(key) < _SHARD_RES:
            return self._coarse.get(key)
        table = self._shards.get(cells.key_of(key, _SHARD_RES))
        return None if table is None else table.get(key)

    def _samples(self, lat1: float, lon1: float, lat2: float, lon2: float) -> int:
        """Number of intervals so samples are closer than 0.9 x the smallest halo."""
        # Over-estimate the length: longitude degrees measured where they are longest.
        widest = 0.0 if lat1 * lat2 <= 0 else min(abs(lat1), abs(lat2))
        dx = (lon2 - lon1) * math.cos(widest * _RADIANS)
        length = math.hypot(dx, lat2 - lat1) * M_PER_DEG
        return max(1, math.ceil(length / self._spacing))


def _collect(
    found: frozenset[str] | set[str], entry: Entry, lon: float, lat: float
) -> frozenset[str] | set[str]:
    """Add an entry's interior fences and those of its border fences covering the point.

    The three kinds of check (see edges and placed) are written out here because this
    loop is most of the cost of a fix; GEOS decides only what they leave open.
    """
    interior, border = entry[0], entry[1]
    hit: list[str] | None = None
    for check in border:
        tag = check[2]
        if tag == PROBE:
            _, geom, _, cx, cy, sx, inner2, outer2 = check
            dx = (lon - cx) * sx
            dy = lat - cy
            d2 = dx * dx + dy * dy
            inside = d2 <= inner2 or (d2 < outer2 and hits_xy(geom, lon, lat))
        elif tag == LINE:
            _, geom, _, ax, ay, ux, uy, tol = check
            c = ux * (lat - ay) - uy * (lon - ax)
            inside = c > tol or (c >= -tol and hits_xy(geom, lon, lat))
        else:
            _, geom, _, ax, ay, ux, uy, vx, vy, wx, wy, tol, convex = check
            c1 = ux * (lat - ay) - uy * (lon - ax)
            c2 = wx * (lat - vy) - wy * (lon - vx)
            if convex:
                sure_in, sure_out = c1 > tol and c2 > tol, c1 < -tol or c2 < -tol
            else:
                sure_in, sure_out = c1 > tol or c2 > tol, c1 < -tol and c2 < -tol
            inside = sure_in or (not sure_out and hits_xy(geom, lon, lat))
        if inside:
            fid: str = check[0]
            if hit is None:
                hit = [fid]
            else:
                hit.append(fid)
    if not found and hit is None:
        return interior  # the common case: a shared frozenset, no copy
    result = found if type(found) is set else set(found)
    result.update(interior)
    if hit is not None:
        result.update(hit)
    return result


def _segment(lon1: float, lat1: float, lon2: float, lat2: float) -> Geometry:
    if (lon1, lat1) == (lon2, lat2):
        return shapely.Point(lon1, lat1)
    return shapely.LineString([(lon1, lat1), (lon2, lat2)])


def _probe_segment(probe: Check, lon1: float, lat1: float, lon2: float, lat2: float) -> bool | None:
    """Segment vs a fence's probe discs: True/False when they decide, None: ask GEOS."""
    _, _, _, cx, cy, sx, inner2, outer2 = probe
    x1, y1 = (lon1 - cx) * sx, lat1 - cy
    dx, dy = (lon2 - lon1) * sx, lat2 - lat1
    # The point of the segment nearest the probe's centre: t in [0, 1] along it.
    along = -(x1 * dx + y1 * dy)
    if along <= 0.0:
        d2 = x1 * x1 + y1 * y1
    else:
        length2 = dx * dx + dy * dy
        if along >= length2:
            qx, qy = x1 + dx, y1 + dy
        else:
            t = along / length2
            qx, qy = x1 + t * dx, y1 + t * dy
        d2 = qx * qx + qy * qy
    if d2 >= outer2:
        return False
    return True if d2 <= inner2 else None


def _count_res(placed: Iterable[Placed]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for p in placed:
        for level in p.levels:
            counts[level] = counts.get(level, 0) + 1
    return counts


def _leaf_for(shards: _Shards, coarse: _Leaf, key: int) -> _Leaf:
    if cells.resolution_of(key) < _SHARD_RES:
        return coarse
    return shards.setdefault(cells.key_of(key, _SHARD_RES), {})


_NOWHERE: Entry = (_EMPTY, (), _EMPTY, None, None)


def _entry(
    interior: frozenset[str],
    border: tuple[Check, ...],
    near: frozenset[str],
    masks: tuple[_Masks | None, ...],
    shared: _Shared,
) -> Entry:
    """An entry, with sub-cell entries when a border fence has sub-cell masks.

    Sub-cell slot s answers for the points of the key whose res (r + SUB_DEPTH)
    ancestor has digits s: the key's interior fences, plus those border fences whose
    mask says the sub-cell is inside, plus the checks of those that still need one.
    A border fence without masks keeps its check in every slot.
    """
    entry: Entry = (interior, border, near, None, None)
    if not any(masks):
        return entry
    groups: _Groups = (np.zeros(cells.SLOTS, dtype=np.intp), [_sub(interior, (), shared)])
    for check, mask in zip(border, masks, strict=True):
        groups = _split(groups, check, mask, shared)
    return _with_groups(entry, groups)


def _sub(ids: frozenset[str], chk: tuple[Check, ...], shared: _Shared) -> Entry:
    """The entry of a sub-cell group (`near` is read from top-level entries only)."""
    sig = (ids, tuple(map(id, chk)))
    sub = shared.get(sig)
    if sub is None:
        sub = shared[sig] = (ids, chk, _EMPTY, None, None)
    return sub


def _split(groups: _Groups, check: Check, mask: _Masks | None, shared: _Shared) -> _Groups:
    """Sub-cell groups with one more border fence: each group split by what the fence's
    masks say of its slots (inside, tested by `check`, tested by an edge check of
    their own, or out).  Slots alike for every fence so far stay one group: a few
    dozen groups, at most one per slot, however many fences overlap."""
    slot_group, subs = groups
    if mask is None:  # every slot needs the fence's check
        return slot_group, [_sub(sub[0], (*sub[1], check), shared) for sub in subs]
    inside, tested, own = mask
    kind = _slots(tested) * 2  # 0 out, 1 inside, 2 tested by `check`, 3 + i by own[i]
    for i, (part, _) in enumerate(own):
        kind[_slots(part).astype(bool)] = 3 + i
    kind[_slots(inside).astype(bool)] = 1
    width = 3 + len(own)
    codes, inverse = np.unique(slot_group * width + kind, return_inverse=True)
    fid: str = check[0]
    split = []
    for code in codes.tolist():
        group, how = divmod(code, width)
        sub = subs[group]
        if how == 1:
            sub = _sub(sub[0] | {fid}, sub[1], shared)
        elif how == 2:
            sub = _sub(sub[0], (*sub[1], check), shared)
        elif how > 2:
            sub = _sub(sub[0], (*sub[1], own[how - 3][1]), shared)
        split.append(sub)  # how == 0: the group's slots hold no point of the fence
    return inverse.reshape(-1), split


def _drop_groups(groups: _Groups, fid: str, checks: AbstractSet[int], shared: _Shared) -> _Groups:
    """Sub-cell groups without one fence (`checks`: ids of its check objects at the key):
    groups left alike are merged."""
    slot_group, subs = groups
    merged: dict[int, int] = {}  # id of a group's new entry -> its new group
    kept: list[Entry] = []
    renumber = []
    for sub in subs:
        ids, chk = sub[0], sub[1]
        sig = tuple(map(id, chk))
        if fid in ids or not checks.isdisjoint(sig):
            # Every group got its checks in the order fences came to the key: groups
            # alike but for this fence have the same checks left, in the same order,
            # hence the same shared entry.
            if fid in ids:
                ids = ids - {fid} if len(ids) > 1 else _EMPTY
            sub = _sub(ids, tuple(c for c in chk if c[0] != fid), shared)
        else:
            sub = shared.setdefault((ids, sig), sub)
        at = merged.setdefault(id(sub), len(kept))
        if at == len(kept):
            kept.append(sub)
        renumber.append(at)
    if len(kept) == len(subs):
        return slot_group, kept
    return np.array(renumber, dtype=np.intp)[slot_group], kept


def _groups_of(entry: Entry) -> _Groups | None:
    """The sub-cell groups of an entry (None: it has none)."""
    slot_map, subs = entry[3], entry[4]
    if slot_map is None or subs is None:
        return None
    dtype = np.uint8 if isinstance(slot_map, bytes) else np.uint16
    return np.frombuffer(slot_map, dtype=dtype).astype(np.intp), list(subs)


def _with_groups(entry: Entry, groups: _Groups) -> Entry:
    """The entry with its sub-cell map: one byte per slot, two past 256 groups."""
    slot_group, subs = groups
    slot_map: bytes | array[int]
    if len(subs) <= 256:
        slot_map = slot_group.astype(np.uint8).tobytes()
    else:
        slot_map = array("H", slot_group.astype(np.uint16).tobytes())
    return (entry[0], entry[1], entry[2], slot_map, tuple(subs))


def _slots(mask: int) -> npt.NDArray[np.intp]:
    """A slot bit mask as 0/1 per slot."""
    bits = np.frombuffer(mask.to_bytes(cells.SLOTS // 8, "little"), dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little").astype(np.intp)


def _drop(entry: Entry, fid: str) -> Entry | None:
    interior, border, near = entry[0], entry[1], entry[2]
    if fid in interior:
        interior = interior - {fid} if len(interior) > 1 else _EMPTY
    border = tuple(b for b in border if b[0] != fid)
    near = near - {fid}
    return (interior, border, near, None, None) if near else None


def _add(entry: Entry | None, placed: Placed, key: int, role: int) -> Entry:
    interior, border, near = (_EMPTY, (), _EMPTY) if entry is None else entry[:3]
    fid = placed.fence.fence_id
    near = near | {fid}
    if role == 0:
        return (interior | {fid}, border, near, None, None)
    if role == 1:
        checks = (*border, placed.check(key))
        return (interior, tuple(sorted(checks, key=lambda b: str(b[0]))), near, None, None)
    return (interior, border, near, None, None)


def _write(
    shards: _Shards, coarse: _Leaf, changes: dict[int, Entry | None]
) -> tuple[_Shards, _Leaf]:
    """Apply key changes copy-on-write: only the dicts holding changed keys are copied."""
    new_shards = dict(shards)
    new_coarse = (
        dict(coarse) if any(cells.resolution_of(k) < _SHARD_RES for k in changes) else coarse
    )
    copied: set[int] = set()
    for key, entry in changes.items():
        if cells.resolution_of(key) < _SHARD_RES:
            leaf = new_coarse
        else:
            shard = cells.key_of(key, _SHARD_RES)
            if shard not in copied:
                new_shards[shard] = dict(new_shards.get(shard, {}))
                copied.add(shard)
            leaf = new_shards[shard]
        if entry is None:
            leaf.pop(key, None)
        else:
            leaf[key] = entry
    for shard in copied:  # drop emptied dicts so lookups stay short
        if not new_shards[shard]:
            del new_shards[shard]
    return new_shards, new_coarse
