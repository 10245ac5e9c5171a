"""Technicians' on-site pace: each one's factor on planned time, against the fleet."""

from __future__ import annotations

import json
import random
from math import exp, log
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eta.pace import PaceConfig, TechnicianPace


def fleet(rng: random.Random, pace: TechnicianPace, jobs: int, slow: float = 1.2) -> None:
    """Jobs of three technicians: one on plan, one ``slow`` x slower, one 0.9 x; plan x
    U(0.85, 1.15), a fifth overrunning to U(1.2, 1.8) x -- whoever does them."""
    for i in range(jobs):
        tech, factor = (("even", 1.0), ("slow", slow), ("quick", 0.9))[i % 3]
        noise = rng.uniform(1.2, 1.8) if rng.random() < 0.2 else rng.uniform(0.85, 1.15)
        pace.observe(tech, 3600.0, 3600.0 * factor * noise)


def test_unknown_technicians_and_useless_jobs_are_at_the_fleets_pace() -> None:
    pace = TechnicianPace()
    assert pace.factor("nobody") == 1.0
    pace.observe("t1", 0.0, 600.0)  # no plan: nothing to compare with
    pace.observe("t1", 600.0, 0.0)
    assert (pace.factor("t1"), pace.technicians) == (1.0, 0)


def test_each_technician_is_learned_against_the_fleet_overruns_aside() -> None:
    pace = TechnicianPace()
    fleet(random.Random(3), pace, 3 * 40)
    # Medians, shrunk by 40 / 45 towards the fleet: the overruns do not make anyone slow,
    # and the one on plan is about the fleet's median.
    assert pace.factor("even") == pytest.approx(1.0, abs=0.05)
    assert pace.factor("slow") / pace.factor("even") == pytest.approx(1.2**0.89, rel=0.06)
    assert pace.factor("quick") / pace.factor("even") == pytest.approx(0.9**0.89, rel=0.06)


def test_few_jobs_count_for_little() -> None:
    pace = TechnicianPace()
    for _ in range(50):
        pace.observe("others", 1000.0, 1000.0)
    pace.observe("new", 1000.0, 1500.0)  # one slow job: 1 / (1 + 5) of the way
    assert pace.factor("new") == pytest.approx(exp(log(1.5) / 6))
    for _ in range(4):
        pace.observe("new", 1000.0, 1500.0)
    assert pace.factor("new") == pytest.approx(exp(log(1.5) / 2), rel=0.05)  # fleet moved too


def test_a_technician_who_gets_quicker_is_followed() -> None:
    pace = TechnicianPace(PaceConfig(per_technician=10, prior_jobs=0.0))
    for _ in range(30):
        pace.observe("others", 1000.0, 1000.0)
    for _ in range(10):
        pace.observe("t1", 1000.0, 1400.0)
    assert pace.factor("t1") == pytest.approx(1.4)
    for _ in range(10):
        pace.observe("t1", 1000.0, 1000.0)  # the last 10 only
    assert pace.factor("t1") == pytest.approx(1.0)


def test_factors_are_bounded() -> None:
    pace = TechnicianPace(PaceConfig(prior_jobs=0.0, max_factor=1.5, min_factor=0.8))
    for _ in range(20):
        pace.observe("others", 1000.0, 1000.0)
    pace.observe("stuck", 1000.0, 9000.0)
    pace.observe("flash", 1000.0, 100.0)
    assert (pace.factor("stuck"), pace.factor("flash")) == (1.5, 0.8)


def test_snapshot_round_trip_through_json() -> None:
    pace = TechnicianPace()
    fleet(random.Random(5), pace, 90)
    back = TechnicianPace.restore(json.loads(json.dumps(pace.snapshot())), pace.config)
    assert {t: back.factor(t) for t in ("even", "slow", "quick", "x")} == {
        t: pace.factor(t) for t in ("even", "slow", "quick", "x")
    }
    assert back.technicians == 3
    # Learning goes on from where it was, with the same memory.
    pace.observe("slow", 1000.0, 2000.0)
    back.observe("slow", 1000.0, 2000.0)
    assert back.factor("slow") == pace.factor("slow")


GOOD: dict[str, Any] = {"version": 1, "fleet": [0.0, 0.1], "technicians": {"t1": [0.1]}}
BAD: list[Any] = [
    {},
    {**GOOD, "version": 2},
    {**GOOD, "fleet": None},
    {**GOOD, "fleet": ["x"]},
    {**GOOD, "technicians": []},
    {**GOOD, "technicians": {"t1": []}},
    {**GOOD, "technicians": {"t1": [float("nan")]}},
    {**GOOD, "fleet": [float("inf")]},
]


@pytest.mark.parametrize("data", BAD)
def test_malformed_snapshots_are_refused(data: Any) -> None:
    with pytest.raises(ValueError):
        TechnicianPace.restore(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "version": st.sampled_from([1, 2, "1", None]),
            "fleet": json_values,
            "technicians": json_values | st.dictionaries(st.text(max_size=3), json_values),
        },
    )
)
def test_restore_refuses_or_loads_any_json(data: dict[str, Any]) -> None:
    """Whatever the snapshot holds: a ValueError, or a model whose factors are in bounds."""
    try:
        pace = TechnicianPace.restore(data)
    except ValueError:
        return
    for tech in data["technicians"]:
        assert 0.5 <= pace.factor(tech) <= 2.0
