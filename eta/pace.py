"""How each technician's on-site times compare with the fleet's, learned from their jobs.

Planners book a job's duration for the average technician; a junior takes longer, an old
hand less, day after day. ``TechnicianPace`` keeps the last ``per_technician`` log ratios
of worked to planned time of each technician's finished jobs and the last ``fleet`` of the
whole fleet's, and gives each technician a factor on planned durations:

    factor = exp(w x d),  d = median of theirs - median of the fleet's

Medians, because a fifth of jobs may overrun for reasons of their own (the part, the
customer) and those say nothing of the technician. ``w`` shrinks ``d`` by how much of it
is noise (empirical Bayes): ``w = tau2 / (tau2 + v)``, where ``v`` is the variance of a
median of the technician's ``n`` ratios (``(pi / 2) s2 / n``, ``s`` the robust spread of
the fleet's recent ratios around their own technician's median) and ``tau2`` the
variance of true paces across the fleet, estimated as the mean of ``d2 - v`` over
technicians with at least ``min_jobs`` jobs. So in a fleet whose technicians all work
alike ``w`` is about 0 and the factors stay at 1 -- a few unlucky jobs make no one
"slow" -- while where paces differ they are followed as soon as they stand out from the
noise. Relative to the fleet, so the fleet-wide distribution of
ratios stays the ``DurationModel``'s (``eta.durations``), which the engine teaches with
plans already scaled by the factor. Factors stay within ``[min_factor, max_factor]``.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from math import exp, isfinite, log, pi
from typing import Any

SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class PaceConfig:
    per_technician: int = 40
    fleet: int = 400
    min_jobs: int = 10
    min_factor: float = 0.5
    max_factor: float = 2.0


class TechnicianPace:
    """Per-technician factors on planned on-site time. Not thread-safe; one owner mutates it."""

    def __init__(self, config: PaceConfig | None = None) -> None:
        self.config = cfg = config if config is not None else PaceConfig()
        self._fleet: deque[tuple[float, str]] = deque(maxlen=cfg.fleet)  # (ratio, whose)
        self._fleet_median = 0.0
        self._median_var = 0.0
        self._tau2 = 0.0
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
        self._fleet.append((x, technician_id))
        mine = self._techs.get(technician_id)
        if mine is None:
            mine = self._techs[technician_id] = deque(maxlen=self.config.per_technician)
        mine.append(x)
        self._medians[technician_id] = statistics.median(mine)
        self._refresh()

    def _refresh(self) -> None:
        """The fleet's median, the noise of one ratio, the spread of true paces (``tau2``)."""
        fleet = self._fleet
        if not fleet:
            return
        medians = self._medians
        self._fleet_median = m = statistics.median(x for x, _ in fleet)
        within = statistics.median(abs(x - medians[t]) for x, t in fleet)
        self._median_var = pi / 2 * (1.4826 * within) ** 2  # x n: a median of n ratios
        excess = [
            (medians[t] - m) ** 2 - self._median_var / len(xs)
            for t, xs in self._techs.items()
            if len(xs) >= self.config.min_jobs
        ]
        self._tau2 = max(0.0, statistics.fmean(excess)) if excess else 0.0

    def factor(self, technician_id: str) -> float:
        """This technician's on-site time against the fleet's (1.0 when unknown)."""
        median = self._medians.get(technician_id)
        if median is None or self._tau2 <= 0.0:
            return 1.0
        cfg = self.config
        noise = self._median_var / len(self._techs[technician_id])
        w = self._tau2 / (self._tau2 + noise)
        f = exp(w * (median - self._fleet_median))
        return min(max(f, cfg.min_factor), cfg.max_factor)

    def snapshot(self) -> dict[str, Any]:
        """The kept ratios as JSON-serialisable data."""
        return {
            "version": SNAPSHOT_VERSION,
            "fleet": [[x, t] for x, t in self._fleet],
            "technicians": {t: list(xs) for t, xs in self._techs.items()},
        }

    @classmethod
    def restore(cls, data: Mapping[str, Any], config: PaceConfig | None = None) -> TechnicianPace:
        """A model holding what ``snapshot`` saved; ValueError if malformed."""
        model = cls(config)
        try:
            if data["version"] != SNAPSHOT_VERSION:
                raise ValueError(f"unsupported pace snapshot version {data['version']!r}")
            fleet = [(float(x), str(t)) for x, t in data["fleet"]]
            techs = {str(t): [float(x) for x in xs] for t, xs in data["technicians"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed pace snapshot: {exc!r}") from exc
        ratios = [x for x, _ in fleet] + [x for xs in techs.values() for x in xs]
        if not all(isfinite(x) for x in ratios):
            raise ValueError("non-finite ratio in pace snapshot")
        if any(not xs for xs in techs.values()):
            raise ValueError("technician without ratios in pace snapshot")
        if any(t not in techs for _, t in fleet):
            raise ValueError("fleet ratio of an unknown technician in pace snapshot")
        model._fleet.extend(fleet)
        for t, xs in techs.items():
            kept = model._techs[t] = deque(xs, maxlen=model.config.per_technician)
            model._medians[t] = statistics.median(kept)
        model._refresh()
        return model
