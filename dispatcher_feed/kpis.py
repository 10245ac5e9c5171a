"""``GET /api/v1/kpis``: the seed's indicators from what the store recorded.

Job records come from each job's status history, ETA predictions from the
ETAs the gateway published for it, distances from the technicians' stored
fixes; ``eta.kpi`` does the arithmetic.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query

from dispatcher_feed.context import AppContext, context
from dispatcher_feed.routes import ID_PATTERN, ApiError, require_key
from dispatcher_feed.schemas import error_responses
from eta.kpi import EtaPrediction, FixRecord, JobRecord, KpiConfig, compute_kpis
from gateway.model import Job
from gateway.store import Store
from gateway.tours import pauses

kpis = APIRouter(
    prefix="/api/v1", dependencies=[Depends(require_key)], responses=error_responses(401, 422)
)
MAX_FIXES_PER_DEVICE = 10_000


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
    inferred = own = None
    for change in job.history:
        if change.status == "on_site":
            if change.source == "geofence":
                inferred = change.ts if inferred is None else inferred
            elif own is None:
                own = change.ts
        elif change.status in ("planned", "en_route"):
            inferred = own = None
    return own if own is not None else inferred


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
    )


def predictions(job: Job) -> list[EtaPrediction]:
    arrived = arrival(job)
    if arrived is None:
        return []
    return [
        EtaPrediction(job.job_id, at, eta, arrived) for at, eta in job.predictions if at <= arrived
    ]


async def fix_records(
    store: Store, since: float | None, until: float | None, technician_id: str | None
) -> list[FixRecord]:
    out: list[FixRecord] = []
    for technician in await store.list_technicians():
        if technician_id is not None and technician.technician_id != technician_id:
            continue
        for device_id in technician.device_ids:
            for fix in await store.history(device_id, since, until, MAX_FIXES_PER_DEVICE):
                out.append(
                    FixRecord(technician.technician_id, fix.ts, fix.lat, fix.lon, fix.acc, fix.spd)
                )
    return out


@kpis.get("/kpis")
async def get_kpis(
    ctx: Annotated[AppContext, Depends(context)],
    since: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    until: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    technician_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> dict[str, Any]:
    """Punctuality, SLA compliance, ETA error at T-30/T-10 min, km driven, on-site time,
    jobs per technician per day and first-visit completion over ``[since, until)``."""
    if since is not None and until is not None and until <= since:
        raise ApiError(422, "invalid_request", "until must be after since")
    jobs = await ctx.store.list_jobs()
    records = [r for r in map(job_record, jobs) if r is not None]
    preds = [p for job in jobs for p in predictions(job)]
    fixes = await fix_records(ctx.store, since, until, technician_id)
    cfg = KpiConfig(tz=ZoneInfo(ctx.settings.timezone))
    result = compute_kpis(
        records, preds, fixes, since=since, until=until, technician_id=technician_id, cfg=cfg,
        now=time.time(),
    )  # fmt: skip
    return {"since": since, "until": until, "technician_id": technician_id, **result}
