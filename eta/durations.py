"""How long jobs really take compared with their plan, learned from the fleet's finished jobs.

Planned durations are optimistic on average and overruns are lumpy: a fifth of jobs may
take half as long again. The model keeps the distribution of ``worked / planned`` as a
histogram over log-spaced bins (so it can be any shape, e.g. mostly on time with a tail of
overruns), with counts decaying by ``decay`` per finished job so it follows a changing
fleet, on top of a log-normal prior worth ``prior_weight`` jobs.

It answers two questions for ``estimate_tour``:

* a job not started yet: expected duration and spread, ``planned x E[ratio]``, and the
  median ``planned x median(ratio)`` (what a point estimate judged by its absolute error
  should take: with a tail of overruns the mean is pulled above what most jobs take);
* a job under way for ``elapsed`` seconds: the expected *rest*, ``E[ratio x planned - elapsed
  | ratio x planned > elapsed]`` -- a job already past its plan is one of the overruns, and
  the histogram says how long those tend to go on.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from math import exp, log, sqrt
from typing import Any

from eta.stats import norm_cdf

SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class DurationPrior:
    """Belief before data: ratio log-normal with this mean and cv; histogram shape and memory.

    ``bins`` log-spaced bins cover ratios ``min_ratio``..``max_ratio`` (outside values land in
    the end bins). ``decay``: weight kept by older jobs at each new one (0.995: the last ~200
    jobs matter).
    """

    mean_ratio: float = 1.0
    cv: float = 0.25
    prior_weight: float = 10.0
    bins: int = 40
    min_ratio: float = 0.2
    max_ratio: float = 5.0
    decay: float = 0.995


# Pause lengths, as a ``DurationModel`` of pause / ``EstimateConfig.pause_ref_s`` (600 s):
# before any is learned a pause is believed to last about ten minutes, give or take half.
PAUSE_PRIOR = DurationPrior(
    mean_ratio=1.0, cv=0.5, prior_weight=5.0, min_ratio=0.05, max_ratio=10.0
)


class DurationModel:
    """Distribution of worked/planned on-site time. Not thread-safe; one owner mutates it."""

    def __init__(self, prior: DurationPrior | None = None) -> None:
        self.prior = p = prior if prior is not None else DurationPrior()
        step = log(p.max_ratio / p.min_ratio) / p.bins
        self._edges = [p.min_ratio * exp(step * i) for i in range(p.bins + 1)]
        # Mass is taken as spread evenly over each bin, so a bin stands for its midpoint.
        self._mids = [(a + b) * 0.5 for a, b in pairwise(self._edges)]
        self._prior_mass = _lognormal_mass(self._edges, p.mean_ratio, p.cv, p.prior_weight)
        self._counts = [0.0] * p.bins
        self._jobs = 0
        self._refresh()

    @property
    def jobs(self) -> int:
        """Finished jobs learned from."""
        return self._jobs

    def observe_job(self, planned_s: float, worked_s: float) -> None:
        """Learn from one finished job: on-site work time (pauses excluded) against its plan."""
        if planned_s <= 0.0 or worked_s <= 0.0:
            return
        i = bisect_right(self._edges, worked_s / planned_s) - 1
        i = min(max(i, 0), len(self._counts) - 1)
        d = self.prior.decay
        self._counts = [c * d for c in self._counts]
        self._counts[i] += 1.0
        self._jobs += 1
        self._refresh()

    def _refresh(self) -> None:
        self._mass = [a + b for a, b in zip(self._prior_mass, self._counts, strict=True)]
        total = sum(self._mass)
        mean = sum(m * c for m, c in zip(self._mass, self._mids, strict=True)) / total
        second = (
            sum(
                m * (a * a + a * b + b * b) / 3.0
                for m, a, b in zip(self._mass, self._edges, self._edges[1:], strict=False)
            )
            / total
        )
        self._ratio = (mean, sqrt(max(0.0, second - mean * mean)))
        parts = [
            (a, b, m) for a, b, m in zip(self._edges, self._edges[1:], self._mass, strict=False)
        ]
        self._median_ratio = _median(parts, total)

    def ratio(self) -> tuple[float, float]:
        """Mean and standard deviation of worked/planned."""
        return self._ratio

    def median_ratio(self) -> float:
        """Median of worked/planned."""
        return self._median_ratio

    def expected(self, planned_s: float) -> tuple[float, float]:
        """(mean, sd) of the on-site time of a job not started yet."""
        mean, sd = self._ratio
        return planned_s * mean, planned_s * sd

    def remaining(self, planned_s: float, elapsed_s: float) -> tuple[float, float] | None:
        """(median, sd) of the rest of a job under way; None if no learned job ran this long.

        The median, not the mean: the rest of a job is bimodal (nearly done, or one of the
        overruns), and a point estimate judged by its absolute error is best at the median.
        Each bin's mass is spread evenly across it, so the bin holding ``elapsed`` counts only
        with its part beyond.
        """
        if planned_s <= 0.0:
            return None
        x = elapsed_s / planned_s
        parts: list[tuple[float, float, float]] = []  # (low, high, mass) of the rest, in ratio
        tot = s1 = s2 = 0.0
        for lo, hi, m in zip(self._edges, self._edges[1:], self._mass, strict=False):
            if hi <= x or m <= 0.0:
                continue
            if lo < x:
                m *= (hi - x) / (hi - lo)
                lo = x
            a, b = lo - x, hi - x
            parts.append((a, b, m))
            tot += m
            s1 += m * (a + b) * 0.5
            s2 += m * (a * a + a * b + b * b) / 3.0
        if tot <= 0.0:
            return None
        mean = s1 / tot
        sd = sqrt(max(0.0, s2 / tot - mean * mean))
        return planned_s * _median(parts, tot), planned_s * sd

    def snapshot(self) -> dict[str, Any]:
        """The learned counts as JSON-serialisable data."""
        return {"version": SNAPSHOT_VERSION, "jobs": self._jobs, "counts": list(self._counts)}

    @classmethod
    def restore(cls, data: Mapping[str, Any], prior: DurationPrior | None = None) -> DurationModel:
        """A model holding what ``snapshot`` saved; ValueError if it does not fit the prior."""
        model = cls(prior)
        try:
            counts = [float(c) for c in data["counts"]]
            jobs = int(data["jobs"])
            version = data["version"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed duration snapshot: {exc!r}") from exc
        if version != SNAPSHOT_VERSION or len(counts) != len(model._counts):
            raise ValueError("duration snapshot does not match this prior's bins")
        if any(c < 0 for c in counts):
            raise ValueError("negative count in duration snapshot")
        model._counts, model._jobs = counts, jobs
        model._refresh()
        return model


def _median(parts: list[tuple[float, float, float]], total: float) -> float:
    """Median of masses spread evenly over intervals (low, high, mass), in increasing order."""
    half = 0.5 * total
    acc = 0.0
    for lo, hi, m in parts:
        if acc + m >= half:
            return lo + (hi - lo) * (half - acc) / m
        acc += m
    return parts[-1][1]


def _lognormal_mass(edges: list[float], mean: float, cv: float, weight: float) -> list[float]:
    """``weight`` spread over the bins as a log-normal with this mean and cv (ends included)."""
    s = sqrt(log(1.0 + cv * cv))
    mu = log(mean) - 0.5 * s * s
    cdf = [norm_cdf((log(e) - mu) / s) for e in edges]
    cdf[0], cdf[-1] = 0.0, 1.0
    return [weight * (b - a) for a, b in pairwise(cdf)]
