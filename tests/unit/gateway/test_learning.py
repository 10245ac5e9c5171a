"""What the engine learned survives a restart: file snapshot (memory mode) or a blob (Redis),
speeds and job durations together; older and damaged snapshots load as far as they can."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eta.speeds import SpeedModel
from gateway.bus import MemoryBus
from gateway.engine import Engine, EngineConfig
from gateway.leader import fresh_engine
from gateway.learning import ModelKeeper, restore_into, snapshot
from gateway.metrics import Metrics
from gateway.service import Gateway
from gateway.store import MemoryStore

MIDNIGHT = 1_799_971_200.0  # 2027-01-15 00:00 UTC


def taught_engine() -> Engine:
    engine = Engine()
    lat, lon, ts = 60.17, 24.94, 1_800_000_000.0
    for _ in range(60):  # a steady 12 m/s drive north
        engine.model.observe(lat, lon, ts, lat + 0.0005, lon, ts + 4.6)
        lat, ts = lat + 0.0005, ts + 4.6
    engine.model.observe_trip(3000.0, 3600.0, 400.0, 380.0, 350.0, bearing=5.0)
    for i in range(30):  # one job in three runs half as long again
        engine.durations.observe_job(1800.0, (1.5 if i % 3 == 0 else 1.0) * 1800.0)
    for _ in range(10):  # pauses of 15 minutes
        engine.pauses.observe_job(600.0, 900.0)
    for _ in range(20):  # ETA bands that always held the arrival: too wide
        engine.bands.observe(100.0, [(50.0, 150.0)])
    for i in range(20):  # t1 takes a fifth longer than the others
        engine.paces.observe("t1" if i % 2 else "t2", 1800.0, (1.2 if i % 2 else 1.0) * 1800.0)
    for day in range(6):  # t1 sets off at 07:30 UTC every morning
        engine.starts.set_off("t1", MIDNIGHT + day * 86400 + 27000)
    return engine


class Blobs:
    """The BlobStore protocol in memory (RedisStore in production)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def put_blob(self, name: str, data: bytes) -> None:
        self.blobs[name] = data

    async def get_blob(self, name: str) -> bytes | None:
        return self.blobs.get(name)


def same_learning(a: Engine, b: Engine) -> bool:
    return (
        a.model.snapshot() == b.model.snapshot()
        and a.durations.snapshot() == b.durations.snapshot()
        and a.pauses.snapshot() == b.pauses.snapshot()
        and a.bands.snapshot() == b.bands.snapshot()
        and a.paces.snapshot() == b.paces.snapshot()
        and a.starts.snapshot() == b.starts.snapshot()
    )


async def loaded(tmp_path: Path, data: dict[str, Any]) -> Engine:
    """A fresh engine that loaded ``data`` from a snapshot file."""
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data))
    engine = Engine()
    assert await ModelKeeper(path=str(path)).load_into(engine) is True
    return engine


async def test_snapshot_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    keeper = ModelKeeper(path=str(path))
    taught = taught_engine()
    await keeper.save(taught)
    fresh = Engine()
    assert not same_learning(fresh, taught)
    assert await keeper.load_into(fresh) is True
    assert same_learning(fresh, taught)
    leg = (60.17, 24.94, 60.19, 24.94, 1_800_000_000.0)
    assert fresh.model.travel_time(*leg) == taught.model.travel_time(*leg)
    assert fresh.durations.remaining(1800.0, 1900.0) == taught.durations.remaining(1800.0, 1900.0)
    assert fresh.paces.factor("t1") == taught.paces.factor("t1") > 1.05


async def test_blob_round_trip() -> None:
    blobs = Blobs()
    taught = taught_engine()
    await ModelKeeper(blobs=blobs).save(taught)
    assert set(blobs.blobs) == {"eta-model"}
    successor = Engine()
    assert await ModelKeeper(blobs=blobs).load_into(successor) is True
    assert same_learning(successor, taught)
    assert await ModelKeeper(blobs=Blobs()).load_into(Engine()) is False  # nothing saved yet


async def test_speeds_only_snapshot_of_older_versions_loads(tmp_path: Path) -> None:
    taught = taught_engine()
    path = tmp_path / "model.json"
    taught.model.save(path)  # what older versions wrote: the speed model alone
    engine = Engine()
    assert await ModelKeeper(path=str(path)).load_into(engine) is True
    assert engine.model.snapshot() == taught.model.snapshot()
    assert engine.durations.jobs == 0  # learned again from the prior


