"""Keep what the engine learned across restarts: travel times, job durations, pauses.

In memory mode the models are snapshotted to a file (``--eta-snapshot PATH``,
atomic replace); with Redis they are a blob in Redis, written by the engine
leader and read by whichever worker leads next. Saved every minute and on
shutdown, so a crash loses at most a minute of learning.

One JSON object holds them all: the ``SpeedModel`` snapshot as it always was, plus
``durations`` and ``pauses`` keys with the two ``DurationModel``s', ``eta_bands``
with the ``BandScale``'s, ``technician_pace`` with the ``TechnicianPace``'s and
``day_starts`` with the ``DayStarts``'. Snapshots from
before either was learned load with it fresh; one that no longer loads (another
histogram layout) is relearned without giving up the rest. Older versions of the
gateway ignore the extra keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from eta.daystart import DayStarts
from eta.durations import DurationModel
from eta.pace import TechnicianPace
from eta.speeds import SnapshotError, SpeedModel, save_json
from eta.spread import BandScale
from gateway.cancel import raise_if_cancelling
from gateway.engine import Engine

log = logging.getLogger("fieldtrack.learning")
BLOB = "eta-model"
DURATIONS_KEY = "durations"
PAUSES_KEY = "pauses"
BANDS_KEY = "eta_bands"
PACE_KEY = "technician_pace"
STARTS_KEY = "day_starts"
SAVE_EVERY_S = 60.0
T = TypeVar("T")


class BlobStore(Protocol):
    async def put_blob(self, name: str, data: bytes) -> None: ...
    async def get_blob(self, name: str) -> bytes | None: ...


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything the engine learned, as one JSON-serialisable object."""
    return {
        **engine.model.snapshot(),
        DURATIONS_KEY: engine.durations.snapshot(),
        PAUSES_KEY: engine.pauses.snapshot(),
        BANDS_KEY: engine.bands.snapshot(),
        PACE_KEY: engine.paces.snapshot(),
        STARTS_KEY: engine.starts.snapshot(),
    }


def restore_into(engine: Engine, data: Any) -> None:
    """Put a ``snapshot`` (or an older speeds-only one) into the engine.

    Raises SnapshotError if the speed model does not load; the engine is then unchanged.
    """
    if not isinstance(data, dict):
        raise SnapshotError("snapshot is not a JSON object")
    model = SpeedModel.restore(data, engine.model.prior, engine.model.config, engine.model.routing)
    durations, pauses, bands = engine.durations, engine.pauses, engine.bands
    durations = _restored(data, DURATIONS_KEY, durations, "job durations",
                          lambda d: DurationModel.restore(d, durations.prior))  # fmt: skip
    pauses = _restored(data, PAUSES_KEY, pauses, "pause lengths",
                       lambda d: DurationModel.restore(d, pauses.prior))  # fmt: skip
    bands = _restored(data, BANDS_KEY, bands, "ETA band widths",
                      lambda d: BandScale.restore(d, bands.config))  # fmt: skip
    paces = _restored(data, PACE_KEY, engine.paces, "technicians' on-site pace",
                      lambda d: TechnicianPace.restore(d, engine.paces.config))  # fmt: skip
    tz, starts_config = engine.starts.tz, engine.starts.config
    starts = _restored(data, STARTS_KEY, engine.starts, "technicians' starts of day",
                       lambda d: DayStarts.restore(d, tz, starts_config))  # fmt: skip
    engine.model, engine.durations, engine.pauses, engine.bands = model, durations, pauses, bands
    engine.paces, engine.starts = paces, starts


def _restored(
    data: dict[str, Any], key: str, current: T, what: str, restore: Callable[[Any], T]
) -> T:
    """What ``restore`` makes of ``data[key]``; ``current`` if absent or unreadable (logged)."""
    if key not in data:
        log.info("snapshot has no learned %s; starting them from the prior", what)
        return current
    try:
        return restore(data[key])
    except ValueError as exc:
        log.error("learned %s not restored (%s); starting from the prior", what, exc)
        return current


class ModelKeeper:
    """Loads the learned models into an engine at start and saves them periodically."""

    def __init__(self, path: str | None = None, blobs: BlobStore | None = None) -> None:
        self.path = Path(path) if path else None
        self.blobs = blobs

    async def load_into(self, engine: Engine) -> bool:
        try:
            if self.blobs is not None:
                raw = await self.blobs.get_blob(BLOB)
                if raw is None:
                    return False
            elif self.path is not None and self.path.exists():
                raw = self.path.read_bytes()
            else:
                return False
            restore_into(engine, json.loads(raw))
        except (SnapshotError, ValueError, OSError) as exc:
            # A model that no longer loads is relearned, not fatal.
            log.error("learned ETA model not restored (%s); starting from the prior", exc)
            return False
        log.info("learned ETA model restored")
        return True

    async def save(self, engine: Engine) -> None:
        data = snapshot(engine)
        if self.blobs is not None:
            await self.blobs.put_blob(BLOB, json.dumps(data, separators=(",", ":")).encode())
        elif self.path is not None:
            await asyncio.to_thread(save_json, self.path, data)

    async def keep(self, current: Callable[[], Engine]) -> None:
        """Save every minute, and once more when cancelled (shutdown)."""
        try:
            while True:
                await asyncio.sleep(SAVE_EVERY_S)
                await self.save(current())
                raise_if_cancelling()
        finally:
            if self.path is not None or self.blobs is not None:
                await asyncio.shield(self.save(current()))
