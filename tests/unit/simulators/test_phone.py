"""Phones: cadence, noise, dropouts, offline batches, re-sends, skew, malformed payloads."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import pytest

from simulators.config import MALFORMED_KINDS, FleetParams, PhoneParams
from simulators.fleet import DayTrace, Router, drive_day, plan_fleet
from simulators.geo import haversine_m
from simulators.phone import FIX_FAULTS, STATUS_FAULTS, Fix, Note, Phone, PhoneCaps, PhoneMessage
from simulators.roads import synthetic_city
from simulators.traffic import TrafficModel

from .test_fleet import HELSINKI, MORNING

QUIET = PhoneParams(
    poor_fix_probability=0.0,
    dropouts_per_hour=0.0,
    offline_per_hour=0.0,
    duplicate_probability=0.0,
    retained_replay_probability=0.0,
    clock_skew_probability=0.0,
    malformed_share=0.0,
)
JSON = PhoneCaps()
OWNTRACKS = PhoneCaps(batches=False, retained=True, ts_decimals=0)


@pytest.fixture(scope="module")
def trace() -> DayTrace:
    city = synthetic_city(4, 3.0)
    traffic = TrafficModel(city, HELSINKI)
    router = Router(city, traffic)
    params = FleetParams(jobs=(4, 4), job_duration_s=(600.0, 900.0))
    plan = plan_fleet(city, router, params, 1, MORNING, seed=4)[0]
    return drive_day(plan, city, traffic, router, params, seed=4)


def run(
    trace: DayTrace, params: PhoneParams, caps: PhoneCaps = JSON, seed: int = 1
) -> list[Note | PhoneMessage]:
    return list(Phone("phone-1", params, caps, seed, 0).run(trace))


def fixes_of(items: Sequence[Note | PhoneMessage]) -> list[Fix]:
    return [f for m in items if isinstance(m, PhoneMessage) and m.fault is None for f in m.fixes]


def test_quiet_phone_reports_every_few_seconds_while_moving(trace: DayTrace) -> None:
    items = run(trace, QUIET)
    assert [m.t for m in items] == sorted(m.t for m in items)
    assert all(isinstance(m, PhoneMessage) and m.fault is None and not m.batch for m in items)
    fixes = fixes_of(items)
    gaps_moving: list[float] = []
    gaps_still: list[float] = []
    for a, b in itertools.pairwise(fixes):
        (gaps_moving if a.true_spd > 0.5 else gaps_still).append(b.t - a.t)
    assert min(gaps_moving) >= 4.0 and max(gaps_moving) <= 6.0 + 1e-6
    assert max(gaps_still) <= 75.0 + 1e-6
    assert sum(gaps_still) / len(gaps_still) > 20  # sparse when parked
    assert [f.seq for f in fixes] == list(range(1, len(fixes) + 1))
    for f in fixes:
        assert f.ts == f.t  # no skew: the phone's clock is right
        assert 3.0 <= f.acc <= 20.0
        assert haversine_m(f.lat, f.lon, f.rlat, f.rlon) <= 3 * f.acc * 2**0.5 + 0.01
        true = trace.trajectory.at(f.t)
        assert (f.lat, f.lon) == pytest.approx((true.lat, true.lon), abs=1e-6)


def test_statuses_are_sent_when_they_happen(trace: DayTrace) -> None:
    sent = [m.status for m in run(trace, QUIET) if isinstance(m, PhoneMessage) and m.status]
    assert [(s.t, s.job_id, s.status) for s in sent if s is not None] == [
        (round(e.t, 3), e.job_id, e.status) for e in trace.statuses
    ]


def test_same_seed_same_output_other_seed_differs(trace: DayTrace) -> None:
    params = PhoneParams(malformed_share=0.05, duplicate_probability=0.05)
    assert run(trace, params, seed=7) == run(trace, params, seed=7)
    assert run(trace, params, seed=7) != run(trace, params, seed=8)


def test_gps_dropouts_leave_gaps(trace: DayTrace) -> None:
    items = run(trace, replace(QUIET, dropouts_per_hour=3.0))
    spells = [(n.details["start"], n.details["end"]) for n in items if isinstance(n, Note)]
    assert spells and all(n.fault == "gps_dropout" for n in items if isinstance(n, Note))
    for f in fixes_of(items):
        assert not any(a <= f.t < b for a, b in spells)


@pytest.mark.parametrize("newest_first", [True, False])
def test_offline_spells_flush_one_array(trace: DayTrace, newest_first: bool) -> None:
    params = replace(QUIET, offline_per_hour=2.0, newest_first_probability=float(newest_first))
    items = run(trace, params)
    notes = [n for n in items if isinstance(n, Note)]
    batches = [m for m in items if isinstance(m, PhoneMessage) and m.batch]
    assert notes and batches
    for note in notes:
        assert note.fault == "offline_buffer"
        assert note.details["order"] == ("newest_first" if newest_first else "oldest_first")
        mine = [b for b in batches if b.t == note.t]
        assert sum(len(b.fixes) for b in mine) == note.details["count"]
        for b in mine:
            ts = [f.t for f in b.fixes]
            assert ts == sorted(ts, reverse=newest_first)
            assert all(note.details["start"] <= t < note.details["end"] for t in ts)
            assert b.t >= note.details["end"]
    # Nothing is lost and nothing sent twice: the same fixes as a phone that stayed online.
    assert sorted(f.t for f in fixes_of(items)) == [f.t for f in fixes_of(run(trace, QUIET))]


def test_owntracks_phone_sends_no_arrays_and_retains(trace: DayTrace) -> None:
    params = replace(QUIET, offline_per_hour=2.0, retained_replay_probability=0.1)
    items = [m for m in run(trace, params, OWNTRACKS) if isinstance(m, PhoneMessage)]
    assert not any(m.batch for m in items)
    assert all(m.retain == bool(m.fixes) for m in items)
    replays = [m for m in items if m.fault == "retained_replay"]
    assert replays
    by_id = {m.msg_id: m for m in items}
    for r in replays:
        original = by_id[r.original or ""]
        assert r.fixes == original.fixes and r.t >= original.t + 30
    fixes = fixes_of(items)
    assert all(isinstance(f.ts, int) for f in fixes)
    assert len({f.ts for f in fixes}) == len(fixes)  # integer seconds stay unique


def test_duplicates_repeat_the_original(trace: DayTrace) -> None:
    items = [
        m
        for m in run(trace, replace(QUIET, duplicate_probability=1.0))
        if isinstance(m, PhoneMessage)
    ]
    by_id = {m.msg_id: m for m in items}
    dups = [m for m in items if m.fault == "duplicate"]
    originals = [m for m in items if m.fault is None and m.fixes]
    assert len(dups) == len(originals)
    for d in dups:
        assert d.fixes == by_id[d.original or ""].fixes
        assert 0.05 <= d.t - by_id[d.original or ""].t <= 2.0 + 1e-3


def test_clock_skew_shifts_every_timestamp(trace: DayTrace) -> None:
    items = run(trace, replace(QUIET, clock_skew_probability=1.0))
    (note,) = [n for n in items if isinstance(n, Note)]
    skew = note.details["skew_s"]
    assert -120.0 <= skew <= 60.0 and note.fault == "clock_skew"
    for f in fixes_of(items):
        assert f.ts == pytest.approx(f.t + skew, abs=1e-3)


def test_malformed_payloads_are_extra_copies(trace: DayTrace) -> None:
    items = [
        m for m in run(trace, replace(QUIET, malformed_share=0.5)) if isinstance(m, PhoneMessage)
    ]
    bad = [m for m in items if m.fault]
    kinds = Counter(m.fault for m in bad)
    assert set(kinds) == set(MALFORMED_KINDS)
    for m in bad:
        assert (m.fault in STATUS_FAULTS) if m.status else (m.fault in FIX_FAULTS)
        assert not m.batch and not m.retain
    # Every good fix still goes out: the malformed ones come on top.
    assert [f.t for f in fixes_of(items)] == [f.t for f in fixes_of(run(trace, QUIET))]


def test_poor_fixes_have_large_accuracy(trace: DayTrace) -> None:
    fixes = fixes_of(run(trace, replace(QUIET, poor_fix_probability=0.2)))
    poor = [f for f in fixes if f.acc >= 50]
    assert 0.1 < len(poor) / len(fixes) < 0.3
    assert all(f.acc <= 150 for f in fixes)
