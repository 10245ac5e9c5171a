"""Settings of a simulation run: the fleet, the phones and the connection to the gateway.

Frozen dataclasses, built once (by the CLI, a test or :meth:`SimConfig.demo`) and handed
down. Ranges are ``(low, high)`` tuples sampled uniformly from the run's seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Format = Literal["json", "msgpack", "owntracks", "osmand"]
Network = Literal["synthetic", "helsinki"]
Protocol = Literal["3.1.1", "5"]
FORMATS: tuple[Format, ...] = ("json", "msgpack", "owntracks", "osmand")
NETWORKS: tuple[Network, ...] = ("synthetic", "helsinki")
PROTOCOLS: tuple[Protocol, ...] = ("3.1.1", "5")
Range = tuple[float, float]

# Payload faults that the gateway must refuse (dead-letter over MQTT, 4xx/reject over HTTP).
MALFORMED_KINDS = (
    "bad_encoding",
    "missing_lat",
    "lat_out_of_range",
    "null_island",
    "future_ts",
    "unknown_status",
)


@dataclass(frozen=True, slots=True)
class FleetParams:
    """How technicians' days are planned and how they actually go."""

    jobs: tuple[int, int] = (4, 7)
    job_duration_s: Range = (1200.0, 4800.0)
    window_s: float = 7200.0
    window_lead_s: Range = (900.0, 2700.0)
    slot_s: float = 900.0
    shift_spread_s: float = 900.0
    early_tolerance_s: float = 600.0
    duration_noise: float = 0.15
    overrun_probability: float = 0.2
    overrun_factor: Range = (1.2, 1.8)
    pause_probability: float = 0.1
    pause_s: Range = (300.0, 900.0)
    driver_factor: Range = (0.85, 1.05)
    # Each technician's own pace on site, a factor on every job's time drawn once per
    # technician id (the same person every day): a junior takes longer than booked, an old
    # hand less. (1, 1) is a fleet where only the job decides.
    work_pace: Range = (1.0, 1.0)
    signal_stop_probability: float = 0.15
    signal_stop_s: Range = (5.0, 30.0)
    incidents_per_hour: float = 1.0
    register_ahead_s: float | None = None
    site_radius_m: Range = (60.0, 150.0)
    depots: int = 3
    skills: tuple[str, ...] = ("electrical", "plumbing", "hvac", "network", "appliances", "solar")
    skills_per_technician: tuple[int, int] = (1, 3)
    return_to_depot: bool = True
    # "nearest": greedy nearest-neighbour tours (a dispatcher's booking); "random": sites in
    # random order, so every leg is a real drive (the demo's small map needs that).
    tour_order: Literal["nearest", "random"] = "nearest"


@dataclass(frozen=True, slots=True)
class PhoneParams:
    """How the technicians' phones report: cadence, accuracy and every kind of misbehaviour."""

    moving_interval_s: Range = (4.0, 6.0)
    stopped_interval_s: Range = (45.0, 75.0)
    acc_m: Range = (3.0, 20.0)
    poor_fix_probability: float = 0.03
    poor_acc_m: Range = (50.0, 150.0)
    dropouts_per_hour: float = 0.4
    dropout_s: Range = (20.0, 120.0)
    offline_per_hour: float = 0.3
    offline_s: Range = (60.0, 600.0)
    newest_first_probability: float = 0.5
    max_batch: int = 100
    duplicate_probability: float = 0.01
    retained_replay_probability: float = 0.005
    clock_skew_probability: float = 0.2
    clock_skew_s: Range = (-120.0, 60.0)
    malformed_share: float = 0.01
    malformed_kinds: tuple[str, ...] = MALFORMED_KINDS
    qos: int = 1


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulation run. `start` is the virtual epoch of the run's beginning.

    `start=None` picks it so that virtual time never passes the wall clock: now minus
    `duration_s x (1 - 1/speedup)` (so speedup 1 is real time). `duration_s=None` runs until
    every technician is done (virtual seconds in both cases).
    """

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    api_url: str | None = "http://127.0.0.1:8080"
    api_key: str | None = field(default=None, repr=False)
    technicians: int = 10
    speedup: float = 1.0
    seed: int = 1
    truth_path: Path | None = None
    format: Format = "json"
    network: Network = "synthetic"
    duration_s: float | None = None
    start: float | None = None
    protocol: Protocol = "5"
    topic_prefix: str = "fleet"
    id_prefix: str = ""
    timezone: str = "Europe/Helsinki"
    city_size_km: float = 4.0
    fleet: FleetParams = FleetParams()
    phone: PhoneParams = PhoneParams()
    max_inflight: int = 200
    http_timeout_s: float = 10.0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.technicians < 1:
            raise ValueError("technicians must be >= 1")
        if self.speedup <= 0:
            raise ValueError("speedup must be > 0")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration_s must be > 0")
        for name, value, allowed in (
            ("format", self.format, FORMATS),
            ("network", self.network, NETWORKS),
            ("protocol", self.protocol, PROTOCOLS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {self.timezone!r}") from exc
        if self.format == "osmand" and self.api_url is None:
            raise ValueError("format osmand posts positions over HTTP: it needs api_url")

    def with_(self, **changes: object) -> SimConfig:
        """A copy with some fields changed (dataclasses.replace, typed loosely for CLIs)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def demo(
        cls,
        *,
        mqtt_url: str = "mqtt://127.0.0.1:1884",
        api_url: str | None = "http://127.0.0.1:8080",
        api_key: str | None = None,
        technicians: int = 20,
        seed: int = 7,
        hours: float = 4.0,
        network: Network = "helsinki",
        truth_path: Path | None = None,
        progress: bool = False,
        topic_prefix: str = "fleet",
    ) -> SimConfig:
        """The `fieldtrack demo` preset: a busy fleet on a compact network, in real time.

        Short jobs (2-5 min) with 15-minute windows so statuses change within a minute or
        two of watching, a fix every 2-3 s while driving, real timestamps, MQTT 3.1.1 (the
        embedded amqtt broker speaks nothing newer), jobs registered 15 min ahead.
        """
        jobs = max(2, round(hours * 3600 / 330))
        fleet = FleetParams(
            jobs=(jobs, jobs),
            job_duration_s=(120.0, 300.0),
            window_s=900.0,
            window_lead_s=(60.0, 240.0),
            slot_s=60.0,
            shift_spread_s=45.0,
            early_tolerance_s=120.0,
            pause_probability=0.1,
            pause_s=(30.0, 90.0),
            incidents_per_hour=2.0,
            register_ahead_s=900.0,
            site_radius_m=(40.0, 80.0),
            depots=2,
            return_to_depot=False,
            tour_order="random",
        )
        phone = PhoneParams(
            moving_interval_s=(2.0, 3.0),
            stopped_interval_s=(10.0, 15.0),
            dropouts_per_hour=0.3,
            offline_per_hour=0.2,
            offline_s=(30.0, 120.0),
            malformed_share=0.005,
        )
        return cls(
            mqtt_url=mqtt_url,
            api_url=api_url,
            api_key=api_key,
            technicians=technicians,
            speedup=1.0,
            seed=seed,
            truth_path=truth_path,
            network=network,
            protocol="3.1.1",
            fleet=fleet,
            phone=phone,
            progress=progress,
            topic_prefix=topic_prefix,
        )
