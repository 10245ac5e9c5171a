"""A technician's phone: samples the true trajectory and misbehaves the way phones do.

Fixes come every few seconds while moving and sparsely while parked, with GPS noise and a
matching `acc`; GPS drops out (tunnels, random), the network goes offline (fixes buffered
and flushed later as one array, newest- or oldest-first), QoS 1 re-sends duplicate a
message, OwnTracks retained messages are replayed, the clock is skewed, and a small share
of payloads are malformed. Output is a time-ordered stream of :class:`PhoneMessage` (what
is sent) and :class:`Note` (faults that leave no message of their own) for the truth file.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from simulators.config import PhoneParams
from simulators.fleet import DayTrace, StatusEvent
from simulators.geo import offset

# Which malformed kinds make sense for which message type.
FIX_FAULTS = frozenset(
    {"bad_encoding", "missing_lat", "lat_out_of_range", "null_island", "future_ts"}
)
STATUS_FAULTS = frozenset({"bad_encoding", "future_ts", "unknown_status"})
FUTURE_S = 86_400.0  # how far ahead a `future_ts` fault puts the timestamp


@dataclass(frozen=True, slots=True)
class Fix:
    """One GPS fix: the truth (t, lat, lon, true_spd, edge) and what the phone reports."""

    seq: int
    t: float
    lat: float
    lon: float
    true_spd: float
    edge: int
    ts: float
    rlat: float
    rlon: float
    acc: float
    spd: float
    hdg: float | None
    alt: float | None
    bat: int


@dataclass(frozen=True, slots=True)
class StatusMsg:
    t: float
    ts: float
    job_id: str
    status: str


@dataclass(frozen=True, slots=True)
class PhoneMessage:
    """One message as the phone sends it at virtual time `t`.

    `fault` is None for a good message, a malformed kind (see config.MALFORMED_KINDS),
    or "duplicate" / "retained_replay" for a re-send of message `original`.
    """

    t: float
    msg_id: str
    device_id: str
    fixes: tuple[Fix, ...] = ()
    batch: bool = False
    status: StatusMsg | None = None
    fault: str | None = None
    original: str | None = None
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Note:
    """A fault that is not itself a message (dropout, offline spell, clock skew)."""

    t: float
    device_id: str
    fault: str
    details: dict[str, Any] = field(default_factory=dict)


Item = PhoneMessage | Note


@dataclass(frozen=True, slots=True)
class PhoneCaps:
    """What the output format allows: arrays of fixes, retained messages, fractional ts."""

    batches: bool = True
    retained: bool = False
    ts_decimals: int = 3


class Phone:
    """Turns one technician's day trace into the messages their phone sends."""

    def __init__(
        self,
        device_id: str,
        params: PhoneParams,
        caps: PhoneCaps,
        seed: int,
        index: int,
        tunnel_edges: frozenset[int] = frozenset(),
    ) -> None:
        self.device_id = device_id
        self.p = params
        self.caps = caps
        # Separate streams, so switching a fault on never changes the good data.
        self.rng = random.Random(f"{seed}:phone:{index}")  # cadence and GPS noise
        self.spell_rng = random.Random(f"{seed}:phone-spells:{index}")  # dropouts, offline, skew
        self.fault_rng = random.Random(f"{seed}:phone-faults:{index}")  # re-sends, malformed
        self.tunnels = tunnel_edges
        self._out: list[tuple[float, int, Item]] = []
        self._order = 0
        self._msgs = 0
        self._seq = 0
        self._buffer: list[Fix] = []
        self._buffered_status: list[StatusMsg] = []
        self.skew = 0.0
        self.battery = 100.0
        self._last_sample = 0.0

    def run(self, trace: DayTrace) -> Iterator[Item]:
        """The phone's output over the day, in send-time order."""
        traj = trace.trajectory
        self.skew = self._clock_skew(traj.start)
        self.battery = self.rng.uniform(40, 100)
        self._last_sample = traj.start
        dropouts = self._spells(traj.start, traj.end, self.p.dropouts_per_hour, self.p.dropout_s)
        offline = self._spells(traj.start, traj.end, self.p.offline_per_hour, self.p.offline_s)
        for a, b in dropouts:
            self._push(a, Note(a, self.device_id, "gps_dropout", {"start": a, "end": b}))
        statuses = list(trace.statuses)
        t = traj.start
        for t, status in self._timeline(trace, statuses, dropouts):
            yield from self._due(t)
            spell = _containing(offline, t)
            self._flush_ended(offline, t)
            if status is not None:
                self._send_status(t, status, spell is not None)
            else:
                self._sample(trace, t, spell is not None)
        self._flush_ended(offline, math.inf)
        yield from self._due(math.inf)

    # -- time line ----------------------------------------------------------------------

    def _timeline(
        self, trace: DayTrace, statuses: list[StatusEvent], dropouts: list[tuple[float, float]]
    ) -> Iterator[tuple[float, StatusEvent | None]]:
        """Sample times and status times, merged in order."""
        traj = trace.trajectory
        t = traj.start
        k = 0
        while t < traj.end:
            while k < len(statuses) and statuses[k].t <= t:
                yield statuses[k].t, statuses[k]
                k += 1
            state = traj.at(t)
            in_tunnel = state.edge in self.tunnels
            if _containing(dropouts, t) is None and not in_tunnel:
                yield t, None
            t = self._next_sample(trace, t, state.speed_mps > 0.5)
        for ev in statuses[k:]:
            yield ev.t, ev

    def _next_sample(self, trace: DayTrace, t: float, moving: bool) -> float:
        if moving:
            return t + self.rng.uniform(*self.p.moving_interval_s)
        nxt = t + self.rng.uniform(*self.p.stopped_interval_s)
        starts = trace.trajectory.next_move_start(t)
        if starts is not None and starts < nxt:
            # Phones notice motion quickly (activity recognition), not a full interval later.
            nxt = max(t + 1.5, starts + self.rng.uniform(0.5, 2.0))
        return nxt

    def _spells(
        self, start: float, end: float, per_hour: float, length: tuple[float, float]
    ) -> list[tuple[float, float]]:
        spells: list[tuple[float, float]] = []
        t = start
        while per_hour > 0:
            t += self.spell_rng.expovariate(per_hour / 3600.0)
            if t >= end:
                break
            spells.append((round(t, 3), round(t + self.spell_rng.uniform(*length), 3)))
            t = spells[-1][1]
        return spells

    def _clock_skew(self, t: float) -> float:
        if self.spell_rng.random() >= self.p.clock_skew_probability:
            return 0.0
        skew = round(self.spell_rng.uniform(*self.p.clock_skew_s), 3)
        self._push(t, Note(round(t, 3), self.device_id, "clock_skew", {"skew_s": skew}))
        return skew

    # -- fixes and statuses -------------------------------------------------------------

    def _ts(self, t: float) -> float:
        ts = round(t + self.skew, self.caps.ts_decimals)
        return int(ts) if self.caps.ts_decimals == 0 else ts

    def _sample(self, trace: DayTrace, t: float, offline: bool) -> None:
        state = trace.trajectory.at(t)
        rng = self.rng
        lo, hi = self.p.poor_acc_m if rng.random() < self.p.poor_fix_probability else self.p.acc_m
        acc = round(lo + (hi - lo) * rng.random() ** 2, 1)
        # acc is roughly a 1-sigma radius: per-axis error sigma = acc / 1.5, capped at 3 acc.
        east, north = (max(-3 * acc, min(3 * acc, rng.gauss(0, acc / 1.5))) for _ in range(2))
        rlat, rlon = offset(state.lat, state.lon, east, north)
        moving = state.speed_mps > 0.5
        spd = max(0.0, state.speed_mps + rng.gauss(0, 0.3)) if moving else 0.0
        hdg = None if state.heading is None else (state.heading + rng.gauss(0, 4)) % 360
        # About 4 % an hour with GPS on.
        self.battery = max(5.0, self.battery - 4.0 * (t - self._last_sample) / 3600)
        self._last_sample = t
        self._seq += 1
        fix = Fix(
            seq=self._seq,
            t=round(t, 3),
            lat=round(state.lat, 7),
            lon=round(state.lon, 7),
            true_spd=round(state.speed_mps, 2),
            edge=state.edge,
            ts=self._ts(t),
            rlat=round(rlat, 7),
            rlon=round(rlon, 7),
            acc=acc,
            spd=round(spd, 2),
            hdg=None if hdg is None else round(hdg, 1),
            alt=None if rng.random() < 0.1 else round(18 + rng.gauss(0, 3), 1),
            bat=round(self.battery),
        )
        if offline:
            self._buffer.append(fix)
            return
        msg = self._message(t, fixes=(fix,))
        self._push(t, msg)
        self._maybe_resend(msg)
        self._maybe_malformed(msg, FIX_FAULTS)

    def _send_status(self, t: float, ev: StatusEvent, offline: bool) -> None:
        status = StatusMsg(round(t, 3), self._ts(t), ev.job_id, ev.status)
        if offline:
            self._buffered_status.append(status)
            return
        msg = self._message(t, status=status)
        self._push(t, msg)
        self._maybe_malformed(msg, STATUS_FAULTS)

    def _message(self, t: float, **kw: Any) -> PhoneMessage:
        self._msgs += 1
        msg_id = f"{self.device_id}/{self._msgs}"
        retain = self.caps.retained and bool(kw.get("fixes"))
        return PhoneMessage(round(t, 3), msg_id, self.device_id, retain=retain, **kw)

    def _maybe_resend(self, msg: PhoneMessage) -> None:
        rng = self.fault_rng
        if rng.random() < self.p.duplicate_probability:
            self._resend(msg, msg.t + rng.uniform(0.05, 2.0), "duplicate")
        if self.caps.retained and rng.random() < self.p.retained_replay_probability:
            self._resend(msg, msg.t + rng.uniform(30.0, 300.0), "retained_replay")

    def _resend(self, msg: PhoneMessage, t: float, fault: str) -> None:
        self._msgs += 1
        again = replace(msg, t=round(t, 3), msg_id=f"{self.device_id}/{self._msgs}")
        self._push(t, replace(again, fault=fault, original=msg.msg_id))

    def _maybe_malformed(self, msg: PhoneMessage, fits: frozenset[str]) -> None:
        kinds = sorted(fits.intersection(self.p.malformed_kinds))
        if kinds and self.fault_rng.random() < self.p.malformed_share:
            t = msg.t + self.fault_rng.uniform(0.1, 1.0)
            self._msgs += 1
            bad = replace(msg, t=round(t, 3), msg_id=f"{self.device_id}/{self._msgs}")
            self._push(t, replace(bad, fault=self.fault_rng.choice(kinds), retain=False))

    # -- offline buffering --------------------------------------------------------------

    def _flush_ended(self, spells: list[tuple[float, float]], now: float) -> None:
        """Flush the buffer of every offline spell that ended before `now`."""
        while spells and spells[0][1] <= now:
            start, end = spells.pop(0)
            if self._buffer or self._buffered_status:
                self._flush(start, end)

    def _flush(self, start: float, end: float) -> None:
        t = end + self.fault_rng.uniform(0.5, 3.0)
        fixes, self._buffer = self._buffer, []
        newest_first = (
            self.caps.batches and self.fault_rng.random() < self.p.newest_first_probability
        )
        order = "newest_first" if newest_first else "oldest_first"
        details = {"start": start, "end": end, "count": len(fixes), "order": order}
        self._push(t, Note(round(t, 3), self.device_id, "offline_buffer", details))
        if self.caps.batches:
            for i in range(0, len(fixes), self.p.max_batch):
                chunk = fixes[i : i + self.p.max_batch]
                ordered = tuple(reversed(chunk)) if newest_first else tuple(chunk)
                msg = self._message(t, fixes=ordered, batch=True)
                self._push(t, msg)
                self._maybe_resend(msg)
        else:
            for fix in fixes:
                self._push(t, self._message(t, fixes=(fix,)))
        for status in self._buffered_status:
            self._push(t, self._message(t, status=status))
        self._buffered_status = []

    def _push(self, t: float, item: Item) -> None:
        # Order by the item's own (rounded) time, the one the emission stream sorts on.
        del t
        self._order += 1
        heapq.heappush(self._out, (item.t, self._order, item))

    def _due(self, now: float) -> Iterator[Item]:
        while self._out and self._out[0][0] <= now:
            yield heapq.heappop(self._out)[2]


def _containing(spells: list[tuple[float, float]], t: float) -> tuple[float, float] | None:
    for a, b in spells:
        if a <= t < b:
            return a, b
        if a > t:
            break
    return None
