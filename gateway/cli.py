"""``fieldtrack run | demo | simulate``: parse options into Settings and start things.

Every option also reads from ``FIELDTRACK_<OPTION>`` (CONTRACT "Command line").
uvloop is chosen here, once, and nowhere else.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import uvloop

from gateway.errors import ConfigError
from gateway.settings import LOG_LEVELS, Settings
from simulators.argtypes import parse_duration, positive_int


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(f"FIELDTRACK_{name.upper()}", default)


def _port(text: str) -> int:
    port = positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r} (1-65535)")
    return port


def _gateway_options(p: argparse.ArgumentParser, demo: bool) -> None:
    if not demo:
        p.add_argument(
            "--mqtt",
            help="broker URL, mqtt://host:port or mqtts://user:pass@host:port "
            "(default mqtt://127.0.0.1:1883)",
        )
        p.add_argument("--redis", help="redis://host:port/db (default: state in memory)")
        p.add_argument("--mqtt-protocol", choices=["5", "3.1.1", "auto"])
        p.add_argument("--mqtt-client-id", help="stable id: the broker keeps its session")
        p.add_argument("--mqtt-ca-file", help="CA bundle for mqtts://")
        p.add_argument("--share-group", help="MQTT 5 shared subscription group for several workers")
        p.add_argument(
            "--leave-share-group",
            action="store_const",
            const="true",
            help="on shutdown, leave the share group for good (retiring this worker id): "
            "unsubscribe, ingest what was queued for it, end its session",
        )
        p.add_argument(
            "--role",
            choices=["all", "worker", "api"],
            help="all (default); with --redis: worker = MQTT ingest + engine, api = HTTP only",
        )
        p.add_argument("--redis-prefix", help="key prefix in Redis (default ft:)")
        p.add_argument("--worker-id", help="name of this worker in the engine election")
    p.add_argument("--http", help="host:port of the API and pages (default 127.0.0.1:8080)")
    p.add_argument("--api-key", action="append", dest="api_keys", help="repeatable")
    p.add_argument("--topic-prefix", help="default: fleet")
    p.add_argument("--public-url", help="base URL used in links the gateway hands out")
    p.add_argument(
        "--history-per-device",
        type=int,
        help="fixes kept per device, also the duplicate window (default 2000)",
    )
    p.add_argument("--eta-snapshot", help="file keeping the learned ETA model (memory mode)")
    p.add_argument(
        "--timezone",
        help="the fleet's local time, e.g. Europe/Paris: its dates split tours "
        "into days (default UTC)",
    )
    p.add_argument(
        "--late-probability",
        type=float,
        help="P(arrival after the window end) that raises late_risk and tells the "
        "customer 'delayed' (default 0.5)",
    )
    p.add_argument(
        "--routing-url",
        help="an OSRM-style routing engine, e.g. http://osrm:5000, as the prior of learned "
        "travel times (default: none, the learned model alone)",
    )
    p.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="default INFO")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fieldtrack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the gateway and API against a real broker")
    _gateway_options(run, demo=False)
    demo = sub.add_parser("demo", help="everything on one machine, nothing to install")
    _gateway_options(demo, demo=True)
    # String defaults: argparse converts them with ``type`` only when this subcommand runs,
    # so a bad FIELDTRACK_* value is a usage error of the demo, not a crash of every command.
    demo.add_argument(
        "--broker-port",
        type=_port,
        default=_env("broker_port", "1884"),
        help="port of the embedded MQTT broker (default 1884)",
    )
    demo.add_argument(
        "--technicians",
        type=positive_int,
        default=_env("technicians", "20"),
        help="size of the simulated fleet (default 20)",
    )
    demo.add_argument(
        "--seed", type=int, default=_env("seed", "7"), help="the fleet's day (default 7)"
    )
    demo.add_argument(
        "--duration",
        type=parse_duration,
        default=_env("duration"),
        help="stop after this long: seconds, or 45m, 8h (default: run until stopped)",
    )
    simulate = sub.add_parser("simulate", help="drive a simulated fleet against a broker")
    from simulators.cli import add_arguments  # the simulator's imports, only when needed

    add_arguments(simulate)
    return parser


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings from every option named after one of its fields (a list of names kept here
    once forgot ``--timezone``), over the ``FIELDTRACK_*`` variables."""
    options = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    options.update(overrides)
    return Settings.from_env(os.environ, **options)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "simulate":
            from simulators.cli import run_from_args

            code: int = uvloop.run(run_from_args(args))
            return code
        if args.command == "demo":
            from gateway.demo import demo

            settings = settings_from(
                args,
                mqtt=f"mqtt://127.0.0.1:{args.broker_port}",
                mqtt_protocol="3.1.1",
                api_keys=args.api_keys or _env("api_key") or [secrets.token_urlsafe(18)],
            )
            _logging(settings)
            code = uvloop.run(demo(settings, args.technicians, args.seed, args.duration))
            return code
        settings = settings_from(args)
        if not settings.api_keys:
            raise ConfigError("give at least one --api-key (or FIELDTRACK_API_KEY)")
        _logging(settings)
        uvloop.run(_run(settings))
        return 0
    except ConfigError as exc:
        print(f"fieldtrack: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C before the server runs (while serving, serve() handles it).
        return 0


async def _run(settings: Settings) -> None:
    from gateway.server import build_runtime, check_free, serve

    check_free("http", *settings.http_bind())  # one line, before anything connects
    runtime = await build_runtime(settings)
    broker = "" if settings.role == "api" else f", broker {settings.mqtt_url.host}"
    logging.getLogger("fieldtrack").info("FieldTrack on %s%s", settings.base_url, broker)
    await serve(runtime)


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One line per HTTP request from our own clients is noise on the console.
    logging.getLogger("httpx").setLevel(logging.WARNING)


if __name__ == "__main__":
    raise SystemExit(main())
