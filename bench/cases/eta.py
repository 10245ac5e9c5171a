"""``eta``: accuracy of the gateway's published ETAs and late-risk alerts on simulated days.

Simulated days (synthetic city, rush hours, incidents, phone faults) are replayed in
virtual time straight into one in-process ``Gateway`` (MemoryStore, a recording MemoryBus,
a clock that returns the replay's virtual time): registrations through ``put_technician``
/ ``put_job``, fixes through ``ingest_fixes``, statuses through ``report_status`` as the
device, and ``tick`` every ``TICK_S`` of virtual time. The first days only warm up the
speed model (it learns online); on the scored days, for every job and horizon H (30 and
10 min), the ETA the gateway last published before T - H (T = true arrival, from the
simulator's truth) is compared with T.

Baselines, at the same instants on the same jobs, run the same cascade
(``eta.estimate.estimate_tour``) on the gateway's own view of the tour and the
technician's last fix, with another travel model: constant speed (straight line x 1.35 at
8.3 m/s: ``SpeedModel`` with nothing learned) and free flow (shortest path on the road
graph at the speed limits, an "OSRM-like" router). ``gateway_fresh`` is the learned model
in that same harness -- the gateway's estimate at exactly T - H rather than its last
published one, with the engine's own cascade rules and learned job durations. Errors are
split into travel and on-site parts (``bench.eta_scoring``).

``oracle_onsite`` is no model: the gateway's travel model and cascade told every job's
true on-site time (work plus the pause time still to come), as a bound on what better
duration estimates could give; the rest of its error is travel, statuses and fixes the
gateway has not heard yet. ``free_flow_oracle_onsite`` is the free-flow router told the
same: the two travel models compared with on-site time taken out of the question.

Two more rows show what learned on-site times would change
(``EstimateConfig`` ``learned_durations`` and ``learned_remaining``: median worked/planned
ratio for jobs not started, conditional median rest for a job under way), which the
gateway does not use by default: ``learned_onsite`` with the gateway's travel model,
``free_flow_learned_onsite`` with the free-flow router. The baselines themselves always
plan on-site time by the plan.

The same technicians work every day (stable ids and phones, new jobs each day), as in a
real fleet. Everything is run twice: on the fleet as before, where how long a job takes
is the job's alone (plan x noise, or an overrun), and under ``with_technician_pace`` on
the same days with technicians who also differ in pace on site (``PACED``), which the
gateway learns per technician (``eta.pace``; the rows with learned on-site models use it
too, the baselines plan by the plan).

A prediction is scored when the gateway had published an ETA for the job before T - H
(the first job of a day is often reached within 30 minutes of the first fix); the
others are counted in ``skipped_predictions``. The same jobs and instants are scored for
every model. Late risk: a job is truly late if it arrived after its window end, flagged if
a ``late_risk`` alert was raised for it before it arrived.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from math import log
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from bench.eta_scoring import (
    LateRiskAlert,
    PredictedStop,
    TrueJob,
    error_stats,
    goal_status,
    improvement,
    interval_stats,
    late_risk_curve,
    late_risk_scores,
    split_error,
    split_stats,
)
from eta.durations import DurationModel
from eta.estimate import ON_SITE_STATES, EstimateConfig, estimate_tour, service_day
from eta.geo import haversine_m
from eta.speeds import RouteLeg, RoutingPrior, SpeedModel
from gateway.bus import MemoryBus
from gateway.errors import Rejected
from gateway.metrics import Metrics
from gateway.model import Event, Fix, Job, StatusUpdate, Technician
from gateway.routing import RoutingConfig, leg_key
from gateway.service import Gateway
from gateway.store import MemoryStore
from gateway.tours import tour_stop
from simulators.config import MALFORMED_KINDS, FleetParams, SimConfig
from simulators.fleet import Router, drive_day, plan_fleet, work_pace
from simulators.phone import PhoneMessage
from simulators.roads import RoadGraph, synthetic_city
from simulators.scenario import Registration, Scenario, estimated_day_s
from simulators.traffic import TrafficModel, generate_incidents
from simulators.truth import day_job_records

# 07:00 Helsinki (EET, no DST change within the run) on Monday 2024-03-04.
FIRST_DAY = datetime(2024, 3, 4, 5, 0, tzinfo=UTC).timestamp()
DAY_S = 86_400.0
NETWORK_SEED = 2024
DAY_SEED = 100  # day k plays seed DAY_SEED + k
CITY_KM = 16.0
BLOCK_M = 250.0
HORIZONS_S = (1800.0, 600.0)
# Every 5 minutes from T-5 to T-60: the error pooled over horizons, which no single
# horizon's selection of moments favours (see "horizon_sweep" in run()).
SWEEP_S = tuple(60.0 * m for m in range(5, 65, 5))
TICK_S = 30.0
GOAL = 0.3  # issue 5: ETA MAE at least 30 % below the free-flow baseline
ACCESS_MPS = 30.0 / 3.6  # free flow from a point to its snapped road node
# Learned on-site models a row's cascade uses: job durations and pause lengths.
Learned = tuple[DurationModel | None, DurationModel | None]
NOTHING: Learned = (None, None)
MODELS = (
    "gateway",
    "gateway_fresh",
    "constant",
    "free_flow",
    "learned_onsite",
    "free_flow_learned_onsite",
    "oracle_onsite",
    "free_flow_oracle_onsite",
)
LEARNED_ONSITE = EstimateConfig(learned_durations=True, learned_remaining=True)
# Told each job's true on-site time: no floor is needed under a duration that is known.
ORACLE_ONSITE = EstimateConfig(min_remaining_s=0.0, min_remaining_frac=0.0)


# The simulator's fleet, with 90-minute appointment windows: its 2-hour default leaves ~1.5 %
# of jobs late, too few to score late-risk alerts; 90 minutes gives ~6-9 %.
FLEET = FleetParams(window_s=5400.0)
# The same fleet whose technicians also differ in pace on site, each one the same every day
# (simulators.fleet.work_pace): a slowest one taking a fifth longer than booked, a quickest
# 15 % less. The planner books for the average technician, as before.
PACED = replace(FLEET, work_pace=(0.85, 1.2))


@dataclass(frozen=True)
class Plan:
    """What one run simulates."""

    technicians: int
    warmup_days: int
    scored_days: int
    fleet: FleetParams = field(default_factory=lambda: FLEET)


QUICK = Plan(technicians=15, warmup_days=3, scored_days=2)
FULL = Plan(technicians=20, warmup_days=7, scored_days=5)


class Day(Scenario):
    """A ``Scenario`` on a given road graph.

    ``Scenario`` builds its synthetic city from the run's seed; a fleet learning over
    several days needs the same city every day with a new seed for the day's plans,
    traffic incidents and phones. Everything else is the simulator's own code.
    """

    def __init__(
        self, cfg: SimConfig, start: float, graph: RoadGraph, job_prefix: str = ""
    ) -> None:
        self.cfg, self.start, self.graph = cfg, start, graph
        horizon = 2 * estimated_day_s(cfg.fleet)
        incidents = generate_incidents(
            graph,
            random.Random(f"{cfg.seed}:incidents"),
            start,
            start + horizon,
            cfg.fleet.incidents_per_hour,
        )
        self.traffic = TrafficModel(graph, ZoneInfo(cfg.timezone), incidents)
        router = Router(graph, self.traffic)
        self.plans = plan_fleet(
            graph, router, cfg.fleet, cfg.technicians, start, cfg.seed,
            id_prefix=cfg.id_prefix, job_prefix=job_prefix, depot_seed=NETWORK_SEED,
        )  # fmt: skip
        self.traces = [
            drive_day(p, graph, self.traffic, router, cfg.fleet, cfg.seed) for p in self.plans
        ]
        self.end = max(tr.trajectory.end for tr in self.traces)


class NodeSnap:
    """Points to their nearest road node and the metres to it, cached."""

    def __init__(self, graph: RoadGraph) -> None:
        self.graph = graph
        self._nodes: dict[tuple[float, float], tuple[int, float]] = {}

    def __call__(self, lat: float, lon: float) -> tuple[int, float]:
        found = self._nodes.get((lat, lon))
        if found is None:
            node = self.graph.nearest_node(lat, lon)
            found = (node, haversine_m(lat, lon, *self.graph.coords[node]))
            if len(self._nodes) > 50_000:
                self._nodes.clear()  # moving positions are one-off keys
            self._nodes[(lat, lon)] = found
        return found


class FreeFlowModel(SpeedModel):
    """The OSRM-like baseline: shortest path at the speed limits, nothing learned.

    Points snap to their nearest road node; the way to it counts at ``ACCESS_MPS``.
    Only ``travel_mean_sd`` is used by ``estimate_tour``; its spread is zero.
    """

    def __init__(self, graph: RoadGraph) -> None:
        super().__init__()
        self.graph = graph
        self._snap = NodeSnap(graph)
        self._paths: dict[tuple[int, int], tuple[float, float]] = {}

    def _path(self, a: int, b: int) -> tuple[float, float]:
        found = self._paths.get((a, b))
        if found is None:
            route = self.graph.shortest_path(a, b)
            length = sum(self.graph.edges[e].length_m for e in route.edges)
            found = self._paths[(a, b)] = (length, route.cost)
        return found

    def travel_mean_sd(
        self,
        lat1: float,
        lon1: float,
        lat2: float,
        lon2: float,
        at_ts: float,
        calibrated: bool = True,
    ) -> tuple[float, float, float]:
        # Free flow is the baseline as it is: nothing learned, nothing to calibrate.
        a, access_a = self._snap(lat1, lon1)
        b, access_b = self._snap(lat2, lon2)
        length, seconds = self._path(a, b)
        access = access_a + access_b
        return seconds + access / ACCESS_MPS, 0.0, length + access


class GraphRouting:
    """A routing engine for the ``with_routing_prior`` run: the city's own roads at free flow,
    as ``gateway.routing.OsrmRouting`` answers once its cache holds the leg (an OSRM built
    from these roads; the replay has no wall time to lend an HTTP fetcher). Ends are
    snapped to the same grid as the adapter's keys, then to the nearest road node; the way
    to the node counts at ``ACCESS_MPS``, as in ``FreeFlowModel``. One reverse Dijkstra per
    destination node answers every origin."""

    def __init__(self, graph: RoadGraph) -> None:
        self.graph = graph
        self._into: list[list[int]] = [[] for _ in range(graph.node_count)]
        for e in graph.edges:
            self._into[e.v].append(e.edge_id)
        self._snap = NodeSnap(graph)
        self._grid = RoutingConfig()
        self._trees: dict[int, dict[int, tuple[float, float]]] = {}

    def route(self, lat1: float, lon1: float, lat2: float, lon2: float) -> RouteLeg | None:
        lat1, lon1, lat2, lon2 = leg_key(self._grid, lat1, lon1, lat2, lon2)
        a, access_a = self._snap(lat1, lon1)
        b, access_b = self._snap(lat2, lon2)
        found = self._tree(b).get(a)
        if found is None:
            return None
        seconds, length = found
        access = access_a + access_b
        return RouteLeg(length + access, seconds + access / ACCESS_MPS)

    def _tree(self, dst: int) -> dict[int, tuple[float, float]]:
        """(free-flow seconds, metres) from every node that reaches ``dst``."""
        tree = self._trees.get(dst)
        if tree is not None:
            return tree
        tree = {dst: (0.0, 0.0)}
        heap = [(0.0, 0.0, dst)]
        while heap:
            cost, length, node = heapq.heappop(heap)
            if cost > tree[node][0]:
                continue
            for eid in self._into[node]:
                e = self.graph.edges[eid]
                c = cost + e.free_flow_s
                if e.u not in tree or c < tree[e.u][0]:
                    tree[e.u] = (c, length + e.length_m)
                    heapq.heappush(heap, (c, length + e.length_m, e.u))
        self._trees[dst] = tree
        return tree


class RecordingBus(MemoryBus):
    """The in-process bus, also keeping what the benchmark scores, stamped in virtual time."""

    def __init__(self, replay: Replay) -> None:
        super().__init__(replay=1)
        self.replay = replay
        # job -> (published at, eta, eta_p10, eta_p90) of the last ``eta`` event
        self.latest_eta: dict[str, tuple[float, float, float, float]] = {}
        self.late_risk: list[LateRiskAlert] = []
        # job -> (published at, late_probability) of each of its ``eta`` events
        self.late_probabilities: dict[str, list[tuple[float, float]]] = {}

    def publish_now(self, events: Sequence[Event]) -> None:
        at = self.replay.now
        for e in events:
            if e["type"] == "eta" and e["eta"] is not None:  # None: the job was closed
                self.latest_eta[e["job_id"]] = (
                    at, float(e["eta"]), float(e["eta_p10"]), float(e["eta_p90"])
                )  # fmt: skip
                probabilities = self.late_probabilities.setdefault(e["job_id"], [])
                probabilities.append((at, float(e["late_probability"])))
            elif e["type"] == "alert" and e["alert"] == "late_risk":
                self.late_risk.append(LateRiskAlert(at, e["job_id"], bool(e.get("cleared"))))
        super().publish_now(events)


@dataclass
class Scores:
    """Errors per (horizon, model), their travel/on-site split, and skipped predictions."""

    errors: dict[tuple[float, str], list[float]] = field(default_factory=dict)
    parts: dict[tuple[float, str], list[tuple[float, float]]] = field(default_factory=dict)
    next_stop: dict[tuple[float, bool], list[float]] = field(default_factory=dict)
    # published errors by whether the technician had sent a fix that day when predicted
    day_started: dict[tuple[float, bool], list[float]] = field(default_factory=dict)
    # (p10, p90, true arrival) of the published ETAs
    intervals: dict[float, list[tuple[float, float, float]]] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, horizon: float, model: str, error: float) -> None:
        self.errors.setdefault((horizon, model), []).append(error)

    def report(self, horizon: float) -> dict[str, Any]:
        stats = {m: error_stats(self.errors.get((horizon, m), [])) for m in MODELS}
        ff, gw = stats["free_flow"]["mae_s"], stats["gateway"]["mae_s"]
        return {
            **stats,
            "improvement_vs_free_flow": improvement(gw, ff),
            "improvement_vs_free_flow_fresh": improvement(stats["gateway_fresh"]["mae_s"], ff),
            "improvement_vs_constant": improvement(gw, stats["constant"]["mae_s"]),
            "improvement_vs_free_flow_learned_onsite": improvement(
                stats["learned_onsite"]["mae_s"], ff
            ),
            "improvement_vs_free_flow_oracle_onsite": improvement(
                stats["oracle_onsite"]["mae_s"], ff
            ),
            # Both told the true on-site times: the travel models alone, side by side.
            "oracle_onsite_vs_free_flow_oracle_onsite": improvement(
                stats["oracle_onsite"]["mae_s"], stats["free_flow_oracle_onsite"]["mae_s"]
            ),
            "error_split": {m: split_stats(self.parts.get((horizon, m), [])) for m in MODELS[1:]},
            "published_p10_p90": interval_stats(self.intervals.get(horizon, [])),
            "gateway_by_situation": {
                "heading_there": error_stats(self.next_stop.get((horizon, True), [])),
                "stops_before": error_stats(self.next_stop.get((horizon, False), [])),
                # Before the technician's first fix of the day: when will they set off?
                "before_first_fix_of_day": error_stats(self.day_started.get((horizon, False), [])),
                "after_first_fix_of_day": error_stats(self.day_started.get((horizon, True), [])),
            },
        }

    def pooled(self, horizons: Sequence[float]) -> dict[str, Any]:
        """Every model's error over all of ``horizons`` at once, and per horizon its MAE.

        Scoring at "H before the true arrival" picks its moments by the outcome: 10 min
        before an arrival, a technician still on the previous site is one whose job is
        about to end. Pooled over horizons, each job weighs by the time it was predicted.
        """
        errors = {m: [e for h in horizons for e in self.errors.get((h, m), [])] for m in MODELS}
        stats = {m: error_stats(e) for m, e in errors.items()}
        ff = stats["free_flow"]["mae_s"]
        return {
            "horizons_min": [h / 60 for h in horizons],
            **stats,
            "published_p10_p90": interval_stats(
                [x for h in horizons for x in self.intervals.get(h, [])]
            ),
            "improvement_vs_free_flow": {m: improvement(stats[m]["mae_s"], ff) for m in MODELS},
            "mae_s_by_horizon": {
                m: [error_stats(self.errors.get((h, m), []))["mae_s"] for h in horizons]
                for m in MODELS
            },
        }


def _paces(replay: Replay, fleet: FleetParams) -> dict[str, Any]:
    """Each technician's learned factor next to their true pace over the fleet's mean."""
    paces = replay.gateway.engine.paces
    techs = sorted(replay.gateway.engine.techs)
    true = {t: work_pace(t, fleet) for t in techs}
    mean = sum(true.values()) / max(1, len(true))
    pairs = {t: (round(true[t] / mean, 3), round(paces.factor(t), 3)) for t in techs}
    errors = [abs(log(learned / truth)) for truth, learned in pairs.values()]
    return {
        "technicians": paces.technicians,
        "mean_abs_log_error": round(sum(errors) / max(1, len(errors)), 4),
        "true_over_mean_vs_learned": pairs,
    }


class Replay:
    """One gateway fed day after day in virtual time; scores the days it is told to."""

    def __init__(
        self, graph: RoadGraph, tick_s: float = TICK_S, routing: RoutingPrior | None = None
    ) -> None:
        self.now = 0.0
        self.bus = RecordingBus(self)
        self.gateway = Gateway(
            MemoryStore(history_per_device=2_000), self.bus, Metrics(), clock=lambda: self.now
        )
        engine = self.gateway.engine
        engine.model.routing = routing
        free_flow = FreeFlowModel(graph)
        plain = EstimateConfig()
        learned = (engine.durations, engine.pauses)
        # name -> (travel model, cascade rules, learned durations and pauses, or None)
        self.models: dict[str, tuple[SpeedModel, EstimateConfig, Learned]] = {
            "gateway_fresh": (engine.model, engine.config.estimate, learned),
            "constant": (SpeedModel(), plain, NOTHING),
            "free_flow": (free_flow, plain, NOTHING),
            "learned_onsite": (engine.model, LEARNED_ONSITE, learned),
            "free_flow_learned_onsite": (free_flow, LEARNED_ONSITE, learned),
            "oracle_onsite": (engine.model, ORACLE_ONSITE, NOTHING),
            "free_flow_oracle_onsite": (free_flow, ORACLE_ONSITE, NOTHING),
        }
        self.tick_s = tick_s
        self.next_tick = 0.0
        self.truth: dict[str, TrueJob] = {}
        self.scored_jobs: list[TrueJob] = []
        self.scores = Scores()
        self.counts: Counter[str] = Counter()
        self._due: list[tuple[float, int, str, float]] = []
        self._order = itertools.count()

    async def day(self, scenario: Scenario, scored: bool) -> None:
        """Replay one simulated day; with ``scored``, score every job at every horizon."""
        jobs = [
            TrueJob.from_record(rec) for tr in scenario.traces for _, rec in day_job_records(tr)
        ]
        self.truth.update((j.job_id, j) for j in jobs)
        if scored:
            self.scored_jobs += jobs
            for j in jobs:
                for h in sorted(set(HORIZONS_S) | set(SWEEP_S)):
                    heapq.heappush(self._due, (j.arrival - h, next(self._order), j.job_id, h))
        self.next_tick = scenario.start
        for em in scenario.emissions():
            await self._advance(em.t)
            self.now = em.t
            item = em.item
            if isinstance(item, Registration):
                await self._register(item)
            elif isinstance(item, PhoneMessage) and item.fault not in MALFORMED_KINDS:
                # A malformed message is an extra corrupted copy the codec would dead-letter.
                await self._send(item)
        await self._advance(scenario.end + self.tick_s)

    async def _advance(self, t: float) -> None:
        """Ticks and scoring instants before ``t``, in time order."""
        while True:
            due = self._due[0][0] if self._due else t
            at = min(self.next_tick, due)
            if at >= t:
                return
            self.now = at
            if due <= self.next_tick:
                _, _, job_id, horizon = heapq.heappop(self._due)
                self._score(self.truth[job_id], horizon, at)
            else:
                await self.gateway.tick()
                self.next_tick += self.tick_s
                self.counts["ticks"] += 1

    async def _register(self, reg: Registration) -> None:
        if reg.kind == "technician":
            body = {"technician_id": reg.ident, **reg.body}
            await self.gateway.put_technician(msgspec.convert(body, Technician))
        else:
            await self.gateway.put_job(msgspec.convert({"job_id": reg.ident, **reg.body}, Job))

    async def _send(self, msg: PhoneMessage) -> None:
        if msg.status is not None:
            s = msg.status
            try:
                update = StatusUpdate(msg.device_id, s.ts, s.job_id, s.status)
                await self.gateway.report_status(update, source="device")
                self.counts["statuses"] += 1
            except Rejected as exc:
                self.counts[f"status_rejected_{exc.code}"] += 1
            return
        fixes = [
            Fix(msg.device_id, f.ts, f.rlat, f.rlon, f.spd, f.hdg, f.acc, f.alt, f.bat, f.seq)
            for f in msg.fixes
        ]
        await self.gateway.ingest_fixes(fixes)
        self.counts["fixes"] += len(fixes)

    def _score(self, job: TrueJob, horizon: float, at: float) -> None:
        """Every model's prediction of ``job``'s arrival standing at true time ``at``."""
        published = self.bus.latest_eta.get(job.job_id)
        tech = self.gateway.engine.techs.get(job.technician_id)
        fix = tech.last_fix if tech is not None else None
        if published is None or tech is None or fix is None or tech.last_received is None:
            if horizon in HORIZONS_S:  # as before the sweep: the two named horizons
                self.scores.skipped["no_published_eta" if published is None else "no_fix"] += 1
            return
        now = fix.ts + (at - tech.last_received)  # the engine's device-time "now"
        stops = [tour_stop(j) for j in self.gateway.engine.tours.tour(job.technician_id)]
        on_site = {s.job_id for s in stops if s.state in ON_SITE_STATES}
        told = [
            replace(s, planned_duration_s=self.truth[s.job_id].onsite_to_come(at))
            if s.job_id in self.truth
            else s
            for s in stops
        ]
        cascades = {}
        engine = self.gateway.engine
        pace = engine.paces.factor(job.technician_id)
        days = [tour_stop(j, d) for j, d in engine.tours.tour_days(job.technician_id)]
        today = service_day(now, engine.tours.tz)
        set_off = engine.set_off_ahead(job.technician_id, now, today, days)
        for name, (model, cfg, (durations, pauses)) in self.models.items():
            tour = told if name.endswith("oracle_onsite") else stops
            # Rows with learned on-site models also know each technician's learned pace
            # and usual start of day.
            learned = durations is not None
            etas = estimate_tour(
                now, (fix.lat, fix.lon), tour, model, cfg, durations, pauses,
                pace=pace if learned else 1.0, set_off=set_off if learned else None,
            )  # fmt: skip
            cascades[name] = [
                PredictedStop(e.job_id, e.eta, e.departure, e.job_id in on_site) for e in etas
            ]
        if not any(p.job_id == job.job_id for p in cascades["free_flow"]):
            if horizon in HORIZONS_S:
                self.scores.skipped["not_in_tour"] += 1
            return
        s = self.scores
        s.add(horizon, "gateway", published[1] - job.arrival)
        s.intervals.setdefault(horizon, []).append((published[2], published[3], job.arrival))
        for name, cascade in cascades.items():
            travel, onsite = split_error(cascade, job.job_id, now, at, self.truth)
            s.add(horizon, name, travel + onsite)
            s.parts.setdefault((horizon, name), []).append((travel, onsite))
        heading = (
            next((p.job_id for p in cascades["free_flow"] if not p.on_site), None) == job.job_id
        )
        s.next_stop.setdefault((horizon, heading), []).append(published[1] - job.arrival)
        started = service_day(fix.ts, UTC) == service_day(now, UTC)
        s.day_started.setdefault((horizon, started), []).append(published[1] - job.arrival)


async def _replay(
    plan: Plan, fleet: FleetParams, routed: bool = False
) -> tuple[Replay, RoadGraph, dict[str, float]]:
    graph = synthetic_city(NETWORK_SEED, CITY_KM, block_m=BLOCK_M)
    replay = Replay(graph, routing=GraphRouting(graph) if routed else None)
    timings = {"simulate_s": 0.0, "replay_s": 0.0}
    for k in range(plan.warmup_days + plan.scored_days):
        t0 = time.perf_counter()
        cfg = SimConfig(
            technicians=plan.technicians,
            seed=DAY_SEED + k,
            network="synthetic",
            api_url=None,
            fleet=fleet,
            progress=False,
        )
        # The same technicians every day (their ids, phones, depots and pace on site);
        # each day's jobs are new (job ids would repeat across seeds).
        scenario = Day(cfg, FIRST_DAY + k * DAY_S, graph, job_prefix=f"d{k:02d}-")
        t1 = time.perf_counter()
        await replay.day(scenario, scored=k >= plan.warmup_days)
        timings["simulate_s"] += t1 - t0
        timings["replay_s"] += time.perf_counter() - t1
    return replay, graph, timings


def _setup(plan: Plan, fleet: FleetParams, graph: RoadGraph) -> dict[str, Any]:
    days = plan.warmup_days + plan.scored_days
    return {
        "network": f"synthetic_city(seed={NETWORK_SEED}, size_km={CITY_KM}, block_m={BLOCK_M})",
        "nodes": graph.node_count,
        "technicians_per_day": plan.technicians,
        "warmup_days": plan.warmup_days,
        "scored_days": plan.scored_days,
        "warmup_seeds": [DAY_SEED + k for k in range(plan.warmup_days)],
        "scored_seeds": [DAY_SEED + k for k in range(plan.warmup_days, days)],
        "first_day_utc": datetime.fromtimestamp(FIRST_DAY, UTC).isoformat(),
        "window_s": fleet.window_s,
        "incidents_per_hour": fleet.incidents_per_hour,
        "work_pace": list(fleet.work_pace),
        "same_technicians_every_day": True,
        "tick_s": TICK_S,
    }


def run(quick: bool) -> dict[str, Any]:
    """The fleet as before (only the job decides how long it takes); under
    ``with_technician_pace`` the same days with technicians who differ in pace; under
    ``with_routing_prior`` the first fleet again, the gateway's travel-time model starting
    from a routing engine's free-flow routes (``--routing-url``)."""
    plan = QUICK if quick else FULL
    return {
        **_run_fleet(plan, plan.fleet),
        "with_technician_pace": _run_fleet(plan, PACED),
        "with_routing_prior": _run_fleet(plan, plan.fleet, routed=True),
    }


