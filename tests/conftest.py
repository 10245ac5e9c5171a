"""Shared fixtures: one private Mosquitto per session, a unique topic prefix per test."""

from __future__ import annotations

import asyncio
import faulthandler
import functools
import inspect
import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support.procs import Mosquitto, mosquitto
from tests.support.tasks import stop_tasks

# An async test that runs longer than this is cancelled where it waits and fails, so that
# its own clean-up and its fixtures' teardown still run and the suite goes on. (An alarm
# signal, as pytest-timeout sends, raises inside the event loop's machinery instead: a
# timer callback cut short leaves a future pending for ever and the loop's close hangs.)
TEST_LIMIT_S = float(os.environ.get("FIELDTRACK_TEST_LIMIT_S", "240"))
# The whole run never outlives this: a hang that cancellation cannot end (a wait in a
# thread, a fixture's teardown, a thread joined at exit) prints every thread's stack
# and ends the process, instead of holding CI until its own limit. A thread, not
# faulthandler's timer, which pytest cancels whenever a test fails.
SESSION_LIMIT_S = float(os.environ.get("FIELDTRACK_TEST_SESSION_LIMIT_S", "1200"))


def _end_a_hung_session(stderr: int) -> None:
    # A daemon thread: it dies with a process that exits, and still runs while the
    # interpreter, at exit, waits for other threads to end.
    time.sleep(SESSION_LIMIT_S)
    os.write(stderr, f"\ntest session over {SESSION_LIMIT_S:.0f} s: stacks follow\n".encode())
    faulthandler.dump_traceback(file=stderr, all_threads=True)
    os._exit(3)


def pytest_configure(config: pytest.Config) -> None:
    # Before output capture starts, so that the stacks reach the real stderr.
    watchdog = threading.Thread(
        target=_end_a_hung_session, args=(os.dup(2),), name="session-limit", daemon=True
    )
    watchdog.start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    test = getattr(item, "obj", None)
    if not inspect.iscoroutinefunction(test):
        return (yield)

    @functools.wraps(test)
    async def limited(*args: object, **kwargs: object) -> object:
        before = asyncio.all_tasks()
        deadline = asyncio.timeout(TEST_LIMIT_S)
        try:
            async with deadline:
                return await test(*args, **kwargs)
        except TimeoutError:
            if deadline.expired():
                pytest.fail(f"cancelled after {TEST_LIMIT_S:.0f} s (FIELDTRACK_TEST_LIMIT_S)")
            raise
        finally:
            # Cancel the tasks the test started and left running (it failed before
            # stopping them) before its fixtures are torn down under them.
            me = asyncio.current_task()
            await stop_tasks(t for t in asyncio.all_tasks() if t not in before and t is not me)

    item.obj = limited  # type: ignore[attr-defined]
    try:
        return (yield)
    finally:
        item.obj = test  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def broker() -> Iterator[Mosquitto]:
    with mosquitto() as b:
        yield b


@pytest.fixture
def prefix() -> str:
    """A topic prefix (and client-id stem) no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"
