"""Bytes and query strings in, validated ``Fix`` / ``StatusUpdate`` out: the only parser.

Encodings (CONTRACT "MQTT in"): a payload whose first non-blank byte is ``{`` or
``[`` is JSON, anything else MessagePack. OwnTracks messages are JSON. The
OsmAnd / Traccar Client protocol arrives over HTTP as a query, a form or JSON.

The fast path decodes straight into typed msgspec structs; if that fails (a
missing field, a string where a number belongs, one bad fix in a batch) the
message is decoded again generically and every item is checked by hand, so the
good fixes of a batch are kept and each bad one gets a precise reason.

Nothing here raises anything but ``BadPayload``; hypothesis tests hold us to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from gateway.errors import BadPayload
from gateway.model import DEVICE_STATUSES, Fix, StatusUpdate, valid_id

MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_BATCH: Final = 1000
MAX_FUTURE_S: Final = 300.0
# A tracker without a GPS time sends 1970 dates; nothing real predates 2000.
MIN_TS: Final = 946_684_800.0
KNOT: Final = 1852.0 / 3600.0

OPTIONAL_RANGES: Final[Mapping[str, tuple[float, float]]] = {
    "spd": (0.0, 340.0),
    "hdg": (0.0, 360.0),
    "acc": (0.0, 1_000_000.0),
    "alt": (-1_000.0, 100_000.0),
    "bat": (0.0, 100.0),
}


class _PositionIn(msgspec.Struct, gc=False):
    ts: float
    lat: float
    lon: float
    spd: float | None = None
    hdg: float | None = None
    acc: float | None = None
    alt: float | None = None
    bat: float | None = None
    seq: int | None = None
    sent: float | None = None


_JSON_ONE = msgspec.json.Decoder(_PositionIn)
_JSON_MANY = msgspec.json.Decoder(list[_PositionIn])
_PACK_ONE = msgspec.msgpack.Decoder(_PositionIn)
_PACK_MANY = msgspec.msgpack.Decoder(list[_PositionIn])
_JSON_ANY = msgspec.json.Decoder()
_PACK_ANY = msgspec.msgpack.Decoder()


@dataclass(slots=True)
class Decoded:
    """What one position message yielded: its good fixes and a reason per bad one."""

    fixes: list[Fix] = field(default_factory=list)
    errors: list[BadPayload] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """The dead-letter reason for a message with rejected parts."""
        if len(self.errors) == 1 and not self.fixes:
            return self.errors[0].reason
        total = len(self.fixes) + len(self.errors)
        return f"{len(self.errors)} of {total} fixes rejected; first: {self.errors[0].reason}"


def is_json(payload: bytes) -> bool:
    head = payload.lstrip(b" \t\r\n")[:1]
    return head in (b"{", b"[")


def decode_any(payload: bytes) -> Any:
    """Generic decode with the per-message encoding rule, or ``BadPayload``."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BadPayload("payload_too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    if not payload:
        raise BadPayload("bad_encoding", "empty payload")
    try:
        return _JSON_ANY.decode(payload) if is_json(payload) else _PACK_ANY.decode(payload)
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        kind = "JSON" if is_json(payload) else "MessagePack"
        raise BadPayload("bad_encoding", f"not valid {kind}: {exc}") from None


# -- positions -----------------------------------------------------------------


