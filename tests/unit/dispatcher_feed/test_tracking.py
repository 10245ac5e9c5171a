"""Link lifetime rules, revocations and configuration of the tracking module (no HTTP)."""

from __future__ import annotations

import time
import types

import pytest

from dispatcher_feed.tracking import Revocations, TrackingConfig
from gateway.model import Job, Site, Window
from gateway.settings import Secret, Settings
from gateway.store import MemoryStore

NOW = 1_700_000_000.0
H = 3600.0
CONFIG = TrackingConfig(keys=("k",), base_url="http://x", link_ttl_s=2 * H, max_ttl_s=48 * H)


def job(window: tuple[float, float] | None) -> Job:
    return Job("j1", "t1", Site(48.0, 2.0), Window(*window) if window else None)


@pytest.mark.parametrize(
    ("window", "requested", "expected"),
    [
        ((NOW + H, NOW + 3 * H), None, NOW + 5 * H),  # window end + 2 h
        (None, None, NOW + 2 * H),  # no window: from now
        ((NOW - 9 * H, NOW - 8 * H), None, NOW + 2 * H),  # window long past, job still open
        ((NOW + 100 * H, NOW + 101 * H), None, NOW + 48 * H),  # capped
        ((NOW + H, NOW + 3 * H), NOW + H, NOW + H),  # sooner on request
        ((NOW + H, NOW + 3 * H), NOW + 99 * H, NOW + 48 * H),  # later on request: capped
    ],
)
def test_expiry(
    window: tuple[float, float] | None, requested: float | None, expected: float
) -> None:
    assert CONFIG.expiry(job(window), NOW, requested) == expected


async def test_revocation_covers_links_issued_up_to_it() -> None:
    now = time.time()
    revocations = Revocations(MemoryStore(), max_ttl_s=48 * H)
    assert not await revocations.revoked("j1", now)
    await revocations.revoke("j1", now)
    assert [await revocations.revoked("j1", t) for t in (now - 1, now, now + 0.002)] == [
        True,
        True,
        False,
    ]
    assert not await revocations.revoked("j2", now - 1)
    assert await revocations.last("j1") == now


async def test_a_revocation_is_kept_as_long_as_a_link_it_covers_can_live(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time()
    revocations = Revocations(MemoryStore(), max_ttl_s=48 * H)
    await revocations.revoke("j1", now)
    monkeypatch.setattr(time, "time", lambda: now + 48 * H - 1)
    assert await revocations.last("j1") == now  # a link issued just before may be alive
    monkeypatch.setattr(time, "time", lambda: now + 48 * H + 1)
    assert await revocations.last("j1") is None  # every link it covered has expired


def test_config_from_settings_today_and_with_the_fields_the_lead_adds() -> None:
    settings = Settings(signing_key=Secret("current"), http="127.0.0.1:9000")
    config = TrackingConfig.from_settings(settings)
    assert (config.keys, config.base_url) == (("current",), "http://127.0.0.1:9000")
    assert (config.link_ttl_s, config.max_ttl_s, config.tile_url) == (2 * H, 7 * 24 * H, "")
    assert "current" not in repr(config)
    extended = types.SimpleNamespace(
        signing_key=Secret("new"),
        previous_signing_keys=(Secret("old"), Secret("older")),
        base_url="https://track.example.com",
        tracking_link_ttl_s="600",
        tracking_max_ttl_s=86400,
        tracking_rate_per_s=5,
        tracking_burst=10,
        tracking_tile_url="/tiles/{z}/{x}/{y}.png",
    )
    config = TrackingConfig.from_settings(extended)
    assert config.keys == ("new", "old", "older")
    assert (config.link_ttl_s, config.max_ttl_s, config.rate_per_s, config.burst) == (
        600.0,
        86400.0,
        5.0,
        10,
    )
    extended.tracking_tile_url = "https://tiles.example.com/{z}/{x}/{y}.png; script-src *"
    with pytest.raises(ValueError):
        TrackingConfig.from_settings(extended)
