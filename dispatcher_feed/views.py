"""How technicians and jobs look over HTTP (CONTRACT "HTTP API" shapes)."""

from __future__ import annotations

from typing import Any

from gateway.model import Fix, Job, Technician
from gateway.pipeline import is_active, is_open
from gateway.store import Store


def job_view(job: Job) -> dict[str, Any]:
    body = job.to_wire()
    del body["predictions"]  # scored by /api/v1/kpis; noise in a job's view
    body["history"] = [
        {k: v for k, v in change.items() if v is not None} for change in body["history"]
    ]
    return body


def current_job(jobs: list[Job]) -> Job | None:
    """The job a technician is on (active), else the next open one in tour order."""
    for job in jobs:
        if is_active(job):
            return job
    return next((job for job in jobs if is_open(job)), None)


async def technician_view(store: Store, technician: Technician) -> dict[str, Any]:
    newest: Fix | None = None
    for device_id in technician.device_ids:
        fix = await store.latest(device_id)
        if fix is not None and (newest is None or fix.ts > newest.ts):
            newest = fix
    jobs = await store.jobs_of(technician.technician_id)
    job = current_job(jobs)
    position = None
    if newest is not None:
        position = {"device_id": newest.device_id, **newest.to_wire()}
    return {
        "technician_id": technician.technician_id,
        "name": technician.name,
        "device_ids": list(technician.device_ids),
        "skills": list(technician.skills),
        "position": position,
        "status": job.state if job is not None and is_active(job) else "idle",
        "job_id": job.job_id if job is not None else None,
        "eta": job.eta if job is not None else None,
    }
