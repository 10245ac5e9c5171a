"""Seeded technicians: what dispatch booked (plans) and what truly happened (day traces).

A plan is a depot, skills and a sequence of jobs with appointment windows and planned
durations, built from expected travel times. A day trace is the drive through real
traffic along shortest paths, with waits, overruns and pauses, as a trajectory plus the
status changes at the moments they happen. Everything derives from the seed; nothing
reads the wall clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from simulators.config import FleetParams
from simulators.geo import offset
from simulators.roads import Edge, RoadGraph, Route
from simulators.traffic import TrafficModel
from simulators.trajectory import STATIONARY, Trajectory, inside_period

FIRST_NAMES = (
    "Aino", "Eero", "Maria", "Juha", "Sofia", "Mikko", "Laura", "Antti", "Emma", "Ville",
    "Helmi", "Jari", "Noora", "Pekka", "Sanna", "Timo", "Elina", "Kari", "Oona", "Lauri",
)  # fmt: skip
LAST_NAMES = (
    "Korhonen", "Virtanen", "Mäkinen", "Nieminen", "Hämäläinen", "Laine", "Heikkinen",
    "Koskinen", "Järvinen", "Lehtonen", "Salminen", "Lindqvist", "Berg", "Rantanen",
)  # fmt: skip
CUSTOMERS = (
    "Kahvila Aalto", "As Oy Meritähti", "Kirjasto Kallio", "Hotel Pohjola", "Apteekki Sydän",
    "Ravintola Sauna", "Koulu Metsälä", "Studio Valo", "Kiinteistö Oy Kivi", "Leipomo Vehnä",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class JobPlan:
    """A booked job; `lat`/`lon` is the customer's address, a little off the road node."""

    job_id: str
    technician_id: str
    sequence: int
    node: int
    lat: float
    lon: float
    radius_m: float
    window_start: float
    window_end: float
    planned_duration_s: float
    skill: str
    customer: str

    def registration(self) -> dict[str, Any]:
        """Body of ``PUT /api/v1/jobs/{job_id}``."""
        return {
            "technician_id": self.technician_id,
            "site": {"lat": self.lat, "lon": self.lon, "radius_m": self.radius_m},
            "window": {"start": self.window_start, "end": self.window_end},
            "planned_duration_s": self.planned_duration_s,
            "sequence": self.sequence,
            "customer": {"name": self.customer},
        }


@dataclass(frozen=True, slots=True)
class TechnicianPlan:
    index: int
    technician_id: str
    name: str
    device_id: str
    skills: tuple[str, ...]
    depot_node: int
    shift_start: float
    jobs: tuple[JobPlan, ...]

    def registration(self) -> dict[str, Any]:
        """Body of ``PUT /api/v1/technicians/{technician_id}``."""
        return {"name": self.name, "device_ids": [self.device_id], "skills": list(self.skills)}


@dataclass(frozen=True, slots=True)
class StatusEvent:
    t: float
    job_id: str
    status: str


@dataclass(slots=True)
class JobOutcome:
    """What truly happened at one job (epoch seconds)."""

    job_id: str
    leave: float
    arrival: float
    done: float
    departure: float
    work_s: float
    overrun_s: float
    pauses: list[tuple[float, float]] = field(default_factory=list)
    geofence_enter: float = 0.0
    geofence_exit: float = 0.0


@dataclass(frozen=True, slots=True)
class DayTrace:
    plan: TechnicianPlan
    trajectory: Trajectory
    statuses: tuple[StatusEvent, ...]
    outcomes: tuple[JobOutcome, ...]


