"""The truth of a whole scenario: determinism, physics, arrivals, faults on record."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from simulators.config import MALFORMED_KINDS, FleetParams, Format, PhoneParams, SimConfig
from simulators.geo import haversine_m, point_segment_m
from simulators.phone import Note, PhoneMessage
from simulators.scenario import Registration, Scenario
from simulators.traffic import congestion
from simulators.truth import TruthWriter, read_truth

from .test_fleet import MORNING

PHONE = PhoneParams(
    malformed_share=0.05,
    duplicate_probability=0.05,
    clock_skew_probability=0.5,
    offline_per_hour=1.0,
    dropouts_per_hour=1.0,
    retained_replay_probability=0.05,
)
FLEET = FleetParams(jobs=(3, 4), incidents_per_hour=4.0)


def config(seed: int = 11, fmt: Format = "json") -> SimConfig:
    return SimConfig(
        technicians=4, seed=seed, city_size_km=2.0, format=fmt, phone=PHONE, fleet=FLEET
    )


def lines(cfg: SimConfig) -> list[bytes]:
    return [orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in Scenario(cfg, MORNING).truth()]


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario(config(), MORNING)


@pytest.fixture(scope="module")
def truth(scenario: Scenario) -> list[dict[str, Any]]:
    return list(scenario.truth())


def test_same_seed_same_truth_other_seed_differs() -> None:
    first = lines(config(11))
    assert first == lines(config(11))
    assert first != lines(config(12))
    assert len(first) > 1000


def test_truth_writer_round_trip(truth: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "sub" / "truth.jsonl"
    with TruthWriter(path) as w:
        w.write(truth)
    assert w.count == len(truth)
    assert read_truth(path) == truth


def test_records_are_in_time_order_and_well_formed(truth: list[dict[str, Any]]) -> None:
    kinds = Counter(r["kind"] for r in truth)
    assert truth[0]["kind"] == "meta" and truth[0]["seed"] == 11
    assert set(kinds) == {"meta", "technician", "job", "fix", "status", "fault", "incident"}
    assert kinds["technician"] == 4
    sent = [r["sent_at"] for r in truth if "sent_at" in r]
    assert len(sent) > 1000 and sent == sorted(sent)


def by_device(truth: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    fixes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in truth:
        if r["kind"] == "fix":
            fixes[r["device_id"]].append(r)
    return {d: sorted(fs, key=lambda r: r["t"]) for d, fs in fixes.items()}


def test_no_teleports(scenario: Scenario, truth: list[dict[str, Any]]) -> None:
    top = max(e.speed_mps for e in scenario.graph.edges) * FLEET.driver_factor[1]
    for fixes in by_device(truth).values():
        for a, b in itertools.pairwise(fixes):
            dist = haversine_m(a["lat"], a["lon"], b["lat"], b["lon"])
            assert dist <= top * (b["t"] - a["t"]) * 1.01 + 0.5


def test_fixes_are_on_roads_within_the_speed_limit(
    scenario: Scenario, truth: list[dict[str, Any]]
) -> None:
    g = scenario.graph
    moving = 0
    for r in truth:
        if r["kind"] != "fix" or r["edge"] < 0:
            continue
        e = g.edges[r["edge"]]
        assert point_segment_m(r["lat"], r["lon"], *g.coords[e.u], *g.coords[e.v]) < 0.5
        limit = e.speed_mps * congestion(e.road_class, scenario.traffic.second_of_day(r["t"]))
        assert r["spd"] <= limit * FLEET.driver_factor[1] + 0.01
        moving += 1
    assert moving > 100


def test_arrivals_coincide_with_on_site_statuses(truth: list[dict[str, Any]]) -> None:
    statuses = {(r["job_id"], r["status"]): r for r in truth if r["kind"] == "status"}
    jobs = [r for r in truth if r["kind"] == "job"]
    assert len(jobs) >= 12
    for job in jobs:
        on_site = statuses[(job["job_id"], "on_site")]
        assert on_site["t"] == pytest.approx(job["arrival"], abs=1e-3)
        assert statuses[(job["job_id"], "en_route")]["t"] == pytest.approx(job["leave"], abs=1e-3)
        assert statuses[(job["job_id"], "done")]["t"] == pytest.approx(job["done"], abs=1e-3)
        assert job["geofence_enter"] <= job["arrival"] < job["done"] <= job["departure"]


def test_every_injected_fault_is_on_record(scenario: Scenario, truth: list[dict[str, Any]]) -> None:
    injected: Counter[str] = Counter()
    for em in scenario.emissions():
        item = em.item
        if isinstance(item, PhoneMessage | Note) and item.fault:
            injected[item.fault] += 1
    recorded = Counter(r["fault"] for r in truth if r["kind"] == "fault")
    assert recorded == injected
    assert set(recorded) >= {"duplicate", "gps_dropout", "offline_buffer", "clock_skew",
                             "bad_encoding", "missing_lat", "null_island"}  # fmt: skip
    expects = {r["fault"]: r["expect"] for r in truth if r["kind"] == "fault"}
    assert expects["missing_lat"] == "deadletter" and expects["duplicate"] == "once"
    assert expects["gps_dropout"] == "none" and expects["offline_buffer"] == "once"


def test_good_fixes_are_unique_per_device_and_ts(truth: list[dict[str, Any]]) -> None:
    keys = [(r["device_id"], r["ts"]) for r in truth if r["kind"] == "fix"]
    assert len(keys) == len(set(keys))
    assert all(r["expect"] == "store" for r in truth if r["kind"] == "fix")
    # Re-sends repeat fixes that are on record once.
    stored = set(keys)
    for r in truth:
        if r["kind"] == "fault" and r["fault"] == "duplicate":
            assert all((r["device_id"], ts) in stored for ts in r["ts"])


def test_every_message_is_registered_first(scenario: Scenario) -> None:
    registered: set[str] = set()
    for em in scenario.emissions():
        if isinstance(em.item, Registration):
            registered.add(em.item.ident)
        elif isinstance(em.item, PhoneMessage) and em.item.status is not None:
            assert em.item.status.job_id in registered
            assert em.technician_id in registered


def test_osmand_positions_expect_http_rejection() -> None:
    cfg = config(fmt="osmand").with_(phone=PhoneParams(malformed_share=0.3))
    truth = list(Scenario(cfg, MORNING).truth())
    malformed = [r for r in truth if r["kind"] == "fault" and r["fault"] in MALFORMED_KINDS]
    assert {(r["message"], r["expect"]) for r in malformed} == {
        ("pos", "reject"),  # OsmAnd positions are HTTP requests: refused, not dead-lettered
        ("status", "deadletter"),
    }
