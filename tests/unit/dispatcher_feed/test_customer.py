"""What a customer may see: the scoping predicate, coarsening and the shapes sent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher_feed.customer import (
    Coarsening,
    JobWatch,
    coarsen,
    event_view,
    first_name,
    snapshot,
)
from eta.geo import haversine_m
from gateway.model import Event, Fix, Job, Site, StatusChange, Window

SITE = Site(48.8566, 2.3522, 100.0)
RULE = Coarsening(beyond_m=2000.0, grid_m=500.0)


def job(state: str = "planned", history: tuple[StatusChange, ...] = (), tech: str = "t1") -> Job:
    return Job("j1", tech, SITE, Window(1000.0, 8200.0), state=state, history=history)


def pos(tech: str | None, ts: float, lat: float = 48.86, lon: float = 2.35) -> Event:
    return {
        "type": "position", "ts": ts, "device_id": "d-" + str(tech), "technician_id": tech,
        "lat": lat, "lon": lon, "spd": 9.5, "hdg": 90.0, "acc": 5.0, "bat": 80,
    }  # fmt: skip


def status(job_id: str, value: str, ts: float, tech: str = "t1") -> Event:
    return {
        "type": "status", "ts": ts, "job_id": job_id, "technician_id": tech, "device_id": "d-t1",
        "status": value, "previous": "x", "source": "device",
    }  # fmt: skip


def other(kind: str, job_id: str | None, ts: float, **fields: object) -> Event:
    return {"type": kind, "ts": ts, "job_id": job_id, "technician_id": "t1", **fields}


# One technician's morning: another job first, then this one, then the end.
SCRIPT: list[tuple[Event, bool, str]] = [
    (pos("t1", 100), False, "scheduled"),  # before anything: never
    (status("j0", "en_route", 110), False, "scheduled"),  # another job
    (pos("t1", 111), False, "scheduled"),  # en route to another job
    (other("eta", "j0", 112, eta=900.0), False, "scheduled"),
    (other("eta", "j1", 113, eta=1500.0, eta_p90=1700.0, delay_s=0.0), True, "scheduled"),
    (other("alert", "j1", 114, alert="late_risk", severity="warning"), False, "scheduled"),
    (other("notify", "j1", 115, notification="tracking_link", url="u"), False, "scheduled"),
    (status("j0", "done", 190), False, "scheduled"),
    (status("j1", "en_route", 200), True, "en_route"),
    (pos("t1", 201), True, "en_route"),
    (pos("t2", 202), False, "en_route"),  # another technician
    (pos("t1", 150), False, "en_route"),  # a buffered fix from before setting off
    (pos(None, 203), False, "en_route"),  # an unassigned device
    (other("geofence", "j1", 204, transition="enter", geofence_id="g"), False, "en_route"),
    (other("reoptimize", None, 205, reason="late_risk", job_ids=["j1"]), False, "en_route"),
    (other("notify", "j1", 206, notification="arriving_soon"), True, "en_route"),
    (status("j1", "paused", 207), True, "on_hold"),
    (pos("t1", 208), False, "on_hold"),
    (status("j1", "resumed", 209), True, "en_route"),
    (pos("t1", 210), True, "en_route"),
    (status("j1", "on_site", 300), True, "arrived"),
    (pos("t1", 301), False, "arrived"),
    (status("j1", "paused", 302), True, "arrived"),
    (status("j1", "resumed", 303), True, "arrived"),
    (pos("t1", 304), False, "arrived"),  # resumed work on site is not driving
    (status("j1", "done", 400), True, "done"),
    (pos("t1", 401), False, "done"),
    (other("eta", "j2", 402, eta=2000.0), False, "done"),
]


def test_script_passes_only_this_jobs_events_and_positions_en_route() -> None:
    watch = JobWatch(job())
    seen = [(watch.observe(event), watch.phase) for event, _, _ in SCRIPT]
    assert seen == [(passes, phase) for _, passes, phase in SCRIPT]
    assert watch.ended


def test_history_sets_the_start_of_the_drive() -> None:
    history = (StatusChange(200.0, "en_route", "planned", "device"),)
    watch = JobWatch(job("en_route", history))
    assert [watch.observe(pos("t1", ts)) for ts in (199.0, 200.0, 250.0)] == [False, True, True]
    assert watch.phase == "en_route"


@pytest.mark.parametrize(
    ("history", "moving", "phase"),
    [
        ((), False, "scheduled"),
        ((("en_route", 1.0),), True, "en_route"),
        ((("en_route", 1.0), ("paused", 2.0)), False, "on_hold"),
        ((("en_route", 1.0), ("paused", 2.0), ("resumed", 3.0)), True, "en_route"),
        ((("on_site", 1.0),), False, "arrived"),
        ((("on_site", 1.0), ("paused", 2.0), ("resumed", 3.0)), False, "arrived"),
        ((("on_site", 1.0), ("done", 2.0)), False, "done"),
        ((("cancelled", 1.0),), False, "cancelled"),
        ((("en_route", 1.0), ("failed", 2.0)), False, "failed"),
        # Set back by the gateway: the technician went to another job first.
        ((("en_route", 1.0), ("planned", 2.0)), False, "scheduled"),
    ],
)
def test_phase_from_history(
    history: tuple[tuple[str, float], ...], moving: bool, phase: str
) -> None:
    changes = tuple(StatusChange(ts, s, "x", "device") for s, ts in history)
    watch = JobWatch(job(history[-1][0] if history else "planned", changes))
    assert (watch.moving, watch.phase) == (moving, phase)


def test_reassignment_follows_the_status_event() -> None:
    watch = JobWatch(job())
    assert watch.observe(status("j1", "en_route", 10.0, tech="t2"))
    assert [watch.observe(pos("t1", 11.0)), watch.observe(pos("t2", 11.0))] == [False, True]


def test_set_back_to_planned_stops_positions_until_set_off_again() -> None:
    watch = JobWatch(job())
    watch.observe(status("j1", "en_route", 10.0))
    assert watch.observe(pos("t1", 11.0))
    assert watch.observe(status("j1", "planned", 12.0))  # en route to another job now
    assert (watch.observe(pos("t1", 13.0)), watch.phase) == (False, "scheduled")
    watch.observe(status("j1", "en_route", 20.0))
    assert [watch.observe(pos("t1", ts)) for ts in (19.0, 21.0)] == [False, True]


def test_arrived_or_done_notification_stops_positions() -> None:
    for notification, phase in (("arrived", "arrived"), ("done", "done")):
        watch = JobWatch(job())
        watch.observe(status("j1", "en_route", 10.0))
        assert watch.observe(other("notify", "j1", 11.0, notification=notification))
        assert (watch.observe(pos("t1", 12.0)), watch.phase) == (False, phase)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "position"},
        {"type": "position", "technician_id": "t1", "ts": "soon"},
        {"type": "status", "job_id": "j1"},
        {"type": "status", "job_id": "j1", "status": "en_route", "ts": None},
        {"job_id": "j1"},
        {},
    ],
)
def test_malformed_events_never_pass_nor_raise(event: Event) -> None:
    watch = JobWatch(job("en_route", (StatusChange(0.0, "en_route", "planned", "device"),)))
    assert watch.observe(event) is False
    assert watch.state == "en_route"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Alice Martin", "Alice"), ("  Bob  ", "Bob"), ("Zoë", "Zoë"), ("", None), ("   ", None)],
)
def test_first_name(name: str, expected: str | None) -> None:
    assert first_name(name) == expected


def test_coarsen_is_exact_near_and_snapped_far() -> None:
    assert coarsen(48.8600, 2.3500, SITE, RULE) == (48.86, 2.35, False)
    lat, lon, coarse = coarsen(48.9312, 2.4187, SITE, RULE)
    assert coarse
    assert (lat, lon) != (48.9312, 2.4187)
    assert haversine_m(lat, lon, 48.9312, 2.4187) <= 500.0 * 0.75


@given(
    lat=st.floats(min_value=48.0, max_value=49.5),
    lon=st.floats(min_value=1.5, max_value=3.2),
)
def test_coarse_positions_stay_within_the_grid_and_repeat(lat: float, lon: float) -> None:
    c_lat, c_lon, coarse = coarsen(lat, lon, SITE, RULE)
    if coarse:
        # Half a cell diagonal, with slack for the longitude scale away from the site.
        assert haversine_m(lat, lon, c_lat, c_lon) <= 500.0 * 0.75
        # Nearby fixes share a cell: movement inside it is not revealed.
        assert coarsen(c_lat, c_lon, SITE, RULE)[:2] == (c_lat, c_lon)
    else:
        assert (c_lat, c_lon) == (lat, lon)


def test_event_views_drop_what_the_customer_has_no_use_for() -> None:
    watch = JobWatch(job())
    near, far = pos("t1", 5.0), pos("t1", 6.0, lat=48.95, lon=2.45)
    eta = other("eta", "j1", 7.0, eta=1500.0, eta_p90=float("nan"), delay_s=60)
    views = [event_view(e, watch, SITE, RULE) for e in (near, far, eta)]
    watch.observe(status("j1", "en_route", 8.0))
    views.append(event_view(status("j1", "en_route", 8.0), watch, SITE, RULE))
    note = other("notify", "j1", 9.0, notification="arriving_soon")
    views.append(event_view(note, watch, SITE, RULE))
    assert views[0] == {
        "type": "position", "ts": 5.0, "lat": 48.86, "lon": 2.35, "coarse": False, "hdg": 90.0,
    }  # fmt: skip
    assert views[1]["coarse"] is True and "hdg" not in views[1]
    assert set(views[1]) == {"type", "ts", "lat", "lon", "coarse"}
    assert views[2:] == [
        {"type": "eta", "ts": 7.0, "eta": 1500.0, "eta_p90": None, "delay_s": 60.0},
        {"type": "status", "ts": 8.0, "status": "en_route", "phase": "en_route"},
        {"type": "notify", "ts": 9.0, "notification": "arriving_soon", "phase": "en_route"},
    ]


def test_snapshot_shows_position_only_en_route_and_since_setting_off() -> None:
    history = (StatusChange(200.0, "en_route", "planned", "device"),)
    moving = job("en_route", history)
    fix = Fix("d1", 250.0, 48.86, 2.35, hdg=45.0, spd=10.0, acc=4.0)
    old_fix = Fix("d1", 150.0, 48.86, 2.35)
    body = snapshot(moving, JobWatch(moving), "Alice Martin", fix, RULE)
    assert body == {
        "type": "snapshot",
        "phase": "en_route",
        "state": "en_route",
        "window": {"start": 1000.0, "end": 8200.0},
        "eta": None,
        "eta_p90": None,
        "delay_s": None,
        "site": {"lat": SITE.lat, "lon": SITE.lon},
        "technician": {"first_name": "Alice"},
        "position": {
            "type": "position", "ts": 250.0, "lat": 48.86, "lon": 2.35, "coarse": False,
            "hdg": 45.0,
        },
    }  # fmt: skip
    assert snapshot(moving, JobWatch(moving), "Alice", old_fix, RULE)["position"] is None
    planned = job()
    assert snapshot(planned, JobWatch(planned), "Alice", fix, RULE)["position"] is None
    assert snapshot(planned, JobWatch(planned), None, None, RULE)["technician"] is None
