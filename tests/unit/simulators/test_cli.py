"""`fieldtrack simulate` options: parsing, FIELDTRACK_* fallbacks, exit codes."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

import pytest

from simulators.argtypes import parse_duration
from simulators.cli import add_arguments, config_from_args, parse_time, run_from_args
from simulators.config import SimConfig
from simulators.truth import read_truth
from tests.support.procs import free_port

from .conftest import Broker


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        (" 8H ", 28800.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-5", "5 minutes", "1e3"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("1700000000", 1_700_000_000.0),
        ("1700000000.5", 1_700_000_000.5),
        ("2025-01-15T06:00:00Z", 1_736_920_800.0),
        ("2025-01-15T08:00:00+02:00", 1_736_920_800.0),
    ],
)
def test_parse_time(text: str, epoch: float) -> None:
    assert parse_time(text) == epoch


def test_parse_time_refuses() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time("yesterday")


def test_defaults_come_from_sim_config() -> None:
    cfg = config_from_args(parser().parse_args([]), {})
    assert cfg == SimConfig()


def test_options_and_environment() -> None:
    args = parser().parse_args(
        ["--mqtt", "mqtt://b:1884", "--technicians", "7", "--format", "owntracks",
         "--duration", "2h", "--truth", "/tmp/t.jsonl", "--no-progress"]
    )  # fmt: skip
    env = {
        "FIELDTRACK_MQTT": "mqtt://ignored:1",  # the option wins
        "FIELDTRACK_API_KEY": "k1, k2",  # the gateway's list: the first key is used
        "FIELDTRACK_SPEEDUP": "60",
        "FIELDTRACK_NETWORK": "helsinki",
        "FIELDTRACK_PROTOCOL": "3.1.1",
        "FIELDTRACK_TOPIC_PREFIX": "acme",
        "FIELDTRACK_START": "2025-01-15T08:00:00+02:00",
    }
    cfg = config_from_args(args, env)
    assert (cfg.mqtt_url, cfg.technicians, cfg.format, cfg.duration_s) == (
        "mqtt://b:1884", 7, "owntracks", 7200.0,
    )  # fmt: skip
    assert (cfg.api_key, cfg.speedup, cfg.network, cfg.protocol, cfg.topic_prefix) == (
        "k1", 60.0, "helsinki", "3.1.1", "acme",
    )  # fmt: skip
    assert cfg.start == 1_736_920_800.0 and cfg.truth_path == Path("/tmp/t.jsonl")
    assert cfg.progress is False
    assert "k1" not in repr(cfg)  # the key stays out of logs


@pytest.mark.parametrize("value", ["none", ""])
def test_api_none_means_mqtt_only(value: str) -> None:
    assert config_from_args(parser().parse_args(["--api", value]), {}).api_url is None
    assert config_from_args(parser().parse_args([]), {"FIELDTRACK_API": "none"}).api_url is None


@pytest.mark.parametrize(
    ("value", "progress"), [("1", False), ("on", False), ("YES", False), ("off", True), ("", True)]
)
def test_no_progress_from_environment(value: str, progress: bool) -> None:
    env = {"FIELDTRACK_NO_PROGRESS": value}
    assert config_from_args(parser().parse_args([]), env).progress is progress


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FIELDTRACK_TECHNICIANS": "many"}, "TECHNICIANS"),
        ({"FIELDTRACK_FORMAT": "xml"}, "FORMAT"),
        ({"FIELDTRACK_NO_PROGRESS": "maybe"}, "NO_PROGRESS: 'maybe' is not one of"),
    ],
)
def test_bad_environment_values_are_reported(env: dict[str, str], message: str) -> None:
    # ValueError: run_from_args prints it and exits 2, as argparse does for a bad option.
    with pytest.raises(ValueError, match=message):
        config_from_args(parser().parse_args([]), env)


@pytest.mark.parametrize("argv", [["--format", "xml"], ["--technicians", "0"], ["--duration", "x"]])
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(argv)


async def test_run_to_the_end(mosquitto: Broker, tmp_path: Path, topic_prefix: str) -> None:
    truth = tmp_path / "truth.jsonl"
    args = parser().parse_args(
        ["--mqtt", mosquitto.url, "--api", "none", "--technicians", "2", "--speedup", "1e6",
         "--duration", "30m", "--start", "2025-01-15T08:00:00+02:00", "--truth", str(truth),
         "--topic-prefix", topic_prefix, "--no-progress"]
    )  # fmt: skip
    assert await run_from_args(args) == 0
    records = read_truth(truth)
    assert records[0]["kind"] == "meta" and records[-1]["stopped_early"] is False


async def test_ctrl_c_stops_cleanly(mosquitto: Broker, tmp_path: Path, topic_prefix: str) -> None:
    truth = tmp_path / "truth.jsonl"
    args = parser().parse_args(
        ["--mqtt", mosquitto.url, "--api", "none", "--truth", str(truth),
         "--topic-prefix", topic_prefix, "--no-progress"]
    )  # fmt: skip
    asyncio.get_running_loop().call_later(0.5, os.kill, os.getpid(), signal.SIGINT)
    assert await run_from_args(args) == 130
    assert read_truth(truth)[-1]["stopped_early"] is True


async def test_unreachable_broker_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--api", "none"])
    assert await run_from_args(args) == 1
    assert "simulate failed" in capsys.readouterr().err
