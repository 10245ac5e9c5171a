"""``GET /api/v1/kpis``: the seed's indicators from what the store recorded.

Job records come from each job's status history, ETA predictions from the
ETAs the gateway published for it, distances from the technicians' stored
fixes; ``eta.kpi`` does the arithmetic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query

from dispatcher_feed.context import AppContext, context
from dispatcher_feed.routes import ID_PATTERN, ApiError, require_key
from dispatcher_feed.schemas import error_responses
from eta.kpi import (
    EtaPrediction,
    FixRecord,
    JobRecord,
    KpiConfig,
    compute_kpis,
    job_in_period,
)
from gateway.model import Fix, Job
from gateway.store import Store
from gateway.tours import pauses, visit_on_sites

kpis = APIRouter(
    prefix="/api/v1", dependencies=[Depends(require_key)], responses=error_responses(401, 422)
)
FIXES_PER_READ = 10_000  # per store call; a device's fixes in the period are read in pages
# How much younger than a technician's first status change in the period the oldest fix
# stored of their devices may be before their km is unknown (a phone switched on a little
# after the day's first status leaves little undriven).
HISTORY_SLACK_S = 900.0


def arrival(job: Job) -> float | None:
    """When the technician reached the site for the visit the KPIs score: the technician's
    own ``on_site`` (from their device, or the API) when they sent one for this visit,
    else the geofence's.

    ``gateway.tours.arrived_at`` takes the first ``on_site`` of the visit, which is the
    geofence's whenever it got there first; the technician's word confirms or overrides
    it, and is the better time: a route passing slowly through the site zone fires the
    geofence early, a phone's delayed status corrects a late one. A change back to
    planned or en_route withdraws the visit, as there.
    """
    changes = visit_on_sites(job)
    own = next((c for c in changes if c.source != "geofence"), None)
    first = own if own is not None else next(iter(changes), None)
    return None if first is None else first.ts


def job_record(job: Job) -> JobRecord | None:
    if job.technician_id is None:
        return None
    finished = next((c.ts for c in reversed(job.history) if c.status in ("done", "failed")), None)
    visits = 0
    for c in job.history:
        if c.status == "on_site" and c.previous in ("planned", "en_route"):
            visits += 1
        elif c.status in ("planned", "en_route") and c.previous == "on_site":
            # The technician withdrew an on_site (a geofence's guess): no visit took place.
            visits -= 1
    return JobRecord(
        job_id=job.job_id,
        technician_id=job.technician_id,
        state=job.state,
        window_start=job.window.start if job.window else None,
        window_end=job.window.end if job.window else None,
        arrived_at=arrival(job),
        finished_at=finished,
        paused_s=pauses(job)[0],
        visits=max(1, visits),
        follow_up_of=job.follow_up_of,
    )


def predictions(job: Job, arrived: float | None) -> list[EtaPrediction]:
    """The job's ETAs published up to its arrival (``arrived``, its record's)."""
    if arrived is None:
        return []
    return [
        EtaPrediction(job.job_id, at, eta, arrived) for at, eta in job.predictions if at <= arrived
    ]


@dataclass(frozen=True)
class Track:
    """One device's stored fixes in the period, and its oldest stored fix's time (None: the
    store holds none)."""

    technician_id: str
    fixes: list[Fix]
    oldest: float | None


async def device_track(
    store: Store, technician_id: str, device_id: str, since: float | None, until: float | None
) -> Track:
    """Every stored fix of the device in [since, until], read in pages."""
    fixes: list[Fix] = []
    start = since
    while True:
        page = await store.history(device_id, start, until, FIXES_PER_READ)
        if fixes:  # ``since`` is inclusive: the page starts with the last fix again
            page = [f for f in page if f.ts > fixes[-1].ts]
        fixes += page
        if not page or len(page) < FIXES_PER_READ - 1:
            break
        start = fixes[-1].ts
    oldest = await store.history(device_id, None, None, 1)
    return Track(technician_id, fixes, oldest[0].ts if oldest else None)


def km_unknown(
    jobs: Sequence[Job], tracks: Sequence[Track], since: float | None, until: float | None
) -> list[str]:
    """Technicians whose stored fixes do not reach back over their work in the period.

    History is capped per device (``--history-per-device``), so a past period's fixes
    are eventually gone, while its jobs stay. A technician's distance is unknown when the
    oldest fix stored of any of their devices is more than ``HISTORY_SLACK_S`` younger
    than the first status change of their jobs in the period (or they have no stored fix
    at all): they were working while the history holds nothing. A period with no job
    activity, or work all after the oldest stored fix, counts as covered; a device that
    only started reporting after its technician's first status of the period is reported
    unknown too, as its distance before that is.
    """
    oldest: dict[str, float | None] = {}
    for track in tracks:
        seen = oldest.get(track.technician_id)
        if track.technician_id not in oldest or (
            track.oldest is not None and (seen is None or track.oldest < seen)
        ):
            oldest[track.technician_id] = track.oldest
    first_work: dict[str, float] = {}
    for job in jobs:
        if job.technician_id is None or job.technician_id not in oldest:
            continue
        for change in job.history:
            if (since is None or change.ts >= since) and (until is None or change.ts < until):
                t = first_work.get(job.technician_id)
                first_work[job.technician_id] = change.ts if t is None else min(t, change.ts)
                break
    return sorted(
        tech
        for tech, start in first_work.items()
        if (covered := oldest[tech]) is None or covered > start + HISTORY_SLACK_S
    )


def kpis_of(
    jobs: Sequence[Job],
    tracks: Sequence[Track],
    cfg: KpiConfig,
    since: float | None,
    until: float | None,
    technician_id: str | None,
    now: float,
) -> dict[str, Any]:
    """The KPIs of what the store gave: pure, and run off the event loop."""
    records = {r.job_id: r for r in map(job_record, jobs) if r is not None}
    picked = [j for j in jobs if (r := records.get(j.job_id)) and job_in_period(r, since, until)]
    preds = [p for job in picked for p in predictions(job, records[job.job_id].arrived_at)]
    fixes = [
        FixRecord(track.technician_id, f.ts, f.lat, f.lon, f.acc, f.spd)
        for track in tracks
        for f in track.fixes
    ]
    return compute_kpis(
        [records[j.job_id] for j in picked], preds, fixes, cfg,
        since=since, until=until, technician_id=technician_id, now=now,
        km_unknown=km_unknown(jobs, tracks, since, until),
    )  # fmt: skip


@kpis.get("/kpis")
async def get_kpis(
    ctx: Annotated[AppContext, Depends(context)],
    since: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    until: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    technician_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> dict[str, Any]:
    """Punctuality, SLA compliance, ETA error at T-30/T-10 min, km driven, on-site time,
    jobs per technician per day and first-visit completion over ``[since, until)``.

    ``km_driven.total`` and a technician's ``km_driven.by_technician`` entry are null
    (unknown, not 0) when the stored position history does not cover that technician's
    work in the period: history is capped per device (``--history-per-device``), so an
    old period's fixes are gone while its jobs remain. ``km_driven.incomplete`` lists
    those technicians. See the README's KPI section for every definition."""
    if since is not None and until is not None and until <= since:
        raise ApiError(422, "invalid_request", "until must be after since")
    store = ctx.store
    if technician_id is None:
        jobs = await store.list_jobs()
        technicians = await store.list_technicians()
    else:
        jobs = await store.jobs_of(technician_id)
        one = await store.get_technician(technician_id)
        technicians = [] if one is None else [one]
    tracks = await asyncio.gather(
        *(
            device_track(store, t.technician_id, device_id, since, until)
            for t in technicians
            for device_id in t.device_ids
        )
    )
    cfg = KpiConfig(tz=ZoneInfo(ctx.settings.timezone))
    result = await asyncio.to_thread(
        kpis_of, jobs, tracks, cfg, since, until, technician_id, time.time()
    )
    return {"since": since, "until": until, "technician_id": technician_id, **result}
