"""One frozen ``Settings``, built once from options and ``FIELDTRACK_*`` variables.

Every option of ``fieldtrack run`` also reads from ``FIELDTRACK_<OPTION>``
(``--api-key`` from ``FIELDTRACK_API_KEY``, several keys separated by commas).
Secrets never appear in ``repr`` or logs.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Secret:
    """A string that does not show itself."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class MqttUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: Secret | None = None

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ConfigError(f"MQTT URL scheme must be mqtt:// or mqtts://, not {parts.scheme!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ConfigError(f"bad MQTT port in {url!r}: {exc}") from None
        password = Secret(parts.password) if parts.password else None
        return cls(parts.hostname or "127.0.0.1", port, tls, parts.username, password)


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"not a boolean: {value!r}")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway and the API need; see README "Configuration"."""

    mqtt: str = "mqtt://127.0.0.1:1883"
    mqtt_protocol: str = "auto"  # "5", "3.1.1" or "auto" (try 5, fall back)
    mqtt_client_id: str = "fieldtrack-gateway"
    mqtt_ca_file: str | None = None
    mqtt_session_expiry_s: int = 7 * 24 * 3600
    mqtt_receive_maximum: int = 1000
    share_group: str | None = None
    # On shutdown, leave the share group for good (a worker id being retired): unsubscribe,
    # ingest what the broker had already queued for this session, end the session.
    leave_share_group: bool = False
    topic_prefix: str = "fleet"
    owntracks_prefix: str = "owntracks"
    redis: str | None = None
    redis_prefix: str = "ft:"
    # all: ingest + engine + API; worker: ingest + engine (+ health and metrics); api: HTTP only
    role: str = "all"
    worker_id: str | None = None
    http: str = "127.0.0.1:8080"
    public_url: str | None = None
    api_keys: tuple[Secret, ...] = ()
    signing_key: Secret = field(default_factory=lambda: Secret(secrets.token_urlsafe(32)))
    # Tracking links: tokens signed with signing_key; previous keys still verify (rotation).
    previous_signing_keys: tuple[Secret, ...] = ()
    tracking_link_ttl_s: float = 7200.0
    tracking_max_ttl_s: float = 7 * 86400.0
    tracking_rate_per_s: float = 1.0
    tracking_burst: int = 30
    tracking_tile_url: str = ""
    tracking_tile_attribution: str = ""
    map_tile_url: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    map_attribution: str = (
        '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
    )
    map_stale_after_s: float = 300.0
    # The fleet's local time (IANA name): its dates split tours into days and count the
    # days of the jobs-per-technician-per-day KPI.
    timezone: str = "UTC"
    # P(arrival after the window end) that raises late_risk and tells the customer "delayed"
    # (bench eta reports what other settings trade: late_risk_by_threshold).
    late_probability: float = 0.5
    # An OSRM-style routing engine (http://host:5000) as the travel-time model's prior.
    routing_url: str | None = None
    # Memory mode: where the learned ETA model is saved (every minute, on exit).
    eta_snapshot: str | None = None
    # Also the dedupe window. ~400 B a fix in memory (bench memory): 2 000 fixes is
    # 5.5 h at one fix per 10 s, ~0.8 MB a device.
    history_per_device: int = 2_000
    replay_buffer: int = 10_000
    sse_queue_size: int = 1_000
    sse_send_timeout_s: float = 10.0
    sse_ping_s: float = 15.0
    ingest_batch: int = 500
    dead_letter: bool = True
    log_level: str = "INFO"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Build from option values; strings are converted to each field's type."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, raw in values.items():
            if raw is None or name not in known:
                continue
            kwargs[name] = _convert(name, raw, str(known[name].type))
        settings = cls(**kwargs)
        settings.validate()
        return settings

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """``FIELDTRACK_<FIELD>`` variables, then explicit overrides on top."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            env = environ.get(f"FIELDTRACK_{f.name.upper()}")
            if env is None and f.name == "api_keys":
                env = environ.get("FIELDTRACK_API_KEY")
            if env is not None:
                values[f.name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(values)

    def validate(self) -> None:
        MqttUrl.parse(self.mqtt)
        if self.role not in ("all", "worker", "api"):
            raise ConfigError("role must be all, worker or api")
        if self.role != "all" and self.redis is None:
            raise ConfigError(f"role {self.role} shares state through Redis: give --redis")
        if self.mqtt_protocol not in ("5", "3.1.1", "auto"):
            raise ConfigError("mqtt_protocol must be 5, 3.1.1 or auto")
        if self.leave_share_group and not self.share_group:
            raise ConfigError("leave_share_group needs a share_group to leave")
        self.http_bind()
        if any(not key.value for key in self.api_keys):
            raise ConfigError("an API key must not be empty")
        for name in ("history_per_device", "replay_buffer", "sse_queue_size", "ingest_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.routing_url is not None and not self.routing_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError("routing_url must be an http:// or https:// URL")
        if not 0.0 < self.late_probability < 1.0:
            raise ConfigError("late_probability must be between 0 and 1")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"timezone: unknown IANA time zone {self.timezone!r}") from None
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if self.redis is not None and not self.redis.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError("redis must be a redis:// URL")

    def http_bind(self) -> tuple[str, int]:
        host, _, port = self.http.rpartition(":")
        if not port.isdigit():
            raise ConfigError(f"http must be host:port, not {self.http!r}")
        if not 0 <= int(port) <= 65535:
            # The socket layer would take it modulo 65536 and listen somewhere else.
            raise ConfigError(f"http port must be 0-65535, not {port}")
        return host or "127.0.0.1", int(port)

    @property
    def local_url(self) -> str:
        """Where this process's own HTTP server answers (``base_url`` may be a public
        address in front of it, not reachable from here)."""
        host, port = self.http_bind()
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"

    @property
    def mqtt_url(self) -> MqttUrl:
        return MqttUrl.parse(self.mqtt)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return self.local_url

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _convert(name: str, raw: Any, type_name: str) -> Any:
    if name in ("api_keys", "previous_signing_keys"):
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        keys = (k if isinstance(k, Secret) else Secret(k.strip()) for k in items)
        # Drop blanks after stripping: "a, " must not yield an empty key that
        # a bare "Authorization: Bearer" would match.
        return tuple(k for k in keys if k.value)
    if name == "signing_key":
        return raw if isinstance(raw, Secret) else Secret(str(raw))
    if name == "log_level" and isinstance(raw, str):
        return raw.strip().upper()  # "debug" from the environment is DEBUG
    if not isinstance(raw, str):
        return raw
    try:
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
        if type_name.startswith("bool"):
            return _bool(raw)
    except ValueError:
        raise ConfigError(f"{name}: cannot read {raw!r} as {type_name}") from None
    return raw
