"""The live engine as golden scripts: jobs, fixes and ticks in, the exact events out.

No event loop and no store: a `Rig` feeds ``Engine.job_changed`` / ``on_fix`` / ``tick``
with explicit times and, like ``Gateway._apply``, applies the statuses the engine infers
from geofences (``apply_status`` with source ``geofence``). The speed model is frozen --
it learns nothing and has no spread on travel -- so a leg of d metres takes exactly
d / 10 s and first-leg ETAs are exact; spreads that come from on-site durations are
asserted through what they decide (raised or not) and bounds.

Places are metres due north of ``ORIGIN``; times are seconds after ``T``.
"""

from __future__ import annotations

from dataclasses import replace
from math import degrees, exp
from typing import Any

import msgspec
import pytest

from eta.delay import DelayConfig
from eta.durations import PAUSE_PRIOR, DurationModel, DurationPrior
from eta.estimate import EstimateConfig
from eta.geo import EARTH_RADIUS_M, haversine_m
from eta.speeds import ModelConfig, SpeedModel, SpeedPrior
from gateway.engine import Effects, Engine, EngineConfig
from gateway.model import Customer, Event, Fix, Job, Site, StatusUpdate, Window
from gateway.pipeline import apply_status, status_event
from geofence.shapes import circle_fence

T = 1_700_000_000.0
LAT0, LON0 = 60.0, 25.0
SPEED = 10.0


def north(m: float) -> float:
    return LAT0 + degrees(m / EARTH_RADIUS_M)


def frozen_model() -> SpeedModel:
    """No learning (every pair of fixes is 'too close in time'), no spread, no detour."""
    prior = SpeedPrior(
        speed_mps=SPEED, detour_factor=1.0, speed_cv=0.0, mean_cv=0.0, detour_cv=0.0, stop_cv=0.0
    )
    return SpeedModel(prior, ModelConfig(min_gap_s=1e12, trip_min_straight_m=1e12))


def leg(a_m: float, b_m: float) -> float:
    """Exact travel time between two places under the frozen model."""
    return haversine_m(north(a_m), LON0, north(b_m), LON0) / SPEED


Brief = tuple[Any, ...]


def brief(e: Event) -> Brief:
    """The part of an event a script pins down; times relative to T."""
    kind = e["type"]
    if kind == "eta":
        eta = e["eta"]
        return ("eta", e["job_id"], e["state"], None if eta is None else round(eta - T, 1))
    if kind == "alert":
        return ("alert", e["alert"], e["job_id"], e.get("cleared", False))
    if kind == "reoptimize":
        return ("reoptimize", e["reason"], tuple(e["job_ids"]), e["predicted_lateness_s"])
    if kind == "notify":
        return ("notify", e["notification"], e["job_id"])
    if kind == "geofence":
        return ("geofence", e["transition"], e["geofence_id"], e.get("dwell_s"))
    if kind == "status":
        return ("status", e["job_id"], e["status"], e["source"])
    raise AssertionError(f"unexpected event {e}")


