"""MQTT topic names in and out (CONTRACT "MQTT in" / "MQTT out"), prefix configurable."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from gateway.model import valid_id

# Second-level names the gateway publishes under; never device ids.
RESERVED = frozenset({"deadletter", "out"})


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # "pos", "status", "owntracks", "own" (our own output), "bad"
    device_id: str
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class TopicScheme:
    prefix: str = "fleet"
    owntracks: str = "owntracks"
    share_group: str | None = None

    def subscriptions(self) -> list[str]:
        filters = [f"{self.prefix}/+/pos", f"{self.prefix}/+/status", f"{self.owntracks}/+/+"]
        if self.share_group:
            filters = [f"$share/{self.share_group}/{f}" for f in filters]
        return filters

    def route(self, topic: str) -> Route:
        """What a received topic is, with its device id (validated)."""
        if topic.startswith(self.prefix + "/"):
            device_id, _, leaf = topic[len(self.prefix) + 1 :].partition("/")
            if device_id in RESERVED:
                return Route("own", device_id)
            if leaf not in ("pos", "status"):
                return Route("bad", device_id, f"unknown topic {topic!r}")
            if not valid_id(device_id):
                return Route("bad", device_id, "device id must be 1-64 chars of [A-Za-z0-9_.:-]")
            # Interned: every stored fix of a device then shares one id string.
            return Route(leaf, sys.intern(device_id))
        if topic.startswith(self.owntracks + "/"):
            parts = topic[len(self.owntracks) + 1 :].split("/")
            if len(parts) != 2:
                return Route("bad", "", f"OwnTracks topic must be {self.owntracks}/user/device")
            device_id = f"{parts[0]}:{parts[1]}"
            if not valid_id(device_id):
                return Route("bad", device_id, "user:device must be 1-64 chars of [A-Za-z0-9_.:-]")
            return Route("owntracks", sys.intern(device_id))
        return Route("bad", "", f"unknown topic {topic!r}")

    def dead_letter(self, device_id: str) -> str:
        return f"{self.prefix}/deadletter/{device_id}"

    def outbound(self, event_type: str) -> str:
        return f"{self.prefix}/out/{event_type}"
