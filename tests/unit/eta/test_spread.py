"""The learned factors on each side of ETA bands: they settle where p10 and p90 are missed
one time in ten each."""

from __future__ import annotations

import random
from math import exp, log

import pytest

from eta.spread import BandConfig, BandScale


def test_each_side_moves_by_its_share_of_missed_bands() -> None:
    band = BandScale()
    assert band.scales == (1.0, 1.0)
    band.observe(100.0, [(90.0, 110.0), (95.0, 105.0)])  # inside both: both sides narrower
    assert band.scales == pytest.approx((exp(-0.005), exp(-0.005)))
    # Early for one band in four, late for two: the low side narrows, the high one widens.
    band.observe(100.0, [(101.0, 110.0), (0.0, 99.0), (0.0, 99.5), (0.0, 200.0)])
    assert band.scales == pytest.approx((exp(-0.005 + 0.05 * 0.15), exp(-0.005 + 0.05 * 0.4)))
    band.observe(100.0, [])  # nothing published before it arrived: nothing learned
    assert band.arrivals == 2


def test_it_settles_where_each_side_is_missed_one_time_in_ten() -> None:
    """Raw bands three times too wide below the ETA and right above it."""
    rng = random.Random(7)
    band = BandScale()
    early = late = 0
    for i in range(6000):
        low, high = band.scales
        arrival = rng.gauss(1000.0, 100.0)
        lo, hi = 1000.0 - low * 3 * 128.16, 1000.0 + high * 128.16  # raw p10/p90 distances
        if i >= 2000:  # once settled: how often each side is missed
            early += arrival < lo
            late += arrival > hi
        band.observe(arrival, [(lo, hi)])
    assert early / 4000 == pytest.approx(0.1, abs=0.02)
    assert late / 4000 == pytest.approx(0.1, abs=0.02)
    low, high = band.scales
    assert 0.2 < low < 0.5 and 0.75 < high < 1.3  # about 1/3 and 1, give or take the steps


def test_bounded_and_restored() -> None:
    band = BandScale(BandConfig(max_scale=2.0))
    for _ in range(500):
        band.observe(0.0, [(1.0, 2.0)])  # always early
    assert band.scales == pytest.approx((2.0, 0.1))
    back = BandScale.restore(band.snapshot(), band.config)
    assert (back.scales, back.arrivals) == (band.scales, 500)
    # A saved value beyond this configuration's bounds is held to them.
    saved = {"version": 1, "log_low": log(10.0), "log_high": 0.0, "arrivals": 1}
    assert BandScale.restore(saved).scales == pytest.approx((3.0, 1.0))
    for bad in ({}, {**saved, "version": 2}, {"version": 1, "log_low": 0.0}):
        with pytest.raises(ValueError):
            BandScale.restore(bad)