def decode_positions(device_id: str, payload: bytes, now: float) -> Decoded:
    """One position object or an array of them, as published to ``fleet/{id}/pos``."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BadPayload("payload_too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    typed = _fast_decode(payload)
    if typed is not None:
        out = Decoded()
        for item in typed:
            try:
                out.fixes.append(_checked_fix(device_id, item, now))
            except BadPayload as exc:
                out.errors.append(exc)
        return out
    return positions_from_objects(device_id, decode_any(payload), now)


def _fast_decode(payload: bytes) -> list[_PositionIn] | None:
    try:
        if is_json(payload):
            if payload.lstrip()[:1] == b"[":
                many = _JSON_MANY.decode(payload)
            else:
                return [_JSON_ONE.decode(payload)]
        else:
            if payload[:1] and (payload[0] & 0xF0 == 0x90 or payload[0] in (0xDC, 0xDD)):
                many = _PACK_MANY.decode(payload)
            else:
                return [_PACK_ONE.decode(payload)]
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None
    if len(many) > MAX_BATCH or not many:
        return None  # let the slow path give the precise reason
    return many


def positions_from_objects(device_id: str, obj: Any, now: float) -> Decoded:
    """Validate generically decoded data: an object or an array of objects."""
    items: Sequence[Any]
    if isinstance(obj, list):
        if not obj:
            raise BadPayload("bad_field", "empty batch")
        if len(obj) > MAX_BATCH:
            raise BadPayload("batch_too_large", f"{len(obj)} fixes > {MAX_BATCH}")
        items = obj
    else:
        items = (obj,)
    out = Decoded()
    for item in items:
        try:
            out.fixes.append(fix_from_mapping(device_id, item, now))
        except BadPayload as exc:
            out.errors.append(exc)
    return out


def fix_from_mapping(device_id: str, obj: Any, now: float, numeric_strings: bool = False) -> Fix:
    """Build a fix from a mapping with the native field names."""
    if not isinstance(obj, dict):
        raise BadPayload("not_an_object", f"expected a position object, got {_kind(obj)}")
    get = _number_reader(obj, numeric_strings)
    item = _PositionIn(
        ts=_required(get, "ts"),
        lat=_required(get, "lat"),
        lon=_required(get, "lon"),
        spd=get("spd"),
        hdg=get("hdg"),
        acc=get("acc"),
        alt=get("alt"),
        bat=get("bat"),
        seq=_seq(obj.get("seq")),
        sent=get("sent"),
    )
    return _checked_fix(device_id, item, now)


def _checked_fix(device_id: str, p: _PositionIn, now: float) -> Fix:
    check_ts(p.ts, now)
    check_coordinates(p.lat, p.lon)
    for name, (low, high) in OPTIONAL_RANGES.items():
        value = getattr(p, name)
        if value is not None and not (math.isfinite(value) and low <= value <= high):
            raise BadPayload("bad_field", f"{name}={value!r} outside [{low:g}, {high:g}]")
    if p.seq is not None and not 0 <= p.seq < 2**63:
        raise BadPayload("bad_field", "seq must be an integer in [0, 2^63)")
    if p.sent is not None and not math.isfinite(p.sent):
        raise BadPayload("bad_field", "sent is not finite")
    return Fix(
        device_id, float(p.ts), float(p.lat), float(p.lon),
        p.spd, p.hdg, p.acc, p.alt, p.bat, p.seq, p.sent,
    )  # fmt: skip


def check_ts(ts: float, now: float) -> None:
    if not math.isfinite(ts) or ts < MIN_TS:
        raise BadPayload("bad_ts", f"ts={ts!r} is not an epoch time in seconds after 2000")
    if ts > now + MAX_FUTURE_S:
        raise BadPayload("future_ts", f"ts is {ts - now:.0f} s in the future")


def check_coordinates(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise BadPayload("lat_out_of_range", f"lat={lat!r}")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise BadPayload("lon_out_of_range", f"lon={lon!r}")
    if lat == 0.0 and lon == 0.0:
        raise BadPayload("null_island", "lat=0, lon=0 is a tracker without a fix")


def _number_reader(obj: Mapping[str, Any], numeric_strings: bool) -> Callable[[str], float | None]:
    def get(name: str) -> float | None:
        return _number(obj.get(name), name, numeric_strings)

    return get


def _number(value: Any, name: str, numeric_strings: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadPayload("bad_field", f"{name} is a boolean, expected a number")
    # Non-finite values are returned as they are: the range checks reject them with
    # the field's own code (bad_ts, lat_out_of_range, ...), the same code the typed
    # fast path gives, whichever path a message took.
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # a JSON integer beyond float range
            return math.inf if value > 0 else -math.inf
    if numeric_strings and isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise BadPayload("bad_field", f"{name}={value[:40]!r} is not a number") from None
    raise BadPayload("bad_field", f"{name} is {_kind(value)}, expected a number")


def _required(get: Callable[[str], float | None], name: str) -> float:
    value = get(name)
    if value is None:
        raise BadPayload("missing_field", name)
    return value


def _seq(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadPayload("bad_field", f"seq is {_kind(value)}, expected an integer")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# -- statuses ------------------------------------------------------------------


def decode_status(device_id: str, payload: bytes, now: float) -> StatusUpdate:
    """One status object, as published to ``fleet/{id}/status``."""
    obj = decode_any(payload)
    if not isinstance(obj, dict):
        raise BadPayload("not_an_object", f"expected a status object, got {_kind(obj)}")
    return status_from_mapping(device_id, obj, now)


def status_from_mapping(device_id: str, obj: Mapping[str, Any], now: float) -> StatusUpdate:
    ts = _required(_number_reader(obj, False), "ts")
    check_ts(ts, now)
    job = obj.get("job")
    if job is None:
        raise BadPayload("missing_field", "job")
    if not valid_id(job):
        raise BadPayload("bad_id", "job must be 1-64 chars of [A-Za-z0-9_.:-]")
    status = obj.get("status")
    if status is None:
        raise BadPayload("missing_field", "status")
    if not isinstance(status, str) or status not in DEVICE_STATUSES:
        shown = status[:40] if isinstance(status, str) else _kind(status)
        raise BadPayload("unknown_status", f"{shown!r} is not one of {sorted(DEVICE_STATUSES)}")
    note = obj.get("note")
    if note is not None and not isinstance(note, str):
        raise BadPayload("bad_field", f"note is {_kind(note)}, expected a string")
    if isinstance(note, str) and len(note) > 1000:
        raise BadPayload("bad_field", "note longer than 1000 characters")
    return StatusUpdate(device_id, ts, job, status, note)


# -- OwnTracks -----------------------------------------------------------------


def decode_owntracks(device_id: str, payload: bytes, now: float) -> Fix | None:
    """An OwnTracks message: a fix for ``_type: location``, ``None`` for other types.

    Real apps send numbers as strings and -1 for an unknown speed, course or
    altitude; both are read as the app meant them.
    """
    obj = decode_any(payload)
    if not isinstance(obj, dict):
        raise BadPayload("not_an_object", f"expected an OwnTracks object, got {_kind(obj)}")
    kind = obj.get("_type")
    if not isinstance(kind, str):
        raise BadPayload("missing_field", "_type")
    if kind != "location":
        return None
    native: dict[str, Any] = {"ts": obj.get("tst"), "lat": obj.get("lat"), "lon": obj.get("lon")}
    vel = _minus_one_absent(_number(obj.get("vel"), "vel", True))
    native["spd"] = None if vel is None else vel / 3.6
    native["hdg"] = _minus_one_absent(_number(obj.get("cog"), "cog", True))
    native["alt"] = _minus_one_absent(_number(obj.get("alt"), "alt", True))
    native["acc"] = obj.get("acc")
    native["bat"] = _minus_one_absent(_number(obj.get("batt"), "batt", True))
    return fix_from_mapping(device_id, native, now, numeric_strings=True)


def _minus_one_absent(value: float | None) -> float | None:
    return None if value is None or value == -1 else value


# -- OsmAnd / Traccar Client ---------------------------------------------------


def decode_osmand(params: Mapping[str, str], now: float) -> Fix:
    """The OsmAnd protocol as Traccar Client sends it (query string or form).

    Speed is in knots (as in Traccar). A missing timestamp means the time of
    receipt.
    """
    device_id = params.get("id") or params.get("deviceid")
    if not device_id:
        raise BadPayload("missing_field", "id")
    if not valid_id(device_id):
        raise BadPayload("bad_id", "id must be 1-64 chars of [A-Za-z0-9_.:-]")
    lat_s, lon_s = params.get("lat"), params.get("lon")
    if (lat_s is None or lon_s is None) and params.get("location"):
        lat_s, _, lon_s = params["location"].partition(",")
    if not lat_s or not lon_s:
        raise BadPayload("missing_field", "lat and lon (or location=lat,lon)")
    native: dict[str, Any] = {"lat": lat_s, "lon": lon_s}
    native["ts"] = parse_timestamp(params["timestamp"]) if params.get("timestamp") else now
    speed = _number(params.get("speed"), "speed", True)
    native["spd"] = None if speed is None else speed * KNOT
    native["hdg"] = params.get("bearing", params.get("heading"))
    native["alt"] = params.get("altitude")
    native["acc"] = params.get("accuracy")
    native["bat"] = params.get("batt")
    return fix_from_mapping(device_id, native, now, numeric_strings=True)


def decode_traccar_json(obj: Any, now: float) -> Fix:
    """Traccar Client 9+ JSON: ``{device_id, location:{timestamp, coords:{...}, battery}}``."""
    if not isinstance(obj, dict):
        raise BadPayload("not_an_object", f"expected an object, got {_kind(obj)}")
    device_id = obj.get("device_id")
    if device_id is None:
        raise BadPayload("missing_field", "device_id")
    if not valid_id(device_id):
        raise BadPayload("bad_id", "device_id must be 1-64 chars of [A-Za-z0-9_.:-]")
    location = obj.get("location")
    coords = location.get("coords") if isinstance(location, dict) else None
    if not isinstance(location, dict) or not isinstance(coords, dict):
        raise BadPayload("missing_field", "location.coords")
    stamp = location.get("timestamp")
    battery = location.get("battery")
    level = battery.get("level") if isinstance(battery, dict) else None
    level_n = _number(level, "battery.level", True)
    native = {
        "ts": now if stamp is None else parse_timestamp(stamp),
        "lat": coords.get("latitude"),
        "lon": coords.get("longitude"),
        "spd": _negative_absent(_number(coords.get("speed"), "speed", True)),
        "hdg": _negative_absent(_number(coords.get("heading"), "heading", True)),
        "acc": coords.get("accuracy"),
        "alt": coords.get("altitude"),
        "bat": None if level_n is None or level_n < 0 else level_n * 100.0,
    }
    return fix_from_mapping(device_id, native, now, numeric_strings=True)


def _negative_absent(value: float | None) -> float | None:
    return None if value is None or value < 0 else value


def parse_timestamp(value: Any) -> float:
    """Epoch seconds, epoch milliseconds, ISO 8601 or ``yyyy-MM-dd HH:mm:ss`` (UTC)."""
    if isinstance(value, bool):
        raise BadPayload("bad_ts", "timestamp is a boolean")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            raise BadPayload("bad_ts", "timestamp is out of range") from None
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return _parse_iso(text)
    else:
        raise BadPayload("bad_ts", f"timestamp is {_kind(value)}")
    if not math.isfinite(number):
        raise BadPayload("bad_ts", "timestamp is not finite")
    # Epoch milliseconds pass 1e11 in 1973; epoch seconds reach it in 5138.
    return number / 1000.0 if abs(number) >= 1e11 else number


def _parse_iso(text: str) -> float:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadPayload("bad_ts", f"unreadable timestamp {text[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
