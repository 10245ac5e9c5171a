"""``GET /api/v1/kpis`` over a hand-made day built through the API, every number by hand.

Two technicians; jobs with windows; statuses posted with explicit times; positions
posted afterwards (the jobs are closed by then, so no geofence infers anything).
Places are metres due north of (60, 25); ``at(h)`` is h hours into the day.
"""

from __future__ import annotations

import json
import threading
from math import degrees
from typing import Any

import httpx
import pytest

from dispatcher_feed.app import create_app
from dispatcher_feed.context import AppContext
from dispatcher_feed.kpis import arrival, job_record
from eta.geo import EARTH_RADIUS_M
from eta.kpi import compute_kpis
from gateway.model import Fix, Job, Site, StatusChange
from gateway.service import Gateway, Inbound
from gateway.store import MemoryStore
from tests.unit.dispatcher_feed.conftest import API_KEY

DAY = 1_699_920_000.0  # 2023-11-14 00:00 UTC
H = 3600.0


def at(hours: float, plus_s: float = 0.0) -> float:
    return DAY + hours * H + plus_s


def north(m: float) -> float:
    return 60.0 + degrees(m / EARTH_RADIUS_M)


# job -> (technician, sequence, window in hours, site in metres north)
JOBS: dict[str, tuple[str, int, tuple[float, float], float]] = {
    "j1": ("t1", 1, (8, 10), 3000),
    "j2": ("t1", 2, (10, 11), 6000),
    "j6": ("t1", 3, (12, 13), 9000),
    "j3": ("t2", 1, (8, 9), 2000),
    "j4": ("t2", 2, (9, 12), 2500),
    "j5": ("t2", 3, (13, 15), 5000),
}
STATUSES: list[tuple[str, str, float]] = [
    ("j3", "on_site", at(7.5)),  # early (straight from planned)
    ("j3", "done", at(8)),
    ("j4", "cancelled", at(8.5)),
    ("j1", "en_route", at(8.5)),
    ("j1", "on_site", at(9)),  # on time
    ("j1", "done", at(9.5)),  # SLA met; 1800 s on site
    ("j2", "en_route", at(9.5)),
    ("j2", "on_site", at(11.5)),  # late
    ("j2", "paused", at(11.5, 600)),
    ("j2", "resumed", at(11.5, 1200)),
    ("j2", "done", at(12.5)),  # SLA missed; 3600 - 600 s paused on site
    ("j5", "en_route", at(12)),
    ("j5", "paused", at(12, 600)),  # a break on the way: not on-site time
    ("j5", "resumed", at(12, 1800)),
    ("j5", "on_site", at(13.5)),  # on time
    ("j5", "done", at(14)),  # SLA met; 1800 s on site
    ("j6", "en_route", at(12.5)),
    ("j6", "on_site", at(12.5, 1200)),  # on time
    ("j6", "failed", at(12.5, 3000)),  # SLA missed; 1800 s on site
]
# device -> [(time, metres north)]
POSITIONS: dict[str, list[tuple[float, float]]] = {
    "d1": [
        (at(8.5), 0), (at(8.5, 300), 1500), (at(8.5, 600), 3000),
        (at(9, 60), 3010),  # 10 m of GPS wander: not driving
        (at(9.5, 600), 6000),  # 6 km in all
    ],
    "d2": [
        (at(7), 0), (at(7.5), 2000),
        (at(12), 2000),
        (at(12, 900), 2_000_000),  # an impossible jump: skipped
        (at(13.5), 5000),  # 3 km from the last counted point: 5 km in all
    ],
}  # fmt: skip


async def build_day(api: httpx.AsyncClient) -> None:
    for tech, device in (("t1", "d1"), ("t2", "d2")):
        who = {"name": tech, "device_ids": [device]}
        assert (await api.put(f"/api/v1/technicians/{tech}", json=who)).status_code == 200
    for job_id, (tech, seq, (start, end), site) in JOBS.items():
        body = {
            "technician_id": tech,
            "site": {"lat": north(site), "lon": 25.0, "radius_m": 100},
            "window": {"start": at(start), "end": at(end)},
            "planned_duration_s": 1800,
            "sequence": seq,
        }
        assert (await api.put(f"/api/v1/jobs/{job_id}", json=body)).status_code == 200
    for job_id, status, ts in STATUSES:
        r = await api.post(f"/api/v1/jobs/{job_id}/status", json={"status": status, "ts": ts})
        assert r.status_code == 200, r.text
    for device, track in POSITIONS.items():
        fixes = [{"ts": ts, "lat": north(m), "lon": 25.0} for ts, m in track]
        r = await api.post("/api/v1/positions", json={"device_id": device, "positions": fixes})
        assert r.json()["accepted"] == len(fixes)