class Rig:
    """An engine with a frozen model, applying inferred statuses as the gateway does."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.engine = Engine(config, frozen_model())
        self.owner = {"d1": "t1", "d1b": "t1", "d2": "t2"}
        self.effects: list[Effects] = []
        self.inferred: list[StatusUpdate] = []

    def job(
        self,
        job_id: str,
        at_m: float,
        *,
        at: float = -100.0,
        tech: str | None = "t1",
        seq: int = 0,
        window: tuple[float, float] | None = (0.0, 7200.0),
        planned: float = 600.0,
        priority: str = "normal",
        radius: float = 100.0,
    ) -> list[Event]:
        job = Job(
            job_id,
            tech,
            Site(north(at_m), LON0, radius),
            Window(T + window[0], T + window[1]) if window else None,
            planned,
            seq,
            Customer(f"Customer {job_id}", f"C-{job_id}"),
            priority,
        )
        existing = self.engine.tours.get(job_id)
        if existing is not None:
            job = msgspec.structs.replace(job, state=existing.state, history=existing.history)
        return self._run(self.engine.job_changed(job, T + at, created=existing is None))

    def status(self, job_id: str, status: str, at: float, device: str = "d1") -> list[Event]:
        return self._status(StatusUpdate(device, T + at, job_id, status), "device")

    def fix(
        self,
        at: float,
        m: float,
        device: str = "d1",
        received: float | None = None,
        acc: float | None = None,
    ) -> list[Event]:
        fix = Fix(device, T + at, north(m), LON0, acc=acc)
        recv = T + (at if received is None else received)
        return self._run(self.engine.on_fix(fix, self.owner.get(device), recv))

    def tick(self, wall: float) -> list[Event]:
        return self._run(self.engine.tick(T + wall))

    def state(self, job_id: str) -> str:
        job = self.engine.tours.get(job_id)
        assert job is not None
        return job.state

    def _status(self, update: StatusUpdate, source: str) -> list[Event]:
        job = self.engine.tours.get(update.job_id)
        new = apply_status(job, update, self.owner.get(update.device_id), source).job
        events = [status_event(new, new.history[-1])]
        return events + self._run(self.engine.job_changed(new, update.ts))

    def _run(self, effects: Effects) -> list[Event]:
        self.effects.append(effects)
        self.inferred += effects.statuses
        events = list(effects.events)
        for update in effects.statuses:
            events += self._status(update, "geofence")
        return events


def briefs(events: list[Event]) -> list[Brief]:
    return [brief(e) for e in events]


def only(events: list[Event], *kinds: str) -> list[Brief]:
    return [brief(e) for e in events if e["type"] in kinds]


# -- job-site arrival ------------------------------------------------------------------

TRIP = leg(0, 3000)  # 300 s to the site 3 km north


def test_golden_arrival_by_dwell_in_the_job_site() -> None:
    rig = Rig()
    assert rig.job("j1", 3000, window=(0, 3600), planned=1800) == []
    assert rig.status("j1", "en_route", 10) == [
        {"type": "status", "ts": T + 10, "job_id": "j1", "technician_id": "t1",
         "device_id": "d1", "status": "en_route", "previous": "planned", "source": "device"},
    ]  # fmt: skip
    assert rig.fix(30, 0) == [
        {"type": "eta", "ts": T + 30, "job_id": "j1", "technician_id": "t1", "state": "en_route",
         "eta": T + 330.0, "eta_p10": T + 330.0, "eta_p90": T + 330.0, "delay_s": -3270.0,
         "late_probability": 0.0, "departure": T + 2130.0},
        # Within arriving_soon_s (600 s) of the site: told once.
        {"type": "notify", "notification": "arriving_soon", "ts": T + 30, "job_id": "j1",
         "technician_id": "t1", "customer": {"name": "Customer j1", "ref": "C-j1"},
         "eta": T + 330.0, "eta_p90": T + 330.0, "distance_m": 3000.0},
    ]  # fmt: skip
    assert pytest.approx(300.0, abs=1e-6) == TRIP
    # On schedule: the ETA stays within 60 s, so nothing is published.
    assert rig.fix(100, 700) == []
    assert rig.fix(200, 1700) == []
    assert rig.fix(300, 2950) == [
        {"type": "geofence", "transition": "enter", "ts": T + 300, "device_id": "d1",
         "technician_id": "t1", "geofence_id": "job:j1", "kind": "site", "job_id": "j1"},
    ]  # fmt: skip
    assert rig.fix(330, 3000) == []  # 30 s inside: not yet the 60 s site_dwell_s
    assert rig.state("j1") == "en_route"
    arrival = rig.fix(360, 3010)
    assert rig.inferred == [StatusUpdate("d1", T + 360, "j1", "on_site")]
    assert arrival == [
        {"type": "geofence", "transition": "dwell", "ts": T + 360, "device_id": "d1",
         "technician_id": "t1", "geofence_id": "job:j1", "kind": "site", "dwell_s": 60.0,
         "job_id": "j1"},
        {"type": "status", "ts": T + 360, "job_id": "j1", "technician_id": "t1",
         "device_id": "d1", "status": "on_site", "previous": "en_route", "source": "geofence"},
        {"type": "notify", "notification": "arrived", "ts": T + 360, "job_id": "j1",
         "technician_id": "t1", "customer": {"name": "Customer j1", "ref": "C-j1"}},
        {"type": "eta", "ts": T + 360, "job_id": "j1", "technician_id": "t1", "state": "on_site",
         "eta": T + 360.0, "eta_p10": T + 360.0, "eta_p90": T + 360.0, "delay_s": -3240.0,
         "late_probability": 0.0, "departure": T + 2160.0},
    ]  # fmt: skip
    # Staying on: no second dwell, no second inference.
    assert rig.fix(420, 3000) == []
    assert rig.fix(480, 2990) == []
    # The technician's own "on_site" confirms (recorded by the pipeline), the engine is quiet.
    confirm = rig.status("j1", "on_site", 490)
    assert only(confirm, "status") == [("status", "j1", "on_site", "device")]
    assert confirm[1:] == []
    job = rig.engine.tours.get("j1")
    assert job is not None
    assert [(c.status, c.source) for c in job.history] == [
        ("en_route", "device"),
        ("on_site", "geofence"),
        ("on_site", "device"),
    ]


def test_updated_job_carries_its_eta_fields_and_predictions() -> None:
    rig = Rig()
    rig.job("j1", 3000, window=(0, 3600), planned=1800)
    rig.status("j1", "en_route", 10)
    rig.fix(30, 0)
    # The ETA, then the same job with the customer told it is arriving soon (5 min away).
    eta, job = rig.effects[-1].jobs
    assert (job.job_id, job.state, job.eta, job.eta_p90, job.delay_s) == (
        "j1", "en_route", T + 330.0, T + 330.0, -3270.0,
    )  # fmt: skip
    assert job.predictions == ((T + 30, T + 330.0),)
    assert (eta.notified, job.notified) == ((), ("arriving_soon",))
    assert rig.engine.tours.get("j1") == job
    rig.fix(100, 0)  # stood still 70 s: the ETA moved 70 s
    (job,) = rig.effects[-1].jobs
    assert job.predictions == ((T + 30, T + 330.0), (T + 100, T + 400.0))
    assert job.notified == ("arriving_soon",)  # kept, and not sent twice


def test_a_rebuilt_engine_does_not_tell_a_customer_twice() -> None:
    # What a new leader does: an engine loaded from the stored jobs, which keep what their
    # customers were told.
    rig = Rig()
    rig.job("j1", 3000, window=(0, 3600), planned=1800)
    rig.status("j1", "en_route", 10)
    assert only(rig.fix(30, 0), "notify") == [("notify", "arriving_soon", "j1")]
    stored = rig.engine.tours.get("j1")
    assert stored is not None
    fresh = Rig()
    fresh.engine.load_jobs([stored])
    fresh.owner = rig.owner
    assert only(fresh.fix(40, 0) + fresh.tick(60), "notify") == []


@pytest.mark.parametrize(
    ("state_steps", "expected"),
    [
        # Planned (nobody said en route): the site is a fence, but arrival is not inferred.
        ([], "planned"),
        # Already on site by the technician's word: nothing to infer either.
        ([("en_route", 10), ("on_site", 250)], "on_site"),
    ],
)
def test_no_inference_unless_en_route(state_steps: list[tuple[str, float]], expected: str) -> None:
    rig = Rig()
    rig.job("j1", 3000)
    for status, at in state_steps:
        rig.status("j1", status, at)
    events = rig.fix(300, 3000) + rig.fix(400, 3000)
    assert only(events, "geofence", "status") == [
        ("geofence", "enter", "job:j1", None),
        ("geofence", "dwell", "job:j1", 100.0),
    ]
    assert rig.inferred == []
    assert rig.state("j1") == expected


def test_another_technicians_job_site_is_no_fence_for_me() -> None:
    rig = Rig()
    rig.job("mine", 9000, seq=1)
    rig.job("theirs", 3000, tech="t2")
    rig.status("mine", "en_route", 10)
    rig.status("theirs", "en_route", 10, device="d2")
    events = rig.fix(300, 3000) + rig.fix(400, 3000) + rig.fix(500, 5000)
    assert only(events, "geofence", "status") == []
    assert (rig.state("mine"), rig.state("theirs")) == ("en_route", "en_route")
    # Its own technician dwelling there does arrive.
    events = rig.fix(300, 3000, device="d2") + rig.fix(400, 3000, device="d2")
    assert only(events, "geofence", "status") == [
        ("geofence", "enter", "job:theirs", None),
        ("geofence", "dwell", "job:theirs", 100.0),
        ("status", "theirs", "on_site", "geofence"),
    ]


def test_dwell_without_new_fixes_arrives_on_tick() -> None:
    """The phone stops reporting once parked: the tick's event time carries the dwell."""
    rig = Rig()
    rig.job("j1", 3000)
    rig.status("j1", "en_route", 10)
    assert only(rig.fix(300, 3000, received=302), "geofence") == [
        ("geofence", "enter", "job:j1", None)
    ]
    # Event time = 300 + (wall - 302): 59 s inside at wall 361, 60 s at wall 362.
    assert only(rig.tick(361), "geofence", "status") == []
    assert only(rig.tick(362), "geofence", "status", "notify") == [
        ("geofence", "dwell", "job:j1", 60.0),
        ("status", "j1", "on_site", "geofence"),
        ("notify", "arrived", "j1"),
    ]
    job = rig.engine.tours.get("j1")
    assert job is not None and job.history[-1].ts == T + 360


