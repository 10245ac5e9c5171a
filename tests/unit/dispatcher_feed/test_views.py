"""How technicians and jobs are shown: current job choice, newest position, job history."""

from __future__ import annotations

import msgspec
import pytest

from dispatcher_feed.views import current_job, job_view, technician_view
from gateway.model import Fix, Job, Site, StatusChange, Technician
from gateway.store import MemoryStore

T0 = 1_700_000_000.0


def job(job_id: str, state: str = "planned", sequence: int = 0) -> Job:
    return Job(job_id, "t1", Site(60.0, 24.0), sequence=sequence, state=state)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], None),
        (["planned", "planned"], "j0"),
        (["done", "planned", "planned"], "j1"),
        (["done", "planned", "en_route"], "j2"),  # an active job wins over an earlier open one
        (["paused", "on_site"], "j0"),
        (["done", "cancelled", "failed"], None),
    ],
)
def test_current_job(states: list[str], expected: str | None) -> None:
    jobs = [job(f"j{i}", s, i) for i, s in enumerate(states)]
    got = current_job(jobs)
    assert (got.job_id if got else None) == expected


async def test_technician_view() -> None:
    store = MemoryStore()
    ann = Technician("t1", "Ann", ("d1", "d2"), ("gas",))
    await store.put_technician(ann)
    await store.record_fixes([Fix("d1", T0, 60.1, 24.1), Fix("d2", T0 + 5, 60.2, 24.2, spd=3.0)])
    await store.record_fixes([Fix("d1", T0 + 2, 60.3, 24.3)])
    await store.put_job(msgspec.structs.replace(job("j1", "en_route", 1), eta=T0 + 600))
    await store.put_job(job("j2", "planned", 2))
    assert await technician_view(store, ann) == {
        "technician_id": "t1",
        "name": "Ann",
        "device_ids": ["d1", "d2"],
        "skills": ["gas"],
        "position": {"device_id": "d2", "ts": T0 + 5, "lat": 60.2, "lon": 24.2, "spd": 3.0},
        "status": "en_route",
        "job_id": "j1",
        "eta": T0 + 600,
    }


async def test_idle_technician_shows_next_open_job() -> None:
    store = MemoryStore()
    bo = Technician("t1", "Bo")
    await store.put_job(job("j1", "done", 1))
    await store.put_job(job("j2", "planned", 2))
    view = await technician_view(store, bo)
    assert (view["position"], view["status"], view["job_id"], view["eta"]) == (
        None,
        "idle",
        "j2",
        None,
    )


def test_job_view_drops_empty_history_fields() -> None:
    change = StatusChange(T0, "en_route", "planned", "device", "d1")
    body = job_view(msgspec.structs.replace(job("j1", "en_route"), history=(change,)))
    assert body["history"] == [
        {
            "ts": T0,
            "status": "en_route",
            "previous": "planned",
            "source": "device",
            "device_id": "d1",
        }
    ]
    assert (body["state"], body["eta"], body["eta_p90"], body["delay_s"]) == (
        "en_route",
        None,
        None,
        None,
    )
