"""The learned ETA model survives a restart: file snapshot (memory mode)."""

from __future__ import annotations

from pathlib import Path

from gateway.engine import Engine
from gateway.learning import ModelKeeper


def taught_engine() -> Engine:
    engine = Engine()
    lat, lon, ts = 60.17, 24.94, 1_800_000_000.0
    for _ in range(60):  # a steady 12 m/s drive north
        engine.model.observe(lat, lon, ts, lat + 0.0005, lon, ts + 4.6)
        lat, ts = lat + 0.0005, ts + 4.6
    return engine


async def test_snapshot_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    keeper = ModelKeeper(path=str(path))
    taught = taught_engine()
    await keeper.save(taught)
    fresh = Engine()
    assert fresh.model.snapshot() != taught.model.snapshot()
    assert await keeper.load_into(fresh) is True
    assert fresh.model.snapshot() == taught.model.snapshot()
    leg = (60.17, 24.94, 60.19, 24.94, 1_800_000_000.0)
    assert fresh.model.travel_time(*leg) == taught.model.travel_time(*leg)


async def test_missing_or_corrupt_snapshot_starts_from_the_prior(tmp_path: Path) -> None:
    prior = Engine().model.snapshot()
    engine = Engine()
    assert await ModelKeeper(path=str(tmp_path / "absent.json")).load_into(engine) is False
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert await ModelKeeper(path=str(bad)).load_into(engine) is False
    assert engine.model.snapshot() == prior
