"""The learned distribution of worked over planned on-site time."""

from __future__ import annotations

import pytest

from eta.durations import DurationModel, DurationPrior

P = 3600.0


def test_prior_is_the_configured_lognormal() -> None:
    mean, sd = DurationModel().ratio()
    assert mean == pytest.approx(1.0, abs=0.01)
    assert sd == pytest.approx(0.25, abs=0.01)
    skewed = DurationModel(DurationPrior(mean_ratio=1.2, cv=0.1))
    # Mass is spread evenly over bins 8 % wide, which adds a little spread.
    assert skewed.expected(P) == pytest.approx((1.2 * P, 0.12 * P), rel=0.06)


def test_learns_and_forgets() -> None:
    model = DurationModel()
    for _ in range(1000):
        model.observe_job(P, 1.5 * P)
    assert model.jobs == 1000
    # 1000 jobs decayed by 0.995 weigh ~199 against the prior's 10.
    mean, _ = model.ratio()
    half_bin = 0.04 * 1.5
    assert mean == pytest.approx((10 * 1.0 + 199.3 * 1.5) / 209.3, abs=half_bin)
    for _ in range(1000):
        model.observe_job(P, 0.9 * P)
    # The 1.5s now weigh 199.3 x 0.995^1000 = 1.33.
    expected = (10 * 1.0 + 1.33 * 1.5 + 199.3 * 0.9) / 210.6
    assert model.ratio()[0] == pytest.approx(expected, abs=0.04)


@pytest.mark.parametrize(("planned", "worked"), [(0.0, 100.0), (100.0, 0.0), (-5.0, 10.0)])
def test_unusable_jobs_ignored(planned: float, worked: float) -> None:
    model = DurationModel()
    model.observe_job(planned, worked)
    assert model.jobs == 0
    assert model.ratio() == DurationModel().ratio()


def bimodal() -> DurationModel:
    """Four in five jobs on plan, one in five at 1.6 x plan; a negligible prior."""
    model = DurationModel(DurationPrior(prior_weight=1e-6, decay=1.0))
    for i in range(500):
        model.observe_job(P, (1.6 if i % 5 == 0 else 1.0) * P)
    return model


@pytest.mark.parametrize(
    ("elapsed", "median_ratio"),
    [
        (0.0, 1.0),  # most jobs take their plan
        (0.9 * P, 0.1),  # nearly done, probably
        (1.2 * P, 0.4),  # past the plan: one of the overruns
    ],
)
def test_remaining_is_the_conditional_median(elapsed: float, median_ratio: float) -> None:
    got = bimodal().remaining(P, elapsed)
    assert got is not None
    # Within one bin (8 % of the ratio around 1).
    assert got[0] == pytest.approx(median_ratio * P, abs=0.084 * P)


def test_median_ratio() -> None:
    assert DurationModel().median_ratio() == pytest.approx(0.97, abs=0.02)  # log-normal prior
    # Four in five on plan: the median is within the bin holding 1.0 (8 % wide).
    assert bimodal().median_ratio() == pytest.approx(1.0, abs=0.084)
    assert bimodal().median_ratio() < bimodal().ratio()[0]


def test_remaining_spread_grows_at_the_end_of_the_plan() -> None:
    model = bimodal()
    early, late = model.remaining(P, 0.1 * P), model.remaining(P, 0.99 * P)
    assert early is not None and late is not None
    assert late[1] > 0.2 * P  # nearly done, or a long overrun
    assert model.remaining(P, 5.1 * P) is None  # beyond the last bin
    assert model.remaining(0.0, 10.0) is None


def test_snapshot_round_trip() -> None:
    model = bimodal()
    back = DurationModel.restore(model.snapshot(), model.prior)
    assert back.snapshot() == model.snapshot()
    assert back.median_ratio() == model.median_ratio()
    assert back.ratio() == model.ratio()


@pytest.mark.parametrize(
    "snap",
    [
        {"version": 2, "jobs": 0, "counts": [0.0] * 40},
        {"version": 1, "jobs": 0, "counts": [0.0] * 39},
        {"version": 1, "jobs": 0, "counts": [-1.0] * 40},
        {"version": 1, "counts": [0.0] * 40},
        {"version": 1, "jobs": 0, "counts": None},
    ],
)
def test_restore_rejects(snap: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DurationModel.restore(snap)
