"""Outbound event shapes (CONTRACT "MQTT out"): one builder per type, plain dicts.

Every event has ``type``, ``ts`` and the ids it concerns; the SSE feed, the
customer stream and ``fleet/out/{type}`` all carry these same objects.
"""

from __future__ import annotations

from collections.abc import Mapping

from eta.delay import Alert, Notification, Reoptimize
from eta.estimate import JobEta
from gateway.model import Event, Job


def geofence_event(
    *,
    transition: str,
    ts: float,
    device_id: str,
    technician_id: str | None,
    geofence_id: str,
    kind: str,
    dwell_s: float | None,
    job_id: str | None,
) -> Event:
    event: Event = {
        "type": "geofence",
        "transition": transition,
        "ts": ts,
        "device_id": device_id,
        "technician_id": technician_id,
        "geofence_id": geofence_id,
        "kind": kind,
    }
    if dwell_s is not None:
        event["dwell_s"] = round(dwell_s, 1)
    if job_id is not None:
        event["job_id"] = job_id
    return event


def eta_event(job: Job, e: JobEta | None, ts: float) -> Event:
    """A job's prediction; ``e`` None: the job was closed (done, cancelled, failed) and has
    no ETA any more, so every prediction field is null."""
    return {
        "type": "eta",
        "ts": ts,
        "job_id": job.job_id,
        "technician_id": job.technician_id,
        "state": job.state,
        "eta": None if e is None else round(e.eta, 1),
        "eta_p10": None if e is None else round(e.eta_p10, 1),
        "eta_p90": None if e is None else round(e.eta_p90, 1),
        "delay_s": None if e is None else round(e.delay_s, 1),
        "late_probability": None if e is None else round(e.late_probability, 3),
        "departure": None if e is None else round(e.departure, 1),
    }


def alert_event(alert: Alert, device_id: str | None = None) -> Event:
    event: Event = {
        "type": "alert",
        "alert": alert.alert,
        "severity": alert.severity,
        "ts": alert.ts,
        "technician_id": alert.technician_id,
        "job_id": alert.job_id,
        **_detail(alert.detail),
    }
    if device_id is not None:
        event["device_id"] = device_id
    if alert.cleared:
        event["cleared"] = True
    return event


_ALERT_FIELDS = frozenset(
    {"type", "alert", "severity", "ts", "technician_id", "job_id", "device_id", "cleared"}
)


def alert_of(event: Event) -> Alert | None:
    """The standing ``Alert`` an ``alert`` event raised (``alert_event``'s inverse, detail
    as rounded there); None for a ``cleared`` one or one without kind or technician."""
    name, technician_id = event.get("alert"), event.get("technician_id")
    job_id, ts = event.get("job_id"), event.get("ts")
    if event.get("cleared") or not isinstance(name, str) or not isinstance(technician_id, str):
        return None
    if not isinstance(ts, int | float) or not (job_id is None or isinstance(job_id, str)):
        return None
    detail = {
        k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
        for k, v in event.items()
        if k not in _ALERT_FIELDS and isinstance(v, int | float | str) and not isinstance(v, bool)
    }
    severity = str(event.get("severity") or "warning")
    return Alert(name, technician_id, job_id, severity, float(ts), False, detail)


def reoptimize_event(request: Reoptimize) -> Event:
    return {
        "type": "reoptimize",
        "reason": request.reason,
        "ts": request.ts,
        "technician_id": request.technician_id,
        "job_ids": list(request.job_ids),
        "predicted_lateness_s": round(request.predicted_lateness_s, 1),
    }


def notify_event(
    notification: str, job: Job, ts: float, detail: Mapping[str, float | str] | None = None
) -> Event:
    return {
        "type": "notify",
        "notification": notification,
        "ts": ts,
        "job_id": job.job_id,
        "technician_id": job.technician_id,
        "customer": {"name": job.customer.name, "ref": job.customer.ref},
        **_detail(detail or {}),
    }


def notification_event(n: Notification, job: Job) -> Event:
    return notify_event(n.notification, job, n.ts, n.detail)


def _detail(detail: Mapping[str, float | str]) -> dict[str, float | str]:
    # Seconds and metres to 0.1; probabilities to 0.001, as in ``eta_event``.
    return {
        k: round(v, 3 if k.endswith("probability") else 1) if isinstance(v, float) else v
        for k, v in detail.items()
    }


def job_changed(job: Job, ts: float, created: bool) -> Event:
    """A job was created or edited through the API (its state changes are ``status``)."""
    return {
        "type": "job",
        "ts": ts,
        "job_id": job.job_id,
        "technician_id": job.technician_id,
        "state": job.state,
        "created": created,
    }


def fence_changed(geofence_id: str, ts: float, deleted: bool) -> Event:
    return {"type": "fence", "ts": ts, "geofence_id": geofence_id, "deleted": deleted}
