"""The leader's replay of a status change its rebuilt engine already holds."""

from __future__ import annotations

from gateway.leader import before_change
from gateway.model import Job, Site, StatusChange

CHANGES = (
    StatusChange(100.0, "en_route", "planned", "device", "d1"),
    StatusChange(200.0, "on_site", "en_route", "device", "d1"),
)
JOB = Job("j1", "t1", Site(60.2, 24.9), state="on_site", history=CHANGES)


def status(ts: float, state: str, previous: str) -> dict[str, object]:
    return {"type": "status", "ts": ts, "job_id": "j1", "status": state, "previous": previous}


def test_the_last_change_is_set_back() -> None:
    before = before_change(JOB, status(200.0, "on_site", "en_route"))
    assert before is not None
    assert (before.state, before.history) == ("en_route", CHANGES[:1])
    assert (before.site, before.technician_id) == (JOB.site, JOB.technician_id)


def test_only_the_last_change_and_only_a_real_one() -> None:
    # An earlier change: the job written back with ETAs must stay the stored one.
    assert before_change(JOB, status(100.0, "en_route", "planned")) is None
    # Another time, a status the job is not in, no previous, or no change at all.
    assert before_change(JOB, status(201.0, "on_site", "en_route")) is None
    assert before_change(JOB, status(200.0, "done", "on_site")) is None
    assert before_change(JOB, {"type": "status", "ts": 200.0, "status": "on_site"}) is None
    assert before_change(JOB, status(200.0, "on_site", "on_site")) is None
    assert before_change(Job("j2", "t1", Site(60.2, 24.9)), status(0.0, "planned", "x")) is None
