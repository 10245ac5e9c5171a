"""Technicians' plans and days: exact drives on a tiny graph, physics on a city."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from simulators.config import FleetParams
from simulators.fleet import (
    DayTrace,
    JobPlan,
    Router,
    TechnicianPlan,
    drive_day,
    plan_fleet,
    work_pace,
)
from simulators.geo import haversine_m
from simulators.roads import RoadGraph, synthetic_city
from simulators.traffic import TrafficModel, congestion

from .test_roads import tiny

HELSINKI = ZoneInfo("Europe/Helsinki")
NIGHT = datetime.fromisoformat("2025-01-15T02:00:00+02:00").timestamp()  # free flow
MORNING = datetime.fromisoformat("2025-01-15T07:00:00+02:00").timestamp()
EXACT = FleetParams(
    overrun_probability=0.0,
    pause_probability=0.0,
    duration_noise=0.0,
    driver_factor=(1.0, 1.0),
    signal_stop_probability=0.0,
    early_tolerance_s=0.0,
)


def job(node: int, sequence: int, window_start: float, graph: RoadGraph) -> JobPlan:
    lat, lon = graph.coords[node]
    return JobPlan(
        f"job-{sequence}", "tech-1", sequence, node, lat, lon, 50.0, window_start,
        window_start + 3600, 600.0, "hvac", "Cafe",
    )  # fmt: skip


def test_golden_day_on_the_tiny_graph() -> None:
    g = tiny()
    traffic = TrafficModel(g, HELSINKI)
    jobs = (job(2, 1, NIGHT, g), job(1, 2, NIGHT + 1800, g))
    plan = TechnicianPlan(0, "tech-1", "Aino", "phone-1", ("hvac",), 0, NIGHT, jobs)
    trace = drive_day(plan, g, traffic, Router(g, traffic), EXACT, seed=1)
    t = NIGHT
    expected = [
        (t, "job-1", "en_route"),
        (t + 72, "job-1", "on_site"),  # 0 -> 3 -> 2 on the arterial: 36 s + 36 s
        (t + 672, "job-1", "done"),  # 600 s of work, exactly as planned
        # Job 2's window opens at +1800 and 2 -> 0 -> 1 takes 180 s: leave at +1620.
        (t + 1620, "job-2", "en_route"),
        (t + 1800, "job-2", "on_site"),
        (t + 2400, "job-2", "done"),
    ]
    assert [(s.job_id, s.status) for s in trace.statuses] == [e[1:] for e in expected]
    assert [s.t for s in trace.statuses] == pytest.approx([e[0] for e in expected])
    first, second = trace.outcomes
    assert (first.arrival, first.done, first.departure) == pytest.approx(
        (t + 72, t + 672, t + 1620)
    )
    assert (second.leave, second.arrival) == pytest.approx((t + 1620, t + 1800))
    assert first.overrun_s == 0.0 and first.pauses == []
    # Back to the depot (1 -> 2 -> 0: 60 + 120 s), then parked a minute.
    assert trace.trajectory.end == pytest.approx(t + 2400 + 180 + 60)
    assert trace.trajectory.position == g.coords[0]
    mid = trace.trajectory.at(t + 36 + 18)  # half way along 3 -> 2
    assert mid.edge == 3 and mid.speed_mps == pytest.approx(
        haversine_m(*g.coords[3], *g.coords[2]) / 36
    )


CITY = synthetic_city(3, 3.0)
TRAFFIC = TrafficModel(CITY, HELSINKI)
PARAMS = FleetParams(incidents_per_hour=0.0, pause_probability=0.5, overrun_probability=0.3)


@pytest.fixture(scope="module")
def traces() -> list[DayTrace]:
    router = Router(CITY, TRAFFIC)
    plans = plan_fleet(CITY, router, PARAMS, 8, MORNING, seed=3)
    return [drive_day(p, CITY, TRAFFIC, router, PARAMS, seed=3) for p in plans]


def test_plans_are_deterministic(traces: list[DayTrace]) -> None:
    router = Router(CITY, TRAFFIC)
    again = plan_fleet(CITY, router, PARAMS, 8, MORNING, seed=3)
    assert again == [t.plan for t in traces]
    assert plan_fleet(CITY, router, PARAMS, 8, MORNING, seed=4) != again


def test_plans_look_like_bookings(traces: list[DayTrace]) -> None:
    ids = [j.job_id for tr in traces for j in tr.plan.jobs]
    assert len(ids) == len(set(ids))
    for tr in traces:
        plan = tr.plan
        assert plan.device_id == plan.technician_id.replace("tech-", "phone-")
        assert 4 <= len(plan.jobs) <= 7
        assert [j.sequence for j in plan.jobs] == list(range(1, len(plan.jobs) + 1))
        assert set(plan.registration()) == {"name", "device_ids", "skills"}
        for j in plan.jobs:
            assert j.skill in plan.skills
            assert j.window_end - j.window_start == PARAMS.window_s
            assert j.window_start % PARAMS.slot_s == 0
            assert haversine_m(j.lat, j.lon, *CITY.coords[j.node]) < 30
            body = j.registration()
            assert set(body) == {
                "technician_id", "site", "window", "planned_duration_s", "sequence", "customer",
            }  # fmt: skip
            assert body["site"]["radius_m"] == j.radius_m


def test_day_is_deterministic(traces: list[DayTrace]) -> None:
    router = Router(CITY, TRAFFIC)
    again = drive_day(traces[0].plan, CITY, TRAFFIC, router, PARAMS, seed=3)
    assert again.statuses == traces[0].statuses
    assert again.trajectory.segments == traces[0].trajectory.segments


def test_no_teleports_and_speeds_within_limits(traces: list[DayTrace]) -> None:
    for tr in traces:
        segs = tr.trajectory.segments
        for a, b in itertools.pairwise(segs):
            assert (a.t1, a.lat1, a.lon1) == (b.t0, b.lat0, b.lon0)
        for s in segs:
            if not s.moving:
                assert (s.lat0, s.lon0) == (s.lat1, s.lon1)
                continue
            edge = CITY.edges[s.edge]
            # On the road: the segment is exactly the edge.
            assert (s.lat0, s.lon0, s.lat1, s.lon1) == (*CITY.coords[edge.u], *CITY.coords[edge.v])
            limit = edge.speed_mps * congestion(edge.road_class, TRAFFIC.second_of_day(s.t0))
            assert s.speed_mps <= limit * PARAMS.driver_factor[1] * 1.0001


def test_statuses_follow_the_job_life_cycle(traces: list[DayTrace]) -> None:
    pauses = overruns = 0
    for tr in traces:
        for j, out in zip(tr.plan.jobs, tr.outcomes, strict=True):
            mine = [(s.t, s.status) for s in tr.statuses if s.job_id == j.job_id]
            kinds = [k for _, k in mine]
            assert kinds in (["en_route", "on_site", "done"],
                             ["en_route", "on_site", "paused", "resumed", "done"])  # fmt: skip
            assert [t for t, _ in mine] == sorted(t for t, _ in mine)
            assert dict((k, t) for t, k in mine)["on_site"] == out.arrival
            assert dict((k, t) for t, k in mine)["en_route"] == out.leave
            assert dict((k, t) for t, k in mine)["done"] == out.done
            # The vehicle really is at the site from arrival until it leaves.
            for t in (out.arrival, (out.arrival + out.done) / 2, out.departure - 1e-3):
                state = tr.trajectory.at(t)
                assert (state.lat, state.lon) == pytest.approx(CITY.coords[j.node])
                assert state.speed_mps == 0.0
            assert out.geofence_enter <= out.arrival <= out.done <= out.departure
            assert out.departure <= out.geofence_exit
            pauses += bool(out.pauses)
            overruns += out.overrun_s > 0
            assert out.done - out.arrival == pytest.approx(
                out.work_s + sum(b - a for a, b in out.pauses)
            )
    assert pauses > 0 and overruns > 0


def test_geofence_enter_is_on_the_circle(traces: list[DayTrace]) -> None:
    checked = 0
    for tr in traces:
        for j, out in zip(tr.plan.jobs, tr.outcomes, strict=True):
            if out.geofence_enter > out.leave:
                state = tr.trajectory.at(out.geofence_enter)
                assert haversine_m(state.lat, state.lon, j.lat, j.lon) == pytest.approx(
                    j.radius_m, abs=0.5
                )
                before = tr.trajectory.at(out.geofence_enter - 1)
                assert haversine_m(before.lat, before.lon, j.lat, j.lon) > j.radius_m
                checked += 1
    assert checked > 10


def test_each_technician_keeps_their_work_pace_day_after_day(traces: list[DayTrace]) -> None:
    router = Router(CITY, TRAFFIC)
    paced = replace(PARAMS, work_pace=(0.8, 1.3))
    plans = plan_fleet(CITY, router, paced, 8, MORNING, seed=3)
    days = [drive_day(p, CITY, TRAFFIC, router, paced, seed=3) for p in plans]
    paces = [work_pace(p.technician_id, paced) for p in plans]
    assert all(0.8 <= f <= 1.3 for f in paces) and len(set(paces)) == len(paces)
    assert work_pace("tech-001", paced) == work_pace("tech-001", paced)  # an id, not a day
    # Only the work on site changes, by the technician's factor: the day's draws are the
    # same, so the first job of each is the unpaced one's times the pace.
    for plain, slow, f in zip(traces, days, paces, strict=True):
        assert slow.outcomes[0].work_s == pytest.approx(plain.outcomes[0].work_s * f)
        assert slow.outcomes[0].arrival == plain.outcomes[0].arrival
    assert work_pace("tech-001", PARAMS) == 1.0


def test_job_prefix_names_a_days_jobs_and_nothing_else() -> None:
    router = Router(CITY, TRAFFIC)
    plain = plan_fleet(CITY, router, PARAMS, 2, MORNING, seed=3)
    tagged = plan_fleet(CITY, router, PARAMS, 2, MORNING, seed=3, job_prefix="d07-")
    for a, b in zip(plain, tagged, strict=True):
        assert (a.technician_id, a.device_id) == (b.technician_id, b.device_id)
        assert [f"d07-{j.job_id}" for j in a.jobs] == [j.job_id for j in b.jobs]


def test_a_depot_seed_keeps_the_depots_from_day_to_day() -> None:
    router = Router(CITY, TRAFFIC)

    def depots(seed: int, depot_seed: int | None) -> list[int]:
        plans = plan_fleet(CITY, router, PARAMS, 6, MORNING, seed=seed, depot_seed=depot_seed)
        return [p.depot_node for p in plans]

    assert depots(3, 9) == depots(4, 9) != depots(4, None)
    assert depots(3, None) == depots(3, 3)  # the day's seed, as before