def _run_fleet(plan: Plan, fleet: FleetParams, routed: bool = False) -> dict[str, Any]:
    replay, graph, timings = asyncio.run(_replay(plan, fleet, routed))
    scored = replay.scored_jobs
    horizons = {f"T-{h / 60:g}min": replay.scores.report(h) for h in HORIZONS_S}
    sweep = replay.scores.pooled(SWEEP_S)
    model = replay.gateway.engine.model
    sectors = max(1, model.config.detour_sectors)
    pauses, reference = (
        replay.gateway.engine.pauses,
        replay.gateway.engine.config.estimate.pause_ref_s,
    )
    return {
        "setup": {**_setup(plan, fleet, graph), "routing_prior": routed},
        "jobs_on_scored_days": len(scored),
        "late_jobs": sum(j.late for j in scored),
        "simulated_days": plan.warmup_days + plan.scored_days,
        **horizons,
        "goal_vs_free_flow": {
            name: goal_status(r["gateway"]["mae_s"], r["free_flow"]["mae_s"], GOAL)
            for name, r in horizons.items()
        },
        "horizon_sweep": sweep,
        "late_risk": late_risk_scores(scored, replay.bus.late_risk),
        "late_risk_by_threshold": late_risk_curve(
            scored, replay.bus.late_probabilities, (0.3, 0.5, 0.7, 0.8, 0.9)
        ),
        "skipped_predictions": dict(replay.scores.skipped),
        "learned": {
            "cells": model.cell_count,
            "detour": round(model.detour()[0], 3),
            "stop_factor": round(model.stop_factor()[0], 3),
            "detour_by_direction": {
                f"{b:g}deg": round(model.detour(b)[0], 3)
                for b in (k * 180 / sectors for k in range(sectors))
            },
            "calibration_by_distance": {
                f"{d}m": round(model.calibration(d), 3) for d in (500, 1000, 2000, 4000, 8000)
            },
            "job_durations": {
                "jobs": replay.gateway.engine.durations.jobs,
                "median_ratio": round(replay.gateway.engine.durations.median_ratio(), 3),
                "mean_ratio": round(replay.gateway.engine.durations.ratio()[0], 3),
            },
            "eta_band_scales": {
                "low": round(replay.gateway.engine.bands.scales[0], 3),
                "high": round(replay.gateway.engine.bands.scales[1], 3),
                "arrivals": replay.gateway.engine.bands.arrivals,
            },
            "technician_pace": _paces(replay, fleet),
            "day_starts": {
                "technicians": replay.gateway.engine.starts.technicians,
                "days": replay.gateway.engine.starts.days,
            },
            "pause_lengths": {
                "pauses": pauses.jobs,
                "median_s": round(pauses.median_ratio() * reference, 1),
                "mean_s": round(pauses.ratio()[0] * reference, 1),
            },
        },
        "counts": dict(replay.counts),
        "timing_s": {k: round(v, 2) for k, v in timings.items()},
    }
