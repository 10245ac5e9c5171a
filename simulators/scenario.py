"""A whole simulated run as one time-ordered stream of emissions, with no I/O.

Builds the network, traffic, plans and day traces from a :class:`SimConfig` and a virtual
start time, then merges every technician's registrations, phone messages and truth
records into one stream ordered by virtual time. The same config and start always give
the same stream; the runner only paces it and puts it on the wire.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from simulators import formats
from simulators.config import FleetParams, SimConfig
from simulators.fleet import DayTrace, Router, drive_day, plan_fleet
from simulators.phone import Item, Note, Phone, PhoneMessage
from simulators.roads import RoadGraph, load_packaged, synthetic_city
from simulators.traffic import TrafficModel, generate_incidents
from simulators.truth import (
    Record,
    day_job_records,
    incident_record,
    message_records,
    meta_record,
    note_record,
    technician_record,
)


@dataclass(frozen=True, slots=True)
class Registration:
    """An HTTP registration: ``PUT /api/v1/{kind}s/{ident}`` with `body`."""

    kind: Literal["technician", "job"]
    ident: str
    body: dict[str, Any]

    @property
    def path(self) -> str:
        return f"/api/v1/{self.kind}s/{self.ident}"


@dataclass(frozen=True, slots=True)
class TruthOnly:
    """Truth records that become known at a moment but are not sent anywhere."""

    records: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class Emission:
    t: float
    technician_id: str
    item: Item | Registration | TruthOnly


def load_network(cfg: SimConfig) -> RoadGraph:
    if cfg.network == "synthetic":
        return synthetic_city(cfg.seed, cfg.city_size_km)
    return load_packaged(cfg.network)


def estimated_day_s(fleet: FleetParams) -> float:
    """A generous guess of how long the planned day lasts, before planning it."""
    job = sum(fleet.job_duration_s) / 2 * 1.2 + 900.0
    return fleet.shift_spread_s + fleet.jobs[1] * job


class Scenario:
    """The planned and lived day of a whole fleet, from one seed and a start time."""

    def __init__(self, cfg: SimConfig, start: float) -> None:
        self.cfg = cfg
        self.start = start
        self.graph = load_network(cfg)
        horizon = cfg.duration_s or 2 * estimated_day_s(cfg.fleet)
        incidents = generate_incidents(
            self.graph,
            random.Random(f"{cfg.seed}:incidents"),
            start,
            start + horizon,
            cfg.fleet.incidents_per_hour,
        )
        self.traffic = TrafficModel(self.graph, ZoneInfo(cfg.timezone), incidents)
        router = Router(self.graph, self.traffic)
        self.plans = plan_fleet(
            self.graph,
            router,
            cfg.fleet,
            cfg.technicians,
            start,
            cfg.seed,
            id_prefix=cfg.id_prefix,
            owntracks_ids=cfg.format == "owntracks",
        )
        self.traces = [
            drive_day(p, self.graph, self.traffic, router, cfg.fleet, cfg.seed) for p in self.plans
        ]
        self.end = max(tr.trajectory.end for tr in self.traces)

    def emissions(self) -> Iterator[Emission]:
        """Everything that happens until the last technician parks (or `duration_s`), in
        virtual-time order (stable for equal times).

        A phone still offline when its technician parks flushes its buffer when the
        spell ends, which may be after `end`: without `duration_s` that flush is kept
        (only incidents stop at `end`), so truth and traffic stay complete.
        """
        incidents = (em for em in self._incidents() if em.t <= self.end)
        streams = [incidents] + [self._technician(tr) for tr in self.traces]
        stop = math.inf
        if self.cfg.duration_s is not None:
            stop = min(self.end, self.start + self.cfg.duration_s)
        for em in heapq.merge(*streams, key=lambda e: e.t):
            if em.t > stop:
                return
            yield em

    def _incidents(self) -> Iterator[Emission]:
        for inc in self.traffic.incidents:
            yield Emission(inc.start, "", TruthOnly((incident_record(inc),)))

    def _technician(self, trace: DayTrace) -> Iterator[Emission]:
        plan = trace.plan
        tid = plan.technician_id
        regs: list[Emission] = [
            Emission(self.start, tid, Registration("technician", tid, plan.registration())),
            Emission(
                self.start,
                tid,
                TruthOnly((technician_record(plan, self.graph.coords[plan.depot_node]),)),
            ),
        ]
        ahead = self.cfg.fleet.register_ahead_s
        for job, out in zip(plan.jobs, trace.outcomes, strict=True):
            at = self.start
            if ahead is not None:
                # Booked ahead of its window, and always before the technician sets off.
                at = max(self.start, min(job.window_start - ahead, out.leave - 5.0))
            regs.append(Emission(at, tid, Registration("job", job.job_id, job.registration())))
        regs.sort(key=lambda e: e.t)
        jobs = (Emission(t, tid, TruthOnly((rec,))) for t, rec in day_job_records(trace))
        phone = Phone(
            plan.device_id,
            self.cfg.phone,
            formats.caps_for(self.cfg.format),
            self.cfg.seed,
            plan.index,
            frozenset(e.edge_id for e in self.graph.edges if e.tunnel),
        )
        items = (Emission(item.t, tid, item) for item in phone.run(trace))
        yield from heapq.merge(regs, items, jobs, key=lambda e: e.t)

    def truth(self) -> Iterator[Record]:
        """The truth file of a complete run, without running it (``end`` record aside)."""
        yield meta_record(self.cfg, self.start, self.graph.name)
        for em in self.emissions():
            yield from emission_records(em, self.cfg)


def emission_records(em: Emission, cfg: SimConfig) -> list[Record]:
    """The truth records an emission adds when it happens."""
    item = em.item
    if isinstance(item, TruthOnly):
        return list(item.records)
    if isinstance(item, Note):
        return [note_record(item)]
    if isinstance(item, PhoneMessage):
        http = formats.transport_of(item, cfg.format) == "http"
        return message_records(item, em.technician_id, http)
    return []