class Router:
    """Shortest paths by the travel time a driver expects (rush hours, not incidents), cached
    per half hour of the day so a fleet re-uses its routes."""

    def __init__(self, graph: RoadGraph, traffic: TrafficModel) -> None:
        self.graph = graph
        self.traffic = traffic
        self._cache: dict[tuple[int, int, int], Route] = {}

    def route(self, src: int, dst: int, t: float) -> Route:
        bucket = int(self.traffic.second_of_day(t) // 1800)
        key = (src, dst, bucket)
        found = self._cache.get(key)
        if found is None:
            slow = self.traffic.expected_slowdown(t)

            def weight(e: Edge) -> float:
                return e.length_m / e.speed_mps * slow[e.road_class]

            found = self.graph.shortest_path(src, dst, weight)
            self._cache[key] = found
        return found


def plan_fleet(
    graph: RoadGraph,
    router: Router,
    params: FleetParams,
    count: int,
    start: float,
    seed: int,
    *,
    id_prefix: str = "",
    owntracks_ids: bool = False,
    job_prefix: str = "",
    depot_seed: int | None = None,
) -> list[TechnicianPlan]:
    """Technicians with a day of jobs each, shifts beginning at `start`. ``job_prefix`` goes
    before job ids only, and ``depot_seed`` (instead of the day's seed) places the depots:
    the same technicians on several days, starting from the same depots, each day's jobs
    new."""
    rng = random.Random(f"{seed if depot_seed is None else depot_seed}:depots")
    depots = [graph.snap_random_point(rng) for _ in range(max(1, params.depots))]
    plans = []
    for i in range(count):
        tech_id = f"{id_prefix}tech-{i + 1:03d}"
        device = f"{tech_id}:phone" if owntracks_ids else f"{id_prefix}phone-{i + 1:03d}"
        plans.append(
            _plan_technician(
                graph, router, params, i, tech_id, device, depots, start, seed, job_prefix
            )
        )
    return plans


def _plan_technician(
    graph: RoadGraph,
    router: Router,
    params: FleetParams,
    index: int,
    tech_id: str,
    device_id: str,
    depots: Sequence[int],
    start: float,
    seed: int,
    job_prefix: str = "",
) -> TechnicianPlan:
    rng = random.Random(f"{seed}:plan:{index}")
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    skills = tuple(sorted(rng.sample(params.skills, rng.randint(*params.skills_per_technician))))
    depot = depots[index % len(depots)]
    shift_start = start + rng.uniform(0, params.shift_spread_s)
    sites = [graph.random_node(rng) for _ in range(rng.randint(*params.jobs))]
    if params.tour_order == "nearest":
        sites = _nearest_neighbour_order(graph, depot, sites)
    jobs = []
    t, here = shift_start, depot
    for k, node in enumerate(sites):
        arrival = t + router.route(here, node, t).cost
        planned = max(60.0, round(rng.uniform(*params.job_duration_s) / 60) * 60)
        slot = params.slot_s
        window_start = max(
            math.floor(start / slot) * slot,
            math.floor((arrival - rng.uniform(*params.window_lead_s)) / slot) * slot,
        )
        lat, lon = offset(*graph.coords[node], rng.uniform(-20, 20), rng.uniform(-20, 20))
        jobs.append(
            JobPlan(
                job_id=f"{job_prefix}{tech_id.replace('tech-', 'job-')}-{k + 1:02d}",
                technician_id=tech_id,
                sequence=k + 1,
                node=node,
                lat=round(lat, 7),
                lon=round(lon, 7),
                radius_m=float(round(rng.uniform(*params.site_radius_m))),
                window_start=float(window_start),
                window_end=float(window_start + params.window_s),
                planned_duration_s=planned,
                skill=rng.choice(skills),
                customer=rng.choice(CUSTOMERS),
            )
        )
        t, here = arrival + planned, node
    return TechnicianPlan(index, tech_id, name, device_id, skills, depot, shift_start, tuple(jobs))


def work_pace(technician_id: str, params: FleetParams) -> float:
    """A technician's own factor on on-site time: the same for an id on every day and seed
    (a draw apart from the day's, so a fleet with no spread lives the same days as before)."""
    low, high = params.work_pace
    if low == high:
        return low
    return random.Random(f"work-pace:{technician_id}").uniform(low, high)


def _nearest_neighbour_order(graph: RoadGraph, start: int, sites: list[int]) -> list[int]:
    """Order sites greedily by straight-line distance: the sort of tour a dispatcher books."""
    order: list[int] = []
    here = graph.coords[start]
    todo = list(sites)
    while todo:
        nxt = min(todo, key=lambda n: math.dist(here, graph.coords[n]))
        todo.remove(nxt)
        order.append(nxt)
        here = graph.coords[nxt]
    return order


def drive_day(
    plan: TechnicianPlan,
    graph: RoadGraph,
    traffic: TrafficModel,
    router: Router,
    params: FleetParams,
    seed: int,
) -> DayTrace:
    """Live the planned day through real traffic; return the trajectory and the truth."""
    rng = random.Random(f"{seed}:day:{plan.index}")
    driver = _Driver(graph, traffic, params, rng.uniform(*params.driver_factor), rng)
    pace = work_pace(plan.technician_id, params)
    traj = Trajectory(plan.shift_start, *graph.coords[plan.depot_node])
    statuses: list[StatusEvent] = []
    outcomes: list[JobOutcome] = []
    here = plan.depot_node
    for job in plan.jobs:
        route = router.route(here, job.node, traj.end)
        leave = max(traj.end, job.window_start - route.cost - params.early_tolerance_s)
        traj.wait_until(leave)
        if outcomes:
            outcomes[-1].departure = leave
        statuses.append(StatusEvent(leave, job.job_id, "en_route"))
        driver.drive(traj, route)
        outcomes.append(_work(traj, job, params, rng, statuses, leave, pace))
        here = job.node
    if params.return_to_depot and here != plan.depot_node:
        driver.drive(traj, router.route(here, plan.depot_node, traj.end))
    traj.wait_until(traj.end + 60.0)  # parked a minute, so the last stop is visible
    for job, out in zip(plan.jobs, outcomes, strict=True):
        out.geofence_enter, out.geofence_exit = inside_period(
            traj, out.arrival, job.lat, job.lon, job.radius_m
        )
    return DayTrace(plan, traj, tuple(statuses), tuple(outcomes))


def _work(
    traj: Trajectory,
    job: JobPlan,
    params: FleetParams,
    rng: random.Random,
    statuses: list[StatusEvent],
    leave: float,
    pace: float = 1.0,
) -> JobOutcome:
    """On site: arrive, work (maybe overrun, maybe pause), done. Appends the statuses."""
    arrival = traj.end
    statuses.append(StatusEvent(arrival, job.job_id, "on_site"))
    if rng.random() < params.overrun_probability:
        work = job.planned_duration_s * rng.uniform(*params.overrun_factor)
    else:
        noise = params.duration_noise
        work = job.planned_duration_s * rng.uniform(1 - noise, 1 + noise)
    work *= pace
    pauses = []
    if rng.random() < params.pause_probability:
        p0 = arrival + work * rng.uniform(0.2, 0.8)
        p1 = p0 + rng.uniform(*params.pause_s)
        pauses.append((p0, p1))
        statuses.append(StatusEvent(p0, job.job_id, "paused"))
        statuses.append(StatusEvent(p1, job.job_id, "resumed"))
    done = arrival + work + sum(b - a for a, b in pauses)
    traj.wait_until(done)
    statuses.append(StatusEvent(done, job.job_id, "done"))
    overrun = max(0.0, work - job.planned_duration_s)
    return JobOutcome(job.job_id, leave, arrival, done, done, work, overrun, pauses)


class _Driver:
    """Drives routes edge by edge at the speed traffic allows times the driver's own factor."""

    def __init__(
        self,
        graph: RoadGraph,
        traffic: TrafficModel,
        params: FleetParams,
        factor: float,
        rng: random.Random,
    ) -> None:
        self.graph, self.traffic, self.params = graph, traffic, params
        self.factor, self.rng = factor, rng

    def drive(self, traj: Trajectory, route: Route) -> None:
        for k, eid in enumerate(route.edges):
            edge = self.graph.edges[eid]
            # Speed is fixed at the moment of entering the edge: edges are short.
            speed = self.traffic.speed_mps(edge, traj.end) * self.factor
            traj.move_to(traj.end + edge.length_m / speed, *self.graph.coords[edge.v], eid)
            last = k == len(route.edges) - 1
            if not last and self._signal_stop(edge.v):
                lo, hi = self.params.signal_stop_s
                traj.move_to(traj.end + self.rng.uniform(lo, hi), *traj.position, STATIONARY)

    def _signal_stop(self, node: int) -> bool:
        junction = len(self.graph.out_edges(node)) >= 3
        return junction and self.rng.random() < self.params.signal_stop_probability
