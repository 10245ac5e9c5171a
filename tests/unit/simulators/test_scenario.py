"""Scenario emissions: a phone offline when its day ends still flushes what it buffered."""

from __future__ import annotations

from simulators.config import FleetParams, PhoneParams, SimConfig
from simulators.phone import PhoneMessage
from simulators.scenario import Scenario

SHORT_DAY = FleetParams(
    jobs=(2, 2), job_duration_s=(240.0, 480.0), window_s=1800.0, window_lead_s=(120.0, 300.0),
    slot_s=120.0, shift_spread_s=60.0, early_tolerance_s=120.0, depots=1, return_to_depot=False,
)  # fmt: skip


def test_every_status_of_the_day_is_sent_even_after_the_last_vehicle_parks() -> None:
    # Seed 2 with frequent offline spells leaves one phone offline past the end of the day.
    cfg = SimConfig(
        technicians=3, seed=2, city_size_km=2.0, fleet=SHORT_DAY,
        phone=PhoneParams(offline_per_hour=2.0),
    )  # fmt: skip
    scenario = Scenario(cfg, 1.7e9)
    sent = [
        e.item
        for e in scenario.emissions()
        if isinstance(e.item, PhoneMessage) and e.item.status and e.item.fault is None
    ]
    planned = sum(len(trace.statuses) for trace in scenario.traces)
    assert len({m.msg_id for m in sent}) == planned


def test_duration_still_cuts_the_run() -> None:
    cfg = SimConfig(technicians=2, seed=2, city_size_km=2.0, fleet=SHORT_DAY, duration_s=600.0)
    scenario = Scenario(cfg, 1.7e9)
    assert max(e.t for e in scenario.emissions()) <= 1.7e9 + 600.0
