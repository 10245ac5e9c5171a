"""Wire encodings of phone messages: native JSON / MessagePack, OwnTracks, Traccar (OsmAnd).

Pure functions from a :class:`~simulators.phone.PhoneMessage` to one MQTT publish or one
HTTP request, following docs CONTRACT.md. Malformed-payload faults are applied here,
because what "bad encoding" means depends on the encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgpack
import orjson

from simulators.config import Format
from simulators.phone import FUTURE_S, Fix, PhoneCaps, PhoneMessage, StatusMsg

KNOTS_PER_MPS = 1.0 / 0.514444
UNKNOWN_STATUS = "teleported"
Transport = Literal["mqtt", "http"]


@dataclass(frozen=True, slots=True)
class MqttOut:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class HttpOut:
    method: str
    path: str
    params: tuple[tuple[str, str], ...]


Out = MqttOut | HttpOut


def caps_for(fmt: Format) -> PhoneCaps:
    """What a phone speaking `fmt` can do (OwnTracks: integer `tst`, retained, no arrays)."""
    if fmt == "owntracks":
        return PhoneCaps(batches=False, retained=True, ts_decimals=0)
    if fmt == "osmand":
        return PhoneCaps(batches=False, retained=False, ts_decimals=0)
    return PhoneCaps(batches=True, retained=False, ts_decimals=3)


def transport_of(msg: PhoneMessage, fmt: Format) -> Transport:
    """OsmAnd positions go over HTTP; statuses always travel over MQTT."""
    return "http" if fmt == "osmand" and msg.status is None else "mqtt"


def encode(
    msg: PhoneMessage, fmt: Format, *, prefix: str = "fleet", qos: int = 1, now: float = 0.0
) -> Out:
    """The message as its format puts it on the wire. ``now``: the wall clock at sending,
    which a ``future_ts`` fault must be ahead of (a replayed past day's "a day ahead" is
    still the past for the gateway); 0 for the message's own time."""
    if msg.status is not None:
        body = _status_dict(msg.status, msg.fault, now)
        topic = f"{prefix}/{msg.device_id}/status"
        return MqttOut(
            topic, _pack(body, "msgpack" if fmt == "msgpack" else "json", msg), qos, False
        )
    if fmt == "osmand":
        return HttpOut("POST", "/osmand", _osmand_params(msg, now))
    if fmt == "owntracks":
        user, device = msg.device_id.rsplit(":", 1)
        body = _owntracks_dict(msg.fixes[0], msg.fault, now)
        return MqttOut(f"owntracks/{user}/{device}", _pack(body, "json", msg), qos, msg.retain)
    fixes = [_fix_dict(f, msg.fault, now) for f in msg.fixes]
    body_any: Any = fixes if msg.batch else fixes[0]
    return MqttOut(f"{prefix}/{msg.device_id}/pos", _pack(body_any, fmt, msg), qos, msg.retain)


def _pack(body: Any, fmt: Format, msg: PhoneMessage) -> bytes:
    if fmt == "msgpack":
        raw: bytes = msgpack.packb(body)
        # 0xc1 is the one byte MessagePack never uses: the payload cannot decode.
        return b"\xc1" + raw[1:] if msg.fault == "bad_encoding" else raw
    raw = orjson.dumps(body)
    # A payload cut off mid-object, as from a crashed writer.
    return raw[: len(raw) // 2] if msg.fault == "bad_encoding" else raw


def _fix_dict(fix: Fix, fault: str | None, now: float) -> dict[str, Any]:
    d: dict[str, Any] = {"ts": fix.ts, "lat": fix.rlat, "lon": fix.rlon, "acc": fix.acc}
    d["spd"] = fix.spd
    if fix.hdg is not None:
        d["hdg"] = fix.hdg
    if fix.alt is not None:
        d["alt"] = fix.alt
    d["bat"] = fix.bat
    d["seq"] = fix.seq
    return _corrupt(d, fault, now, lat="lat", lon="lon", ts="ts")


def _future(ts: float, now: float) -> float:
    """A clock a day ahead: of the message's time, or of the wall clock if that is later."""
    return max(ts, now) + FUTURE_S


def _corrupt(
    d: dict[str, Any], fault: str | None, now: float, *, lat: str, lon: str, ts: str
) -> dict[str, Any]:
    if fault == "missing_lat":
        d.pop(lat, None)
    elif fault == "lat_out_of_range":
        d[lat] = 200.0
    elif fault == "null_island":
        d[lat], d[lon] = 0.0, 0.0
    elif fault == "future_ts":
        d[ts] = type(d[ts])(_future(d[ts], now))  # OwnTracks' tst stays an integer
    return d


def _status_dict(status: StatusMsg, fault: str | None, now: float) -> dict[str, Any]:
    d: dict[str, Any] = {"ts": status.ts, "job": status.job_id, "status": status.status}
    if fault == "unknown_status":
        d["status"] = UNKNOWN_STATUS
    elif fault == "future_ts":
        d["ts"] = _future(status.ts, now)
    return d


def _owntracks_dict(fix: Fix, fault: str | None, now: float) -> dict[str, Any]:
    """An OwnTracks `location`; -1 for unknown speed/course/altitude, as real apps send."""
    moving = fix.hdg is not None
    d: dict[str, Any] = {
        "_type": "location",
        "tid": f"{fix.seq % 100:02d}",
        "tst": int(fix.ts),
        "lat": fix.rlat,
        "lon": fix.rlon,
        "acc": round(fix.acc),
        "vel": round(fix.spd * 3.6) if moving or fix.seq % 7 else -1,
        "cog": round(fix.hdg) % 360 if fix.hdg is not None else -1,
        "alt": round(fix.alt) if fix.alt is not None else -1,
        "batt": fix.bat,
        "conn": "m",
    }
    d = _corrupt(d, fault, now, lat="lat", lon="lon", ts="tst")
    if fix.seq % 4 == 0:
        # Some trackers (and OwnTracks via some bridges) send every number as a string.
        d = {k: str(v) if isinstance(v, int | float) else v for k, v in d.items()}
    return d


def _osmand_params(msg: PhoneMessage, now: float) -> tuple[tuple[str, str], ...]:
    fix = msg.fixes[0]
    p: dict[str, str] = {
        "id": msg.device_id,
        "timestamp": str(int(fix.ts)),
        "lat": f"{fix.rlat:.7f}",
        "lon": f"{fix.rlon:.7f}",
        "speed": f"{fix.spd * KNOTS_PER_MPS:.2f}",
        "accuracy": f"{fix.acc:.1f}",
        "batt": str(fix.bat),
    }
    if fix.hdg is not None:
        p["bearing"] = f"{fix.hdg:.1f}"
    if fix.alt is not None:
        p["altitude"] = f"{fix.alt:.1f}"
    if msg.fault == "bad_encoding":
        p["lat"] = "sixty"
    elif msg.fault == "missing_lat":
        del p["lat"]
    elif msg.fault == "lat_out_of_range":
        p["lat"] = "200.0"
    elif msg.fault == "null_island":
        p["lat"], p["lon"] = "0.0", "0.0"
    elif msg.fault == "future_ts":
        p["timestamp"] = str(int(_future(fix.ts, now)))
    return tuple(p.items())
