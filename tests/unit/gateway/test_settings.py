"""Settings from options and ``FIELDTRACK_*`` variables; secrets that never show."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

import pytest

from eta.delay import DelayConfig
from gateway.cli import build_parser, settings_from
from gateway.errors import ConfigError
from gateway.server import engine_config
from gateway.settings import MqttUrl, Secret, Settings


def test_defaults_validate() -> None:
    s = Settings()
    s.validate()
    assert (s.mqtt, s.topic_prefix, s.http, s.api_keys) == (
        "mqtt://127.0.0.1:1883", "fleet", "127.0.0.1:8080", (),
    )  # fmt: skip
    assert Settings().signing_key != s.signing_key  # a fresh random key per instance


def test_from_env_converts_each_type() -> None:
    env = {
        "FIELDTRACK_MQTT": "mqtt://broker:1999",
        "FIELDTRACK_HISTORY_PER_DEVICE": "50",
        "FIELDTRACK_SSE_SEND_TIMEOUT_S": "2.5",
        "FIELDTRACK_DEAD_LETTER": "off",
        "FIELDTRACK_SHARE_GROUP": "workers",
        "FIELDTRACK_API_KEYS": "k1, k2,,",
        "FIELDTRACK_SIGNING_KEY": "sign-me",
        "FIELDTRACK_TIMEZONE": "Europe/Helsinki",
        "UNRELATED": "x",
    }
    s = Settings.from_env(env)
    assert (s.mqtt, s.history_per_device, s.sse_send_timeout_s, s.dead_letter, s.share_group) == (
        "mqtt://broker:1999", 50, 2.5, False, "workers",
    )  # fmt: skip
    assert [k.value for k in s.api_keys] == ["k1", "k2"]
    assert s.signing_key.value == "sign-me"
    assert s.timezone == "Europe/Helsinki"


def test_api_key_singular_variable_and_overrides() -> None:
    s = Settings.from_env({"FIELDTRACK_API_KEY": "solo", "FIELDTRACK_HTTP": "0.0.0.0:1"})
    assert [k.value for k in s.api_keys] == ["solo"]
    s = Settings.from_env({"FIELDTRACK_HTTP": "0.0.0.0:1"}, http="127.0.0.1:9", redis=None)
    assert (s.http, s.redis) == ("127.0.0.1:9", None)


@pytest.mark.parametrize("raw", ["k1, ", " ,k1", "k1,   ,", ["k1", " "], ["k1", ""]])
def test_blank_api_keys_are_dropped(raw: Any) -> None:
    # An empty key would let "Authorization: Bearer" with no token in.
    assert [k.value for k in Settings.from_mapping({"api_keys": raw}).api_keys] == ["k1"]


def test_an_empty_secret_is_not_an_api_key() -> None:
    with pytest.raises(ConfigError):
        Settings(api_keys=(Secret("k1"), Secret(""))).validate()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("true", True), ("YES", True), (" on ", True), ("0", False), ("false", False),
     ("No", False), ("off", False), ("", False)],
)  # fmt: skip
def test_booleans(text: str, expected: bool) -> None:
    assert Settings.from_mapping({"dead_letter": text}).dead_letter is expected


BAD: list[dict[str, Any]] = [
    {"dead_letter": "maybe"},
    {"history_per_device": "many"},
    {"sse_ping_s": "soon"},
    {"history_per_device": "0"},
    {"replay_buffer": 0},
    {"sse_queue_size": "-1"},
    {"ingest_batch": "0"},
    {"mqtt_protocol": "4"},
    {"mqtt": "http://broker:1883"},
    {"mqtt": "mqtt://broker:port"},
    {"http": "localhost"},
    {"http": "localhost:http"},
    {"redis": "localhost:6379"},
    {"timezone": "Mars/Olympus_Mons"},
    {"timezone": "../etc/passwd"},
    {"late_probability": "1"},
    {"late_probability": "0"},
    {"late_probability": "likely"},
    {"routing_url": "osrm:5000"},
    {"http": "127.0.0.1:99999"},  # the socket would listen on 99999 % 65536
    {"log_level": "verbose"},
]


@pytest.mark.parametrize("values", BAD, ids=[str(v) for v in BAD])
def test_bad_values_are_config_errors(values: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_mapping(values)


def test_log_level_from_the_environment_is_case_blind() -> None:
    assert Settings.from_env({"FIELDTRACK_LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_a_bad_demo_variable_is_the_demos_usage_error_not_every_commands_crash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("BROKER_PORT", "TECHNICIANS", "SEED", "DURATION"):
        monkeypatch.setenv(f"FIELDTRACK_{name}", "abc")
    parser = build_parser()  # read when the parser is built: it used to raise here
    assert parser.parse_args(["run", "--api-key", "k"]).command == "run"
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["demo"])
    assert exit_.value.code == 2
    assert "argument --broker-port: invalid _port value: 'abc'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--technicians", "0"], "argument --technicians: must be >= 1"),
        (["--broker-port", "70000"], "argument --broker-port: not a port: '70000' (1-65535)"),
        (["--duration", "soon"], "argument --duration: not a duration: 'soon'"),
    ],
)
def test_demo_options_are_checked_by_the_parser(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", *argv])
    assert error in capsys.readouterr().err


def test_demo_duration_and_log_level_forms() -> None:
    args = build_parser().parse_args(["demo", "--duration", "45m", "--log-level", "debug"])
    assert (args.duration, args.log_level) == (2700.0, "DEBUG")


def test_unknown_and_none_options_are_ignored() -> None:
    s = Settings.from_mapping({"nope": 1, "mqtt": None, "topic_prefix": "acme"})
    assert (s.mqtt, s.topic_prefix) == ("mqtt://127.0.0.1:1883", "acme")


MQTT_URLS: list[tuple[str, MqttUrl]] = [
    ("mqtt://broker:1999", MqttUrl("broker", 1999)),
    ("broker", MqttUrl("broker", 1883)),
    ("tcp://10.0.0.1", MqttUrl("10.0.0.1", 1883)),
    ("mqtts://broker", MqttUrl("broker", 8883, tls=True)),
    ("ssl://broker:9999", MqttUrl("broker", 9999, tls=True)),
    ("mqtt://", MqttUrl("127.0.0.1", 1883)),
]


@pytest.mark.parametrize(("url", "expected"), MQTT_URLS, ids=[u[0] for u in MQTT_URLS])
def test_mqtt_url(url: str, expected: MqttUrl) -> None:
    assert MqttUrl.parse(url) == expected


def test_mqtt_url_credentials_are_secret() -> None:
    url = MqttUrl.parse("mqtts://gw:hunter2@broker")
    assert (url.username, url.password) == ("gw", Secret("hunter2"))
    assert "hunter2" not in repr(url)
    assert "hunter2" not in repr(Settings(mqtt="mqtts://gw:hunter2@broker").mqtt_url)


def test_secrets_never_show() -> None:
    s = Settings(api_keys=(Secret("key-1"),), signing_key=Secret("sign-1"))
    for text in (repr(s), str(s), repr(s.api_keys), str(s.signing_key), f"{s.signing_key}"):
        assert "key-1" not in text and "sign-1" not in text
    assert repr(Secret("x")) == "Secret('**********')"


@pytest.mark.parametrize(
    ("http", "public", "bind", "base"),
    [
        ("127.0.0.1:8080", None, ("127.0.0.1", 8080), "http://127.0.0.1:8080"),
        ("0.0.0.0:80", None, ("0.0.0.0", 80), "http://127.0.0.1:80"),
        (":9000", None, ("127.0.0.1", 9000), "http://127.0.0.1:9000"),
        ("example.org:443", "https://track.example.org/", ("example.org", 443),
         "https://track.example.org"),
    ],
)  # fmt: skip
def test_http_bind_and_base_url(
    http: str, public: str | None, bind: tuple[str, int], base: str
) -> None:
    s = Settings(http=http, public_url=public)
    assert (s.http_bind(), s.base_url) == (bind, base)
    # Where this process answers, whatever a public URL in front of it says.
    assert s.local_url == f"http://{'127.0.0.1' if bind[0] == '0.0.0.0' else bind[0]}:{bind[1]}"


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.http = "x:1"  # type: ignore[misc]
    assert s.with_(http="x:1").http == "x:1"
    assert s.http == "127.0.0.1:8080"


def test_leaving_a_share_group_needs_one() -> None:
    with pytest.raises(ConfigError, match="leave_share_group needs a share_group"):
        Settings.from_env({"FIELDTRACK_LEAVE_SHARE_GROUP": "true"}).validate()
    settings = Settings.from_env({}, share_group="g", leave_share_group="true")
    settings.validate()
    assert settings.leave_share_group is True


# Options of `run` and `demo` that are not settings of the gateway.
NOT_SETTINGS = {"help", "command", "broker_port", "technicians", "seed", "duration"}


@pytest.mark.parametrize("command", ["run", "demo"])
def test_every_gateway_option_reaches_the_settings(command: str) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = sub.choices[command]._actions
    settings = {f.name for f in fields(Settings)}
    assert {a.dest for a in options} - NOT_SETTINGS <= settings
    given = ["--timezone", "Europe/Paris", "--eta-snapshot", "x.json", "--history-per-device", "5"]
    given += ["--late-probability", "0.7", "--routing-url", "http://osrm:5000"]
    s = settings_from(parser.parse_args([command, *given]))
    assert (s.timezone, s.eta_snapshot, s.history_per_device) == ("Europe/Paris", "x.json", 5)
    assert s.routing_url == "http://osrm:5000"
    # ... and from there the engine's rules.
    config = engine_config(s)
    assert (config.timezone, config.delay.late_probability) == ("Europe/Paris", 0.7)
    assert config.delay.late_margin_s == DelayConfig().late_margin_s
