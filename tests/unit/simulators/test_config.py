"""SimConfig: validation, secrets kept out of reprs, and the demo preset's promises."""

from __future__ import annotations

from collections import Counter

import pytest

from simulators.config import SimConfig
from simulators.phone import PhoneMessage
from simulators.scenario import Registration, Scenario

from .test_fleet import MORNING


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"technicians": 0}, "technicians"),
        ({"speedup": 0.0}, "speedup"),
        ({"duration_s": -1.0}, "duration"),
        ({"format": "xml"}, "format"),
        ({"network": "atlantis"}, "network"),
        ({"protocol": "4"}, "protocol"),
        ({"format": "osmand", "api_url": None}, "api_url"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ],
)
def test_invalid_configs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimConfig().with_(**kwargs)


def test_api_key_is_not_in_the_repr() -> None:
    assert "s3cret" not in repr(SimConfig(api_key="s3cret"))


def test_demo_preset() -> None:
    cfg = SimConfig.demo(api_key="k")
    assert (cfg.technicians, cfg.speedup, cfg.protocol, cfg.network) == (
        20,
        1.0,
        "3.1.1",
        "helsinki",
    )
    assert (cfg.mqtt_url, cfg.api_url, cfg.start) == (
        "mqtt://127.0.0.1:1884", "http://127.0.0.1:8080", None,
    )  # fmt: skip
    assert cfg.phone.moving_interval_s == (2.0, 3.0)
    assert cfg.fleet.job_duration_s[1] <= 300


def test_demo_is_lively_from_the_first_minutes() -> None:
    cfg = SimConfig.demo(api_url=None)
    scenario = Scenario(cfg, MORNING)
    statuses: Counter[str] = Counter()
    fixes = registered_jobs = 0
    for em in scenario.emissions():
        if em.t > MORNING + 180:
            break
        if isinstance(em.item, PhoneMessage) and em.item.fault is None:
            fixes += len(em.item.fixes)
            if em.item.status is not None:
                statuses[em.item.status.status] += 1
        registered_jobs += isinstance(em.item, Registration) and em.item.kind == "job"
    # Within three minutes every technician has set off and most have arrived somewhere.
    assert statuses["en_route"] >= 20 and statuses["on_site"] >= 10
    assert fixes > 20 * 180 / 3 * 0.5  # a fix every 2-3 s while driving
    # Jobs are booked 15 minutes ahead, not the whole day at once.
    total_jobs = sum(len(t.plan.jobs) for t in scenario.traces)
    assert 20 <= registered_jobs < total_jobs / 4
