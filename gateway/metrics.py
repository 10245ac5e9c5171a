"""Prometheus metrics: a few counters, gauges and one histogram, rendered as text.

Kept in-house because the hot path increments counters per fix and a dict
increment is the cheapest thing Python has; the names are the CONTRACT's.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


def _number(value: float) -> str:
    """A sample value in full: ``:g`` keeps 6 digits, so 1234567 became 1.23457e+06."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class Counter:
    name: str
    help: str
    label_names: tuple[str, ...] = ()
    values: defaultdict[tuple[str, ...], float] = field(default_factory=lambda: defaultdict(float))

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        self.values[labels] += amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        if not self.label_names and not self.values:
            yield f"{self.name} 0"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


@dataclass
class Gauge:
    name: str
    help: str
    read: Callable[[], float] = lambda: 0.0
    # Not exported where it means nothing (the broker gauge of an HTTP-only node).
    enabled: bool = True

    def render(self) -> Iterable[str]:
        if not self.enabled:
            return
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        yield f"{self.name} {_number(self.read())}"


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        running = 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            running += n
            yield f'{self.name}_bucket{{le="{bound:g}"}} {running}'
        yield f'{self.name}_bucket{{le="+Inf"}} {self.count}'
        yield f"{self.name}_sum {self.total:.6f}"
        yield f"{self.name}_count {self.count}"


class Metrics:
    """The gateway's metrics, one instance per process, passed down explicitly."""

    def __init__(self) -> None:
        self.positions = Counter("fieldtrack_positions_total", "Accepted fixes.")
        self.rejected = Counter(
            "fieldtrack_rejected_total", "Rejected messages or fixes by reason.", ("reason",)
        )
        self.duplicates = Counter("fieldtrack_duplicates_total", "Duplicate fixes dropped.")
        self.late = Counter(
            "fieldtrack_late_fixes_total", "Fixes older than the device's newest (history only)."
        )
        self.events = Counter("fieldtrack_events_total", "Events published by type.", ("type",))
        self.messages = Counter(
            "fieldtrack_messages_total", "MQTT messages received by kind.", ("kind",)
        )
        self.ignored = Counter(
            "fieldtrack_ignored_total", "Accepted but unused messages by kind.", ("kind",)
        )
        self.dead_letters = Counter(
            "fieldtrack_dead_letters_total", "Messages republished to the dead-letter topic."
        )
        self.outbox_dropped = Counter(
            "fieldtrack_outbox_dropped_total",
            "Outbound MQTT events dropped while the broker was away too long.",
        )
        self.sse_dropped = Counter(
            "fieldtrack_sse_dropped_total", "SSE clients dropped for being too slow."
        )
        self.pipeline = Histogram(
            "fieldtrack_pipeline_seconds", "Broker receive to event published, seconds."
        )
        self.sse_clients = Gauge("fieldtrack_sse_clients", "Connected SSE clients.")
        self.broker_connected = Gauge("fieldtrack_broker_connected", "1 while the broker is up.")
        self.extra: list[Counter | Gauge | Histogram] = []

    def reject(self, code: str) -> None:
        self.rejected.values[(code,)] += 1.0

    def render(self) -> str:
        metrics: list[Counter | Gauge | Histogram] = [
            self.positions, self.rejected, self.duplicates, self.late, self.events,
            self.messages, self.ignored, self.dead_letters, self.sse_dropped, self.outbox_dropped,
            self.pipeline, self.sse_clients, self.broker_connected, *self.extra,
        ]  # fmt: skip
        lines = [line for metric in metrics for line in metric.render()]
        return "\n".join(lines) + "\n"
