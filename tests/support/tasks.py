"""Stopping tasks for good, though a library may swallow a cancel (gateway/cancel.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], limit_s: float = 10.0) -> None:
    """Cancel again and again until every task has ended; AssertionError naming those
    still running after ``limit_s``. A task's own exception is left to its owner."""
    left = {t for t in tasks if not t.done()}
    give_up = time.monotonic() + limit_s
    while left:
        if time.monotonic() > give_up:
            stuck = sorted(map(str, left))
            raise AssertionError(f"tasks still running {limit_s:.0f} s after cancel: {stuck}")
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=0.1)
        left = {t for t in left if not t.done()}


async def stop_task(task: asyncio.Task[Any]) -> None:
    """``stop_tasks`` for one, then its outcome: re-raises what it failed with."""
    await stop_tasks([task])
    with contextlib.suppress(asyncio.CancelledError):
        await task