def eta_stats(errors: list[float], p90: float) -> dict[str, Any]:
    absolute = sorted(abs(e) for e in errors)
    return {
        "count": len(errors),
        "mae_s": pytest.approx(sum(absolute) / len(absolute)),
        "p50_s": pytest.approx(absolute[len(absolute) // 2]),
        "p90_s": pytest.approx(p90),
        "bias_s": pytest.approx(sum(errors) / len(errors)),
    }


def km(value: Any) -> Any:
    return pytest.approx(value, abs=1e-9)


async def test_whole_day(api: httpx.AsyncClient) -> None:
    await build_day(api)
    r = await api.get("/api/v1/kpis")
    assert r.status_code == 200
    assert r.json() == {
        "since": None,
        "until": None,
        "technician_id": None,
        "jobs": 6,
        "punctuality": {"arrivals": 5, "on_time": 3, "early": 1, "late": 1, "rate": 0.6},
        "sla": {"due": 5, "met": 3, "rate": 0.6},
        # Predictions are only made at the status changes above (no fix comes before the
        # jobs are closed); the one standing at T-30 / T-10 is scored however old. j2
        # (arrived 11:30): 9:30's ETA of 9:38:08 stood at both, -6712 s. j5 (13:30):
        # 12:30's of 12:30, -3600 s at both. j6 (12:50): at T-30 11:50's ETA of 12:18:08,
        # -1912 s; at T-10 12:30's of 12:38:08, -712 s. j1 and j3 had none that early.
        "eta_error": {
            "30min": eta_stats([-6712.0, -3600.0, -1912.0], p90=6089.6),
            "10min": eta_stats([-6712.0, -3600.0, -712.0], p90=6089.6),
        },
        "km_driven": {
            "total": km(11.0),
            "by_technician": {"t1": km(6.0), "t2": km(5.0)},
            "incomplete": [],
        },
        "onsite": {
            "total_s": 10200.0,
            "jobs": 5,
            "mean_per_job_s": 2040.0,
            "by_technician": {"t1": 6600.0, "t2": 3600.0},
        },
        "jobs_per_technician_day": {
            "mean": 2.0,
            "technician_days": 2,
            "by_technician": {"t1": 2.0, "t2": 2.0},
        },
        "first_visit_completion": {"done": 4, "first_visit": 4, "rate": 1.0},
    }


async def test_one_technician(api: httpx.AsyncClient) -> None:
    await build_day(api)
    body = (await api.get("/api/v1/kpis", params={"technician_id": "t1"})).json()
    assert body["technician_id"] == "t1"
    assert body["jobs"] == 3
    assert body["punctuality"] == {"arrivals": 3, "on_time": 2, "early": 0, "late": 1,
                                   "rate": 2 / 3}  # fmt: skip
    assert body["sla"] == {"due": 3, "met": 1, "rate": 1 / 3}
    assert body["km_driven"] == {
        "total": km(6.0),
        "by_technician": {"t1": km(6.0)},
        "incomplete": [],
    }
    assert body["onsite"] == {"total_s": 6600.0, "jobs": 3, "mean_per_job_s": 2200.0,
                              "by_technician": {"t1": 6600.0}}  # fmt: skip
    assert body["first_visit_completion"] == {"done": 2, "first_visit": 2, "rate": 1.0}


async def test_a_period(api: httpx.AsyncClient) -> None:
    await build_day(api)
    params = {"since": at(8), "until": at(12)}
    body = (await api.get("/api/v1/kpis", params=params)).json()
    # Jobs by arrival (j1 9h, j2 11.5h), else window start (j4, cancelled: 9h).
    assert (body["since"], body["until"], body["jobs"]) == (at(8), at(12), 3)
    assert body["punctuality"] == {"arrivals": 2, "on_time": 1, "early": 0, "late": 1,
                                   "rate": 0.5}  # fmt: skip
    assert body["sla"] == {"due": 2, "met": 1, "rate": 0.5}
    assert body["onsite"]["total_s"] == 4800.0
    # Fixes in [8h, 12h): all of d1's, none of d2's (12h itself is excluded).
    assert body["km_driven"] == {
        "total": km(6.0),
        "by_technician": {"t1": km(6.0)},
        "incomplete": [],
    }
    assert body["first_visit_completion"] == {"done": 2, "first_visit": 2, "rate": 1.0}
    empty = (await api.get("/api/v1/kpis", params={"since": at(20)})).json()
    assert (empty["jobs"], empty["punctuality"]["rate"], empty["sla"]["rate"]) == (0, None, None)
    assert empty["km_driven"] == {"total": 0, "by_technician": {}, "incomplete": []}


async def test_a_withdrawn_geofence_arrival_is_not_a_second_visit(
    api: httpx.AsyncClient, ctx: AppContext
) -> None:
    await api.put("/api/v1/technicians/t1", json={"name": "t1", "device_ids": ["d1"]})
    body = {
        "technician_id": "t1",
        "site": {"lat": north(0), "lon": 25.0, "radius_m": 100},
        "window": {"start": at(8), "end": at(9)},
    }
    await api.put("/api/v1/jobs/w1", json=body)
    await api.post("/api/v1/jobs/w1/status", json={"status": "en_route", "ts": at(8.5)})
    # Parked at the site for 70 s: the gateway infers on_site (source geofence)...
    fixes = [{"ts": at(8.5, 60), "lat": north(0), "lon": 25.0},
             {"ts": at(8.5, 130), "lat": north(5), "lon": 25.0}]  # fmt: skip
    await api.post("/api/v1/positions", json={"device_id": "d1", "positions": fixes})
    job = (await api.get("/api/v1/jobs/w1")).json()
    assert [(c["status"], c["source"]) for c in job["history"]][-1] == ("on_site", "geofence")
    # ...the technician says they are still on the way, and arrives after the window.
    for status, ts in (("en_route", at(8.5, 140)), ("on_site", at(9, 600))):
        result = await ctx.gateway.handle_batch([device_status("w1", status, ts)])
        assert result.dead_letters == []
    await api.post("/api/v1/jobs/w1/status", json={"status": "done", "ts": at(9.5)})
    kpis = (await api.get("/api/v1/kpis")).json()
    assert kpis["first_visit_completion"] == {"done": 1, "first_visit": 1, "rate": 1.0}
    assert kpis["punctuality"] == {"arrivals": 1, "on_time": 0, "early": 0, "late": 1, "rate": 0.0}
    assert kpis["onsite"]["total_s"] == 1200.0  # from the real arrival


def device_status(job_id: str, status: str, ts: float) -> Inbound:
    payload = json.dumps({"ts": ts, "job": job_id, "status": status}).encode()
    return Inbound("fleet/d1/status", payload, ts)


async def test_a_gps_glitch_after_a_stop_is_not_driven(api: httpx.AsyncClient) -> None:
    """A fix 200 km away for one minute, between two fixes at the same spot, is a glitch:
    1000 s of driving would take 3.3 km/s. Only the 3 km drive afterwards counts."""
    await api.put("/api/v1/technicians/t1", json={"name": "t1", "device_ids": ["d1"]})
    track = [(at(8), 0), (at(9), 0), (at(9, 60), 200_000), (at(9, 120), 0), (at(10), 3000)]
    fixes = [{"ts": ts, "lat": north(m), "lon": 25.0} for ts, m in track]
    await api.post("/api/v1/positions", json={"device_id": "d1", "positions": fixes})
    body = (await api.get("/api/v1/kpis")).json()
    assert body["km_driven"] == {
        "total": km(3.0),
        "by_technician": {"t1": km(3.0)},
        "incomplete": [],
    }


@pytest.mark.parametrize(
    "params",
    [
        {"since": at(10), "until": at(10)},
        {"since": at(10), "until": at(9)},
    ],
)
async def test_until_must_be_after_since(api: httpx.AsyncClient, params: dict[str, float]) -> None:
    r = await api.get("/api/v1/kpis", params=params)
    assert (r.status_code, r.json()) == (
        422,
        {"error": "invalid_request", "reason": "until must be after since"},
    )


@pytest.mark.parametrize("params", [{"since": -1}, {"until": "soon"}])
async def test_bad_bounds_are_422(api: httpx.AsyncClient, params: dict[str, Any]) -> None:
    r = await api.get("/api/v1/kpis", params=params)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_request")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_kpis_need_the_api_key(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    r = await client.get("/api/v1/kpis", headers=headers)
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


def visit(*changes: tuple[str, str, float]) -> Job:
    """A job of t1 whose history is ``changes`` of (status, source, time)."""
    history, previous = [], "planned"
    for status, source, ts in changes:
        history.append(StatusChange(ts, status, previous, source))
        previous = status
    return Job("jx", "t1", Site(60.0, 25.0), state=previous, history=tuple(history))


@pytest.mark.parametrize(
    ("changes", "arrived"),
    [
        # The route passed slowly through the site zone: the geofence fired 368 s early,
        # the technician's own on_site confirmed it at the true time.
        (
            [
                ("en_route", "device", at(9)),
                ("on_site", "geofence", at(9.5)),
                ("on_site", "device", at(9.5, 368)),
                ("done", "device", at(10)),
            ],
            at(9.5, 368),
        ),
        # The phone's status came late (offline), stamped 390 s before the geofence's.
        (
            [("on_site", "geofence", at(9.5, 390)), ("on_site", "device", at(9.5))],
            at(9.5),
        ),
        # A dispatcher's on_site counts as the technician's word too.
        ([("on_site", "geofence", at(9.5)), ("on_site", "api", at(9.6))], at(9.6)),
        # Only the geofence: its time.
        ([("en_route", "device", at(9)), ("on_site", "geofence", at(9.5))], at(9.5)),
        # Withdrawn by the technician, then a real visit later: that visit's own time.
        (
            [
                ("on_site", "geofence", at(9)),
                ("en_route", "device", at(9.1)),
                ("on_site", "geofence", at(9.5)),
                ("on_site", "device", at(9.6)),
            ],
            at(9.6),
        ),
        ([("en_route", "device", at(9))], None),
    ],
)
def test_arrival_is_the_technicians_own_on_site(
    changes: list[tuple[str, str, float]], arrived: float | None
) -> None:
    job = visit(*changes)
    record = job_record(job)
    assert record is not None and record.arrived_at == arrived
    assert arrival(job) == arrived


async def test_km_of_a_day_whose_fixes_are_gone_is_unknown(ctx: AppContext) -> None:
    """History keeps the newest fixes per device: once a past day's are trimmed away, its
    km is unknown (null, and the technician listed as incomplete), not 0; a day still
    covered keeps its number."""
    store = MemoryStore(history_per_device=16)
    ctx = AppContext(
        ctx.settings, store, ctx.bus, ctx.metrics, Gateway(store, ctx.bus, ctx.metrics)
    )
    transport = httpx.ASGITransport(app=create_app(ctx))
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as api:
        await api.put("/api/v1/technicians/t1", json={"name": "t1", "device_ids": ["d1"]})
        for day in (0, 1):
            base = at(24 * day)
            body = {
                "technician_id": "t1",
                "site": {"lat": north(3000), "lon": 25.0, "radius_m": 100},
                "window": {"start": base + 8 * H, "end": base + 10 * H},
            }
            assert (await api.put(f"/api/v1/jobs/k{day}", json=body)).status_code == 200
            for status, hours in (("en_route", 8.0), ("on_site", 8.5), ("done", 9.0)):
                r = await api.post(
                    f"/api/v1/jobs/k{day}/status", json={"status": status, "ts": base + hours * H}
                )
                assert r.status_code == 200, r.text
            # 16 fixes from 7:50 to 8:30: 3 km north, driven at a steady 3 km / 30 min.
            fixes = [
                {"ts": base + 8 * H + 120 * k, "lat": north(200 * k), "lon": 25.0, "acc": 5}
                for k in range(-5, 11)
            ]
            r = await api.post("/api/v1/positions", json={"device_id": "d1", "positions": fixes})
            assert r.json()["accepted"] == 16
        day0 = {"since": at(0), "until": at(24)}
        day1 = {"since": at(24), "until": at(48)}
        unknown = {"total": None, "by_technician": {"t1": None}, "incomplete": ["t1"]}
        assert (await api.get("/api/v1/kpis", params=day0)).json()["km_driven"] == unknown
        got = (await api.get("/api/v1/kpis", params=day1)).json()["km_driven"]
        assert got == {"total": km(3.0), "by_technician": {"t1": km(3.0)}, "incomplete": []}
        # All time takes in day 0's work too; one technician alike.
        assert (await api.get("/api/v1/kpis")).json()["km_driven"] == unknown
        one = (await api.get("/api/v1/kpis", params={**day0, "technician_id": "t1"})).json()
        assert one["km_driven"] == unknown
        # A period with no work of t1's: nothing was driven that the history should hold.
        quiet = (await api.get("/api/v1/kpis", params={"since": at(12), "until": at(20)})).json()
        assert quiet["km_driven"] == {"total": 0, "by_technician": {}, "incomplete": []}


class SpyStore(MemoryStore):
    """Records which jobs and device histories the endpoint reads."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def list_jobs(self) -> list[Job]:
        self.calls.append("list_jobs")
        return await super().list_jobs()

    async def history(
        self, device_id: str, since: float | None, until: float | None, limit: int
    ) -> list[Fix]:
        self.calls.append(f"history:{device_id}")
        return await super().history(device_id, since, until, limit)


async def test_kpis_read_only_what_the_filter_needs_and_compute_off_the_loop(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SpyStore()
    ctx = AppContext(
        ctx.settings, store, ctx.bus, ctx.metrics, Gateway(store, ctx.bus, ctx.metrics)
    )
    threads: list[bool] = []

    def spy(*args: Any, **kwargs: Any) -> dict[str, Any]:
        threads.append(threading.current_thread() is threading.main_thread())
        return compute_kpis(*args, **kwargs)

    monkeypatch.setattr("dispatcher_feed.kpis.compute_kpis", spy)
    transport = httpx.ASGITransport(app=create_app(ctx))
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as api:
        await build_day(api)
        store.calls.clear()
        body = (await api.get("/api/v1/kpis", params={"technician_id": "t1"})).json()
        assert body["jobs"] == 3
        # t1's jobs (jobs_of), and only t1's device's history.
        assert "list_jobs" not in store.calls
        assert {c for c in store.calls if c.startswith("history:")} == {"history:d1"}
        # The arithmetic ran in a worker thread, not on the event loop.
        assert threads == [False]


async def test_a_follow_up_job_is_not_a_first_visit_completion(api: httpx.AsyncClient) -> None:
    """``follow_up_of`` in the PUT body is stored and shown; the KPI then counts neither
    the revisited job nor the follow-up as finished in one visit."""
    await build_day(api)
    body = {
        "technician_id": "t2",
        "site": {"lat": north(5000), "lon": 25.0, "radius_m": 100},
        "window": {"start": at(15), "end": at(16)},
        "follow_up_of": "j5",
    }
    r = await api.put("/api/v1/jobs/j7", json=body)
    assert r.status_code == 200 and r.json()["follow_up_of"] == "j5"
    for status, ts in (("on_site", at(15, 60)), ("done", at(15.5))):
        r = await api.post("/api/v1/jobs/j7/status", json={"status": status, "ts": ts})
        assert r.status_code == 200, r.text
    assert (await api.get("/api/v1/jobs/j7")).json()["follow_up_of"] == "j5"
    kpis = (await api.get("/api/v1/kpis")).json()
    # j1, j2, j3, j5 done; j5 needed a follow-up (j7, not a request of its own).
    assert kpis["first_visit_completion"] == {"done": 4, "first_visit": 3, "rate": 0.75}
    bad = await api.put("/api/v1/jobs/j8", json={**body, "follow_up_of": "no such id!"})
    assert bad.status_code == 422
