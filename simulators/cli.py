"""`fieldtrack simulate`: options, environment fallbacks and a clean Ctrl-C.

The gateway's command line owns the program; it calls :func:`add_arguments` on its
``simulate`` sub-parser and awaits :func:`run_from_args`. Every option can also come from
``FIELDTRACK_<OPTION>`` (``--api-key`` -> ``FIELDTRACK_API_KEY``); a command-line value wins.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
from rich.console import Console

from simulators.argtypes import parse_duration, positive_int
from simulators.config import FORMATS, NETWORKS, PROTOCOLS, SimConfig
from simulators.runner import SimSummary, SimulationError, simulate

ENV_PREFIX = "FIELDTRACK_"


def parse_time(text: str) -> float:
    """Epoch seconds, or an ISO 8601 date-time (naive means local time)."""
    with contextlib.suppress(ValueError):
        return float(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a time: {text!r}") from exc
    return dt.timestamp()  # a naive datetime's timestamp() is local time


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
        return text

    return check


def _first_key(text: str) -> str:
    # FIELDTRACK_API_KEY may list several keys for the gateway; the simulator uses the first.
    return text.split(",")[0].strip()


# (option, type, help); defaults live in SimConfig, so every option defaults to None here.
OPTIONS: tuple[tuple[str, Callable[[str], Any], str], ...] = (
    ("--mqtt", str, "broker URL, mqtt://[user:pass@]host:port (default mqtt://127.0.0.1:1883)"),
    ("--api", str, "gateway HTTP URL (default http://127.0.0.1:8080; 'none': MQTT only)"),
    ("--api-key", _first_key, "API key sent as Authorization: Bearer"),
    ("--technicians", positive_int, "number of technicians (default 10)"),
    ("--speedup", float, "virtual seconds per wall second (default 1 = real time)"),
    ("--seed", int, "random seed: the same seed gives the same fleet and truth (default 1)"),
    ("--truth", Path, "write ground truth JSONL here"),
    ("--format", _choice(FORMATS), "json, msgpack, owntracks or osmand (default json)"),
    ("--network", _choice(NETWORKS), "synthetic or helsinki (default synthetic)"),
    (
        "--duration",
        parse_duration,
        "virtual time to simulate, e.g. 3600, 45m, 8h (default: whole day)",
    ),
    ("--start", parse_time, "virtual start, epoch s or ISO 8601 (default: so it ends by now)"),
    ("--protocol", _choice(PROTOCOLS), "MQTT protocol 3.1.1 or 5 (default 5)"),
    ("--topic-prefix", str, "MQTT topic prefix (default fleet)"),
    ("--id-prefix", str, "prefix for technician, device and job ids (default none)"),
    ("--timezone", str, "local time zone for rush hours (default Europe/Helsinki)"),
)
# argparse dest -> SimConfig field
FIELDS = {
    "mqtt": "mqtt_url",
    "api": "api_url",
    "api_key": "api_key",
    "technicians": "technicians",
    "speedup": "speedup",
    "seed": "seed",
    "truth": "truth_path",
    "format": "format",
    "network": "network",
    "duration": "duration_s",
    "start": "start",
    "protocol": "protocol",
    "topic_prefix": "topic_prefix",
    "id_prefix": "id_prefix",
    "timezone": "timezone",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `simulate` options to `parser`."""
    for flag, kind, text in OPTIONS:
        env = ENV_PREFIX + flag[2:].upper().replace("-", "_")
        parser.add_argument(flag, type=kind, default=None, help=f"{text} [env {env}]")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        default=None,
        help="no progress bar [env FIELDTRACK_NO_PROGRESS]",
    )


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> SimConfig:
    """SimConfig from parsed options, then FIELDTRACK_* variables, then defaults."""
    changes: dict[str, Any] = {}
    for flag, kind, _ in OPTIONS:
        dest = flag[2:].replace("-", "_")
        value = getattr(args, dest, None)
        env = environ.get(ENV_PREFIX + dest.upper())
        if value is None and env:
            try:
                value = kind(env)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                # A usage error, as a bad option is (exit code 2), not a crash.
                raise ValueError(f"{ENV_PREFIX}{dest.upper()}: {exc}") from exc
        if dest == "api" and value is not None and value.strip().lower() in ("", "none"):
            changes["api_url"] = None  # no registrations: publish over MQTT only
        elif value is not None:
            changes[FIELDS[dest]] = value
    no_progress = getattr(args, "no_progress", None)
    if no_progress is None:
        no_progress = _flag(environ.get(ENV_PREFIX + "NO_PROGRESS", ""), "NO_PROGRESS")
    changes["progress"] = not no_progress
    return SimConfig().with_(**changes)


def _flag(text: str, name: str) -> bool:
    """An on/off variable, read as the gateway reads its own (``gateway.settings``)."""
    value = text.strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{ENV_PREFIX}{name}: {text!r} is not one of 1/0, true/false, yes/no, on/off")


async def run_from_args(args: argparse.Namespace) -> int:
    """Run `fieldtrack simulate`; 0 when the day completes, 130 when stopped, 1 on error."""
    console = Console(stderr=True)
    try:
        cfg = config_from_args(args, os.environ)
    except ValueError as exc:
        console.print(f"[red]simulate: {exc}[/]")
        return 2
    stop = asyncio.Event()
    try:
        with _stop_on_signals(stop):
            summary = await simulate(cfg, stop=stop)
    except (SimulationError, aiomqtt.MqttError, httpx.HTTPError, OSError) as exc:
        console.print(f"[red]simulate failed: {exc}[/]")
        return 1
    _print_summary(console, summary)
    return 130 if summary.stopped_early else 0


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Ctrl-C / SIGTERM set `stop` (the run then finishes its truth file and returns)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _print_summary(console: Console, s: SimSummary) -> None:
    state = "stopped early" if s.stopped_early else "done"
    console.print(
        f"simulate {state}: {s.messages} messages ({s.fixes} fixes, {s.statuses} statuses), "
        f"{s.registrations} registrations, {s.http_requests} HTTP posts "
        f"({s.http_rejected} rejected as expected, {s.http_errors} unexpected errors) "
        f"in {s.wall_s:.1f} s"
    )
    if s.faults:
        console.print("injected faults: " + ", ".join(f"{k} {v}" for k, v in s.faults.items()))
    if s.truth_path is not None:
        console.print(f"truth: {s.truth_path} ({s.truth_records} records)")
