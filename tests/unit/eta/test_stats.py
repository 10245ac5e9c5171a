"""Distribution helpers: log-normal spread, tail probability, waiting, percentiles."""

from __future__ import annotations

from math import pi

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eta.stats import (
    lognormal_p10_p90,
    lognormal_summary,
    norm_cdf,
    percentile,
    var_after_wait,
)


@pytest.mark.parametrize(
    ("z", "expected"), [(0.0, 0.5), (1.2815515655446004, 0.9), (-1.959963984540054, 0.025)]
)
def test_norm_cdf(z: float, expected: float) -> None:
    assert norm_cdf(z) == pytest.approx(expected, abs=1e-12)


def test_lognormal_quantiles_known_values() -> None:
    # cv 0.5: sigma² = ln 1.25, mu = ln 100 - sigma²/2; reference from the stdlib's NormalDist.
    p10, p90 = lognormal_p10_p90(100.0, 50.0)
    assert p10 == pytest.approx(48.82381226, abs=1e-6)
    assert p90 == pytest.approx(163.85447243, abs=1e-6)


@pytest.mark.parametrize(
    ("mean", "sd"), [(0.0, 10.0), (100.0, 0.0), (-1.0, 3.0), (1e9, 1e-3), (5.0, 1e-9)]
)
def test_lognormal_degenerate_is_a_point(mean: float, sd: float) -> None:
    assert lognormal_p10_p90(mean, sd) == (mean, mean)


@pytest.mark.parametrize(
    ("mean", "sd", "x", "expected"),
    [
        (100.0, 0.0, 99.0, 1.0),
        (100.0, 0.0, 100.0, 0.0),
        (1e9, 1e-3, 1e9 - 1.0, 1.0),  # a spread too small to fit: a point
        (100.0, 50.0, 0.0, 1.0),
        (100.0, 50.0, -5.0, 1.0),
        (100.0, 50.0, 48.8238122608321, 0.9),
        (100.0, 50.0, 163.8544724295902, 0.1),
    ],
)
def test_lognormal_tail(mean: float, sd: float, x: float, expected: float) -> None:
    p10, p90, p_late = lognormal_summary(mean, sd, x)
    assert p_late == pytest.approx(expected, abs=1e-8)
    assert (p10, p90) == lognormal_p10_p90(mean, sd)


@pytest.mark.parametrize(
    ("mean", "sd", "floor", "expected"),
    [
        (100.0, 0.0, 200.0, 0.0),
        (100.0, 10.0, -1e9, 100.0),  # window long open: nothing absorbed
        (100.0, 10.0, 1e9, 0.0),  # window far ahead: certain wait
        # floor == mean: E[max] = sd phi(0), E[max²] = sd²/2 -> sd² (1/2 - 1/(2 pi)),
        # also at epoch-sized times (no cancellation).
        (1.7e9, 10.0, 1.7e9, 100.0 * (0.5 - 1.0 / (2.0 * pi))),
    ],
)
def test_var_after_wait(mean: float, sd: float, floor: float, expected: float) -> None:
    assert var_after_wait(mean, sd, floor) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([5.0], 90.0, 5.0), ([1.0, 2.0, 3.0, 4.0], 50.0, 2.5), ([0.0, 10.0], 90.0, 9.0)],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize(("values", "q"), [([], 50.0), ([1.0], 101.0)])
def test_percentile_rejects(values: list[float], q: float) -> None:
    with pytest.raises(ValueError, match=r"percentile|q must"):
        percentile(values, q)


@given(st.floats(0.001, 1e6), st.floats(0.0, 1e7))
def test_spread_brackets_mean(mean: float, sd: float) -> None:
    p10, p90 = lognormal_p10_p90(mean, sd)
    assert 0.0 <= p10 <= mean * (1 + 1e-12)
    assert mean <= p90 * (1 + 1e-12)