def test_dwell_of_a_device_without_technician_fires_on_tick() -> None:
    rig = Rig()
    rig.engine.put_fence(circle_fence("depot", north(0), LON0, 100, kind="depot", dwell_s=120))
    assert only(rig.fix(0, 0, device="stray", received=1), "geofence") == [
        ("geofence", "enter", "depot", None)
    ]
    assert rig.tick(120) == []
    assert rig.tick(121) == [
        {"type": "geofence", "transition": "dwell", "ts": T + 120, "device_id": "stray",
         "technician_id": None, "geofence_id": "depot", "kind": "depot", "dwell_s": 120.0},
    ]  # fmt: skip


def test_arrival_after_a_pause_on_the_way_is_announced() -> None:
    rig = Rig()
    rig.job("j1", 3000)
    for status, at in (("en_route", 10), ("paused", 20), ("resumed", 100)):
        assert only(rig.status("j1", status, at), "notify") == []
    assert only(rig.status("j1", "on_site", 400), "notify") == [("notify", "arrived", "j1")]
    assert only(rig.status("j1", "paused", 500) + rig.status("j1", "resumed", 600), "notify") == []
    assert only(rig.status("j1", "on_site", 610), "notify") == []  # back to work, not arrived


# -- leaving an open job ----------------------------------------------------------------


def arrived_rig() -> Rig:
    rig = Rig()
    rig.job("j1", 3000)
    rig.status("j1", "en_route", 10)
    rig.fix(300, 3000)
    rig.fix(360, 3000)
    assert rig.state("j1") == "on_site"
    return rig


def test_leaving_an_open_job_alerts_once_and_clears_on_return() -> None:
    rig = arrived_rig()
    # 100 m site: exit needs > 20 m beyond the edge (hysteresis), i.e. > 3120 m.
    assert only(rig.fix(400, 3110), "geofence", "alert") == []
    left = rig.fix(460, 3300)
    assert only(left, "geofence", "alert") == [
        ("geofence", "exit", "job:j1", 160.0),
        ("alert", "left_site_open_job", "j1", False),
    ]
    assert left[1] == {
        "type": "alert", "alert": "left_site_open_job", "severity": "warning", "ts": T + 460,
        "technician_id": "t1", "job_id": "j1", "state": "on_site", "device_id": "d1",
    }  # fmt: skip
    assert only(rig.fix(520, 3500) + rig.fix(580, 3400), "alert") == []
    back = rig.fix(640, 3000)
    assert only(back, "geofence", "alert") == [
        ("geofence", "enter", "job:j1", None),
        ("alert", "left_site_open_job", "j1", True),
    ]
    assert back[1]["ts"] == T + 640
    # Leaving again is a new condition; the job's end clears it.
    assert only(rig.fix(700, 3400), "alert") == [("alert", "left_site_open_job", "j1", False)]
    done = rig.status("j1", "done", 760)
    assert only(done, "alert", "notify") == [
        ("notify", "done", "j1"),
        ("alert", "left_site_open_job", "j1", True),
    ]
    assert done[2]["state"] == "done"
    assert only(rig.fix(820, 3000) + rig.fix(900, 3400), "alert", "geofence") == []


def test_two_devices_leaving_raise_one_alert() -> None:
    rig = arrived_rig()
    rig.fix(365, 3000, device="d1b")
    assert only(rig.fix(460, 3300), "alert") == [("alert", "left_site_open_job", "j1", False)]
    assert only(rig.fix(470, 3300, device="d1b"), "geofence", "alert") == [
        ("geofence", "exit", "job:j1", 105.0)
    ]


def test_late_fix_changes_nothing() -> None:
    rig = Rig()
    rig.job("j1", 3000)
    rig.status("j1", "en_route", 10)
    rig.fix(30, 0)
    assert only(rig.fix(300, 3000), "geofence") == [("geofence", "enter", "job:j1", None)]
    # Older than the newest: neither an exit (far outside) nor an ETA.
    assert rig.fix(250, 8000) == []
    assert rig.fix(340, 3000) == []
    # Another device of the same technician that is behind does not move them either.
    assert rig.fix(320, 8000, device="d1b") == []
    assert only(rig.fix(360, 3000), "geofence", "status") == [
        ("geofence", "dwell", "job:j1", 60.0),
        ("status", "j1", "on_site", "geofence"),
    ]


# -- ETA publication ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixes", "published"),
    [
        # Standing still en route: the ETA drifts 1 s per s; published at >= 60 s.
        ([30, 50, 80, 90, 100], [330, 390]),
        ([30, 89, 100], [330, 400]),
    ],
)
def test_eta_published_when_moved_60_s(fixes: list[float], published: list[float]) -> None:
    rig = Rig()
    rig.job("j1", 3000)
    rig.status("j1", "en_route", 10)
    events = [e for at in fixes for e in rig.fix(at, 0)]
    assert [round(e["eta"] - T) for e in events if e["type"] == "eta"] == published


def test_eta_throttle_holds_back_a_jump_until_the_interval() -> None:
    rig = Rig()
    rig.job("j1", 3000)
    rig.status("j1", "en_route", 10)
    assert only(rig.fix(30, 0), "eta") == [("eta", "j1", "en_route", 330.0)]
    assert rig.fix(35, -1000) == []  # 100 s further, but only 5 s after the last estimate
    assert only(rig.fix(40, -1000), "eta") == [("eta", "j1", "en_route", 440.0)]


def test_eta_published_on_a_state_change_even_if_unmoved() -> None:
    rig = Rig()
    rig.job("j1", 3000)
    assert only(rig.fix(30, 0), "eta") == [("eta", "j1", "planned", 330.0)]
    assert only(rig.status("j1", "en_route", 40), "eta") == [("eta", "j1", "en_route", 340.0)]


