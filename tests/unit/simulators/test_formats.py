"""Wire encodings: native JSON / MessagePack, OwnTracks, OsmAnd, and malformed variants."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
import pytest

from simulators.config import Format
from simulators.formats import HttpOut, MqttOut, caps_for, encode, transport_of
from simulators.phone import Fix, PhoneCaps, PhoneMessage, StatusMsg


def fix(seq: int = 5, hdg: float | None = 91.3, alt: float | None = 17.2) -> Fix:
    return Fix(
        seq=seq, t=1000.0, lat=60.0, lon=25.0, true_spd=10.0, edge=3, ts=1000.5,
        rlat=60.0001, rlon=25.0002, acc=7.5, spd=10.2, hdg=hdg, alt=alt, bat=80,
    )  # fmt: skip


def pos(
    *fixes: Fix, fault: str | None = None, batch: bool = False, device: str = "phone-1"
) -> PhoneMessage:
    return PhoneMessage(1000.0, f"{device}/1", device, fixes=fixes, batch=batch, fault=fault)


def status(fault: str | None = None, device: str = "phone-1") -> PhoneMessage:
    s = StatusMsg(1000.0, 1000.5, "job-1", "on_site")
    return PhoneMessage(1000.0, f"{device}/2", device, status=s, fault=fault)


NATIVE = {
    "ts": 1000.5, "lat": 60.0001, "lon": 25.0002, "acc": 7.5, "spd": 10.2, "hdg": 91.3,
    "alt": 17.2, "bat": 80, "seq": 5,
}  # fmt: skip


def mqtt(out: MqttOut | HttpOut) -> MqttOut:
    assert isinstance(out, MqttOut)
    return out


def decode(out: MqttOut | HttpOut) -> Any:
    payload = mqtt(out).payload
    return orjson.loads(payload) if payload[:1] in (b"{", b"[") else msgpack.unpackb(payload)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_native_position(fmt: Format) -> None:
    out = mqtt(encode(pos(fix()), fmt, prefix="fleet", qos=1))
    assert (out.topic, out.qos, out.retain) == ("fleet/phone-1/pos", 1, False)
    assert out.payload[:1] == (b"{" if fmt == "json" else b"\x89")
    assert decode(out) == NATIVE


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_native_batch_is_an_array(fmt: Format) -> None:
    out = encode(pos(fix(seq=2), fix(seq=1, hdg=None, alt=None), batch=True), fmt, prefix="p")
    body = decode(out)
    assert mqtt(out).topic == "p/phone-1/pos"
    assert [f["seq"] for f in body] == [2, 1]
    assert "hdg" not in body[1] and "alt" not in body[1]


@pytest.mark.parametrize("fmt", ["json", "msgpack", "owntracks", "osmand"])
def test_status_always_goes_over_mqtt(fmt: Format) -> None:
    device = "tech-1:phone" if fmt == "owntracks" else "phone-1"
    out = mqtt(encode(status(device=device), fmt))
    assert out.topic == f"fleet/{device}/status"
    assert decode(out) == {"ts": 1000.5, "job": "job-1", "status": "on_site"}
    assert out.payload[:1] == (b"\x83" if fmt == "msgpack" else b"{")


@pytest.mark.parametrize(
    ("seq", "hdg", "alt", "expected"),
    [
        (5, 91.3, 17.2, {"tst": 1000, "lat": 60.0001, "lon": 25.0002, "acc": 8, "vel": 37,
                         "cog": 91, "alt": 17, "batt": 80}),
        # Parked: course unknown (-1); every 7th fix also has speed unknown (-1).
        (14, None, None, {"tst": 1000, "lat": 60.0001, "lon": 25.0002, "acc": 8, "vel": -1,
                          "cog": -1, "alt": -1, "batt": 80}),
        # Every 4th fix has its numbers as strings, as some trackers send them.
        (8, 91.3, 17.2, {"tst": "1000", "lat": "60.0001", "lon": "25.0002", "acc": "8",
                         "vel": "37", "cog": "91", "alt": "17", "batt": "80"}),
    ],
)  # fmt: skip
def test_owntracks_location(
    seq: int, hdg: float | None, alt: float | None, expected: dict[str, Any]
) -> None:
    msg = PhoneMessage(1000.0, "m", "tech-1:phone", fixes=(fix(seq, hdg, alt),), retain=True)
    out = mqtt(encode(msg, "owntracks"))
    assert (out.topic, out.retain) == ("owntracks/tech-1/phone", True)
    body = orjson.loads(out.payload)
    assert body["_type"] == "location"
    assert {k: body[k] for k in expected} == expected


def test_osmand_query() -> None:
    out = encode(pos(fix()), "osmand")
    assert isinstance(out, HttpOut)
    assert (out.method, out.path) == ("POST", "/osmand")
    assert dict(out.params) == {
        "id": "phone-1", "timestamp": "1000", "lat": "60.0001000", "lon": "25.0002000",
        "speed": "19.83", "accuracy": "7.5", "batt": "80", "bearing": "91.3", "altitude": "17.2",
    }  # fmt: skip


def unparsable(payload: bytes) -> bool:
    try:
        (orjson.loads if payload[:1] in (b"{", b"[") else msgpack.unpackb)(payload)
    except (orjson.JSONDecodeError, ValueError, msgpack.UnpackException):
        return True
    return False


@pytest.mark.parametrize("fmt", ["json", "msgpack", "owntracks"])
@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("missing_lat", lambda d: "lat" not in d and "lon" in d),
        ("lat_out_of_range", lambda d: float(d["lat"]) == 200.0),
        ("null_island", lambda d: float(d["lat"]) == 0.0 and float(d["lon"]) == 0.0),
        ("future_ts", lambda d: float(d["ts"] if "ts" in d else d["tst"]) in (87400.5, 87400)),
    ],
)  # fmt: skip
def test_malformed_positions(fmt: Format, fault: str, check: Any) -> None:
    device = "tech-1:phone" if fmt == "owntracks" else "phone-1"
    out = mqtt(encode(pos(fix(), fault=fault, device=device), fmt))
    assert check(decode(out))


@pytest.mark.parametrize("fmt", ["json", "msgpack", "owntracks"])
def test_bad_encoding_cannot_be_decoded(fmt: Format) -> None:
    device = "tech-1:phone" if fmt == "owntracks" else "phone-1"
    assert unparsable(mqtt(encode(pos(fix(), fault="bad_encoding", device=device), fmt)).payload)
    assert unparsable(mqtt(encode(status(fault="bad_encoding"), fmt)).payload)
    assert not unparsable(mqtt(encode(pos(fix(), device=device), fmt)).payload)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [("unknown_status", {"status": "teleported", "ts": 1000.5}),
     ("future_ts", {"status": "on_site", "ts": 1000.5 + 86400})],
)  # fmt: skip
def test_malformed_statuses(fault: str, expected: dict[str, Any]) -> None:
    body = decode(encode(status(fault=fault), "json"))
    assert {k: body[k] for k in expected} == expected


@pytest.mark.parametrize("fmt", ["json", "msgpack", "owntracks", "osmand"])
def test_a_future_timestamp_is_ahead_of_the_wall_clock_in_a_replayed_past_day(
    fmt: Format,
) -> None:
    """Sent at wall time 10**9 (a day replayed long after): "a day ahead" of the message's
    own time (1000) would still be the past, which the gateway takes."""
    device = "tech-1:phone" if fmt == "owntracks" else "phone-1"
    out = encode(pos(fix(), fault="future_ts", device=device), fmt, now=1e9)
    if isinstance(out, HttpOut):
        sent = float(dict(out.params)["timestamp"])
    else:
        body = decode(out)
        sent = float(body["ts"] if "ts" in body else body["tst"])
        assert fmt != "owntracks" or isinstance(body["tst"], int | str)
    assert sent == 1e9 + 86400
    body = decode(encode(status(fault="future_ts"), "json", now=1e9))
    assert body["ts"] == 1e9 + 86400


@pytest.mark.parametrize(
    ("fault", "changed"),
    [
        ("bad_encoding", {"lat": "sixty"}),
        ("missing_lat", {"lat": None}),
        ("lat_out_of_range", {"lat": "200.0"}),
        ("null_island", {"lat": "0.0", "lon": "0.0"}),
        ("future_ts", {"timestamp": str(1000 + 86400)}),
    ],
)
def test_malformed_osmand(fault: str, changed: dict[str, str | None]) -> None:
    out = encode(pos(fix(), fault=fault), "osmand")
    assert isinstance(out, HttpOut)
    params = dict(out.params)
    for key, value in changed.items():
        assert params.get(key) == value


@pytest.mark.parametrize(
    ("fmt", "caps", "pos_transport"),
    [
        ("json", PhoneCaps(True, False, 3), "mqtt"),
        ("msgpack", PhoneCaps(True, False, 3), "mqtt"),
        ("owntracks", PhoneCaps(False, True, 0), "mqtt"),
        ("osmand", PhoneCaps(False, False, 0), "http"),
    ],
)
def test_capabilities_and_transport(fmt: Format, caps: PhoneCaps, pos_transport: str) -> None:
    assert caps_for(fmt) == caps
    assert transport_of(pos(fix()), fmt) == pos_transport
    assert transport_of(status(), fmt) == "mqtt"
