"""Outbound event builders: the exact objects of CONTRACT "MQTT out", one per type."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from eta.delay import Alert, Notification, Reoptimize
from eta.estimate import JobEta
from gateway.events import (
    alert_event,
    eta_event,
    geofence_event,
    notification_event,
    notify_event,
    reoptimize_event,
)
from gateway.model import Customer, Event, Job, Site

T = 1_700_000_000.0
JOB = Job("j1", "t1", Site(60.0, 25.0), customer=Customer("Oy Ab", "C-42"), state="en_route")


def test_geofence_event_in_full() -> None:
    event = geofence_event(
        transition="exit", ts=T + 1.5, device_id="d1", technician_id="t1",
        geofence_id="job:j1", kind="site", dwell_s=123.456, job_id="j1",
    )  # fmt: skip
    assert event == {
        "type": "geofence", "transition": "exit", "ts": T + 1.5, "device_id": "d1",
        "technician_id": "t1", "geofence_id": "job:j1", "kind": "site", "dwell_s": 123.5,
        "job_id": "j1",
    }  # fmt: skip


def test_geofence_event_without_dwell_nor_job() -> None:
    event = geofence_event(
        transition="enter", ts=T, device_id="d9", technician_id=None,
        geofence_id="depot", kind="depot", dwell_s=None, job_id=None,
    )  # fmt: skip
    assert event == {
        "type": "geofence", "transition": "enter", "ts": T, "device_id": "d9",
        "technician_id": None, "geofence_id": "depot", "kind": "depot",
    }  # fmt: skip


def test_eta_event() -> None:
    e = JobEta("j1", T + 600.04, T + 540.06, T + 720.15, T + 2400.0, -299.96, 0.12345, 1800.0)
    assert eta_event(JOB, e, T + 10) == {
        "type": "eta", "ts": T + 10, "job_id": "j1", "technician_id": "t1", "state": "en_route",
        "eta": T + 600.0, "eta_p10": T + 540.1, "eta_p90": T + 720.2, "delay_s": -300.0,
        "late_probability": 0.123, "departure": T + 2400.0,
    }  # fmt: skip


def test_alert_event_raised_with_detail_and_device() -> None:
    detail: dict[str, float | str] = {"eta": T + 912.34, "window_end": T + 900.0, "delay_s": 12.34,
        "late_probability": 0.953, "note": "text stays"}  # fmt: skip
    alert = Alert("late_risk", "t1", "j1", "critical", T + 5, False, MappingProxyType(detail))
    assert alert_event(alert, device_id="d1") == {
        "type": "alert", "alert": "late_risk", "severity": "critical", "ts": T + 5,
        "technician_id": "t1", "job_id": "j1", "eta": T + 912.3, "window_end": T + 900.0,
        "delay_s": 12.3, "late_probability": 0.953, "note": "text stays", "device_id": "d1",
    }  # fmt: skip


def test_alert_event_cleared_without_job() -> None:
    alert = Alert("stale_device", "t1", None, "critical", T, True, MappingProxyType({}))
    assert alert_event(alert) == {
        "type": "alert", "alert": "stale_device", "severity": "critical", "ts": T,
        "technician_id": "t1", "job_id": None, "cleared": True,
    }  # fmt: skip


def test_reoptimize_event() -> None:
    request = Reoptimize("t1", "overrun", ("j1", "j2"), 123.456, T + 7)
    assert reoptimize_event(request) == {
        "type": "reoptimize", "reason": "overrun", "ts": T + 7, "technician_id": "t1",
        "job_ids": ["j1", "j2"], "predicted_lateness_s": 123.5,
    }  # fmt: skip


def test_notify_event_with_and_without_detail() -> None:
    assert notify_event("arrived", JOB, T) == {
        "type": "notify", "notification": "arrived", "ts": T, "job_id": "j1",
        "technician_id": "t1", "customer": {"name": "Oy Ab", "ref": "C-42"},
    }  # fmt: skip
    n = Notification("arriving_soon", "t1", "j1", T + 3, {"eta": T + 303.33, "distance_m": 950.06})
    assert notification_event(n, JOB) == {
        "type": "notify", "notification": "arriving_soon", "ts": T + 3, "job_id": "j1",
        "technician_id": "t1", "customer": {"name": "Oy Ab", "ref": "C-42"},
        "eta": T + 303.3, "distance_m": 950.1,
    }  # fmt: skip


def every_builder() -> list[tuple[Event, tuple[str, ...]]]:
    empty: MappingProxyType[str, float | str] = MappingProxyType({})
    e = JobEta("j1", T, T, T, T, 0.0, 0.0, 0.0)
    return [
        (geofence_event(transition="dwell", ts=T, device_id="d1", technician_id="t1",
                        geofence_id="g", kind="zone", dwell_s=1.0, job_id=None),
         ("device_id", "technician_id", "geofence_id")),
        (eta_event(JOB, e, T), ("job_id", "technician_id")),
        (alert_event(Alert("overrun", "t1", "j1", "warning", T, False, empty)),
         ("technician_id", "job_id")),
        (reoptimize_event(Reoptimize("t1", "cancelled", ("j2",), 0.0, T)), ("technician_id",)),
        (notify_event("done", JOB, T), ("job_id", "technician_id")),
    ]  # fmt: skip


@pytest.mark.parametrize(("event", "ids"), every_builder())
def test_every_event_has_type_ts_and_its_ids(event: Event, ids: tuple[str, ...]) -> None:
    assert isinstance(event["type"], str)
    assert event["ts"] == T
    assert all(key in event for key in ids)
    sub = {"geofence": "transition", "alert": "alert", "reoptimize": "reason",
           "notify": "notification", "eta": "eta"}[event["type"]]  # fmt: skip
    assert sub in event
