"""The codec, table by table: every encoding and protocol, every rejection code, and fuzz.

Every table row states the exact outcome: the ``Fix`` (or ``StatusUpdate``) built,
or the ``BadPayload.code`` (and, where it is part of the promise, the reason).
The hypothesis section holds the codec to "nothing but ``BadPayload`` ever
escapes, and every fix that comes out is a usable one".
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import codec
from gateway.errors import BadPayload
from gateway.model import Fix, StatusUpdate

NOW = 1_700_000_000.0
KNOT = 1852.0 / 3600.0
DEV = "dev-1"
STATUSES = ["en_route", "on_site", "paused", "resumed", "done", "cancelled", "failed"]


def js(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def mp(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj)
    return data


def pos(ts: Any = NOW - 10, lat: Any = 60.17, lon: Any = 24.94, **extra: Any) -> dict[str, Any]:
    return {"ts": ts, "lat": lat, "lon": lon, **extra}


def fix(ts: float = NOW - 10, lat: float = 60.17, lon: float = 24.94, **extra: Any) -> Fix:
    return Fix(DEV, ts, lat, lon, **extra)


def code_of(call: Callable[[], object]) -> str:
    with pytest.raises(BadPayload) as info:
        call()
    return info.value.code


FULL = pos(spd=12.5, hdg=270.0, acc=5.0, alt=31.5, bat=80.0, seq=7, sent=NOW - 9)
FULL_FIX = fix(spd=12.5, hdg=270.0, acc=5.0, alt=31.5, bat=80.0, seq=7, sent=NOW - 9)

# -- one position object, JSON and MessagePack ----------------------------------

GOOD_POSITIONS: list[tuple[str, dict[str, Any], Fix]] = [
    ("minimal", pos(), fix()),
    ("every field", FULL, FULL_FIX),
    ("integers become floats", {"ts": 1699999990, "lat": 60, "lon": 25}, fix(lat=60.0, lon=25.0)),
    ("null optionals are absent", pos(spd=None, hdg=None, bat=None), fix()),
    ("unknown fields ignored", pos(foo="bar", extra=[1, 2]), fix()),
    ("north pole, date line", pos(lat=90.0, lon=-180.0), fix(lat=90.0, lon=-180.0)),
    ("south pole, east line", pos(lat=-90.0, lon=180.0), fix(lat=-90.0, lon=180.0)),
    ("ts exactly 5 min ahead", pos(ts=NOW + 300), fix(ts=NOW + 300)),
    ("lat 0 alone is fine", pos(lat=0.0, lon=24.94), fix(lat=0.0)),
    ("range edges", pos(spd=0, hdg=360, acc=0, alt=-1000, bat=100, seq=0),
     fix(spd=0.0, hdg=360.0, acc=0.0, alt=-1000.0, bat=100.0, seq=0)),
]  # fmt: skip


@pytest.mark.parametrize("encode", [js, mp], ids=["json", "msgpack"])
@pytest.mark.parametrize(
    ("obj", "expected"), [r[1:] for r in GOOD_POSITIONS], ids=[r[0] for r in GOOD_POSITIONS]
)
def test_one_good_position(
    encode: Callable[[Any], bytes], obj: dict[str, Any], expected: Fix
) -> None:
    out = codec.decode_positions(DEV, encode(obj), NOW)
    assert out.fixes == [expected]
    assert out.errors == []
    assert all(type(getattr(out.fixes[0], f)) is float for f in ("ts", "lat", "lon"))


def test_json_with_leading_whitespace_is_json() -> None:
    assert codec.decode_positions(DEV, b" \r\n\t" + js(pos()), NOW).fixes == [fix()]


# -- arrays ------------------------------------------------------------------------


@pytest.mark.parametrize("encode", [js, mp], ids=["json", "msgpack"])
def test_good_batch_keeps_order(encode: Callable[[Any], bytes]) -> None:
    batch = [pos(ts=NOW - 30), pos(ts=NOW - 20, spd=3.0), pos(ts=NOW - 10, bat=50)]
    out = codec.decode_positions(DEV, encode(batch), NOW)
    assert out.fixes == [fix(ts=NOW - 30), fix(ts=NOW - 20, spd=3.0), fix(ts=NOW - 10, bat=50.0)]
    assert out.errors == []


@pytest.mark.parametrize("encode", [js, mp], ids=["json", "msgpack"])
def test_partly_bad_batch_keeps_the_good_fixes(encode: Callable[[Any], bytes]) -> None:
    batch = [
        pos(ts=NOW - 40),
        pos(lat=91.0),
        "not a fix",
        pos(ts=NOW - 30, seq=2),
        {"lat": 1.0, "lon": 1.0},
        pos(spd=-1.0),
    ]
    out = codec.decode_positions(DEV, encode(batch), NOW)
    assert out.fixes == [fix(ts=NOW - 40), fix(ts=NOW - 30, seq=2)]
    assert [e.reason for e in out.errors] == [
        "lat_out_of_range: lat=91.0",
        "not_an_object: expected a position object, got str",
        "missing_field: ts",
        "bad_field: spd=-1.0 outside [0, 340]",
    ]
    assert out.reason == "4 of 6 fixes rejected; first: lat_out_of_range: lat=91.0"


def test_reason_of_a_single_bad_fix_is_its_own() -> None:
    out = codec.decode_positions(DEV, js(pos(lat=0.0, lon=0.0)), NOW)
    assert out.fixes == []
    assert out.reason == "null_island: lat=0, lon=0 is a tracker without a fix"


@pytest.mark.parametrize(
    "payload", [b"[]", b" [ ] ", mp([])], ids=["json", "json-spaced", "msgpack"]
)
def test_empty_batch(payload: bytes) -> None:
    with pytest.raises(BadPayload) as info:
        codec.decode_positions(DEV, payload, NOW)
    assert info.value.reason == "bad_field: empty batch"


@pytest.mark.parametrize("encode", [js, mp], ids=["json", "msgpack"])
def test_batch_of_1000_is_accepted_1001_is_not(encode: Callable[[Any], bytes]) -> None:
    batch = [{"ts": 1_699_990_000 + i, "lat": 60.1, "lon": 24.9} for i in range(1001)]
    payload = encode(batch[:1000])
    assert len(payload) <= codec.MAX_PAYLOAD_BYTES
    assert len(codec.decode_positions(DEV, payload, NOW).fixes) == 1000
    with pytest.raises(BadPayload) as info:
        codec.decode_positions(DEV, encode(batch), NOW)
    assert info.value.reason == "batch_too_large: 1001 fixes > 1000"


def test_payload_size_limit_is_64_kib_inclusive() -> None:
    exact = js(pos()).ljust(64 * 1024)  # trailing whitespace keeps it valid JSON
    assert codec.decode_positions(DEV, exact, NOW).fixes == [fix()]
    with pytest.raises(BadPayload) as info:
        codec.decode_positions(DEV, exact + b" ", NOW)
    assert info.value.reason == "payload_too_large: 65537 bytes > 65536"
    assert code_of(lambda: codec.decode_status(DEV, exact + b" ", NOW)) == "payload_too_large"
    assert code_of(lambda: codec.decode_owntracks(DEV, exact + b" ", NOW)) == "payload_too_large"


# -- every rejection reason ------------------------------------------------------------

# (case id, payload, code raised for the whole message or of the single error)
BAD_POSITIONS: list[tuple[str, bytes, str]] = [
    ("empty payload", b"", "bad_encoding"),
    ("truncated JSON", b'{"ts": 1', "bad_encoding"),
    ("JSON with NaN", b'{"ts": NaN, "lat": 1, "lon": 1}', "bad_encoding"),
    ("unclosed array", b"[1, 2", "bad_encoding"),
    ("invalid msgpack byte", b"\xc1", "bad_encoding"),
    ("msgpack with trailing bytes", mp(pos()) + b"\x00", "bad_encoding"),
    ("too large", b"[" + b" " * 65536 + b"]", "payload_too_large"),
    ("json scalar in array", b"[1]", "not_an_object"),
    ("msgpack scalar", mp(5), "not_an_object"),
    ("msgpack string", mp("hello"), "not_an_object"),
    ("nested array", js([[pos()]]), "not_an_object"),
    ("no ts", js({"lat": 1.0, "lon": 1.0}), "missing_field"),
    ("no lat", js({"ts": NOW, "lon": 1.0}), "missing_field"),
    ("null lon", js(pos(lon=None)), "missing_field"),
    ("lat as string", js(pos(lat="60.1")), "bad_field"),
    ("ts as boolean", js(pos(ts=True)), "bad_field"),
    ("lat as object", js(pos(lat={"v": 1})), "bad_field"),
    ("speed negative", js(pos(spd=-0.1)), "bad_field"),
    ("speed above 340 m/s", js(pos(spd=341)), "bad_field"),
    ("heading above 360", js(pos(hdg=360.5)), "bad_field"),
    ("accuracy negative", js(pos(acc=-1)), "bad_field"),
    ("altitude too high", js(pos(alt=100_001)), "bad_field"),
    ("battery above 100", js(pos(bat=101)), "bad_field"),
    ("battery as string", js(pos(bat="50")), "bad_field"),
    ("seq negative", js(pos(seq=-1)), "bad_field"),
    ("seq fractional", js(pos(seq=1.5)), "bad_field"),
    ("seq boolean", js(pos(seq=False)), "bad_field"),
    ("msgpack NaN speed", mp(pos(spd=math.nan)), "bad_field"),
    ("msgpack inf sent", mp(pos(sent=math.inf)), "bad_field"),
    ("lat above 90", js(pos(lat=90.0001)), "lat_out_of_range"),
    ("lat below -90", js(pos(lat=-91)), "lat_out_of_range"),
    ("msgpack NaN lat", mp(pos(lat=math.nan)), "lat_out_of_range"),
    ("msgpack inf lat", mp(pos(lat=math.inf)), "lat_out_of_range"),
    ("lon above 180", js(pos(lon=180.5)), "lon_out_of_range"),
    ("lon below -180", js(pos(lon=-181)), "lon_out_of_range"),
    ("msgpack NaN lon", mp(pos(lon=math.nan)), "lon_out_of_range"),
    ("null island", js(pos(lat=0, lon=0)), "null_island"),
    ("null island, negative zero", mp(pos(lat=-0.0, lon=0.0)), "null_island"),
    ("ts 301 s ahead", js(pos(ts=NOW + 301)), "future_ts"),
    ("ts in milliseconds", js(pos(ts=NOW * 1000)), "future_ts"),
    ("ts zero", js(pos(ts=0)), "bad_ts"),
    ("ts just before 2000", js(pos(ts=946_684_799)), "bad_ts"),
    ("ts negative", js(pos(ts=-5)), "bad_ts"),
    ("msgpack NaN ts", mp(pos(ts=math.nan)), "bad_ts"),
    ("msgpack -inf ts", mp(pos(ts=-math.inf)), "bad_ts"),
    (
        "huge integer lat",
        b'{"ts": 1699999990, "lat": 1' + b"0" * 400 + b', "lon": 1}',
        "lat_out_of_range",
    ),
    ("huge integer ts", b'{"ts": 1' + b"0" * 400 + b', "lat": 1, "lon": 1}', "bad_ts"),
    ("JSON number beyond float", b'{"ts": 1e999, "lat": 1, "lon": 1}', "bad_encoding"),
]


def _position_code(payload: bytes) -> str:
    try:
        out = codec.decode_positions(DEV, payload, NOW)
    except BadPayload as exc:
        return exc.code
    assert out.fixes == []
    assert len(out.errors) == 1
    return out.errors[0].code


@pytest.mark.parametrize(
    ("payload", "code"), [r[1:] for r in BAD_POSITIONS], ids=[r[0] for r in BAD_POSITIONS]
)
def test_bad_position_is_rejected_with_its_code(payload: bytes, code: str) -> None:
    assert _position_code(payload) == code


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [("ts", math.nan, "bad_ts"), ("lat", math.inf, "lat_out_of_range"),
     ("lon", -math.inf, "lon_out_of_range"), ("spd", math.nan, "bad_field")],
)  # fmt: skip
def test_a_fields_code_does_not_depend_on_the_decode_path(
    field: str, value: float, code: str
) -> None:
    alone = codec.decode_positions(DEV, mp(pos(**{field: value})), NOW)  # typed fast path
    beside = codec.decode_positions(DEV, mp([pos(**{field: value}), "x"]), NOW)  # generic path
    assert [e.code for e in alone.errors] == [code]
    assert [e.code for e in beside.errors] == [code, "not_an_object"]


def test_every_position_rejection_code_is_covered() -> None:
    codes = {r[2] for r in BAD_POSITIONS} | {"batch_too_large"}
    assert codes == {
        "bad_encoding", "payload_too_large", "batch_too_large", "not_an_object", "missing_field",
        "bad_field", "lat_out_of_range", "lon_out_of_range", "null_island", "future_ts", "bad_ts",
    }  # fmt: skip


def test_bad_payload_is_a_value_error_with_code_and_detail() -> None:
    with pytest.raises(ValueError, match=r"^missing_field: ts$") as info:
        codec.fix_from_mapping(DEV, {"lat": 1.0, "lon": 1.0}, NOW)
    assert isinstance(info.value, BadPayload)
    assert (info.value.code, info.value.detail) == ("missing_field", "ts")


# -- statuses ----------------------------------------------------------------------------


def status(**fields: Any) -> dict[str, Any]:
    return {"ts": NOW - 5, "job": "job-1", "status": "en_route", **fields}


@pytest.mark.parametrize("state", STATUSES)
@pytest.mark.parametrize("encode", [js, mp], ids=["json", "msgpack"])
def test_every_device_status_is_accepted(encode: Callable[[Any], bytes], state: str) -> None:
    got = codec.decode_status(DEV, encode(status(status=state, note="gate code 12")), NOW)
    assert got == StatusUpdate(DEV, NOW - 5, "job-1", state, "gate code 12")


def test_status_without_note() -> None:
    assert codec.decode_status(DEV, js(status()), NOW) == StatusUpdate(
        DEV, NOW - 5, "job-1", "en_route"
    )


BAD_STATUSES: list[tuple[str, bytes, str]] = [
    ("not JSON", b"{oops", "bad_encoding"),
    ("array", js([status()]), "not_an_object"),
    ("msgpack integer", mp(3), "not_an_object"),
    ("too large", js(status(note="x" * 70_000)), "payload_too_large"),
    ("no ts", js({"job": "job-1", "status": "done"}), "missing_field"),
    ("no job", js({"ts": NOW, "status": "done"}), "missing_field"),
    ("no status", js({"ts": NOW, "job": "job-1"}), "missing_field"),
    ("ts as string", js(status(ts="1700000000")), "bad_field"),
    ("note not a string", js(status(note=5)), "bad_field"),
    ("note too long", js(status(note="x" * 1001)), "bad_field"),
    ("ts ahead", js(status(ts=NOW + 301)), "future_ts"),
    ("ts 1970", js(status(ts=1)), "bad_ts"),
    ("planned is not reportable", js(status(status="planned")), "unknown_status"),
    ("made-up status", js(status(status="arrived")), "unknown_status"),
    ("status case matters", js(status(status="DONE")), "unknown_status"),
    ("numeric status", js(status(status=5)), "unknown_status"),
    ("list status", js(status(status=["done"])), "unknown_status"),
    ("object status", js(status(status={"s": "done"})), "unknown_status"),
    ("job with space", js(status(job="job 1")), "bad_id"),
    ("empty job", js(status(job="")), "bad_id"),
    ("job of 65 chars", js(status(job="j" * 65)), "bad_id"),
    ("numeric job", js(status(job=12)), "bad_id"),
]


@pytest.mark.parametrize(
    ("payload", "code"), [r[1:] for r in BAD_STATUSES], ids=[r[0] for r in BAD_STATUSES]
)
def test_bad_status_is_rejected_with_its_code(payload: bytes, code: str) -> None:
    assert code_of(lambda: codec.decode_status(DEV, payload, NOW)) == code


def test_job_id_of_64_chars_is_accepted() -> None:
    job = "a.B_c:d-" * 8
    assert codec.decode_status(DEV, js(status(job=job)), NOW).job_id == job


# -- OwnTracks ---------------------------------------------------------------------------


def loc(**fields: Any) -> dict[str, Any]:
    return {"_type": "location", "tst": 1_699_999_990, "lat": 60.17, "lon": 24.94, **fields}


GOOD_OWNTRACKS: list[tuple[str, dict[str, Any], Fix]] = [
    ("minimal", loc(), fix()),
    ("numbers as strings", loc(tst="1699999990", lat="60.17", lon="24.94", vel="36", cog="90",
                               alt="12.5", acc="10", batt="55"),
     fix(spd=10.0, hdg=90.0, alt=12.5, acc=10.0, bat=55.0)),
    ("vel km/h to m/s", loc(vel=72), fix(spd=20.0)),
    ("vel 0 is a speed", loc(vel=0), fix(spd=0.0)),
    ("-1 is unknown", loc(vel=-1, cog=-1, alt=-1, batt=-1), fix()),
    ("-1 as strings is unknown", loc(vel="-1", cog="-1", alt="-1"), fix()),
    ("batt and acc as numbers", loc(batt=88, acc=3), fix(bat=88.0, acc=3.0)),
    ("other fields ignored", loc(tid="JD", conn="m", BSSID="aa:bb", topic="x"), fix()),
]  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "expected"), [r[1:] for r in GOOD_OWNTRACKS], ids=[r[0] for r in GOOD_OWNTRACKS]
)
def test_owntracks_location(obj: dict[str, Any], expected: Fix) -> None:
    assert codec.decode_owntracks(DEV, js(obj), NOW) == expected


@pytest.mark.parametrize(
    "kind", ["transition", "waypoint", "waypoints", "card", "lwt", "cmd", "status", "beacon"]
)
def test_owntracks_other_types_are_ignored(kind: str) -> None:
    assert codec.decode_owntracks(DEV, js({"_type": kind, "tst": 1, "lat": "x"}), NOW) is None


BAD_OWNTRACKS: list[tuple[str, bytes, str]] = [
    ("garbage", b"{", "bad_encoding"),
    ("array", js([loc()]), "not_an_object"),
    ("no _type", js({"tst": NOW, "lat": 1, "lon": 1}), "missing_field"),
    ("numeric _type", js(loc(_type=5)), "missing_field"),
    ("no tst", js({"_type": "location", "lat": 1.0, "lon": 1.0}), "missing_field"),
    ("lat not a number", js(loc(lat="sixty")), "bad_field"),
    ("vel not a number", js(loc(vel="fast")), "bad_field"),
    ("vel -2 is negative speed", js(loc(vel=-2)), "bad_field"),
    ("batt above 100", js(loc(batt=101)), "bad_field"),
    ("lat out of range", js(loc(lat="95")), "lat_out_of_range"),
    ("lon out of range", js(loc(lon=-200)), "lon_out_of_range"),
    ("no fix", js(loc(lat="0", lon="0")), "null_island"),
    ("tst ahead", js(loc(tst=NOW + 600)), "future_ts"),
    ("tst zero", js(loc(tst=0)), "bad_ts"),
]


@pytest.mark.parametrize(
    ("payload", "code"), [r[1:] for r in BAD_OWNTRACKS], ids=[r[0] for r in BAD_OWNTRACKS]
)
def test_bad_owntracks(payload: bytes, code: str) -> None:
    assert code_of(lambda: codec.decode_owntracks(DEV, payload, NOW)) == code


# -- OsmAnd / Traccar Client query and form ------------------------------------------------

Q = {"id": DEV, "lat": "60.17", "lon": "24.94"}

GOOD_OSMAND: list[tuple[str, dict[str, str], Fix]] = [
    ("epoch seconds", {**Q, "timestamp": "1699999990"}, fix()),
    ("deviceid", {"deviceid": DEV, "lat": "60.17", "lon": "24.94", "timestamp": "1699999990"},
     fix()),
    ("location=lat,lon", {"id": DEV, "location": "60.17,24.94", "timestamp": "1699999990"}, fix()),
    ("epoch milliseconds", {**Q, "timestamp": "1699999990000"}, fix()),
    ("fractional seconds", {**Q, "timestamp": "1699999990.25"}, fix(ts=NOW - 9.75)),
    ("ISO with Z", {**Q, "timestamp": "2023-11-14T22:13:10Z"}, fix()),
    ("ISO with offset", {**Q, "timestamp": "2023-11-15T00:13:10+02:00"}, fix()),
    ("ISO with millis", {**Q, "timestamp": "2023-11-14T22:13:10.500Z"}, fix(ts=NOW - 9.5)),
    ("ISO naive is UTC", {**Q, "timestamp": "2023-11-14T22:13:10"}, fix()),
    ("yyyy-MM-dd HH:mm:ss", {**Q, "timestamp": "2023-11-14 22:13:10"}, fix()),
    ("no timestamp is now", Q, fix(ts=NOW)),
    ("empty timestamp is now", {**Q, "timestamp": ""}, fix(ts=NOW)),
    ("speed in knots", {**Q, "speed": "10"}, fix(ts=NOW, spd=10 * KNOT)),
    ("bearing", {**Q, "bearing": "123.5"}, fix(ts=NOW, hdg=123.5)),
    ("heading", {**Q, "heading": "45"}, fix(ts=NOW, hdg=45.0)),
    ("bearing wins over heading", {**Q, "bearing": "10", "heading": "20"}, fix(ts=NOW, hdg=10.0)),
    ("altitude, accuracy, batt", {**Q, "altitude": "-12", "accuracy": "7.5", "batt": "64"},
     fix(ts=NOW, alt=-12.0, acc=7.5, bat=64.0)),
    ("unknown parameters ignored", {**Q, "hdop": "1.1", "charge": "true"}, fix(ts=NOW)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "expected"), [r[1:] for r in GOOD_OSMAND], ids=[r[0] for r in GOOD_OSMAND]
)
def test_osmand(params: dict[str, str], expected: Fix) -> None:
    assert codec.decode_osmand(params, NOW) == expected


BAD_OSMAND: list[tuple[str, dict[str, str], str]] = [
    ("no id", {"lat": "60.17", "lon": "24.94"}, "missing_field"),
    ("empty id", {**Q, "id": ""}, "missing_field"),
    ("no coordinates", {"id": DEV, "timestamp": "1699999990"}, "missing_field"),
    ("lat only", {"id": DEV, "lat": "60.17"}, "missing_field"),
    ("location without lon", {"id": DEV, "location": "60.17"}, "missing_field"),
    ("empty lat", {**Q, "lat": ""}, "missing_field"),
    ("bad id", {**Q, "id": "my phone"}, "bad_id"),
    ("id too long", {**Q, "id": "x" * 65}, "bad_id"),
    ("unreadable timestamp", {**Q, "timestamp": "yesterday"}, "bad_ts"),
    ("timestamp nan", {**Q, "timestamp": "nan"}, "bad_ts"),
    ("timestamp inf", {**Q, "timestamp": "1e999"}, "bad_ts"),
    ("timestamp 1970", {**Q, "timestamp": "1000"}, "bad_ts"),
    ("timestamp ahead", {**Q, "timestamp": str(NOW + 301)}, "future_ts"),
    ("lat not a number", {**Q, "lat": "north"}, "bad_field"),
    ("speed not a number", {**Q, "speed": "fast"}, "bad_field"),
    ("negative speed", {**Q, "speed": "-3"}, "bad_field"),
    ("batt above 100", {**Q, "batt": "101"}, "bad_field"),
    ("lat out of range", {**Q, "lat": "-90.5"}, "lat_out_of_range"),
    ("lon out of range", {**Q, "lon": "181"}, "lon_out_of_range"),
    ("null island", {**Q, "lat": "0", "lon": "0.0"}, "null_island"),
]


@pytest.mark.parametrize(
    ("params", "code"), [r[1:] for r in BAD_OSMAND], ids=[r[0] for r in BAD_OSMAND]
)
def test_bad_osmand(params: dict[str, str], code: str) -> None:
    assert code_of(lambda: codec.decode_osmand(params, NOW)) == code


# -- Traccar Client 9+ JSON ------------------------------------------------------------------


def traccar(**location: Any) -> dict[str, Any]:
    coords = {"latitude": 60.17, "longitude": 24.94, "speed": 4.5, "heading": 180.0,
              "accuracy": 6.0, "altitude": 22.0}  # fmt: skip
    body = {"timestamp": "2023-11-14T22:13:10.000Z", "coords": coords,
            "battery": {"level": 0.85, "is_charging": False}, "is_moving": True}  # fmt: skip
    return {"device_id": DEV, "location": {**body, **location}}


TRACCAR_FULL = fix(spd=4.5, hdg=180.0, acc=6.0, alt=22.0, bat=85.0)
UNKNOWNS = {"latitude": 60.17, "longitude": 24.94, "speed": -1, "heading": -1}
GOOD_TRACCAR: list[tuple[str, dict[str, Any], Fix]] = [
    ("full", traccar(), TRACCAR_FULL),
    ("no timestamp is now", {"device_id": DEV, "location": {"coords": UNKNOWNS}}, fix(ts=NOW)),
    ("epoch ms timestamp", traccar(timestamp=1_699_999_990_000), TRACCAR_FULL),
    ("-1 is unknown", traccar(coords=UNKNOWNS, battery={"level": -1}), fix()),
    (
        "numeric strings",
        traccar(coords={"latitude": "60.17", "longitude": "24.94"}, battery={"level": "0.5"}),
        fix(bat=50.0),
    ),
]


@pytest.mark.parametrize(
    ("obj", "expected"), [r[1:] for r in GOOD_TRACCAR], ids=[r[0] for r in GOOD_TRACCAR]
)
def test_traccar_json(obj: dict[str, Any], expected: Fix) -> None:
    assert codec.decode_traccar_json(obj, NOW) == expected


BAD_TRACCAR: list[tuple[str, Any, str]] = [
    ("not an object", [traccar()], "not_an_object"),
    ("no device_id", {"location": traccar()["location"]}, "missing_field"),
    ("bad device_id", {**traccar(), "device_id": "a/b"}, "bad_id"),
    ("no location", {"device_id": DEV}, "missing_field"),
    ("location not an object", {"device_id": DEV, "location": "here"}, "missing_field"),
    ("no coords", {"device_id": DEV, "location": {"timestamp": NOW}}, "missing_field"),
    ("no latitude", traccar(coords={"longitude": 24.94}), "missing_field"),
    ("bad timestamp", traccar(timestamp="soon"), "bad_ts"),
    ("boolean timestamp", traccar(timestamp=True), "bad_ts"),
    ("level above 1", traccar(battery={"level": 1.5}), "bad_field"),
    (
        "latitude out of range",
        traccar(coords={"latitude": 100, "longitude": 1}),
        "lat_out_of_range",
    ),
    ("no fix", traccar(coords={"latitude": 0, "longitude": 0}), "null_island"),
    ("ahead", traccar(timestamp=NOW + 1000), "future_ts"),
]


@pytest.mark.parametrize(
    ("obj", "code"), [r[1:] for r in BAD_TRACCAR], ids=[r[0] for r in BAD_TRACCAR]
)
def test_bad_traccar_json(obj: Any, code: str) -> None:
    assert code_of(lambda: codec.decode_traccar_json(obj, NOW)) == code


# -- timestamps ----------------------------------------------------------------------------

TIMESTAMPS: list[tuple[Any, float]] = [
    (1_700_000_000, NOW),
    (1_700_000_000.5, NOW + 0.5),
    (1_700_000_000_000, NOW),
    (" 1700000000 ", NOW),
    ("1700000000123", NOW + 0.123),
    ("2023-11-14T22:13:20Z", NOW),
    ("2023-11-14T22:13:20.250+00:00", NOW + 0.25),
    ("2023-11-14 22:13:20", NOW),
    ("2023-11-14T23:13:20+01:00", NOW),
]


@pytest.mark.parametrize(("value", "expected"), TIMESTAMPS, ids=[repr(t[0]) for t in TIMESTAMPS])
def test_parse_timestamp(value: Any, expected: float) -> None:
    assert math.isclose(codec.parse_timestamp(value), expected, abs_tol=1e-6)


UNREADABLE = [True, None, [1], "", "14/11/2023", "nan", math.inf, 10**400, "2023-13-01"]


@pytest.mark.parametrize("value", UNREADABLE, ids=[str(v)[:12] for v in UNREADABLE])
def test_unreadable_timestamps_are_bad_ts(value: Any) -> None:
    assert code_of(lambda: codec.parse_timestamp(value)) == "bad_ts"


# -- fuzz ------------------------------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_usable(fix: Fix) -> None:
    """The invariants every fix leaving the codec must hold."""
    values = [fix.ts, fix.lat, fix.lon]
    values += [v for v in (fix.spd, fix.hdg, fix.acc, fix.alt, fix.bat, fix.sent) if v is not None]
    assert all(isinstance(v, float) and math.isfinite(v) for v in values)
    assert -90.0 <= fix.lat <= 90.0 and -180.0 <= fix.lon <= 180.0
    assert (fix.lat, fix.lon) != (0.0, 0.0)
    assert codec.MIN_TS <= fix.ts <= NOW + codec.MAX_FUTURE_S
    for name, (low, high) in codec.OPTIONAL_RANGES.items():
        value = getattr(fix, name)
        assert value is None or low <= value <= high
    assert fix.seq is None or (isinstance(fix.seq, int) and fix.seq >= 0)


def each_decoder(payload: bytes) -> None:
    """Run every payload decoder; only ``BadPayload`` may escape, every fix is usable."""
    try:
        out = codec.decode_positions(DEV, payload, NOW)
    except BadPayload:
        pass
    else:
        assert out.fixes or out.errors
        for f in out.fixes:
            assert_usable(f)
    try:
        got = codec.decode_owntracks(DEV, payload, NOW)
    except BadPayload:
        pass
    else:
        if got is not None:
            assert_usable(got)
    try:
        update = codec.decode_status(DEV, payload, NOW)
    except BadPayload:
        pass
    else:
        assert update.status in set(STATUSES)
        assert codec.MIN_TS <= update.ts <= NOW + codec.MAX_FUTURE_S
    try:
        value = codec.decode_any(payload)
    except BadPayload:
        return
    with contextlib.suppress(BadPayload):
        assert_usable(codec.decode_traccar_json(value, NOW))


def json_values(ints: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | ints | st.floats() | st.text(max_size=12)
    keys = st.sampled_from(
        ["ts", "lat", "lon", "spd", "seq", "_type", "tst", "job", "status"]
    ) | st.text(max_size=6)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
        max_leaves=16,
    )


INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(payload: bytes) -> None:
    each_decoder(payload)


@FUZZ
@given(st.sampled_from([b"{", b"[", b"[{", b'{"ts":']), st.binary(max_size=200))
def test_fuzz_bytes_after_a_json_opening(head: bytes, tail: bytes) -> None:
    each_decoder(head + tail)


@FUZZ
@given(json_values(st.integers() | st.sampled_from([10**400, -(10**400)])))
def test_fuzz_json_values(value: Any) -> None:
    each_decoder(json.dumps(value).encode())


@FUZZ
@given(json_values(INT64))
def test_fuzz_msgpack_values(value: Any) -> None:
    each_decoder(mp(value))


finite = st.floats(allow_nan=False, allow_infinity=False)
valid_position = st.fixed_dictionaries(
    {
        "ts": st.floats(min_value=codec.MIN_TS, max_value=NOW + 300),
        "lat": st.floats(min_value=-90, max_value=90).filter(bool),
        "lon": st.floats(min_value=-180, max_value=180),
    },
    optional={
        "spd": st.floats(min_value=0, max_value=340),
        "hdg": st.floats(min_value=0, max_value=360),
        "acc": st.floats(min_value=0, max_value=1000),
        "alt": st.floats(min_value=-1000, max_value=100_000),
        "bat": st.floats(min_value=0, max_value=100),
        "seq": st.integers(min_value=0, max_value=2**63 - 1),
        "sent": finite,
    },
)
mutation = (
    json_values(INT64)
    | st.just(None)
    | st.sampled_from([math.nan, math.inf, -1, 0, 10**6, "1", ""])
)


def mutate(obj: dict[str, Any], data: st.DataObject, keys: list[str]) -> dict[str, Any]:
    key = data.draw(st.sampled_from(keys) | st.text(max_size=5), label="key")
    out = dict(obj)
    if data.draw(st.booleans(), label="delete") and key in out:
        del out[key]
    else:
        out[key] = data.draw(mutation, label="value")
    return out


@FUZZ
@given(valid_position)
def test_fuzz_valid_positions_round_trip(obj: dict[str, Any]) -> None:
    for payload in (js(obj), mp(obj)):
        out = codec.decode_positions(DEV, payload, NOW)
        assert out.errors == []
        [got] = out.fixes
        assert_usable(got)
        assert (got.ts, got.lat, got.lon) == (obj["ts"], obj["lat"], obj["lon"])


POSITION_KEYS = ["ts", "lat", "lon", "spd", "hdg", "acc", "alt", "bat", "seq", "sent"]


@FUZZ
@given(valid_position, valid_position, st.data())
def test_fuzz_near_valid_positions(
    good: dict[str, Any], base: dict[str, Any], data: st.DataObject
) -> None:
    bad = mutate(base, data, POSITION_KEYS)
    for encode in (js, mp):
        each_decoder(encode(bad))
        try:
            out = codec.decode_positions(DEV, encode([good, bad]), NOW)
        except BadPayload as exc:
            # NaN and infinities have no JSON spelling: json.dumps writes a token JSON lacks.
            assert (encode, exc.code) == (js, "bad_encoding")
            continue
        assert len(out.fixes) + len(out.errors) == 2
        assert out.fixes[0] == codec.fix_from_mapping(DEV, good, NOW)
        for f in out.fixes:
            assert_usable(f)


valid_status = st.fixed_dictionaries(
    {
        "ts": st.floats(min_value=codec.MIN_TS, max_value=NOW + 300),
        "job": st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True),
        "status": st.sampled_from(STATUSES),
    },
    optional={"note": st.text(max_size=50)},
)


@FUZZ
@given(valid_status, st.data())
def test_fuzz_near_valid_statuses(obj: dict[str, Any], data: st.DataObject) -> None:
    assert codec.decode_status(DEV, js(obj), NOW).job_id == obj["job"]
    bad = mutate(obj, data, ["ts", "job", "status", "note"])
    each_decoder(js(bad))
    each_decoder(mp(bad))


def stringly(value: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    return value | value.map(repr)


valid_owntracks = st.fixed_dictionaries(
    {
        "_type": st.just("location"),
        "tst": stringly(st.integers(min_value=int(codec.MIN_TS), max_value=int(NOW))),
        "lat": stringly(st.floats(min_value=-90, max_value=90).filter(bool)),
        "lon": stringly(st.floats(min_value=-180, max_value=180)),
    },
    optional={
        "vel": stringly(st.sampled_from([-1.0]) | st.floats(min_value=0, max_value=1000)),
        "cog": stringly(st.sampled_from([-1.0]) | st.floats(min_value=0, max_value=360)),
        "alt": stringly(st.floats(min_value=-1000, max_value=10_000)),
        "acc": stringly(st.floats(min_value=0, max_value=1000)),
        "batt": stringly(st.integers(min_value=-1, max_value=100)),
    },
)


@FUZZ
@given(valid_owntracks, st.data())
def test_fuzz_near_valid_owntracks(obj: dict[str, Any], data: st.DataObject) -> None:
    got = codec.decode_owntracks(DEV, js(obj), NOW)
    assert got is not None
    assert_usable(got)
    bad = mutate(obj, data, ["_type", "tst", "lat", "lon", "vel", "cog", "alt", "acc", "batt"])
    each_decoder(js(bad))


OSMAND_KEYS = ["id", "deviceid", "lat", "lon", "location", "timestamp", "speed", "bearing",
               "heading", "altitude", "accuracy", "batt"]  # fmt: skip
NUMERIC_TEXT = st.text(alphabet="0123456789.-+eEnaifNIT:Z ,", max_size=25)


def decode_osmand_checked(params: dict[str, str]) -> None:
    try:
        got = codec.decode_osmand(params, NOW)
    except BadPayload:
        return
    assert_usable(got)
    assert got.device_id in (params.get("id"), params.get("deviceid"))


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(OSMAND_KEYS) | st.text(max_size=5), st.text(max_size=30) | NUMERIC_TEXT
    )
)
def test_fuzz_osmand_params(params: dict[str, str]) -> None:
    decode_osmand_checked(params)


@FUZZ
@given(st.sampled_from(OSMAND_KEYS), st.text(max_size=40) | NUMERIC_TEXT)
def test_fuzz_near_valid_osmand(key: str, value: str) -> None:
    params = {**Q, "timestamp": "2023-11-14 22:13:10", "speed": "3", "bearing": "9", "batt": "50"}
    decode_osmand_checked({**params, key: value})


TRACCAR_KEYS = ["device_id", "location", "timestamp", "coords", "latitude", "longitude",
                "speed", "heading", "accuracy", "altitude", "battery", "level"]  # fmt: skip


@FUZZ
@given(
    st.sampled_from(TRACCAR_KEYS),
    json_values(st.integers()) | st.sampled_from([math.nan, -math.inf, -1, "12", 10**400]),
)
def test_fuzz_near_valid_traccar(key: str, value: Any) -> None:
    obj = traccar()
    if key == "device_id":
        obj[key] = value
    elif key in ("location",):
        obj["location"] = value
    elif key in ("timestamp", "coords", "battery"):
        obj["location"][key] = value
    elif key == "level":
        obj["location"]["battery"] = {"level": value}
    else:
        obj["location"]["coords"][key] = value
    try:
        got = codec.decode_traccar_json(obj, NOW)
    except BadPayload:
        return
    assert_usable(got)
