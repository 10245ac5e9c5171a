"""Ground truth as JSONL: what truly happened and what was sent, one record per line.

Every record has a `kind`. Records are written in virtual-time order as the run goes,
so a stopped run's file describes exactly what was sent. Shapes:

- ``meta``: run settings (seed, network, format, start, speedup, ...).
- ``incident``: a slowed stretch of road (edges, start, end, factor, lat, lon).
- ``technician``: technician_id, name, device_ids, skills, depot {lat, lon}.
- ``job``: the booking plus what happened: arrival, departure, done, work_s, overrun_s,
  pauses, geofence_enter / geofence_exit (written at departure).
- ``fix``: device_id, msg, t/lat/lon (true), ts (exactly as sent), sent {lat, lon, acc,
  spd}, spd (true m/s), edge, expect: ``store`` (must be in history exactly once).
- ``status``: device_id, technician_id, job_id, status, t, ts, msg, expect ``apply``.
- ``fault``: fault kind, device_id, t, msg/original where relevant, and expect:
  ``deadletter`` (MQTT) / ``reject`` (HTTP) for malformed payloads, ``once`` for re-sends
  and offline batches (the fixes must appear once), ``none`` for dropouts and clock skew.
- ``end``: t, stopped_early, counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

from simulators.config import MALFORMED_KINDS, SimConfig
from simulators.fleet import DayTrace, JobOutcome, JobPlan, TechnicianPlan
from simulators.geo import haversine_m
from simulators.phone import Note, PhoneMessage
from simulators.traffic import Incident

RESEND_FAULTS = ("duplicate", "retained_replay")
Record = dict[str, Any]


def meta_record(cfg: SimConfig, start: float, network: str) -> Record:
    return {
        "kind": "meta",
        "version": 1,
        "seed": cfg.seed,
        "network": network,
        "format": cfg.format,
        "technicians": cfg.technicians,
        "start": start,
        "speedup": cfg.speedup,
        "duration_s": cfg.duration_s,
        "timezone": cfg.timezone,
        "topic_prefix": cfg.topic_prefix,
    }


def incident_record(inc: Incident) -> Record:
    return {
        "kind": "incident",
        "incident_id": inc.incident_id,
        "edges": list(inc.edges),
        "start": inc.start,
        "end": inc.end,
        "factor": inc.factor,
        "lat": inc.lat,
        "lon": inc.lon,
    }


def technician_record(plan: TechnicianPlan, depot: tuple[float, float]) -> Record:
    return {
        "kind": "technician",
        "technician_id": plan.technician_id,
        "name": plan.name,
        "device_ids": [plan.device_id],
        "skills": list(plan.skills),
        "depot": {"lat": depot[0], "lon": depot[1]},
        "shift_start": round(plan.shift_start, 3),
    }


def job_record(job: JobPlan, out: JobOutcome) -> Record:
    return {
        "kind": "job",
        "job_id": job.job_id,
        "technician_id": job.technician_id,
        **job.registration(),
        "skill": job.skill,
        "leave": round(out.leave, 3),
        "arrival": round(out.arrival, 3),
        "done": round(out.done, 3),
        "departure": round(out.departure, 3),
        "work_s": round(out.work_s, 3),
        "overrun_s": round(out.overrun_s, 3),
        "pauses": [[round(a, 3), round(b, 3)] for a, b in out.pauses],
        "geofence_enter": round(out.geofence_enter, 3),
        "geofence_exit": round(out.geofence_exit, 3),
    }


def message_records(msg: PhoneMessage, technician_id: str, http: bool) -> list[Record]:
    """Records for one sent message: its fixes/status if good, else one fault."""
    if msg.fault in MALFORMED_KINDS:
        return [_fault(msg, msg.fault, "reject" if http else "deadletter")]
    if msg.fault in RESEND_FAULTS:
        rec = _fault(msg, msg.fault, "once")
        rec["original"] = msg.original
        rec["ts"] = [f.ts for f in msg.fixes]
        return [rec]
    if msg.status is not None:
        s = msg.status
        return [
            {
                "kind": "status",
                "device_id": msg.device_id,
                "technician_id": technician_id,
                "job_id": s.job_id,
                "status": s.status,
                "t": s.t,
                "ts": s.ts,
                "msg": msg.msg_id,
                "sent_at": msg.t,
                "expect": "apply",
            }
        ]
    return [_fix_record(msg, i) for i in range(len(msg.fixes))]


def _fix_record(msg: PhoneMessage, i: int) -> Record:
    f = msg.fixes[i]
    return {
        "kind": "fix",
        "device_id": msg.device_id,
        "msg": msg.msg_id,
        "t": f.t,
        "lat": f.lat,
        "lon": f.lon,
        "ts": f.ts,
        "sent": {"lat": f.rlat, "lon": f.rlon, "acc": f.acc, "spd": f.spd},
        "error_m": round(haversine_m(f.lat, f.lon, f.rlat, f.rlon), 2),
        "spd": f.true_spd,
        "edge": f.edge,
        "sent_at": msg.t,
        "batch": msg.batch,
        "expect": "store",
    }


def _fault(msg: PhoneMessage, fault: str, expect: str) -> Record:
    return {
        "kind": "fault",
        "fault": fault,
        "device_id": msg.device_id,
        "t": msg.t,
        "msg": msg.msg_id,
        "message": "status" if msg.status is not None else "pos",
        "expect": expect,
    }


def note_record(note: Note) -> Record:
    expect = "once" if note.fault == "offline_buffer" else "none"
    return {
        "kind": "fault",
        "fault": note.fault,
        "device_id": note.device_id,
        "t": note.t,
        **note.details,
        "expect": expect,
    }


def day_job_records(trace: DayTrace) -> list[tuple[float, Record]]:
    """(time to write, record) for each job of a day: written when the technician leaves."""
    return [
        (out.departure, job_record(job, out))
        for job, out in zip(trace.plan.jobs, trace.outcomes, strict=True)
    ]


class TruthWriter:
    """Appends records as JSON lines (sorted keys, so equal runs give equal bytes)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self.count = 0

    def __enter__(self) -> TruthWriter:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("wb")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, records: Iterable[Record]) -> None:
        for rec in records:
            self.count += 1
            if self._file is not None:
                self._file.write(orjson.dumps(rec, option=orjson.OPT_SORT_KEYS) + b"\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()


def read_truth(path: Path) -> list[Record]:
    """All records of a truth file (for tests and scorers)."""
    with path.open("rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]
