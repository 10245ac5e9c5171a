"""``km_driven`` against a simulated day's true driven distance.

The simulator's phones report what real ones do: noisy positions with a matching ``acc``
(and now and then a poor fix), a reported speed, sparse fixes while parked, dropouts and
offline batches. The truth is the length of every moving segment of each technician's
trajectory.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from math import cos, degrees, radians

import pytest

from eta.geo import EARTH_RADIUS_M
from eta.kpi import FixRecord, km_driven
from simulators.config import MALFORMED_KINDS, SimConfig
from simulators.geo import haversine_m
from simulators.phone import PhoneMessage
from simulators.scenario import Scenario

START = datetime(2024, 3, 4, 5, 0, tzinfo=UTC).timestamp()


def simulated_day(technicians: int, seed: int) -> tuple[list[FixRecord], dict[str, float]]:
    """(the fixes the phones sent, each once; true km driven per technician)."""
    cfg = SimConfig(technicians=technicians, seed=seed, start=START, api_url=None, progress=False)
    scenario = Scenario(cfg, START)
    truth = {
        tr.plan.technician_id: sum(
            haversine_m(s.lat0, s.lon0, s.lat1, s.lon1) for s in tr.trajectory.segments if s.moving
        )
        / 1000.0
        for tr in scenario.traces
    }
    fixes: dict[tuple[str, float], FixRecord] = {}
    for em in scenario.emissions():
        msg = em.item
        if isinstance(msg, PhoneMessage) and msg.fault not in MALFORMED_KINDS:
            for f in msg.fixes:  # re-sends and offline batches: the store keeps each once
                key = (em.technician_id, f.ts)
                fixes[key] = FixRecord(em.technician_id, f.ts, f.rlat, f.rlon, f.acc, f.spd)
    return list(fixes.values()), truth


def test_km_driven_is_close_to_the_true_distance() -> None:
    fixes, truth = simulated_day(technicians=5, seed=1)
    got = km_driven(fixes)
    assert sum(truth.values()) > 50.0  # a real day's driving, not a trivial one
    assert got["total"] == pytest.approx(sum(truth.values()), rel=0.05)
    for tech, km in truth.items():
        assert got["by_technician"][tech] == pytest.approx(km, rel=0.10), tech


def parked_day(spd: float | None) -> list[FixRecord]:
    """Eight hours parked, a fix a minute, each off by GPS noise of its ``acc`` (3 % poor)."""
    rng = random.Random(7)
    out = []
    for i in range(480):
        acc = rng.uniform(50.0, 150.0) if rng.random() < 0.03 else rng.uniform(3.0, 20.0)
        east, north = (rng.gauss(0.0, acc / 1.5) for _ in range(2))
        lat = 60.17 + degrees(north / EARTH_RADIUS_M)
        lon = 24.94 + degrees(east / EARTH_RADIUS_M / cos(radians(60.17)))
        out.append(FixRecord("t1", START + 60.0 * i, lat, lon, acc, spd))
    return out


def test_parked_wander_adds_nothing() -> None:
    assert km_driven(parked_day(spd=0.0))["total"] == 0.0
    # Without a reported speed only the accuracy tells noise from driving: a rare fix
    # further off than twice its accuracy may count, a few metres a day.
    assert km_driven(parked_day(spd=None))["total"] < 0.1
