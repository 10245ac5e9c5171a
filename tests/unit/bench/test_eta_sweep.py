"""The ``eta`` benchmark's horizon sweep: errors pooled over horizons, per model."""

from __future__ import annotations

import pytest

from bench.cases.eta import MODELS, Scores


def test_pooled_mixes_every_horizon_and_keeps_each_horizons_mae() -> None:
    scores = Scores()
    for model in MODELS:
        scores.add(600.0, model, 100.0)
        scores.add(1800.0, model, -300.0)
    scores.add(600.0, "free_flow", 500.0)  # free flow: 3 errors, |e| = 100, 300, 500
    pooled = scores.pooled((600.0, 1800.0))
    assert pooled["horizons_min"] == [10.0, 30.0]
    assert pooled["gateway"]["n"] == 2
    assert pooled["gateway"]["mae_s"] == pytest.approx(200.0)
    assert pooled["free_flow"]["mae_s"] == pytest.approx(300.0)
    assert pooled["improvement_vs_free_flow"]["gateway"] == pytest.approx(1 / 3, abs=1e-3)
    assert pooled["mae_s_by_horizon"]["free_flow"] == [pytest.approx(300.0), pytest.approx(300.0)]
    assert pooled["mae_s_by_horizon"]["gateway"] == [pytest.approx(100.0), pytest.approx(300.0)]


def test_a_horizon_without_predictions_has_no_mae() -> None:
    pooled = Scores().pooled((300.0,))
    assert pooled["gateway"]["n"] == 0
    assert pooled["gateway"]["mae_s"] is None
    assert pooled["improvement_vs_free_flow"]["gateway"] is None
