"""Hand-made MQTT packets: exact bytes, parsing, and a real Mosquitto accepting them."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators import mqttwire
from simulators.mqttwire import (
    Packet,
    ProtocolError,
    connack_result,
    connect_packet,
    packet_id_offset,
    puback_reason,
    publish_packet,
    read_varint,
    split_packets,
    varint,
)

from .conftest import Broker, subscribed


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f"), (16384, "808001"),
     (2_097_151, "ffff7f"), (268_435_455, "ffffff7f")],
)  # fmt: skip
def test_varint(n: int, encoded: str) -> None:
    assert varint(n).hex() == encoded
    assert read_varint(bytes.fromhex(encoded), 0) == (n, len(encoded) // 2)


@given(st.integers(0, 268_435_455))
def test_varint_round_trip(n: int) -> None:
    raw = b"\x99" + varint(n)
    assert read_varint(raw, 1) == (n, len(raw))
    assert read_varint(raw[:-1], 1) is None  # cut short: wait for more bytes


def test_varint_limits() -> None:
    with pytest.raises(ValueError):
        varint(268_435_456)
    with pytest.raises(ProtocolError):
        read_varint(b"\xff\xff\xff\xff\x01", 0)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "100e" "00044d515454" "04" "02" "003c" "0002" "6331"),
        ({"protocol": 5}, "100f" "00044d515454" "05" "02" "003c" "00" "0002" "6331"),
        ({"keepalive": 10, "clean": False}, "100e" "00044d515454" "04" "00" "000a" "0002" "6331"),
        ({"username": "u", "password": "p"},
         "1014" "00044d515454" "04" "c2" "003c" "0002" "6331" "000175" "000170"),
    ],
)  # fmt: skip
def test_connect_packet(kwargs: dict[str, object], expected: str) -> None:
    assert connect_packet("c1", **kwargs).hex() == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "3006" "0003612f62" "78"),
        ({"qos": 1, "packet_id": 10}, "3208" "0003612f62" "000a" "78"),
        ({"qos": 1, "packet_id": 10, "protocol": 5}, "3209" "0003612f62" "000a" "00" "78"),
        ({"retain": True, "dup": True, "qos": 1, "packet_id": 1}, "3b08" "0003612f62" "0001" "78"),
    ],
)  # fmt: skip
def test_publish_packet(kwargs: dict[str, object], expected: str) -> None:
    packet = publish_packet("a/b", b"x", **kwargs)  # type: ignore[arg-type]
    assert packet.hex() == expected
    if kwargs.get("qos"):
        assert (
            packet[packet_id_offset(packet) : packet_id_offset(packet) + 2].hex() == expected[14:18]
        )


def test_publish_packet_with_a_long_payload_has_a_multi_byte_length() -> None:
    packet = publish_packet("t", b"x" * 200, qos=1, packet_id=7)
    assert packet[:3].hex() == "32cd01"  # 2 + 1 + 2 + 200 = 205
    assert packet_id_offset(packet) == 6


@pytest.mark.parametrize("kwargs", [{"qos": 2}, {"qos": 1}, {"qos": 1, "packet_id": 70000}])
def test_publish_packet_refuses(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        publish_packet("t", b"", **kwargs)  # type: ignore[arg-type]


def test_split_packets_keeps_a_partial_tail() -> None:
    buf = bytearray(bytes.fromhex("2002000040020001d0004002"))
    assert split_packets(buf) == [
        Packet(mqttwire.CONNACK, 0, b"\x00\x00"),
        Packet(mqttwire.PUBACK, 0, b"\x00\x01"),
        Packet(mqttwire.PINGRESP, 0, b""),
    ]
    assert buf.hex() == "4002"
    buf += b"\x00\x02"
    assert split_packets(buf) == [Packet(mqttwire.PUBACK, 0, b"\x00\x02")]
    assert buf == bytearray()


@pytest.mark.parametrize(
    ("body", "protocol", "expected"),
    [
        ("0000", 4, (0, 65535)),
        ("0005", 4, (5, 65535)),
        ("000003210014", 5, (0, 20)),
        # topic alias maximum (u16), assigned client id (string), then receive maximum
        ("00000c22000512000361626321ffff", 5, (0, 65535)),
        ("00000912000361626321000a", 5, (0, 10)),
    ],
)
def test_connack_result(body: str, protocol: int, expected: tuple[int, int]) -> None:
    assert connack_result(bytes.fromhex(body), protocol) == expected


@pytest.mark.parametrize("body", ["00", "00000a21000a", "000003ee0000"])
def test_connack_result_refuses_garbage(body: str) -> None:
    with pytest.raises(ProtocolError):
        connack_result(bytes.fromhex(body), 5)


@pytest.mark.parametrize(("body", "reason"), [("0001", 0), ("000110", 0x10), ("000187", 0x87)])
def test_puback_reason(body: str, reason: int) -> None:
    assert puback_reason(bytes.fromhex(body)) == reason


async def publish_raw(broker: Broker, protocol: int, packets: list[bytes]) -> list[Packet]:
    """Connect with our CONNECT, send `packets`, PINGREQ, return what came back."""
    reader, writer = await asyncio.open_connection(broker.host, broker.port)
    writer.write(connect_packet(f"raw-{protocol}", protocol=protocol))
    writer.write(b"".join(packets) + mqttwire.PINGREQ_PACKET)
    buf, got = bytearray(), list[Packet]()
    while not any(p.kind == mqttwire.PINGRESP for p in got):
        chunk = await asyncio.wait_for(reader.read(4096), 5)
        assert chunk, "broker closed the connection: it refused our bytes"
        buf += chunk
        got += split_packets(buf)
    writer.write(mqttwire.DISCONNECT_PACKET)
    writer.close()
    return got


@pytest.mark.parametrize("protocol", [4, 5])
async def test_mosquitto_accepts_our_packets(
    mosquitto: Broker, topic_prefix: str, protocol: int
) -> None:
    topic = f"{topic_prefix}/raw-{protocol}/pos"
    payloads = [orjson.dumps({"ts": 1.0 + i, "lat": 60.0, "lon": 25.0}) for i in range(5)]
    packets = [publish_packet(topic, payloads[0], protocol=protocol)]
    packets += [
        publish_packet(topic, p, qos=1, packet_id=i + 1, protocol=protocol)
        for i, p in enumerate(payloads[1:])
    ]
    with subscribed(mosquitto, f"{topic_prefix}/#") as rec:
        got = await publish_raw(mosquitto, protocol, packets)
        received = await asyncio.to_thread(rec.wait_for, 5)
    assert got[0].kind == mqttwire.CONNACK and connack_result(got[0].body, protocol)[0] == 0
    assert [p.body[:2] for p in got if p.kind == mqttwire.PUBACK] == [
        i.to_bytes(2, "big") for i in range(1, 5)
    ]
    assert [(t, p) for t, p, _ in received] == [(topic, p) for p in payloads]
