"""When technicians set off in the morning: learned from their first en_route of each day,
predicted for one who has not set off yet."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eta.daystart import DayStartConfig, DayStarts

MIDNIGHT = datetime(2027, 1, 15, tzinfo=UTC).timestamp()
DAY = 86400.0
H = 3600.0


def at(day: int, hours: float) -> float:
    """An instant of day ``day`` after MIDNIGHT, ``hours`` past midnight UTC."""
    return MIDNIGHT + day * DAY + hours * H


def taught(starts: dict[str, list[float]], tz: Any = UTC, **config: int) -> DayStarts:
    """Each technician's starts (hours past local midnight), one per day from MIDNIGHT."""
    model = DayStarts(tz, DayStartConfig(**config))
    for tech, hours in starts.items():
        for day, h in enumerate(hours):
            assert model.set_off(tech, at(day, h))
    return model


def test_nothing_learned_is_leave_now() -> None:
    model = DayStarts(UTC)
    assert model.expected("t1", at(9, 6.0)) is None
    assert not model.started("t1", datetime.fromtimestamp(at(9, 6.0), UTC).toordinal())


def test_only_the_first_departure_of_each_day_counts() -> None:
    model = DayStarts(UTC)
    today = datetime.fromtimestamp(at(0, 7.0), UTC).toordinal()
    assert model.set_off("t1", at(0, 7.0))
    assert model.started("t1", today) and not model.started("t1", today + 1)
    assert not model.set_off("t1", at(0, 9.5))  # the second job of the day
    assert not model.set_off("t1", at(-1, 7.0))  # an older day, reported late
    assert model.set_off("t1", at(1, 7.25))
    assert (model.days, model.technicians) == (2, 1)


def test_a_technician_not_gone_yet_leaves_at_the_median_of_the_later_starts() -> None:
    # Five mornings between 07:00 and 07:40.
    model = taught({"t1": [7.0, 7 + 1 / 6, 7 + 2 / 6, 7.5, 7 + 4 / 6]})
    # Before any of them: the median, 07:20 (no spread beyond theirs).
    assert model.expected("t1", at(9, 6.0)) == pytest.approx((at(9, 7 + 2 / 6), 1.4826 * 600))
    # At 07:25, not gone yet: one of the two later mornings, 07:35 between them.
    later = model.expected("t1", at(9, 7 + 25 / 60))
    assert later == pytest.approx((at(9, 7 + 35 / 60), 1.4826 * 300))
    # Later than ever before: leave now.
    assert model.expected("t1", at(9, 7.75)) is None


def test_own_starts_once_there_are_enough_of_them_before_that_the_fleets() -> None:
    fleet = {f"early{i}": [7.0] * 6 for i in range(4)}
    model = taught({**fleet, "late": [9.0] * 4}, min_days=5)
    # Four of their own days: still the fleet's (mostly early) starts.
    fleet_view = model.expected("late", at(9, 6.0))
    assert fleet_view is not None and fleet_view[0] == at(9, 7.0)
    model.set_off("late", at(4, 9.0))
    assert model.expected("late", at(9, 6.0)) == (at(9, 9.0), 0.0)
    assert model.expected("early0", at(9, 6.0)) == (at(9, 7.0), 0.0)


def test_starts_are_local_wall_clock_times_across_a_dst_change() -> None:
    helsinki = ZoneInfo("Europe/Helsinki")
    model = DayStarts(helsinki)
    for day in range(5):  # January: 07:30 in Helsinki is 05:30 UTC
        model.set_off("t1", datetime(2027, 1, 11 + day, 7, 30, tzinfo=helsinki).timestamp())
    summer = datetime(2027, 6, 14, 6, 0, tzinfo=helsinki).timestamp()
    expected = model.expected("t1", summer)
    assert expected is not None
    assert datetime.fromtimestamp(expected[0], helsinki).strftime("%H:%M") == "07:30"
    assert datetime.fromtimestamp(expected[0], UTC).strftime("%H:%M") == "04:30"


def test_snapshot_round_trip() -> None:
    model = taught({"t1": [7.0, 7.5, 8.0, 7.25, 7.75], "t2": [6.0]})
    back = DayStarts.restore(json.loads(json.dumps(model.snapshot())), UTC)
    assert back.snapshot() == model.snapshot()
    assert back.expected("t1", at(9, 6.0)) == model.expected("t1", at(9, 6.0))
    # The last day is kept too: a restart does not count the same morning twice.
    assert not back.set_off("t2", at(0, 11.0))


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"version": 2, "fleet": [], "technicians": {}},
        {"version": 1, "fleet": "07:00", "technicians": {}},
        {"version": 1, "fleet": [-1.0], "technicians": {}},
        {"version": 1, "fleet": [float("nan")], "technicians": {}},
        {"version": 1, "fleet": [], "technicians": {"t1": {"starts": [3600.0]}}},
        {"version": 1, "fleet": [], "technicians": {"t1": [3600.0]}},
    ],
)
def test_malformed_snapshots_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DayStarts.restore(bad, UTC)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.fixed_dictionaries(
        {"version": st.just(1) | JSONISH, "fleet": JSONISH, "technicians": JSONISH}
    )
)
def test_restore_loads_or_refuses_anything(data: dict[str, Any]) -> None:
    try:
        model = DayStarts.restore(data, UTC)
    except ValueError:
        return
    model.expected("t1", at(9, 6.0))  # whatever it kept, it can predict from
