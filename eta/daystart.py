"""When each technician sets off in the morning, learned from when they did.

Before a technician has set off, their day's first ETA has to assume a departure. The
plain cascade assumes "now": the earliest possible, so every ETA made before the start is
early by the time left until it -- ten minutes before a first arrival, a fleet whose
shifts begin over a quarter of an hour was predicted ~6 min early on average.

``DayStarts`` keeps, per technician, the local time of day of their first ``en_route`` of
each service day (the last ``per_technician`` days) and the fleet's (the last ``fleet``),
and predicts a departure *given that the technician has not set off by now*: the median
of the kept starts later than now's time of day. At 07:50 a technician who usually sets
off between 07:40 and 08:10 is predicted to leave at about 08:00; at 08:20, with no
start that late on record, they are taken to leave now (the plain rule). The prediction
is never earlier than now, so it can only move a first ETA later than leave-now did.

A technician's own starts are used once ``min_days`` are kept (shifts differ between
technicians by hours); before that, the fleet's. The spread of the later starts goes into
the ETA's band. Times of day are local wall-clock times in the fleet's zone, so a 07:30
start stays 07:30 across a DST change. A first job booked late in the day teaches a late
start; medians keep one such day from moving the prediction much, and the cascade's own
rule (reach a site no more than ``max_early_s`` before its window) governs those days.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from math import isfinite
from typing import Any

SNAPSHOT_VERSION = 1
DAY_S = 86_400.0
MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class DayStartConfig:
    """``per_technician``/``fleet``: days kept; ``min_days``: a technician's own days needed
    before their starts are used instead of the fleet's."""

    per_technician: int = 30
    fleet: int = 300
    min_days: int = 5


def _local(ts: float, tz: tzinfo) -> tuple[int, float]:
    """(service day ordinal, seconds since local midnight by the wall clock) of an instant."""
    t = datetime.fromtimestamp(ts, tz)
    return t.toordinal(), t.hour * 3600.0 + t.minute * 60.0 + t.second + t.microsecond / 1e6


class DayStarts:
    """First departures of the day per technician. Not thread-safe; one owner mutates it."""

    def __init__(self, tz: tzinfo, config: DayStartConfig | None = None) -> None:
        self.tz = tz
        self.config = cfg = config if config is not None else DayStartConfig()
        self._fleet: deque[float] = deque(maxlen=cfg.fleet)
        self._techs: dict[str, deque[float]] = {}
        self._last_day: dict[str, int] = {}

    @property
    def technicians(self) -> int:
        """Technicians learned from."""
        return len(self._techs)

    @property
    def days(self) -> int:
        """Starts kept across the fleet."""
        return len(self._fleet)

    def set_off(self, technician_id: str, ts: float) -> bool:
        """A technician went ``en_route`` at ``ts``: kept if it is their first of that day."""
        day, tod = _local(ts, self.tz)
        if self._last_day.get(technician_id, -1) >= day:
            return False
        self._last_day[technician_id] = day
        mine = self._techs.get(technician_id)
        if mine is None:
            mine = self._techs[technician_id] = deque(maxlen=self.config.per_technician)
        mine.append(tod)
        self._fleet.append(tod)
        return True

    def started(self, technician_id: str, day: int) -> bool:
        """Whether the technician set off on local day ``day`` (or a later one)."""
        return self._last_day.get(technician_id, -1) >= day

    def expected(self, technician_id: str, now: float) -> tuple[float, float] | None:
        """(departure, sd) for a technician who has not set off by ``now``; None when no
        kept start is later than now's time of day (or nothing is known): leave now."""
        mine = self._techs.get(technician_id)
        starts = mine if mine is not None and len(mine) >= self.config.min_days else self._fleet
        day, tod = _local(now, self.tz)
        later = [s for s in starts if s > tod]
        if not later:
            return None
        median = statistics.median(later)
        sd = MAD_TO_SD * statistics.median(abs(s - median) for s in later)
        midnight = datetime.fromordinal(day).replace(tzinfo=self.tz)
        departure = (midnight + timedelta(seconds=median)).timestamp()
        return max(departure, now), sd

    def snapshot(self) -> dict[str, Any]:
        """The kept starts as JSON-serialisable data."""
        return {
            "version": SNAPSHOT_VERSION,
            "fleet": list(self._fleet),
            "technicians": {
                t: {"starts": list(xs), "last_day": self._last_day[t]}
                for t, xs in self._techs.items()
            },
        }

    @classmethod
    def restore(
        cls, data: Mapping[str, Any], tz: tzinfo, config: DayStartConfig | None = None
    ) -> DayStarts:
        """A model holding what ``snapshot`` saved; ValueError if malformed."""
        model = cls(tz, config)
        try:
            if data["version"] != SNAPSHOT_VERSION:
                raise ValueError(f"unsupported day-start snapshot version {data['version']!r}")
            fleet = [float(x) for x in data["fleet"]]
            techs = {
                str(t): ([float(x) for x in v["starts"]], int(v["last_day"]))
                for t, v in data["technicians"].items()
            }
        except (KeyError, TypeError, AttributeError, OverflowError) as exc:
            raise ValueError(f"malformed day-start snapshot: {exc!r}") from exc
        starts = fleet + [x for xs, _ in techs.values() for x in xs]
        if not all(isfinite(x) and 0.0 <= x < DAY_S for x in starts):
            raise ValueError("start of day outside 0..86400 s in day-start snapshot")
        model._fleet.extend(fleet)
        for t, (xs, last_day) in techs.items():
            model._techs[t] = deque(xs, maxlen=model.config.per_technician)
            model._last_day[t] = last_day
        return model
