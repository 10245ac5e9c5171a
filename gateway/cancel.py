"""Cancellation that a library swallowed, honoured by the loops that call it.

On Python 3.11, ``asyncio.wait_for`` returns the awaited result when the operation
completes just as its task is cancelled, and the cancellation is lost (fixed in 3.12).
redis-py sends every command through ``wait_for`` when its client has a socket timeout,
and aiomqtt waits for acknowledgements through it. A loop awaiting them then runs on
after ``cancel()`` and whoever awaits the task at shutdown waits for ever: a loop of
MGETs measured here ignored about one cancel in five. The task still counts the request
(``Task.cancelling()``), so every such loop calls ``raise_if_cancelling`` after its
library calls.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelling() -> None:
    """Raise CancelledError if this task was asked to stop and the request got lost."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
