"""The pure pipeline stages: the job state machine and the events it and fixes produce."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from gateway.errors import BadPayload, Rejected
from gateway.model import JOB_STATES, Fix, Job, Site, StatusChange, StatusUpdate
from gateway.pipeline import apply_status, is_active, is_open, position_event, status_event

T0 = 1_700_000_000.0
TECH = "tech-1"
DEV = "dev-1"
REPORTABLE = ("en_route", "on_site", "paused", "resumed", "done", "cancelled", "failed")

# The job state machine, written out by hand (issue 2: planned -> en_route -> on_site ->
# paused <-> resumed -> done / failed / cancelled; arriving without "en route" is allowed).
ALLOWED = {
    ("planned", "en_route"), ("planned", "on_site"), ("planned", "cancelled"),
    ("planned", "failed"),
    ("en_route", "on_site"), ("en_route", "paused"), ("en_route", "cancelled"),
    ("en_route", "failed"),
    ("on_site", "paused"), ("on_site", "done"), ("on_site", "failed"), ("on_site", "cancelled"),
    ("paused", "resumed"), ("paused", "cancelled"), ("paused", "failed"),
    ("resumed", "paused"), ("resumed", "on_site"), ("resumed", "done"), ("resumed", "failed"),
    ("resumed", "cancelled"),
}  # fmt: skip
PAIRS = [(a, b) for a, b in itertools.product(JOB_STATES, REPORTABLE) if a != b]


def job(state: str = "planned", technician_id: str | None = TECH, last_ts: float = T0) -> Job:
    history = () if state == "planned" else (StatusChange(last_ts, state, "planned", "device"),)
    return Job("job-1", technician_id, Site(60.17, 24.94), state=state, history=history)


def update(status: str, ts: float = T0 + 60, note: str | None = None) -> StatusUpdate:
    return StatusUpdate(DEV, ts, "job-1", status, note)


@pytest.mark.parametrize(("current", "new"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_transition_table(current: str, new: str) -> None:
    before = job(current)
    if (current, new) in ALLOWED:
        outcome = apply_status(before, update(new, note="n"), TECH)
        assert outcome.changed
        assert outcome.job.state == new
        assert outcome.job.history == (
            *before.history,
            StatusChange(T0 + 60, new, current, "device", DEV, "n"),
        )
    else:
        with pytest.raises(Rejected) as info:
            apply_status(before, update(new), TECH)
        assert info.value.reason == f"bad_transition: {current} -> {new} is not allowed"


def test_allowed_table_is_the_issue_s_machine() -> None:
    # Guards the hand-written table itself: terminal states accept nothing.
    assert not {a for a, _ in ALLOWED} & {"done", "cancelled", "failed"}
    assert len(ALLOWED) == 20


@pytest.mark.parametrize("state", REPORTABLE)
def test_repeated_status_is_not_a_change(state: str) -> None:
    before = job(state)
    outcome = apply_status(before, update(state, ts=T0 - 999), TECH)
    assert outcome == type(outcome)(before, changed=False)


def test_unknown_job() -> None:
    with pytest.raises(Rejected) as info:
        apply_status(None, update("en_route"), TECH)
    assert info.value.reason == "unknown_job: job 'job-1' does not exist"


@pytest.mark.parametrize(
    ("assigned", "reporter", "reason"),
    [
        (TECH, "tech-2", "job 'job-1' is not assigned to technician 'tech-2'"),
        (TECH, None, "device 'dev-1' belongs to no technician"),
        (None, "tech-2", "job 'job-1' is not assigned to technician 'tech-2'"),
        # A device nobody owns must not drive a job nobody is assigned to.
        (None, None, "device 'dev-1' belongs to no technician"),
    ],
)
def test_wrong_technician(assigned: str | None, reporter: str | None, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        apply_status(job(technician_id=assigned), update("en_route"), reporter)
    assert (info.value.code, info.value.detail) == ("wrong_technician", reason)


def test_api_source_skips_the_technician_check() -> None:
    api = StatusUpdate("", T0 + 5, "job-1", "cancelled", "customer called")
    outcome = apply_status(job(technician_id=None), api, None, source="api")
    assert outcome.job.state == "cancelled"
    assert outcome.job.history == (
        StatusChange(T0 + 5, "cancelled", "planned", "api", None, "customer called"),
    )


def test_older_than_last_change_is_stale() -> None:
    with pytest.raises(Rejected) as info:
        apply_status(job("en_route", last_ts=T0), update("on_site", ts=T0 - 30), TECH)
    assert info.value.code == "stale_status"
    assert (
        info.value.reason
        == "stale_status: on_site at 1699999970 is older than the job's last change"
    )


def test_same_time_as_last_change_is_accepted() -> None:
    assert apply_status(job("en_route"), update("on_site", ts=T0), TECH).job.state == "on_site"


def test_rejection_leaves_the_job_as_it_was() -> None:
    before = job("done")
    with pytest.raises(Rejected):
        apply_status(before, update("en_route"), TECH)
    assert before == job("done")


def test_rejected_is_handled_like_a_bad_payload() -> None:
    assert issubclass(Rejected, BadPayload)


def test_a_whole_tour() -> None:
    current = job()
    steps = ["en_route", "paused", "resumed", "on_site", "paused", "resumed", "done"]
    for i, status in enumerate(steps):
        current = apply_status(current, update(status, ts=T0 + i), TECH).job
    assert current.state == "done"
    assert [(c.previous, c.status) for c in current.history] == list(
        zip(["planned", *steps[:-1]], steps, strict=True)
    )


def test_position_event() -> None:
    fix = Fix(DEV, T0, 60.17, 24.94, spd=3.0, hdg=90.0, acc=5.0, alt=20.0, bat=50.0, seq=4)
    assert position_event(fix, TECH) == {
        "type": "position", "ts": T0, "device_id": DEV, "technician_id": TECH,
        "lat": 60.17, "lon": 24.94, "spd": 3.0, "hdg": 90.0, "acc": 5.0, "bat": 50.0,
    }  # fmt: skip
    assert position_event(Fix(DEV, T0, 1.0, 2.0), None) == {
        "type": "position", "ts": T0, "device_id": DEV, "technician_id": None,
        "lat": 1.0, "lon": 2.0, "spd": None, "hdg": None, "acc": None,
    }  # fmt: skip


def test_status_event() -> None:
    outcome = apply_status(job(), update("en_route", note="5 min"), TECH)
    change = outcome.job.history[-1]
    assert status_event(outcome.job, change) == {
        "type": "status", "ts": T0 + 60, "job_id": "job-1", "technician_id": TECH,
        "device_id": DEV, "status": "en_route", "previous": "planned", "source": "device",
        "note": "5 min",
    }  # fmt: skip
    silent = msgspec.structs.replace(change, note=None)
    assert "note" not in status_event(outcome.job, silent)


@pytest.mark.parametrize(
    ("state", "open_", "active"),
    [
        ("planned", True, False),
        ("en_route", True, True),
        ("on_site", True, True),
        ("paused", True, True),
        ("resumed", True, True),
        ("done", False, False),
        ("cancelled", False, False),
        ("failed", False, False),
    ],
)
def test_open_and_active(state: str, open_: bool, active: bool) -> None:
    assert (is_open(job(state)), is_active(job(state))) == (open_, active)
