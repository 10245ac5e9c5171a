"""Keep the learned travel-time model across restarts.

In memory mode the model is snapshotted to a file (``--eta-snapshot PATH``,
atomic replace); with Redis it is a blob in Redis, written by the engine
leader and read by whichever worker leads next. Saved every minute and on
shutdown, so a crash loses at most a minute of learning.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from eta.speeds import SnapshotError, SpeedModel
from gateway.engine import Engine

log = logging.getLogger("fieldtrack.learning")
BLOB = "eta-model"
SAVE_EVERY_S = 60.0


class BlobStore(Protocol):
    async def put_blob(self, name: str, data: bytes) -> None: ...
    async def get_blob(self, name: str) -> bytes | None: ...


class ModelKeeper:
    """Loads the model into an engine at start and saves it periodically."""

    def __init__(self, path: str | None = None, blobs: BlobStore | None = None) -> None:
        self.path = Path(path) if path else None
        self.blobs = blobs

    async def load_into(self, engine: Engine) -> bool:
        try:
            if self.blobs is not None:
                data = await self.blobs.get_blob(BLOB)
                if data is None:
                    return False
                engine.model = SpeedModel.restore(json.loads(data), config=engine.model.config)
            elif self.path is not None and self.path.exists():
                engine.model = SpeedModel.load(self.path, config=engine.model.config)
            else:
                return False
        except (SnapshotError, ValueError, OSError) as exc:
            # A model that no longer loads is relearned, not fatal.
            log.error("learned ETA model not restored (%s); starting from the prior", exc)
            return False
        log.info("learned ETA model restored")
        return True

    async def save(self, engine: Engine) -> None:
        if self.blobs is not None:
            data = json.dumps(engine.model.snapshot(), separators=(",", ":")).encode()
            await self.blobs.put_blob(BLOB, data)
        elif self.path is not None:
            await asyncio.to_thread(engine.model.save, self.path)

    async def keep(self, current: Callable[[], Engine]) -> None:
        """Save every minute, and once more when cancelled (shutdown)."""
        try:
            while True:
                await asyncio.sleep(SAVE_EVERY_S)
                await self.save(current())
        finally:
            if self.path is not None or self.blobs is not None:
                await asyncio.shield(self.save(current()))
