"""The leader's replay of status changes its rebuilt engine already holds."""

from __future__ import annotations

from gateway.leader import around_change
from gateway.model import Job, Site, StatusChange

CHANGES = (
    StatusChange(100.0, "en_route", "planned", "device", "d1"),
    StatusChange(200.0, "on_site", "en_route", "device", "d1"),
    StatusChange(300.0, "done", "on_site", "device", "d1"),
)
JOB = Job("j1", "t1", Site(60.2, 24.9), state="done", history=CHANGES, eta=None)


def status(ts: float, state: str, previous: str) -> dict[str, object]:
    return {"type": "status", "ts": ts, "job_id": "j1", "status": state, "previous": previous}


def test_each_change_is_seen_as_it_was_made_the_last_one_included() -> None:
    for i, change in enumerate(CHANGES):
        around = around_change(JOB, status(change.ts, change.status, change.previous))
        assert around is not None
        before, after = around
        assert (before.state, before.history) == (change.previous, CHANGES[:i])
        assert (after.state, after.history) == (change.status, CHANGES[: i + 1])
        # Everything but the state and its history is the job as stored.
        assert (before.site, after.technician_id) == (JOB.site, JOB.technician_id)
    last = around_change(JOB, status(300.0, "done", "on_site"))
    assert last is not None and last[1] == JOB


def test_only_a_change_that_is_there() -> None:
    # Another time, previous status or status; no previous; no change at all.
    assert around_change(JOB, status(201.0, "on_site", "en_route")) is None
    assert around_change(JOB, status(200.0, "on_site", "planned")) is None
    assert around_change(JOB, status(200.0, "paused", "en_route")) is None
    assert around_change(JOB, {"type": "status", "ts": 200.0, "status": "on_site"}) is None
    assert around_change(JOB, status(200.0, "on_site", "on_site")) is None
    assert around_change(Job("j2", "t1", Site(60.2, 24.9)), status(0.0, "planned", "x")) is None
