"""Traffic: rush hours per road class, local time with DST, incidents."""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from simulators.roads import synthetic_city
from simulators.traffic import Incident, TrafficModel, congestion, generate_incidents, rush_weight

H = 3600.0
HELSINKI = ZoneInfo("Europe/Helsinki")


@pytest.mark.parametrize(
    ("second_of_day", "weight"),
    [
        (3 * H, 0.0),
        (7.0 * H, 0.0),  # ramp starts at 07:00
        (7.25 * H, 0.5),
        (7.5 * H, 1.0),
        (8.5 * H, 1.0),
        (9.25 * H, 0.5),
        (12 * H, 0.0),
        (17 * H, 1.0),
        (18.5 * H, 0.0),
    ],
)
def test_rush_weight(second_of_day: float, weight: float) -> None:
    assert rush_weight(second_of_day) == pytest.approx(weight)


@pytest.mark.parametrize(
    ("road_class", "second_of_day", "factor"),
    [
        ("arterial", 3 * H, 1.0),  # night: free flow
        ("arterial", 12 * H, 0.9),
        ("arterial", 8 * H, 0.5),
        ("secondary", 8 * H, 0.65),
        ("residential", 8 * H, 0.85),
        ("arterial", 7.25 * H, 0.7),
        ("residential", 17.5 * H, 0.85),
        ("residential", 23 * H, 1.0),
    ],
)
def test_congestion(road_class: str, second_of_day: float, factor: float) -> None:
    assert congestion(road_class, second_of_day) == pytest.approx(factor)


@pytest.mark.parametrize(
    ("local", "expected_hour"),
    [
        ("2025-01-15T08:00:00+02:00", 8),  # winter: UTC+2
        ("2025-07-15T08:00:00+03:00", 8),  # summer: UTC+3
        ("2025-03-30T04:30:00+03:00", 4.5),  # just after the spring change
    ],
)
def test_second_of_day_follows_local_time(local: str, expected_hour: float) -> None:
    model = TrafficModel(synthetic_city(1, 1.0), HELSINKI)
    t = datetime.fromisoformat(local).timestamp()
    assert model.second_of_day(t) == pytest.approx(expected_hour * H)


def test_speed_combines_congestion_and_incidents() -> None:
    city = synthetic_city(1, 1.0)
    edge = next(e for e in city.edges if e.road_class == "arterial")
    t8 = datetime.fromisoformat("2025-01-15T08:00:00+02:00").timestamp()
    inc = Incident("i1", (edge.edge_id,), t8 - 60, t8 + 60, 0.2, 0.0, 0.0)
    model = TrafficModel(city, HELSINKI, [inc])
    assert model.speed_mps(edge, t8) == pytest.approx(edge.speed_mps * 0.5 * 0.2)
    assert model.speed_mps(edge, t8 + 61) == pytest.approx(edge.speed_mps * 0.5)
    assert model.incident_factor(edge.edge_id + 1, t8) == 1.0
    # Drivers plan with rush hours but know nothing of incidents.
    assert model.expected_slowdown(t8)["arterial"] == pytest.approx(2.0)


def test_incidents_are_seeded_connected_stretches() -> None:
    city = synthetic_city(2, 3.0)
    first = generate_incidents(city, random.Random(9), 0.0, 10 * H, 2.0)
    again = generate_incidents(city, random.Random(9), 0.0, 10 * H, 2.0)
    other = generate_incidents(city, random.Random(10), 0.0, 10 * H, 2.0)
    assert first == again
    assert first != other
    assert 5 <= len(first) <= 40
    for inc in first:
        assert 0.0 <= inc.start < 10 * H
        assert 900 <= inc.end - inc.start <= 3600
        assert 0.15 <= inc.factor <= 0.5
        nodes = [n for e in inc.edges for n in (city.edges[e].u, city.edges[e].v)]
        assert (inc.lat, inc.lon) in [city.coords[n] for n in nodes]
        # A stretch: every edge touches another edge of the incident (or is alone).
        if len(inc.edges) > 1:
            for e in inc.edges:
                ends = {city.edges[e].u, city.edges[e].v}
                assert any(ends & {city.edges[o].u, city.edges[o].v} for o in inc.edges if o != e)


def test_no_incidents_at_zero_rate() -> None:
    assert generate_incidents(synthetic_city(1, 1.0), random.Random(1), 0.0, 1e6, 0.0) == []
