"""Technicians' on-site pace: each one's factor on planned time, against the fleet."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eta.pace import PaceConfig, TechnicianPace


def work(rng: random.Random, pace: TechnicianPace, paces: dict[str, float], jobs: int) -> None:
    """``jobs`` jobs for each technician of ``paces`` (their true factors), in turns: plan x
    U(0.85, 1.15), or for a fifth of them an overrun, U(1.2, 1.8) -- whoever does them."""
    for _ in range(jobs):
        for tech, factor in paces.items():
            noise = rng.uniform(1.2, 1.8) if rng.random() < 0.2 else rng.uniform(0.85, 1.15)
            pace.observe(tech, 3600.0, 3600.0 * factor * noise)


THREE = {"even": 1.0, "slow": 1.2, "quick": 0.9}


def test_unknown_technicians_and_useless_jobs_are_at_the_fleets_pace() -> None:
    pace = TechnicianPace()
    assert pace.factor("nobody") == 1.0
    pace.observe("t1", 0.0, 600.0)  # no plan: nothing to compare with
    pace.observe("t1", 600.0, 0.0)
    assert (pace.factor("t1"), pace.technicians) == (1.0, 0)


def test_each_technician_is_learned_against_the_fleet_overruns_aside() -> None:
    pace = TechnicianPace()
    work(random.Random(3), pace, THREE, 40)
    even, slow, quick = (pace.factor(t) for t in THREE)
    # Medians: the overruns do not make anyone slow, the one on plan is the fleet's median.
    assert even == pytest.approx(1.0, abs=0.05)
    assert slow / even == pytest.approx(1.2, rel=0.06)
    assert quick / even == pytest.approx(0.9, rel=0.06)


def test_in_a_fleet_that_works_alike_no_one_is_made_slow() -> None:
    pace = TechnicianPace()
    alike = {f"t{i}": 1.0 for i in range(10)}
    work(random.Random(4), pace, alike, 20)
    # Each has had overruns, some more than others: all noise, and known to be.
    assert all(pace.factor(t) == pytest.approx(1.0, abs=0.02) for t in alike)


def test_few_jobs_count_for_little() -> None:
    pace = TechnicianPace()
    rng = random.Random(5)
    work(rng, pace, THREE, 40)
    pace.observe("new", 3600.0, 3600.0 * 1.4)  # one slow job: partly noise
    one = pace.factor("new") / pace.factor("even")
    work(rng, pace, {"new": 1.4}, 15)
    # Against the fleet's median, which the newcomer's jobs have moved too.
    assert 1.0 < one < 1.2 < pace.factor("new") / pace.factor("even")


def test_a_technician_who_gets_quicker_is_followed() -> None:
    pace = TechnicianPace(PaceConfig(per_technician=40))
    rng = random.Random(6)
    work(rng, pace, {**THREE, "t1": 1.4}, 40)
    assert pace.factor("t1") / pace.factor("even") > 1.25
    work(rng, pace, {**THREE, "t1": 1.0}, 40)  # the last 40 only
    assert pace.factor("t1") / pace.factor("even") == pytest.approx(1.0, abs=0.1)


def test_factors_are_bounded() -> None:
    pace = TechnicianPace(PaceConfig(max_factor=1.5, min_factor=0.8))
    work(random.Random(7), pace, {**THREE, "stuck": 3.0, "flash": 0.4}, 20)
    assert (pace.factor("stuck"), pace.factor("flash")) == (1.5, 0.8)


def test_snapshot_round_trip_through_json() -> None:
    pace = TechnicianPace()
    work(random.Random(5), pace, THREE, 30)
    back = TechnicianPace.restore(json.loads(json.dumps(pace.snapshot())), pace.config)
    assert {t: back.factor(t) for t in ("even", "slow", "quick", "x")} == {
        t: pace.factor(t) for t in ("even", "slow", "quick", "x")
    }
    assert back.technicians == 3
    # Learning goes on from where it was, with the same memory.
    pace.observe("slow", 1000.0, 2000.0)
    back.observe("slow", 1000.0, 2000.0)
    assert back.factor("slow") == pace.factor("slow")


GOOD: dict[str, Any] = {
    "version": 1,
    "fleet": [[0.0, "t1"], [0.1, "t1"]],
    "technicians": {"t1": [0.0, 0.1]},
}
BAD: list[Any] = [
    {},
    {**GOOD, "version": 2},
    {**GOOD, "fleet": None},
    {**GOOD, "fleet": ["x"]},
    {**GOOD, "fleet": [[0.1, "t2"]]},
    {**GOOD, "fleet": [[0.1]]},
    {**GOOD, "technicians": []},
    {**GOOD, "technicians": {"t1": []}},
    {**GOOD, "technicians": {"t1": [float("nan")]}},
    {**GOOD, "fleet": [[float("inf"), "t1"]]},
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
