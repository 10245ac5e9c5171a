"""The embedded MQTT broker of ``fieldtrack demo`` (amqtt, MQTT 3.1.1 only).

It exists so the demo needs nothing installed; FACTS.md measured it at 4-8 k
msg/s, so production and benchmarks use Mosquitto.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from amqtt.broker import Broker


def broker_config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 500}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


@asynccontextmanager
async def embedded_broker(host: str = "127.0.0.1", port: int = 1884) -> AsyncIterator[Broker]:
    # amqtt logs every connection at INFO; the demo's console is for the operator.
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)
    broker = Broker(broker_config(host, port))
    await broker.start()
    try:
        yield broker
    finally:
        await broker.shutdown()