# (key of a learned model in the snapshot, an unreadable value of it, "it starts afresh")
LEARNED: list[tuple[str, Any, Callable[[Engine], bool]]] = [
    ("pauses", {"version": 99}, lambda e: e.pauses.jobs == 0),
    (
        "technician_pace",
        {"version": 1, "fleet": "?", "technicians": []},
        lambda e: (e.paces.technicians, e.paces.factor("t1")) == (0, 1.0),
    ),
    (
        "day_starts",
        {"version": 1, "fleet": [90_000.0], "technicians": {}},  # more than a day
        lambda e: (e.starts.days, e.starts.expected("t1", MIDNIGHT + 9 * 86400)) == (0, None),
    ),
]


@pytest.mark.parametrize(("key", "damaged", "fresh"), LEARNED, ids=[k for k, _, _ in LEARNED])
async def test_a_model_missing_or_unreadable_is_relearned_and_the_rest_kept(
    tmp_path: Path, key: str, damaged: Any, fresh: Callable[[Engine], bool]
) -> None:
    taught = taught_engine()
    assert not fresh(taught)
    data = snapshot(taught)
    for value in (None, damaged):  # saved before it was learned, then unreadable
        if value is None:
            del data[key]
        else:
            data[key] = value
        engine = await loaded(tmp_path, data)
        assert fresh(engine)
        kept = snapshot(engine)
        assert {k: v for k, v in kept.items() if k != key} == {
            k: v for k, v in snapshot(taught).items() if k != key
        }
    assert engine.pauses.prior == taught.pauses.prior


async def test_damaged_durations_keep_the_speeds(tmp_path: Path) -> None:
    taught = taught_engine()
    data = snapshot(taught)
    data["durations"]["counts"] = [1.0, 2.0]  # another histogram layout
    engine = await loaded(tmp_path, data)
    assert engine.model.snapshot() == taught.model.snapshot()
    assert engine.durations.jobs == 0


def test_new_snapshots_stay_readable_as_speed_models() -> None:
    """A rolled-back gateway reads a newer snapshot: the extra key is ignored."""
    taught = taught_engine()
    back = SpeedModel.restore(json.loads(json.dumps(snapshot(taught))))
    assert back.snapshot() == taught.model.snapshot()


async def test_missing_or_corrupt_snapshot_starts_from_the_prior(tmp_path: Path) -> None:
    prior = Engine()
    engine = Engine()
    assert await ModelKeeper(path=str(tmp_path / "absent.json")).load_into(engine) is False
    for text in ("{not json", "[1, 2]", '{"version": 1}'):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        assert await ModelKeeper(path=str(bad)).load_into(engine) is False
    assert same_learning(engine, prior)


def test_restore_into_leaves_the_engine_alone_on_failure() -> None:
    engine = taught_engine()
    before = snapshot(engine)
    bad: object
    for bad in ([], {"version": 99}):
        try:
            restore_into(engine, bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{bad!r} restored")
    assert snapshot(engine) == before


async def test_a_new_engine_leader_keeps_learning_durations() -> None:
    """The leader rebuilds its engine on taking over: the learned models carry over."""
    gateway = Gateway(MemoryStore(), MemoryBus(), Metrics(), clock=lambda: 0.0)
    gateway.engine = taught_engine()
    engine = await fresh_engine(gateway)
    assert engine.durations is gateway.engine.durations
    assert engine.model is gateway.engine.model
    assert engine.pauses is gateway.engine.pauses
    assert engine.bands is gateway.engine.bands
    assert engine.paces is gateway.engine.paces
    assert engine.starts is gateway.engine.starts


async def test_naming_a_zone_with_dst_relearns_only_the_hours(tmp_path: Path) -> None:
    """A gateway that ran on UTC hours restarts with --timezone Europe/Helsinki: its speed
    model now keys hours by Helsinki's wall clock, and keeps all else it learned."""
    taught = taught_engine()
    path = tmp_path / "model.json"
    await ModelKeeper(path=str(path)).save(taught)
    helsinki = Engine(EngineConfig(timezone="Europe/Helsinki"))
    assert helsinki.model.config.timezone == "Europe/Helsinki"
    assert await ModelKeeper(path=str(path)).load_into(helsinki) is True
    assert helsinki.model.config.timezone == "Europe/Helsinki"
    assert helsinki.model.cell_count == taught.model.cell_count > 0
    assert helsinki.model.detour() == taught.model.detour()
    assert helsinki.durations.snapshot() == taught.durations.snapshot()
    assert all(c["how"] for c in taught.model.snapshot()["cells"].values())
    cells = helsinki.model.snapshot()["cells"].values()
    assert all(not c["how"] for c in cells)
    # Tokyo keeps one offset all year: UTC+9 hours, still not the UTC ones.
    tokyo = Engine(EngineConfig(timezone="Asia/Tokyo"))
    assert await ModelKeeper(path=str(path)).load_into(tokyo) is True
    assert tokyo.model.config.tz_offset_s == 9 * 3600
    assert all(not c["how"] for c in tokyo.model.snapshot()["cells"].values())
