"""The in-process Gateway under arbitrary sequences of operations (hypothesis, stateful).

A ``RuleBasedStateMachine`` drives one Gateway (MemoryStore, MemoryBus, engine inline) with
a clock the machine moves: a few technicians and their devices, a handful of jobs near
60.17, 24.94 with windows around the clock, and device statuses (MQTT), API statuses,
fixes (MQTT and HTTP; driving, standing, at or near sites), reassignments, re-sequencing,
cancellations, device hand-overs and ticks. After every step it checks:

1. at most one job of a technician is travelling (``gateway.tours.travelling``);
2. each job's state is its history's last status, and each step of the history is an
   allowed transition, a set-back to planned by the gateway or the API, or a device
   overriding a geofence-inferred status (``pipeline.apply_status``);
3. a closed job assigned to a technician has no ETA fields (its technician was estimated
   at the close, and the engine then publishes a last, null ETA); stored ETA fields are
   all set or all None, with ``eta <= eta_p90``;
4. every ``eta`` event has all prediction fields null and a closed state, or finite
   numbers with ``eta_p10 <= eta <= eta_p90``;
5. no alert is raised twice for the same (alert, job) without a ``cleared`` in between,
   and none is still raised once its job is closed; the store lists exactly the alerts
   raised and not cleared; no customer is told "arriving soon" or "delayed" twice for one
   job and assignment (a hand-over may tell them once more) -- across restarts too (a
   new engine over the same store, as after a failover);
6. each device is listed by at most one technician, and ``Gateway.technician_of`` agrees
   with the store;
7. ``handle_batch`` never raises, ``report_status`` raises only ``Rejected`` /
   ``BadPayload``, and the other entry points raise nothing for valid input;
8. the engine's tour book is not stale: a filed job has the stored job's owner, state and
   history (``gateway.tours``: "never stale within a process").

An eta event with no prediction is also right for an open job just handed to another
technician (what the previous one's tour predicted is withdrawn). The three tests at the
end are the minimal scripts of the bugs this machine found (since fixed): an ETA kept
from a previous technician, two jobs en route after a status older than the other, a
left-site alert that stayed with the previous technician.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable
from typing import TypeVar

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from eta.estimate import CLOSED_STATES
from gateway.bus import MemoryBus, Subscription
from gateway.errors import BadPayload
from gateway.metrics import Metrics
from gateway.model import (
    DEVICE_STATUSES,
    Event,
    Fix,
    Job,
    Site,
    StatusChange,
    StatusUpdate,
    Technician,
    Window,
)
from gateway.pipeline import TRANSITIONS
from gateway.service import Gateway, Inbound
from gateway.store import MemoryStore
from gateway.topics import TopicScheme
from gateway.tours import travelling

T = TypeVar("T")
CUSTOMER_ONCE = ("arriving_soon", "delayed")

# 2023-11-14 08:00 UTC: a working morning (the engine's service days are UTC dates).
START = 1_699_948_800.0 + 8 * 3600.0

TECHNICIANS: dict[str, tuple[str, ...]] = {"T1": ("d1", "d2"), "T2": ("d3",), "T3": ("d4", "d5")}
DEVICES = ("d1", "d2", "d3", "d4", "d5", "d6")  # d6 starts with nobody
TECH_IDS = tuple(TECHNICIANS)

# job id -> (technician, site, window start offset from START (None: no window), sequence)
JOBS: dict[str, tuple[str | None, tuple[float, float], float | None, int]] = {
    "J1": ("T1", (60.1700, 24.9400), 0.0, 1),
    "J2": ("T1", (60.1750, 24.9500), 3600.0, 2),
    "J3": ("T2", (60.1800, 24.9300), 1800.0, 1),
    "J4": ("T2", (60.1650, 24.9600), None, 2),
    "J5": ("T3", (60.1700, 24.9410), -1800.0, 1),  # its site overlaps J1's
    "J6": (None, (60.1720, 24.9450), 7200.0, 3),
}
JOB_IDS = tuple(JOBS)
# Places a fix can be: each site, near a site (inside its 100 m), just outside, between
# sites, and far away.
PLACES: tuple[tuple[float, float], ...] = (
    *(site for _, site, _, _ in JOBS.values()),
    (60.1703, 24.9404),
    (60.1750, 24.9520),
    (60.1812, 24.9300),
    (60.1725, 24.9450),
    (60.2000, 24.9000),
)
SITE_OF = {job_id: site for job_id, (_, site, _, _) in JOBS.items()}

# Device clocks near the gateway's: behind by up to 5 min (late, buffered), ahead by a
# little; now and then beyond the codec's 5 min future tolerance (dead-lettered).
# Every device status, the ones that move a job along more often than the ones that end it.
STATUS_CHOICES = (
    "en_route", "en_route", "on_site", "on_site", "paused", "paused", "resumed", "resumed",
    "done", "cancelled", "failed",
)  # fmt: skip
assert frozenset(STATUS_CHOICES) == DEVICE_STATUSES
statuses = st.sampled_from(STATUS_CHOICES)
device_skew = st.one_of(
    st.sampled_from([0.0, -1.0, -30.0, -61.0, -200.0, 5.0]),
    st.floats(-400.0, 290.0, allow_nan=False),
    st.just(400.0),
)


def job_of(job_id: str) -> Job:
    technician_id, (lat, lon), start, sequence = JOBS[job_id]
    window = None if start is None else Window(START + start, START + start + 5400.0)
    return Job(job_id, technician_id, Site(lat, lon), window, 1800.0, sequence)


def as_put(job: Job, **changes: object) -> Job:
    """``job`` as ``PUT /api/v1/jobs`` hands it to the gateway: the booking alone (with
    ``changes``), none of what the gateway and the engine keep (state, ETA, notified)."""
    booking = Job(
        job.job_id, job.technician_id, job.site, job.window, job.planned_duration_s,
        job.sequence, job.customer, job.priority,
    )  # fmt: skip
    return msgspec.structs.replace(booking, **changes)


def allowed_step(before: StatusChange | None, change: StatusChange, state: str) -> bool:
    """Whether ``change`` (made with the job in ``state``, after ``before``) is legitimate."""
    if change.status == "planned":  # pipeline.set_back
        return change.source in ("gateway", "api")
    if change.status in TRANSITIONS[state]:
        return True
    # A device's word on a geofence-inferred state: confirmed or overridden.
    if before is not None and before.source == "geofence" and change.source == "device":
        return change.status in (TRANSITIONS[before.previous] | {before.previous, state})
    return False


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


class GatewayMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.now = START
        self.bus = MemoryBus()
        self.store = MemoryStore()
        self.gateway = Gateway(
            self.store, self.bus, Metrics(), TopicScheme(), clock=lambda: self.now
        )
        self.subscribing = self.bus.subscribe(None, None, 1_000_000)
        self.sub: Subscription = self.run(self.subscribing.__aenter__())
        # (alert, job_id) -> the raising event, while not cleared
        self.raised: dict[tuple[str, str | None], Event] = {}
        # jobs ever given to another technician (their ETA may be withdrawn)
        self.moved: set[str] = set()
        # (notification, job id, technician id) of the customer notifications sent
        self.told: set[tuple[str, str, str | None]] = set()

    def run(self, coro: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coro

        return self.loop.run_until_complete(wrapped())

    def teardown(self) -> None:
        try:
            self.run(self.subscribing.__aexit__(None, None, None))
        finally:
            self.loop.close()

    # -- set-up ---------------------------------------------------------------------------

    @initialize()
    def fleet(self) -> None:
        for technician_id, devices in TECHNICIANS.items():
            self.run(self.gateway.put_technician(Technician(technician_id, "", devices)))
        for job_id in JOB_IDS:
            self.run(self.gateway.put_job(job_of(job_id)))

    # -- operations -----------------------------------------------------------------------

    def _batch(self, inbound: list[Inbound]) -> None:
        # Invariant 7: malformed or refused input is dead-lettered, never raised.
        self.run(self.gateway.handle_batch(inbound))

    @rule(
        device=st.sampled_from(DEVICES),
        job_id=st.sampled_from(JOB_IDS),
        status=statuses,
        skew=device_skew,
    )
    def device_status(self, device: str, job_id: str, status: str, skew: float) -> None:
        payload = orjson.dumps({"ts": self.now + skew, "job": job_id, "status": status})
        self._batch([Inbound(f"fleet/{device}/status", payload, self.now)])

    @rule(
        job_id=st.sampled_from(JOB_IDS),
        status=statuses,
        skew=st.sampled_from([0.0, -5.0, -120.0]),
    )
    def api_status(self, job_id: str, status: str, skew: float) -> None:
        update = StatusUpdate("", self.now + skew, job_id, status)
        with contextlib.suppress(BadPayload):  # Rejected included: the documented refusals
            self.run(self.gateway.report_status(update, source="api"))

    @rule(
        job_id=st.sampled_from(JOB_IDS),
        status=statuses,
        skew=device_skew,
        which=st.integers(0, 1),
    )
    def own_status(self, job_id: str, status: str, skew: float, which: int) -> None:
        """A status from a device of the job's technician (most statuses are)."""
        job = self.run(self.store.get_job(job_id))
        assert job is not None
        technician = None
        if job.technician_id is not None:
            technician = self.run(self.store.get_technician(job.technician_id))
        if technician is None or not technician.device_ids:
            return
        device = technician.device_ids[which % len(technician.device_ids)]
        self.device_status(device, job_id, status, skew)

    @rule(
        device=st.sampled_from(DEVICES),
        place=st.sampled_from(PLACES),
        skew=device_skew,
        moving=st.booleans(),
        http=st.booleans(),
    )
    def fix(self, device: str, place: tuple[float, float], skew: float, moving: bool,
            http: bool) -> None:  # fmt: skip
        lat, lon = place
        spd = 12.0 if moving else 0.0
        if http:
            fix = Fix(device, self.now + min(skew, 0.0), lat, lon, spd, acc=10.0)
            self.run(self.gateway.ingest_fixes([fix]))
            return
        body = {"ts": self.now + skew, "lat": lat, "lon": lon, "spd": spd, "acc": 10.0}
        self._batch([Inbound(f"fleet/{device}/pos", orjson.dumps(body), self.now)])

    @rule(
        device=st.sampled_from(DEVICES),
        job_id=st.sampled_from(JOB_IDS),
        stay_s=st.sampled_from([30.0, 90.0, 180.0]),
        status=st.sampled_from([None, "en_route", "on_site"]),
    )
    def drive_to(self, device: str, job_id: str, stay_s: float, status: str | None) -> None:
        """A drive into a site and a stay there, up to now, in one batch (an offline
        phone flushing), optionally with a status between the drive and the stay."""
        lat, lon = SITE_OF[job_id]
        start = self.now - stay_s - 120.0
        drive = [
            {"ts": start + 30.0 * i, "lat": lat + 0.01 * (4 - i) / 4, "lon": lon, "spd": 12.0}
            for i in range(4)
        ]
        stay = [
            {"ts": self.now - stay_s + 30.0 * i, "lat": lat, "lon": lon, "spd": 0.0}
            for i in range(int(stay_s // 30.0) + 1)
        ]
        inbound = [Inbound(f"fleet/{device}/pos", orjson.dumps(drive), self.now)]
        if status is not None:
            payload = orjson.dumps({"ts": stay[0]["ts"], "job": job_id, "status": status})
            inbound.append(Inbound(f"fleet/{device}/status", payload, self.now))
        inbound.append(Inbound(f"fleet/{device}/pos", orjson.dumps(stay), self.now))
        self._batch(inbound)

    @rule(
        job_id=st.sampled_from(JOB_IDS),
        technician_id=st.sampled_from((*TECH_IDS, None)),
    )
    def reassign(self, job_id: str, technician_id: str | None) -> None:
        job = self.run(self.store.get_job(job_id))
        assert job is not None
        if technician_id != job.technician_id:
            self.moved.add(job_id)
            # Handed over: its customer may be told once more, by the new technician.
            self.told = {t for t in self.told if t[1] != job_id}
        self.run(self.gateway.put_job(as_put(job, technician_id=technician_id)))

    @rule(job_id=st.sampled_from(JOB_IDS), sequence=st.integers(0, 5))
    def resequence(self, job_id: str, sequence: int) -> None:
        job = self.run(self.store.get_job(job_id))
        assert job is not None
        self.run(self.gateway.put_job(as_put(job, sequence=sequence)))

    # Up to the next morning: closed jobs retire from the tours after a day.
    @rule(advance=st.sampled_from([1.0, 11.0, 61.0, 300.0, 700.0, 1900.0, 7200.0, 86_400.0]))
    def tick(self, advance: float) -> None:
        self.now += advance
        self.run(self.gateway.tick())

    @rule(advance=st.sampled_from([5.0, 30.0, 90.0]))
    def wait(self, advance: float) -> None:
        self.now += advance

    @rule(device=st.sampled_from(DEVICES), technician_id=st.sampled_from(TECH_IDS))
    def hand_device(self, device: str, technician_id: str) -> None:
        """The device joins the technician (leaving whoever had it)."""
        had = self.run(self.store.get_technician(technician_id))
        devices = had.device_ids if had is not None else ()
        if device not in devices:
            devices = (*devices, device)
        self.run(self.gateway.put_technician(Technician(technician_id, "", devices)))

    @rule()
    def restart(self) -> None:
        """A new engine over the same store and bus (a failover): it rebuilds from the store."""
        self.gateway = Gateway(
            self.store, self.bus, Metrics(), TopicScheme(), clock=lambda: self.now
        )
        self.run(self.gateway.start())

    @rule(technician_id=st.sampled_from(TECH_IDS))
    def drop_devices(self, technician_id: str) -> None:
        """The technician keeps only their first device."""
        had = self.run(self.store.get_technician(technician_id))
        assert had is not None
        self.run(self.gateway.put_technician(Technician(technician_id, "", had.device_ids[:1])))

    # -- invariants -----------------------------------------------------------------------

    def _jobs(self) -> list[Job]:
        return self.run(self.store.list_jobs())

    @invariant()
    def check(self) -> None:
        # In this order: the events first, so that the job checks know what was said.
        self.events_are_well_formed()
        self.alerts_end_with_their_job()
        self.standing_alerts_are_stored()
        self.one_travelling_job_per_technician()
        self.history_is_consistent()
        self.closed_jobs_have_no_eta()
        self.devices_have_one_owner()
        self.tour_book_is_current()

    def one_travelling_job_per_technician(self) -> None:
        for technician_id in TECH_IDS:
            jobs = self.run(self.store.jobs_of(technician_id))
            moving = [j for j in jobs if travelling(j)]
            assert len(moving) <= 1, f"{technician_id} travelling to {moving}"

    def history_is_consistent(self) -> None:
        for job in self._jobs():
            state, before = "planned", None
            for change in job.history:
                assert change.previous == state, (job.job_id, job.history)
                assert allowed_step(before, change, state), (job.job_id, change, job.history)
                state, before = change.status, change
            assert job.state == state, (job.job_id, job.state, job.history)

    def closed_jobs_have_no_eta(self) -> None:
        for job in self._jobs():
            # The stored fields are all set or all cleared, and eta is inside its band.
            assert (job.eta is None) == (job.eta_p90 is None) == (job.delay_s is None), job
            if job.eta is not None and job.eta_p90 is not None:
                assert job.eta <= job.eta_p90, job
            if job.state not in CLOSED_STATES or job.technician_id is None:
                continue
            assert (job.eta, job.eta_p90, job.delay_s) == (None, None, None), job

    def events_are_well_formed(self) -> None:
        assert not self.sub.overflowed.is_set()
        while not self.sub.queue.empty():
            event: Event = orjson.loads(self.sub.queue.get_nowait()[2])
            if event["type"] == "eta":
                self._check_eta(event)
            elif event["type"] == "alert":
                self._check_alert(event)
            elif event["type"] == "notify" and event["notification"] in CUSTOMER_ONCE:
                # A customer is told each at most once per job and technician.
                told = (event["notification"], event["job_id"], event["technician_id"])
                assert told not in self.told, ("told twice", event)
                self.told.add(told)

    def _check_eta(self, event: Event) -> None:
        fields = ("eta", "eta_p10", "eta_p90", "delay_s", "late_probability", "departure")
        values = [event[f] for f in fields]
        if all(v is None for v in values):
            # No prediction: the job was closed, or handed to another technician (what the
            # previous one's tour predicted is withdrawn until the new one's estimate).
            assert event["state"] in CLOSED_STATES or event["job_id"] in self.moved, event
            return
        assert all(_finite(v) for v in values), event
        assert event["eta_p10"] <= event["eta"] <= event["eta_p90"], event
        assert 0.0 <= event["late_probability"] <= 1.0, event

    def _check_alert(self, event: Event) -> None:
        key = (event["alert"], event["job_id"])
        if event.get("cleared"):
            self.raised.pop(key, None)
            return
        assert key not in self.raised, ("raised twice", self.raised[key], event)
        self.raised[key] = event

    def alerts_end_with_their_job(self) -> None:
        """An alert still raised concerns an open job: a job's close clears its alerts."""
        for (alert, job_id), raised in self.raised.items():
            job = self.run(self.store.get_job(job_id)) if job_id is not None else None
            if job is None or job.state not in CLOSED_STATES:
                continue
            raise AssertionError(f"{alert} still raised for closed job {job}: {raised}")

    def standing_alerts_are_stored(self) -> None:
        """The store lists exactly the alerts raised and not cleared (GET /api/v1/alerts)."""
        stored = {(a["alert"], a["job_id"]): a for a in self.run(self.store.list_alerts())}
        assert stored == self.raised

    def devices_have_one_owner(self) -> None:
        listed: dict[str, str] = {}
        for technician in self.run(self.store.list_technicians()):
            for device in technician.device_ids:
                assert device not in listed, (device, listed[device], technician)
                listed[device] = technician.technician_id
        for device in DEVICES:
            owner = listed.get(device)
            assert self.run(self.store.technician_of(device)) == owner, device
            assert self.gateway.technician_of(device) == owner, device

    def tour_book_is_current(self) -> None:
        for job in self._jobs():
            filed = self.gateway.engine.tours.get(job.job_id)
            if job.technician_id is None:
                assert filed is None, (job, filed)
                continue
            if filed is None and job.state in CLOSED_STATES:
                continue  # retired from the tours a day after it closed
            assert filed is not None, job
            assert (filed.technician_id, filed.state, filed.history) == (
                job.technician_id,
                job.state,
                job.history,
            ), (job, filed)


GatewayMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestGatewayInvariants = GatewayMachine.TestCase


# -- the bugs the machine met, one script each ----------------------------------------------


class Rig:
    """A gateway at ``START`` with T1 (d1) and T2 (d3), and what it published."""

    def __init__(self) -> None:
        self.bus = MemoryBus()
        self.store = MemoryStore()
        self.now = START
        self.gateway = self._gateway()

    def _gateway(self) -> Gateway:
        return Gateway(self.store, self.bus, Metrics(), TopicScheme(), clock=lambda: self.now)

    async def restart(self) -> None:
        """A new engine over the same store and bus, as a new leader's after a failover."""
        self.gateway = self._gateway()
        await self.gateway.start()

    async def setup(self, *job_ids: str) -> None:
        await self.gateway.put_technician(Technician("T1", "", ("d1",)))
        await self.gateway.put_technician(Technician("T2", "", ("d3",)))
        for job_id in job_ids:
            await self.gateway.put_job(job_of(job_id))

    async def fix(self, device: str, ts: float, lat: float, lon: float) -> None:
        body = orjson.dumps({"ts": ts, "lat": lat, "lon": lon, "acc": 10.0})
        await self.gateway.handle_batch([Inbound(f"fleet/{device}/pos", body, self.now)])

    async def on_site_then_away(self, job_id: str) -> None:
        """T1 (d1) on site at ``START``, then 1 km away with the job open."""
        lat, lon = SITE_OF[job_id]
        await self.gateway.report_status(StatusUpdate("", START, job_id, "on_site"), source="api")
        await self.fix("d1", START + 1.0, lat, lon)
        await self.fix("d1", START + 2.0, lat + 0.01, lon)

    async def job(self, job_id: str) -> Job:
        job = await self.store.get_job(job_id)
        assert job is not None
        return job


def events_of(sub: Subscription) -> list[Event]:
    out = []
    while not sub.queue.empty():
        out.append(orjson.loads(sub.queue.get_nowait()[2]))
    return out


def given_that(condition: bool, what: str) -> None:
    """A step of a bug script that must hold (else the script is wrong, not the bug fixed)."""
    if not condition:
        pytest.fail(f"the script no longer sets the bug up: {what}")


async def test_a_job_handed_over_then_closed_keeps_no_eta_of_its_previous_technician() -> None:
    rig = Rig()
    await rig.setup("J1", "J2")
    async with rig.bus.subscribe(None, None, 10_000) as sub:
        await rig.fix("d1", START - 30.0, 60.1700, 24.9400)  # T1's ETAs for J1 and J2
        given_that((await rig.job("J2")).eta is not None, "T1 published an ETA for J2")
        await rig.gateway.put_job(msgspec.structs.replace(await rig.job("J2"), technician_id="T2"))
        await rig.gateway.report_status(StatusUpdate("", START, "J2", "cancelled"), source="api")
        job = await rig.job("J2")
        given_that(job.state == "cancelled", "J2 is cancelled")
        last_eta = [e for e in events_of(sub) if e["type"] == "eta" and e["job_id"] == "J2"][-1]
    assert (job.eta, job.eta_p90, job.delay_s) == (None, None, None)
    assert last_eta["eta"] is None


async def test_an_older_en_route_does_not_leave_two_jobs_travelling() -> None:
    rig = Rig()
    await rig.setup("J1", "J2")
    await rig.gateway.report_status(StatusUpdate("", START, "J1", "en_route"), source="api")
    status = orjson.dumps({"ts": START - 30.0, "job": "J2", "status": "en_route"})
    result = await rig.gateway.handle_batch([Inbound("fleet/d1/status", status, START)])
    given_that(result.dead_letters == [], "the device's en_route at J2 is accepted")
    moving = [j.job_id for j in await rig.store.jobs_of("T1") if travelling(j)]
    assert len(moving) <= 1, moving


async def test_a_left_site_alert_is_cleared_when_its_job_is_handed_over() -> None:
    rig = Rig()
    await rig.setup("J1")
    async with rig.bus.subscribe(None, None, 10_000) as sub:
        await rig.on_site_then_away("J1")  # T1 leaves the site: alert
        await rig.gateway.put_job(msgspec.structs.replace(await rig.job("J1"), technician_id="T2"))
        await rig.gateway.report_status(StatusUpdate("", START + 5.0, "J1", "done"), source="api")
        alerts = [
            (e["technician_id"], bool(e.get("cleared")))
            for e in events_of(sub)
            if e["type"] == "alert" and e["alert"] == "left_site_open_job"
        ]
    given_that(alerts[:1] == [("T1", False)], "T1's leaving raised the alert")
    assert alerts[-1][1], alerts  # the job is done: its alert is cleared


async def test_a_rebuilt_engine_withdraws_the_eta_of_a_job_closed_after_it() -> None:
    rig = Rig()
    await rig.setup("J1")
    await rig.fix("d1", START - 30.0, *SITE_OF["J1"])
    given_that((await rig.job("J1")).eta is not None, "the first engine published J1's ETA")
    await rig.restart()
    async with rig.bus.subscribe(None, None, 10_000) as sub:
        await rig.gateway.report_status(StatusUpdate("", START, "J1", "cancelled"), source="api")
        etas = [e for e in events_of(sub) if e["type"] == "eta"]
    job = await rig.job("J1")
    assert (job.eta, job.eta_p90, job.delay_s) == (None, None, None)
    assert [e["eta"] for e in etas] == [None]


async def test_an_edit_keeps_what_the_customer_was_told_and_a_hand_over_resets_it() -> None:
    rig = Rig()
    await rig.setup("J1", "J2")
    await rig.fix("d1", START - 30.0, 60.1690, 24.9400)  # 110 m away: J1 in a minute
    given_that((await rig.job("J1")).notified == ("arriving_soon",), "J1's customer was told")
    async with rig.bus.subscribe(None, None, 10_000) as sub:
        # An edit through PUT /api/v1/jobs (the booking alone), then a new engine.
        await rig.gateway.put_job(as_put(await rig.job("J1"), planned_duration_s=1500.0))
        await rig.restart()
        await rig.fix("d1", START - 20.0, 60.1692, 24.9400)
        told = [e for e in events_of(sub) if e["type"] == "notify"]
    assert (await rig.job("J1")).notified == ("arriving_soon",)
    assert told == []
    await rig.gateway.put_job(as_put(await rig.job("J1"), technician_id="T2"))
    assert (await rig.job("J1")).notified == ()  # T2's arrival will be announced


async def test_standing_alerts_are_listed_and_taken_over_by_a_new_engine() -> None:
    rig = Rig()
    await rig.setup("J1")
    lat, lon = SITE_OF["J1"]
    async with rig.bus.subscribe(None, None, 10_000) as sub:
        await rig.on_site_then_away("J1")  # T1 leaves the site: alert
        for minute in range(1, 38):  # past the planned 30 min by a fifth, reporting
            rig.now = START + 60.0 * minute
            await rig.fix("d1", rig.now - 1.0, lat + 0.01, lon + minute * 1e-5)
            await rig.gateway.tick()
        first = [(e["alert"], e.get("cleared")) for e in events_of(sub) if e["type"] == "alert"]
        given_that(
            first == [("left_site_open_job", None), ("overrun", None)],
            "the first engine raised both alerts",
        )
        standing = await rig.store.list_alerts()
        assert [(a["alert"], a["technician_id"], a["job_id"]) for a in standing] == [
            ("left_site_open_job", "T1", "J1"),
            ("overrun", "T1", "J1"),
        ]
        await rig.restart()
        rig.now += 60.0
        await rig.fix("d1", rig.now - 1.0, lat + 0.01, lon)  # still away, still over time
        await rig.gateway.tick()
        assert [e for e in events_of(sub) if e["type"] == "alert"] == []  # not raised again
        await rig.fix("d1", rig.now, lat, lon)  # back on site
        await rig.gateway.report_status(StatusUpdate("", rig.now, "J1", "done"), source="api")
        last = [(e["alert"], e.get("cleared")) for e in events_of(sub) if e["type"] == "alert"]
    assert last == [("left_site_open_job", True), ("overrun", True)]
    assert await rig.store.list_alerts() == []


async def test_a_new_engine_clears_standing_alerts_of_jobs_closed_meanwhile() -> None:
    rig = Rig()
    await rig.setup("J1")
    await rig.gateway.report_status(StatusUpdate("", START, "J1", "on_site"), source="api")
    rig.now = START + 2400.0
    await rig.gateway.tick()
    raised = sorted(a["alert"] for a in await rig.store.list_alerts())
    given_that(raised == ["overrun", "stale_device"], "overrun, silence")
    # Closed while no engine ran (the store took the status; its event was not followed).
    job = await rig.job("J1")
    done = StatusChange(rig.now, "done", "on_site", "api", None)
    await rig.store.put_job(
        msgspec.structs.replace(job, state="done", history=(*job.history, done))
    )
    rig.now += 3600.0  # the new engine comes an hour later
    async with rig.bus.subscribe(None, None, 10_000) as sub:
        await rig.restart()
        alerts = [e for e in events_of(sub) if e["type"] == "alert"]
    assert sorted((e["alert"], e.get("cleared"), e["ts"]) for e in alerts) == [
        ("overrun", True, done.ts),  # dated by the close, not by the takeover
        ("stale_device", True, done.ts),
    ]
    assert await rig.store.list_alerts() == []
