"""The few MQTT 3.1.1 / 5 control packets a publisher needs, encoded and decoded by hand.

Only CONNECT, PUBLISH, PINGREQ and DISCONNECT out and CONNACK, PUBACK, PINGRESP and
DISCONNECT in. The load generator pre-encodes packets with this so publishing costs a
buffer copy, not a client library call.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

V311 = 4
V5 = 5
CONNACK, PUBLISH, PUBACK, PINGRESP, DISCONNECT = 2, 3, 4, 13, 14
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"
# MQTT 5 property identifiers by value type, to skip the ones we do not use.
_PROP_BYTE = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
_PROP_U16 = frozenset({0x13, 0x21, 0x22, 0x23})
_PROP_U32 = frozenset({0x02, 0x11, 0x18, 0x27})
_PROP_VARINT = frozenset({0x0B})
_PROP_UTF8_OR_BINARY = frozenset({0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F})
_PROP_PAIR = frozenset({0x26})
RECEIVE_MAXIMUM = 0x21


class ProtocolError(ValueError):
    """Bytes from the broker that are not the MQTT we expect."""


def varint(n: int) -> bytes:
    """MQTT variable byte integer (remaining length, property lengths)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"varint out of range: {n}")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """(value, next position), or None when `buf` ends mid-integer."""
    value, shift = 0, 0
    for i in range(4):
        if pos + i >= len(buf):
            return None
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise ProtocolError("variable byte integer longer than 4 bytes")


def utf8(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > 0xFFFF:
        raise ValueError("MQTT strings are at most 65535 bytes")
    return struct.pack(">H", len(raw)) + raw


def connect_packet(
    client_id: str,
    *,
    protocol: int = V311,
    keepalive: int = 60,
    clean: bool = True,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    if protocol not in (V311, V5):
        raise ValueError(f"protocol level must be 4 (3.1.1) or 5, not {protocol}")
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0)
    flags |= 0x40 if password is not None else 0
    body = utf8("MQTT") + bytes([protocol, flags]) + struct.pack(">H", keepalive)
    if protocol == V5:
        body += varint(0)  # no CONNECT properties
    body += utf8(client_id)
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += utf8(password)
    return bytes([0x10]) + varint(len(body)) + body


def publish_packet(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    packet_id: int = 0,
    protocol: int = V311,
    retain: bool = False,
    dup: bool = False,
) -> bytes:
    """A PUBLISH; with QoS 1 the packet id sits at :func:`packet_id_offset`."""
    if qos not in (0, 1):
        raise ValueError("only QoS 0 and 1 are supported")
    header = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = utf8(topic)
    if qos:
        if not 1 <= packet_id <= 0xFFFF:
            raise ValueError("QoS 1 needs a packet id 1-65535")
        body += struct.pack(">H", packet_id)
    if protocol == V5:
        body += varint(0)  # no PUBLISH properties
    body += payload
    return bytes([header]) + varint(len(body)) + body


def packet_id_offset(packet: bytes) -> int:
    """Where the 2-byte packet id of a QoS 1 PUBLISH starts (to patch it in place)."""
    _, pos = read_varint(packet, 1) or (0, 0)
    topic_len = int.from_bytes(packet[pos : pos + 2], "big")
    return pos + 2 + topic_len


@dataclass(frozen=True, slots=True)
class Packet:
    kind: int
    flags: int
    body: bytes


def split_packets(buf: bytearray) -> list[Packet]:
    """Take every complete packet off the front of `buf` (which keeps any partial tail)."""
    packets = []
    pos = 0
    while pos + 2 <= len(buf):
        parsed = read_varint(buf, pos + 1)
        if parsed is None:
            break
        length, start = parsed
        if start + length > len(buf):
            break
        packets.append(Packet(buf[pos] >> 4, buf[pos] & 0x0F, bytes(buf[start : start + length])))
        pos = start + length
    del buf[:pos]
    return packets


def connack_result(body: bytes, protocol: int) -> tuple[int, int]:
    """(reason code, receive maximum) of a CONNACK; 65535 when the broker sets no limit."""
    if len(body) < 2:
        raise ProtocolError("short CONNACK")
    code = body[1]
    receive_max = 0xFFFF
    if protocol == V5 and len(body) > 2:
        for prop, value in _properties(body, 2):
            if prop == RECEIVE_MAXIMUM:
                receive_max = value
    return code, receive_max


def puback_reason(body: bytes) -> int:
    """0 for success; MQTT 5 brokers may add a reason code (>= 0x80 is a failure)."""
    return body[2] if len(body) > 2 else 0


def _properties(body: bytes, pos: int) -> list[tuple[int, int]]:
    """(identifier, integer value or 0) for each property at `pos`."""
    parsed = read_varint(body, pos)
    if parsed is None:
        raise ProtocolError("truncated properties")
    length, pos = parsed
    end = pos + length
    if end > len(body):
        raise ProtocolError("properties run past the end of the packet")
    props = []
    while pos < end:
        prop = body[pos]
        pos += 1
        value = 0
        if prop in _PROP_BYTE:
            value, pos = body[pos], pos + 1
        elif prop in _PROP_U16:
            (value,), pos = struct.unpack_from(">H", body, pos), pos + 2
        elif prop in _PROP_U32:
            (value,), pos = struct.unpack_from(">I", body, pos), pos + 4
        elif prop in _PROP_VARINT:
            value, pos = read_varint(body, pos) or (0, end)
        elif prop in _PROP_UTF8_OR_BINARY:
            pos += 2 + struct.unpack_from(">H", body, pos)[0]
        elif prop in _PROP_PAIR:
            for _ in range(2):
                pos += 2 + struct.unpack_from(">H", body, pos)[0]
        else:
            raise ProtocolError(f"unknown MQTT 5 property 0x{prop:02x}")
        props.append((prop, value))
    return props