# -- the cascade: an overrun pushes the rest of the tour --------------------------------


def tour_rig(config: EngineConfig | None = None) -> Rig:
    """t1 on site at j1 (0 m) from T; j2 at 3 km, j3 at 6 km; 600 s each, windows open at T."""
    rig = Rig(config)
    rig.job("j1", 0, seq=1, window=(0, 1800))
    rig.job("j2", 3000, seq=2, window=(0, 1500))
    rig.job("j3", 6000, seq=3, window=(0, 2700))
    assert only(rig.fix(-50, 0), "eta", "geofence") == [
        ("geofence", "enter", "job:j1", None),
        ("eta", "j1", "planned", -50.0),
        ("eta", "j2", "planned", 900.0),  # leaves j1 at its planned end, T + 600
        ("eta", "j3", "planned", 1800.0),
    ]
    assert only(rig.status("j1", "on_site", 0), "notify", "eta") == [
        ("notify", "arrived", "j1"),
        ("eta", "j1", "on_site", 0.0),
    ]
    return rig


# (seconds after T of a fix at j1's site, the events it must produce)
CASCADE: list[tuple[float, list[Brief]]] = [
    (60, [("geofence", "dwell", "job:j1", 110.0)]),
    (120, []),
    (240, []),
    # j2 due in 600 s: the customer hears once (the technician is still working on j1).
    (300, [("notify", "arriving_soon", "j2")]),
    (360, []),
    (540, []),
    # Remaining on-site time never drops below 60 s: from here on every later ETA moves.
    (600, [("eta", "j2", "planned", 960.0), ("eta", "j3", "planned", 1860.0)]),
    (660, [("eta", "j2", "planned", 1020.0), ("eta", "j3", "planned", 1920.0)]),
    (720, [("eta", "j2", "planned", 1080.0), ("eta", "j3", "planned", 1980.0)]),
    # 780 s on site > 600 x 1.2: overrun, and the planner is asked once (nobody late yet).
    (780, [
        ("eta", "j2", "planned", 1140.0), ("eta", "j3", "planned", 2040.0),
        ("alert", "overrun", "j1", False),
        ("reoptimize", "overrun", ("j1", "j2", "j3"), 0.0),
    ]),
    (800, []),  # 20 s later: moved less than 60 s
    (840, [("eta", "j2", "planned", 1200.0), ("eta", "j3", "planned", 2100.0)]),
    (1140, [("eta", "j2", "planned", 1500.0), ("eta", "j3", "planned", 2400.0)]),
    # j2 predicted 60 s past its window: late risk and "delayed", but within the cool-down
    # and far below the minimum gain: no second request.
    (1200, [
        ("eta", "j2", "planned", 1560.0), ("eta", "j3", "planned", 2460.0),
        ("alert", "late_risk", "j2", False),
        ("notify", "delayed", "j2"),
    ]),
    (1440, [("eta", "j2", "planned", 1800.0), ("eta", "j3", "planned", 2700.0)]),
    # Then j3 as well (its spread is wider: raised once P(late) >= 0.5).
    (1500, [
        ("eta", "j2", "planned", 1860.0), ("eta", "j3", "planned", 2760.0),
        ("alert", "late_risk", "j3", False),
        ("notify", "delayed", "j3"),
    ]),
    (1560, [("eta", "j2", "planned", 1920.0), ("eta", "j3", "planned", 2820.0)]),
]  # fmt: skip


def test_golden_overrun_cascade() -> None:
    rig = tour_rig()
    for at, expected in CASCADE:
        events = rig.fix(at, 0)
        assert (at, briefs(events)) == (at, expected)
        assert all(e["ts"] == T + at for e in events)
    raised = [e for f in rig.effects for e in f.events if e["type"] == "alert"]
    alerts = {(e["alert"], e["job_id"]): e for e in raised}
    assert alerts[("overrun", "j1")] == {
        "type": "alert", "alert": "overrun", "severity": "warning", "ts": T + 780,
        "technician_id": "t1", "job_id": "j1", "elapsed_s": 780.0, "planned_duration_s": 600.0,
        "overrun_s": 180.0,
    }  # fmt: skip
    late = alerts[("late_risk", "j2")]
    # The spread of j1's rest comes from the (untaught) duration model's prior: a job past its
    # plan may end any moment or run on, so a 60-s lateness is likely, not near certain.
    assert {k: late[k] for k in ("severity", "eta", "window_end", "delay_s")} == {
        "severity": "warning", "eta": T + 1560.0, "window_end": T + 1500.0, "delay_s": 60.0,
    }  # fmt: skip
    assert 0.5 <= late["late_probability"] < 0.9
    assert T + 1560 + 60 < late["eta_p90"] < T + 1560 + 180
    # Done at last: the overrun clears, j2 is now a plain 300 s drive away.
    done = rig.status("j1", "done", 1600)
    assert briefs(done) == [
        ("status", "j1", "done", "device"),
        ("notify", "done", "j1"),
        ("eta", "j1", "done", None),  # closed: no ETA any more
        ("alert", "overrun", "j1", True),  # j2's ETA moved 20 s: not published
    ]
    cleared = done[-1]
    assert (cleared["ts"], cleared["elapsed_s"]) == (T + 1600, 780.0)  # the raise's detail


class RecordingDurations(DurationModel):
    def __init__(self, prior: DurationPrior | None = None) -> None:
        super().__init__(prior)
        self.seen: list[tuple[float, float]] = []

    def observe_job(self, planned_s: float, worked_s: float) -> None:
        self.seen.append((planned_s, worked_s))
        super().observe_job(planned_s, worked_s)


def test_finished_jobs_teach_durations() -> None:
    rig = Rig()
    rig.engine.durations = durations = RecordingDurations()
    rig.job("j1", 0, planned=600.0)
    rig.job("j2", 3000, seq=1, planned=900.0)
    rig.job("j3", 6000, seq=2, planned=300.0)
    rig.job("j4", 9000, seq=3, planned=300.0)
    rig.status("j1", "on_site", 100)
    rig.status("j1", "paused", 300)
    rig.status("j1", "resumed", 420)
    rig.status("j1", "done", 800)  # 700 s on site, 120 of them paused
    assert durations.seen == [(600.0, 580.0)]
    rig.status("j2", "en_route", 810)
    rig.status("j2", "on_site", 1000)
    rig.status("j2", "done", 1600)
    assert durations.seen[1:] == [(900.0, 600.0)]
    # Closed through the API without ever being on site: nothing worked to learn from.
    j3 = rig.engine.tours.get("j3")
    assert j3 is not None
    rig.engine.job_changed(msgspec.structs.replace(j3, state="done"), T + 1700)
    rig.status("j4", "on_site", 1800)
    rig.status("j4", "cancelled", 1900)  # not finished: says nothing about durations
    assert len(durations.seen) == 2
    assert durations.jobs == 2


def test_finished_jobs_teach_each_technicians_pace_and_it_moves_their_etas() -> None:
    rig = Rig()
    rig.engine.durations = durations = RecordingDurations()
    for k in range(15):  # a fleet whose technicians differ: 0.8, 1 and 1.25 x the plan
        for tech, f in (("quick", 0.8), ("even", 1.0), ("slow", 1.25)):
            rig.engine.paces.observe(tech, 600.0, 600.0 * f * (1.0 + 0.01 * (k % 3)))
    factors = []
    for k in range(1, 7):  # t1 takes half as long again, job after job
        factors.append(rig.engine.paces.factor("t1"))
        rig.job(f"j{k}", 0, seq=k, planned=600.0)
        rig.status(f"j{k}", "on_site", 1000.0 * k)
        rig.status(f"j{k}", "done", 1000.0 * k + 900.0)
    pace = rig.engine.paces.factor("t1")
    assert factors[0] == 1.0 and 1.2 < pace < 1.5
    # The fleet's duration model learns from plans scaled by the pace known at the time.
    assert durations.seen == [(600.0 * f, 900.0) for f in factors]
    # t1's next job: on site for its plan x the pace before the drive to the one after it.
    rig.job("n1", 0, seq=7, planned=600.0)
    rig.job("n2", 3000, seq=8, planned=600.0)
    arrival = rig.status("n1", "on_site", 7000)
    etas = {e["job_id"]: e["eta"] - T for e in arrival if e["type"] == "eta"}
    assert etas["n2"] == pytest.approx(7000 + 600.0 * pace + TRIP, abs=0.1)


def test_engine_cascade_rules_and_learned_durations() -> None:
    durations = DurationModel(DurationPrior(prior_weight=1e-6, decay=1.0))
    for _ in range(50):
        durations.observe_job(600.0, 900.0)  # every job takes half as long again
    config = EngineConfig(estimate=EstimateConfig(onsite_cv=0.0, learned_durations=True))
    rig = Rig(config)
    rig.engine.durations = durations
    rig.job("j1", 0, seq=1)
    rig.job("j2", 3000, seq=2)
    etas = {e["job_id"]: round(e["eta"] - T, 1) for e in rig.fix(0, 0) if e["type"] == "eta"}
    j1_work = round(600.0 * durations.median_ratio(), 1)
    assert j1_work == pytest.approx(900.0, abs=0.04 * 900.0)  # within a bin of 1.5
    assert etas == {"j1": 0.0, "j2": pytest.approx(j1_work + round(leg(0, 3000), 1), abs=0.1)}


def test_late_risk_clears_when_the_prediction_recovers() -> None:
    rig = tour_rig()
    for at, _ in CASCADE[:-2]:
        rig.fix(at, 0)
    # j1 is done and j2's window is widened: its risk clears, j3 still at risk.
    rig.status("j1", "done", 1460)
    events = rig.job("j2", 3000, at=1470, seq=2, window=(0, 3600))
    assert only(events, "alert") == [("alert", "late_risk", "j2", True)]
    assert only(rig.fix(1480, 100), "alert") == []


# -- stale devices (event time between fixes) --------------------------------------------


def stale_rig() -> Rig:
    rig = Rig()
    rig.job("j1", 30000)
    rig.job("j2", 40000, seq=1)
    rig.status("j1", "en_route", 0)
    rig.fix(20, 0, received=25)  # arrived 5 s after it was taken
    return rig


@pytest.mark.parametrize(("wall", "stale"), [(624, False), (625, True)])
def test_stale_device_event_time_is_fix_time_plus_wall_time_since_receipt(
    wall: float, stale: bool
) -> None:
    # Event time = 20 + (wall - 25): 599 s of silence at wall 624, 600 at wall 625.
    events = only(stale_rig().tick(wall), "alert")
    assert events == ([("alert", "stale_device", "j1", False)] if stale else [])


def test_stale_device_raised_once_with_one_request_and_cleared_by_a_fix() -> None:
    rig = stale_rig()
    stale = rig.tick(625)
    assert only(stale, "alert", "reoptimize") == [
        ("alert", "stale_device", "j1", False),
        ("reoptimize", "stale_device", ("j1", "j2"), 0.0),
    ]
    alert = next(e for e in stale if e["type"] == "alert")
    assert alert == {
        "type": "alert", "alert": "stale_device", "severity": "critical", "ts": T + 620,
        "technician_id": "t1", "job_id": "j1", "last_fix_ts": T + 20, "silent_s": 600.0,
    }  # fmt: skip
    # (Stood still since 20 s: long_stop would come at 920.)
    assert only(rig.tick(700) + rig.tick(900), "alert", "reoptimize") == []
    assert only(rig.fix(1000, 500, received=1001), "alert") == [
        ("alert", "stale_device", "j1", True)
    ]


@pytest.mark.parametrize(("wall", "stale"), [(919, False), (920, True)])
def test_a_fix_already_old_on_arrival_does_not_hold_event_time_back(
    wall: float, stale: bool
) -> None:
    # The newest fix (taken at 20) arrived at 700, the end of a flushed offline buffer:
    # fix time + wall time since would say 239 s of silence at wall 919. Event time stays
    # within max_lag_s (300 s) of the wall clock: 619 - 20 = 599 s, and 600 s at 920.
    rig = Rig()
    rig.job("j1", 30000)
    rig.status("j1", "en_route", 0)
    rig.fix(20, 0, received=700)
    alerts = [b for b in only(rig.tick(wall), "alert") if b[1] == "stale_device"]
    assert alerts == ([("alert", "stale_device", "j1", False)] if stale else [])
    # And an ETA published on a tick is never earlier than that floor.
    for e in rig.tick(wall + 30):
        assert e["ts"] >= T + wall + 30 - 300
        if e["type"] == "eta":
            assert e["eta"] >= e["ts"]


def test_a_device_reporting_on_a_past_timeline_keeps_it_between_fixes() -> None:
    # A replayed (or simulated) day: every fix arrives 1000 s after it was taken, one
    # every 10 s. Its ticks follow its own clock, as its fixes do: it is not silent.
    rig = Rig()
    rig.job("j1", 30000)
    rig.status("j1", "en_route", 0)
    for at in range(20, 400, 10):
        rig.fix(at, 0, received=at + 1000)
        events = rig.tick(at + 1005)
        assert [b for b in only(events, "alert") if b[1] == "stale_device"] == [], at


def test_stale_without_any_fix_counts_from_the_job_going_active() -> None:
    rig = Rig()
    rig.job("j1", 3000)
    rig.status("j1", "on_site", 0)  # straight from planned, and no fix ever
    assert only(rig.tick(590), "alert") == []
    assert only(rig.tick(600), "alert") == [("alert", "stale_device", "j1", False)]


# -- re-optimisation gating ------------------------------------------------------------


def planned_tour() -> Rig:
    """a, b, c at 3, 6 and 9 km, still planned; the technician stands at 0 m from T."""
    rig = Rig()
    rig.job("a", 3000, seq=1, window=(0, 10_000))
    rig.job("b", 6000, seq=2, window=(0, 10_000))
    rig.job("c", 9000, seq=3, window=(0, 10_000))
    assert only(rig.fix(0, 0), "eta") == [
        ("eta", "a", "planned", 300.0),
        ("eta", "b", "planned", 1200.0),
        ("eta", "c", "planned", 2100.0),
    ]
    return rig


def test_reoptimize_cooldown_and_minimum_gain() -> None:
    rig = planned_tour()
    steps: list[tuple[str, float, tuple[float, float], list[Brief]]] = [
        # (job, when, new window, alerts and requests) -- a job's ETA is now + 300/1200/2100.
        ("a", 100, (0, 100), [  # 300 s late: the first request goes out
            ("alert", "late_risk", "a", False),
            ("reoptimize", "late_risk", ("a",), 300.0),
        ]),
        ("b", 200, (0, 900), [  # 500 s late: within the cool-down, gain 200 < 300
            ("alert", "late_risk", "b", False),
        ]),
        ("c", 300, (0, 1700), [  # 700 s late: gain 400 >= 300 breaks the cool-down
            ("alert", "late_risk", "c", False),
            ("reoptimize", "late_risk", ("c",), 700.0),
        ]),
    ]  # fmt: skip
    for job_id, at, window, expected in steps:
        seq = {"a": 1, "b": 2, "c": 3}[job_id]
        m = 3000.0 * seq
        events = rig.job(job_id, m, at=at, seq=seq, window=window)
        assert (job_id, only(events, "alert", "reoptimize")) == (job_id, expected)
    # 900 s after the last request the cool-down is over: any new risk is sent.
    events = rig.job("d", 12000, at=1250, seq=4, window=(0, 1250 + 3000 - 600))
    assert only(events, "alert", "reoptimize") == [
        ("alert", "late_risk", "d", False),
        ("reoptimize", "late_risk", ("d",), 600.0),
    ]
    requests = [e for f in rig.effects for e in f.events if e["type"] == "reoptimize"]
    assert requests[0] == {
        "type": "reoptimize", "reason": "late_risk", "ts": T + 100, "technician_id": "t1",
        "job_ids": ["a"], "predicted_lateness_s": 300.0,
    }  # fmt: skip


def test_cancellation_and_urgent_jobs_request_replanning() -> None:
    rig = planned_tour()
    cancel = rig.status("b", "cancelled", 100)
    assert only(cancel, "reoptimize") == [("reoptimize", "cancelled", ("a", "c"), 0.0)]
    assert "job:b" not in rig.engine.fences.fences
    # Urgent and cancellations share a short cool-down (60 s) so a burst is one request.
    urgent = rig.job("u1", 1000, at=130, seq=0, priority="urgent")
    assert only(urgent, "reoptimize") == []
    urgent = rig.job("u2", 1000, at=161, seq=0, priority="urgent")
    assert only(urgent, "reoptimize") == [("reoptimize", "urgent_job", ("u2",), 0.0)]
    # Editing an urgent job is not a new one.
    assert only(rig.job("u2", 1500, at=400, priority="urgent"), "reoptimize") == []
    # Cancelling the last open job leaves nothing to re-plan.
    for job_id in ("a", "c", "u1", "u2"):
        rig.status(job_id, "cancelled", 500)
    assert [e for f in rig.effects[-4:] for e in f.events if e["type"] == "reoptimize"] == [
        {"type": "reoptimize", "reason": "cancelled", "ts": T + 500, "technician_id": "t1",
         "job_ids": ["u1", "u2", "c"], "predicted_lateness_s": 0.0},
    ]  # fmt: skip


def test_after_a_short_cooldown_the_late_risk_is_sent_too() -> None:
    config = EngineConfig(delay=replace(DelayConfig(), reopt_cooldown_s=400.0))
    rig = tour_rig(config)
    events = [e for at in range(60, 1260, 60) for e in rig.fix(at, 0)]
    assert only(events, "reoptimize") == [
        ("reoptimize", "overrun", ("j1", "j2", "j3"), 0.0),
        ("reoptimize", "late_risk", ("j2",), 60.0),
    ]


# -- moving jobs between technicians ----------------------------------------------------


def test_an_urgent_job_new_to_a_tour_requests_replanning() -> None:
    rig = planned_tour()
    # Created without a technician: no tour to re-plan yet.
    assert only(rig.job("u", 1000, at=10, tech=None, priority="urgent"), "reoptimize") == []
    # Assigned later: it is new to t1's tour all the same.
    assigned = rig.job("u", 1000, at=20, priority="urgent")
    assert only(assigned, "reoptimize") == [("reoptimize", "urgent_job", ("u",), 0.0)]
    # Handed over to t2: new to theirs.
    moved = rig.job("u", 1000, at=100, tech="t2", priority="urgent")
    assert [(e["technician_id"], e["reason"]) for e in moved if e["type"] == "reoptimize"] == [
        ("t2", "urgent_job")
    ]


def test_unassigning_a_job_clears_its_alerts_at_once() -> None:
    rig = planned_tour()
    assert only(rig.job("a", 3000, at=100, seq=1, window=(0, 100)), "alert") == [
        ("alert", "late_risk", "a", False)
    ]
    events = rig.job("a", 3000, at=150, tech=None, seq=1, window=(0, 100))
    assert only(events, "alert", "eta") == [
        ("eta", "a", "planned", None),  # t1's ETA for it withdrawn: nobody's tour now
        ("eta", "b", "planned", 750.0),  # b is first now: 600 s from where t1 stands
        ("eta", "c", "planned", 1650.0),
        ("alert", "late_risk", "a", True),
    ]


def test_reassigning_a_job_moves_its_fence_and_tour() -> None:
    rig = planned_tour()
    events = rig.job("b", 6000, at=50, tech="t2", seq=2)
    # t1's ETA for b is withdrawn (t2, never seen, predicts none); c now follows a
    # directly: leaves a at 50 + 300 + 600, 600 s to drive.
    assert only(events, "eta") == [("eta", "b", "planned", None), ("eta", "c", "planned", 1550.0)]
    job_b = rig.engine.tours.get("b")
    assert job_b is not None and (job_b.eta, job_b.eta_p90, job_b.delay_s) == (None,) * 3
    assert [j.job_id for j in rig.engine.tours.tour("t1")] == ["a", "c"]
    assert [j.job_id for j in rig.engine.tours.tour("t2")] == ["b"]
    assert rig.engine.fences.fences["job:b"].technician_ids == frozenset({"t2"})
    rig.job("b", 6000, at=60, tech=None, seq=2)
    assert "job:b" not in rig.engine.fences.fences
    assert rig.engine.tours.get("b") is None


def test_ended_pauses_teach_pause_lengths_and_a_pause_delays_the_next_jobs() -> None:
    rig = Rig()
    rig.engine.pauses = pauses = RecordingDurations(PAUSE_PRIOR)
    rig.job("j1", 0, planned=600.0)
    rig.status("j1", "on_site", 100)
    rig.status("j1", "paused", 200)
    rig.status("j1", "resumed", 500)
    rig.status("j1", "paused", 600)
    rig.status("j1", "resumed", 900)
    rig.status("j1", "done", 950)
    assert pauses.seen == [(600.0, 300.0), (600.0, 300.0)]
    # A paused technician's next job waits for the rest of the pause, as learned.
    rig.job("j3", 0, seq=2, planned=600.0)
    rig.job("j4", 3000, seq=3, planned=600.0)
    rig.status("j3", "on_site", 1000)
    rig.fix(1000, 0)
    paused = rig.status("j3", "paused", 1100)
    [eta] = [e for e in paused if e["type"] == "eta" and e["job_id"] == "j4"]
    rest, _ = pauses.remaining(600.0, 0.0) or (0.0, 0.0)
    assert 0.0 < rest < 600.0  # the prior's ten minutes, pulled down by two of five
    # j3: 100 s worked, 500 s of plan to go after the pause; then the 300 s drive.
    assert eta["eta"] == pytest.approx(T + 1100 + rest + 500 + TRIP, abs=1.0)


def test_the_bands_a_job_had_before_its_arrival_teach_the_band_scales() -> None:
    rig = Rig()
    rig.engine.model = SpeedModel(SpeedPrior(SPEED, detour_factor=1.0))  # with a spread
    rig.job("j1", 3000, planned=600.0)
    rig.status("j1", "en_route", 0)
    rig.fix(10, 0)  # tracked: the first sample, the ETA at 310
    rig.fix(200, 0)  # stood still: the ETA moved and is published, but no sample yet
    rig.fix(310, 0)  # 5 min on: the second sample, the ETA at 610
    bands = rig.engine.techs["t1"].band_samples["j1"]
    assert len(bands) == 2 and all(lo < 310 + T < hi for lo, hi in bands[:1])
    assert bands[1][0] < 610 + T < bands[1][1]
    assert rig.engine.bands.scales == (1.0, 1.0)
    rig.status("j1", "on_site", 520)  # inside both bands: both sides were too wide
    assert all(lo < 520 + T < hi for lo, hi in bands)
    assert "j1" not in rig.engine.techs["t1"].band_samples
    assert rig.engine.bands.arrivals == 1
    assert rig.engine.bands.scales == pytest.approx((exp(-0.005), exp(-0.005)))


# -- tours over several days ---------------------------------------------------------

DAY = 86400.0


def test_booking_tomorrows_tour_leaves_todays_alone() -> None:
    # T is 07:13 in Tokyo: each day's windows fall on that local day. Both days are
    # numbered from 1; tomorrow's tour is booked while today's is under way.
    def today() -> Rig:
        rig = Rig(EngineConfig(timezone="Asia/Tokyo"))
        rig.job("j1", 3000, seq=1, window=(0, 3600), planned=1800)
        rig.job("j2", 6000, seq=2, window=(3600, 10800), planned=1800)
        rig.status("j1", "en_route", 0)
        rig.fix(10, 0)
        return rig

    rig, alone = today(), today()
    booked = rig.job("k1", 500, seq=1, window=(DAY, DAY + 3600), planned=1800, at=20)
    booked += rig.job("k2", 1500, seq=2, window=(DAY + 3600, DAY + 7200), at=30)
    # Only tomorrow's ETAs are new: the first one as its window opens, the second no more
    # than 15 min (max_early_s) before its own; no customer of today's is told of a delay,
    # nobody is told of an arrival tonight.
    assert only(booked, "eta", "notify", "alert", "reoptimize") == [
        ("eta", "k1", "planned", DAY),
        ("eta", "k2", "planned", DAY + 3600 - 900),
    ]
    # Today's ETAs are what they are without tomorrow's tour (re-estimated at +30 s).
    alone.job("j2", 6000, seq=2, window=(3600, 10800), planned=1800, at=30)
    after = {e.job_id: e.eta for e in rig.engine.techs["t1"].etas}
    assert {e.job_id: after[e.job_id] for e in alone.engine.techs["t1"].etas} == {
        e.job_id: e.eta for e in alone.engine.techs["t1"].etas
    }
    assert set(after) == {"j1", "j2", "k1", "k2"}


def test_jobs_closed_a_day_ago_leave_the_tour_and_what_was_kept_on_them() -> None:
    rig = Rig(EngineConfig(closed_kept_s=DAY, retire_every_s=3600.0))
    rig.job("j1", 3000, seq=1, window=(0, 3600))
    rig.job("j2", 0, seq=2, window=(0, 7200))
    rig.status("j1", "en_route", 0)
    rig.fix(10, 0)
    rig.status("j1", "on_site", 400)
    rig.status("j1", "done", 1000)
    rig.job("gone", 500, seq=3, window=(0, 7200))
    rig.status("gone", "cancelled", 1100)  # published ETAs and bands, never reached
    tech = rig.engine.techs["t1"]
    # Closed: their last eta event said so (no ETA) and nothing is published for them.
    assert not {"j1", "gone"} & set(tech.published) and "gone" in tech.band_samples
    for job_id in ("j1", "gone"):
        closed = rig.engine.tours.get(job_id)
        assert closed is not None and (closed.eta, closed.eta_p90, closed.delay_s) == (None,) * 3
    rig.tick(1200)  # the first tick retires what is old enough: nothing yet
    assert [j.job_id for j in rig.engine.tours.tour("t1")] == ["j1", "j2", "gone"]
    rig.fix(DAY + 1200, 0)  # a day later by the technician's clock: both are old enough
    rig.tick(1200 + 3599)  # but within the hour (wall time) since the last check
    assert len(rig.engine.tours.tour("t1")) == 3
    rig.tick(1200 + 3600)
    assert [j.job_id for j in rig.engine.tours.tour("t1")] == ["j2"]
    assert set(tech.published) == {"j2"} and set(tech.band_samples) <= {"j2"}
    # A retired job changing again is filed anew (and goes back on the tour).
    rig.job("j1", 3000, seq=1, window=(DAY, DAY + 3600), at=DAY + 1300)
    assert [j.job_id for j in rig.engine.tours.tour("t1")] == ["j2", "j1"]


def test_bands_before_the_technician_is_tracked_teach_nothing() -> None:
    rig = Rig()
    rig.engine.model = SpeedModel(SpeedPrior(SPEED, detour_factor=1.0))  # with a spread
    rig.fix(0, 0)  # last night's fix
    rig.job("j1", 3000, planned=600.0, at=20000)  # booked this morning: an ETA, untracked
    tech = rig.engine.techs["t1"]
    assert "j1" in tech.published and "j1" not in tech.band_samples
    rig.fix(20100, 0)  # the day begins: tracked again
    rig.fix(20400, 0)
    assert len(tech.band_samples["j1"]) >= 1


def test_before_setting_off_the_first_eta_waits_for_the_usual_start() -> None:
    def clock(day: int, h: int, m: int = 0) -> float:  # after T; day 0 is 2023-11-15 UTC
        return 6400.0 + day * DAY + h * 3600.0 + m * 60.0

    def eta(day: int, h: int, m: int) -> float:
        return round(clock(day, h, m) + TRIP, 1)

    rig = Rig()
    for day in range(5):  # set off at 07:00, 07:10, ... 07:40 on five mornings
        window = (clock(day, 7), clock(day, 9))
        rig.job(f"d{day}", 3000, seq=1, window=window, at=clock(day, 6))
        rig.status(f"d{day}", "en_route", clock(day, 7, 10 * day))
        rig.status(f"d{day}", "cancelled", clock(day, 12))
    rig.fix(clock(4, 18), 0)  # last night, back where every day starts
    today = (clock(5, 7), clock(5, 9))
    # Booked at 06:50: set off at 07:20, the median of the five starts.
    booked = rig.job("j1", 3000, seq=1, window=today, at=clock(5, 6, 50))
    assert only(booked, "eta") == [("eta", "j1", "planned", eta(5, 7, 20))]
    # 07:25 and not gone: 07:35, between the two later mornings.
    assert only(rig.tick(clock(5, 7, 25)), "eta") == [("eta", "j1", "planned", eta(5, 7, 35))]
    # 07:45, later than ever: leave now, as without the model.
    assert only(rig.tick(clock(5, 7, 45)), "eta") == [("eta", "j1", "planned", eta(5, 7, 45))]
    moving = rig.status("j1", "en_route", clock(5, 7, 50))
    assert only(moving, "eta") == [("eta", "j1", "en_route", eta(5, 7, 50))]
    assert rig.engine.starts.days == 6
    # The second job of a day is no start: it follows the first.
    rig.job("j2", 6000, seq=2, window=today, at=clock(5, 8))
    rig.status("j1", "on_site", clock(5, 8))
    rig.status("j1", "done", clock(5, 8, 15))
    rig.status("j2", "en_route", clock(5, 8, 30))
    assert rig.engine.starts.days == 6
    rig.status("j2", "cancelled", clock(5, 9))
    # A day begun on site without en_route (planned -> on_site) has begun all the same.
    rig.job("k1", 0, seq=1, window=(clock(6, 6), clock(6, 9)), at=clock(6, 5))
    rig.job("k2", 3000, seq=2, window=(clock(6, 6), clock(6, 9)), at=clock(6, 5))
    rig.status("k1", "on_site", clock(6, 6, 40))
    done = rig.status("k1", "done", clock(6, 6, 45))  # early: the next ETA moves
    assert only(done, "eta") == [
        ("eta", "k2", "planned", eta(6, 6, 45)),
        ("eta", "k1", "done", None),
    ]


def test_a_first_job_round_the_corner_is_not_arriving_soon_at_dawn() -> None:
    rig = Rig()
    rig.fix(0, 0)  # parked for the night
    # Booked at dawn, 800 m away, its window opening three hours later.
    booked = rig.job("j1", 800, window=(3 * 3600, 5 * 3600), at=600)
    assert only(booked, "notify") == []
    assert only(rig.tick(1200), "notify") == []
    # On the way and within a kilometre: now it is.
    assert only(rig.status("j1", "en_route", 3 * 3600 - 300), "notify") == [
        ("notify", "arriving_soon", "j1")
    ]


def test_stored_jobs_the_engine_cannot_use_are_left_out_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What an older version let into the store: a window beyond year 9999, a site at a
    # pole. Loading them must not stop the gateway from starting (it did, in a loop).
    engine = Engine(EngineConfig(), model=frozen_model())
    site = Site(60.0, 25.0, 80.0)
    window = Window(1_700_000_000.0, 1_700_003_600.0)
    jobs = [
        Job("far", "t1", site, window=Window(1e300, 1e300)),
        Job("polar", "t1", Site(88.0, 25.0, 80.0), window=window),
        Job("fine", "t1", site, window=window),
    ]
    engine.load_jobs(jobs)
    assert sorted(j.job_id for j in engine.tours.tour("t1")) == ["fine", "polar"]
    assert sorted(engine.fences.fences) == ["job:fine"]
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "job 'far' left out of the tours",
        "job 'polar' has no site fence",
    ]
