"""Small distribution helpers shared by the ETA modules: quantiles, tail probabilities, waits.

Durations are right-skewed (a leg can take twice as long, never a negative time), so spreads
are fitted as a log-normal with the given mean and standard deviation. That keeps
p10 >= 0 and p10 <= mean <= p90 for every spread allowed here (the coefficient of variation
is capped at ``MAX_CV``; the log-normal mean stays below p90 while sigma < 2.56).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import erfc, exp, log, pi, sqrt

Z90 = 1.2815515655446004
"""Standard normal quantile of 0.9; p10/p90 are mean-centred at -/+ this many sigmas."""

MAX_CV = 3.0
"""Largest coefficient of variation used for a fit (sigma = 1.52 in log space)."""

MIN_CV = 1e-6
"""Below this the spread is a point: log(1 + cv²) would round to a zero sigma."""

_INV_SQRT2 = 1.0 / sqrt(2.0)
_INV_SQRT2PI = 1.0 / sqrt(2.0 * pi)


def norm_cdf(z: float) -> float:
    """Standard normal cumulative distribution function."""
    return 0.5 * erfc(-z * _INV_SQRT2)


def norm_pdf(z: float) -> float:
    """Standard normal density."""
    return _INV_SQRT2PI * exp(-0.5 * z * z)


def _log_params(mean: float, sd: float) -> tuple[float, float]:
    cv = min(sd / mean, MAX_CV)
    s2 = log(1.0 + cv * cv)
    return log(mean) - 0.5 * s2, sqrt(s2)


def lognormal_p10_p90(mean: float, sd: float) -> tuple[float, float]:
    """p10 and p90 of a log-normal with this mean and standard deviation.

    A non-positive mean or a negligible spread is a certain value: both quantiles are the mean.
    """
    if mean <= 0.0 or sd <= mean * MIN_CV:
        return mean, mean
    mu, sigma = _log_params(mean, sd)
    # min/max: rounding must not put the mean outside its own spread.
    return min(exp(mu - Z90 * sigma), mean), max(exp(mu + Z90 * sigma), mean)


def lognormal_summary(mean: float, sd: float, x: float) -> tuple[float, float, float]:
    """(p10, p90, P(X > x)) of one log-normal fit: the three numbers an ETA carries."""
    if mean <= 0.0 or sd <= mean * MIN_CV:
        return mean, mean, 1.0 if mean > x else 0.0
    mu, sigma = _log_params(mean, sd)
    p_late = 1.0 if x <= 0.0 else 1.0 - norm_cdf((log(x) - mu) / sigma)
    return min(exp(mu - Z90 * sigma), mean), max(exp(mu + Z90 * sigma), mean), p_late


def var_after_wait(mean: float, sd: float, floor: float) -> float:
    """Variance of max(A, floor) for A ~ Normal(mean, sd²): what waiting for a window does.

    Waiting for a window to open absorbs early arrivals, so the departure time is less
    uncertain than the arrival. Computed around the mean to avoid cancellation with
    epoch-sized numbers.
    """
    if sd <= 0.0:
        return 0.0
    c = floor - mean
    a = c / sd
    big_phi = norm_cdf(a)
    small_phi = norm_pdf(a)
    m1 = c * big_phi + sd * small_phi
    m2 = c * c * big_phi + sd * sd * (1.0 - big_phi) + sd * c * small_phi
    return max(0.0, m2 - m1 * m1)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of already sorted values.

    ``q`` is in [0, 100]; raises ValueError on an empty sequence.
    """
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError("q must be within [0, 100]")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac
