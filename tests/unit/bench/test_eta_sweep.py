"""The ``eta`` benchmark's horizon sweep: errors pooled over horizons, per model."""

from __future__ import annotations

import random

import pytest

from bench.cases.eta import MODELS, FreeFlowModel, GraphRouting, Scores
from simulators.roads import synthetic_city


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


def test_the_routing_stand_in_answers_the_free_flow_shortest_path() -> None:
    graph = synthetic_city(7, 3.0, block_m=250.0)
    routing, free_flow = GraphRouting(graph), FreeFlowModel(graph)
    rng = random.Random(3)
    for _ in range(20):
        a, b = rng.randrange(graph.node_count), rng.randrange(graph.node_count)
        (lat1, lon1), (lat2, lon2) = graph.coords[a], graph.coords[b]
        leg = routing.route(round(lat1, 3), round(lon1, 3), round(lat2, 4), round(lon2, 4))
        seconds, _, metres = free_flow.travel_mean_sd(
            round(lat1, 3), round(lon1, 3), round(lat2, 4), round(lon2, 4), 0.0
        )
        assert leg is not None
        assert [leg.duration_s, leg.distance_m] == pytest.approx([seconds, metres])
