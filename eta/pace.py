"""How each technician's on-site times compare with the fleet's, learned from their jobs.

Planners book a job's duration for the average technician; a junior takes longer, an old
hand less, day after day. ``TechnicianPace`` keeps the last ``per_technician`` log ratios
of worked to planned time of each technician's finished jobs and the last ``fleet`` of the
whole fleet's, and gives each technician a factor on planned durations:

    factor = exp(w x (median of theirs - median of the fleet's)),  w = n / (n + prior_jobs)

Medians, because a fifth of jobs may overrun for reasons of their own (the part, the
customer) and those say nothing of the technician; the weight ``w`` shrinks a technician
with few jobs towards the fleet (factor 1). Relative to the fleet, so the fleet-wide
distribution of ratios stays the ``DurationModel``'s (``eta.durations``), which the engine
teaches with plans already scaled by the factor. Factors stay within
``[min_factor, max_factor]``.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from math import exp, isfinite, log
from typing import Any

SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class PaceConfig:
    per_technician: int = 40
    fleet: int = 400
    prior_jobs: float = 5.0
    min_factor: float = 0.5
    max_factor: float = 2.0


class TechnicianPace:
    """Per-technician factors on planned on-site time. Not thread-safe; one owner mutates it."""

    def __init__(self, config: PaceConfig | None = None) -> None:
        self.config = cfg = config if config is not None else PaceConfig()
        self._fleet: deque[float] = deque(maxlen=cfg.fleet)
        self._fleet_median = 0.0
        self._techs: dict[str, deque[float]] = {}
        self._medians: dict[str, float] = {}

    @property
    def technicians(self) -> int:
        """Technicians learned from."""
        return len(self._techs)

    def observe(self, technician_id: str, planned_s: float, worked_s: float) -> None:
        """Learn from one finished job: on-site work time (pauses excluded) against its plan."""
        if planned_s <= 0.0 or worked_s <= 0.0:
            return
        x = log(worked_s / planned_s)
        self._fleet.append(x)
        self._fleet_median = statistics.median(self._fleet)
        mine = self._techs.get(technician_id)
        if mine is None:
            mine = self._techs[technician_id] = deque(maxlen=self.config.per_technician)
        mine.append(x)
        self._medians[technician_id] = statistics.median(mine)

    def factor(self, technician_id: str) -> float:
        """This technician's on-site time against the fleet's (1.0 when unknown)."""
        median = self._medians.get(technician_id)
        if median is None:
            return 1.0
        cfg = self.config
        n = len(self._techs[technician_id])
        f = exp(n / (n + cfg.prior_jobs) * (median - self._fleet_median))
        return min(max(f, cfg.min_factor), cfg.max_factor)

    def snapshot(self) -> dict[str, Any]:
        """The kept ratios as JSON-serialisable data."""
        return {
            "version": SNAPSHOT_VERSION,
            "fleet": list(self._fleet),
            "technicians": {t: list(xs) for t, xs in self._techs.items()},
        }

    @classmethod
    def restore(cls, data: Mapping[str, Any], config: PaceConfig | None = None) -> TechnicianPace:
        """A model holding what ``snapshot`` saved; ValueError if malformed."""
        model = cls(config)
        try:
            if data["version"] != SNAPSHOT_VERSION:
                raise ValueError(f"unsupported pace snapshot version {data['version']!r}")
            fleet = [float(x) for x in data["fleet"]]
            techs = {str(t): [float(x) for x in xs] for t, xs in data["technicians"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed pace snapshot: {exc!r}") from exc
        if not all(isfinite(x) for xs in (fleet, *techs.values()) for x in xs):
            raise ValueError("non-finite ratio in pace snapshot")
        if any(not xs for xs in techs.values()):
            raise ValueError("technician without ratios in pace snapshot")
        model._fleet.extend(fleet)
        if model._fleet:
            model._fleet_median = statistics.median(model._fleet)
        for t, xs in techs.items():
            kept = model._techs[t] = deque(xs, maxlen=model.config.per_technician)
            model._medians[t] = statistics.median(kept)
        return model
