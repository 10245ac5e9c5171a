"""The broker's per-device credentials and ``deploy/acl``, exactly as shipped.

A private Mosquitto with ``password_file`` (made by ``mosquitto_passwd``) and
the repository's ACL: a device publishes only under its own id, nobody but the
gateway writes the gateway's outputs, and the gateway connects with its own
credentials (plain and over TLS with its CA file) and stores only genuine fixes.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import httpx
import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from simulators import mqttwire
from tests.support.gateway import API_KEY, gateway_settings, running_gateway
from tests.support.procs import Mosquitto, free_port

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ACL = DEPLOY / "acl"
USERS = {"gateway": "gw-secret", "dev1": "pw1", "dev2": "pw2", "alice": "pwa",
         "out": "pwo", "deadletter": "pwd", "+": "pwp"}  # fmt: skip
AUTH = {"Authorization": f"Bearer {API_KEY}"}
V5, V311 = mqttwire.V5, mqttwire.V311
NOT_AUTHORIZED = 0x87


def _tls_files(directory: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1, signed by it."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
            "-out", "server.crt")  # fmt: skip


class SecuredBroker(Mosquitto):
    """Mosquitto with the shipped ACL, a password file, and a TLS listener on ``tls_port``."""

    def __init__(self) -> None:
        super().__init__()
        passwd = self.dir / "passwd"
        for user, password in USERS.items():
            create = [] if passwd.exists() else ["-c"]
            subprocess.run(["mosquitto_passwd", "-b", *create, str(passwd), user, password],
                           check=True, capture_output=True)  # fmt: skip
        shutil.copy(ACL, self.dir / "acl")
        _tls_files(self.dir)
        self.tls_port = free_port()
        self.extra_conf = "\n".join([
            "allow_anonymous false",
            f"password_file {passwd}",
            f"acl_file {self.dir / 'acl'}",
            f"listener {self.tls_port} 127.0.0.1",
            f"cafile {self.dir / 'ca.crt'}",
            f"certfile {self.dir / 'server.crt'}",
            f"keyfile {self.dir / 'server.key'}",
        ])  # fmt: skip

    def gateway_url(self, password: str = USERS["gateway"], tls: bool = False) -> str:
        if tls:
            return f"mqtts://gateway:{password}@127.0.0.1:{self.tls_port}"
        return f"mqtt://gateway:{password}@127.0.0.1:{self.port}"


class ShippedBroker(SecuredBroker):
    """``deploy/mosquitto.conf`` itself, its container paths pointed at a private directory."""

    def _write_conf(self) -> Path:
        conf = (DEPLOY / "mosquitto.conf").read_text()
        conf = conf.replace("/mosquitto/config/", f"{self.dir}/")
        conf = conf.replace("/mosquitto/data/", f"{self.dir}/")
        conf = conf.replace("listener 1883 0.0.0.0", f"listener {self.port} 127.0.0.1\nuser root")
        conf = conf.replace("log_dest stdout", "log_dest none")
        path = self.dir / "mosquitto.conf"
        path.write_text(conf)
        return path


@pytest.fixture(scope="module")
def secured() -> Iterator[SecuredBroker]:
    if shutil.which("mosquitto_passwd") is None or shutil.which("openssl") is None:
        pytest.skip("needs mosquitto_passwd and openssl")
    broker = SecuredBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


async def device_publish(
    port: int, user: str | None, password: str | None, topic: str, payload: bytes, protocol: int
) -> tuple[int, int | None]:
    """(CONNACK code, PUBACK reason or None if not connected) for one QoS 1 publish."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    buf = bytearray()

    async def packet() -> mqttwire.Packet:
        while not (packets := mqttwire.split_packets(buf)):
            chunk = await reader.read(4096)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf.extend(chunk)
        return packets[0]

    try:
        async with asyncio.timeout(5):
            hello = mqttwire.connect_packet(
                f"acl-{time.monotonic_ns()}", protocol=protocol, username=user, password=password
            )
            writer.write(hello)
            code, _ = mqttwire.connack_result((await packet()).body, protocol)
            if code:
                return code, None
            writer.write(mqttwire.publish_packet(topic, payload, qos=1, packet_id=1,
                                                 protocol=protocol))  # fmt: skip
            ack = await packet()
            assert ack.kind == mqttwire.PUBACK
            writer.write(mqttwire.DISCONNECT_PACKET)
            return 0, mqttwire.puback_reason(ack.body)
    finally:
        writer.close()


# user, password, protocol, topic -> CONNACK code, PUBACK reason, reaches the gateway
ROWS = [
    ("dev1", "pw1", V5, "fleet/dev1/pos", 0, 0, True),
    ("dev1", "pw1", V5, "fleet/dev1/status", 0, 0, True),
    ("dev1", "pw1", V5, "fleet/dev2/pos", 0, NOT_AUTHORIZED, False),
    # MQTT 3.1.1 has no PUBACK reason: the broker acknowledges and drops.
    ("dev1", "pw1", V311, "fleet/dev2/pos", 0, 0, False),
    ("alice", "pwa", V5, "owntracks/alice/phone", 0, 0, True),
    ("alice", "pwa", V5, "owntracks/bob/phone", 0, NOT_AUTHORIZED, False),
    ("alice", "pwa", V5, "fleet/alice/pos", 0, 0, True),
    ("dev1", "pw1", V5, "fleet/out/eta", 0, NOT_AUTHORIZED, False),
    ("out", "pwo", V5, "fleet/out/eta", 0, NOT_AUTHORIZED, False),
    ("deadletter", "pwd", V5, "fleet/deadletter/dev1", 0, NOT_AUTHORIZED, False),
    ("+", "pwp", V5, "fleet/dev1/pos", 0, NOT_AUTHORIZED, False),
    ("dev1", "wrong", V5, "fleet/dev1/pos", NOT_AUTHORIZED, None, False),
    (None, None, V5, "fleet/dev1/pos", NOT_AUTHORIZED, None, False),
    (None, None, V311, "fleet/dev1/pos", 5, None, False),  # 3.1.1: "not authorised"
]


@pytest.mark.parametrize(
    ("user", "password", "protocol", "topic", "connack", "puback", "reaches"),
    ROWS,
    ids=[f"{r[0]}:{r[1]}-v{r[2]}-{r[3]}" for r in ROWS],
)
async def test_a_device_publishes_only_as_itself(
    secured: SecuredBroker,
    user: str | None,
    password: str | None,
    protocol: int,
    topic: str,
    connack: int,
    puback: int | None,
    reaches: bool,
) -> None:
    payload = f"probe-{time.monotonic_ns()}".encode()
    fence = f"fence-{time.monotonic_ns()}".encode()
    seen: list[tuple[str, bytes]] = []
    async with aiomqtt.Client(
        "127.0.0.1", secured.port, username="gateway", password=USERS["gateway"]
    ) as gateway:
        await gateway.subscribe([("fleet/#", 1), ("owntracks/#", 1)])
        result = await device_publish(secured.port, user, password, topic, payload, protocol)
        # Mosquitto routes a PUBLISH when it reads it, one thread, in order: a message
        # sent after the device's PUBACK arrives after the probe if the probe went out.
        await gateway.publish("fleet/out/fence", fence, qos=1)
        async with asyncio.timeout(5):
            async for message in gateway.messages:
                assert isinstance(message.payload, bytes)
                if message.payload == fence:
                    break
                seen.append((str(message.topic), message.payload))
    assert result == (connack, puback)
    assert seen == ([(topic, payload)] if reaches else [])


async def _positions(http: httpx.AsyncClient, device: str) -> list[float]:
    r = await http.get(f"/api/v1/devices/{device}/positions")
    assert r.status_code == 200
    return [p["ts"] for p in r.json()]


@pytest.mark.parametrize("tls", [False, True], ids=["mqtt", "mqtts"])
async def test_gateway_uses_its_credentials_and_stores_only_genuine_fixes(
    secured: SecuredBroker, tls: bool
) -> None:
    settings = gateway_settings(
        # A group of its own: the other case's stopped gateway keeps its share queued.
        secured.gateway_url(tls=tls), "fleet", owntracks_prefix="owntracks",
        share_group=f"acl-{tls}",
        mqtt_ca_file=str(secured.dir / "ca.crt") if tls else None,
        mqtt_client_id=f"gw-acl-{tls}",
    )  # fmt: skip
    now = time.time()
    fix = orjson.dumps({"ts": now - 5, "lat": 60.17, "lon": 24.94})
    location = orjson.dumps({"_type": "location", "tst": int(now) - 4, "lat": 60.2, "lon": 24.9})
    async with (
        running_gateway(settings),
        httpx.AsyncClient(base_url=settings.base_url, headers=AUTH, timeout=5) as http,
        aiomqtt.Client(
            "127.0.0.1", secured.port, username="gateway", password=USERS["gateway"]
        ) as watcher,
    ):
        await watcher.subscribe("fleet/deadletter/#", qos=1)
        spoof = await device_publish(secured.port, "dev1", "pw1", "fleet/dev2/pos", fix, V5)
        assert spoof == (0, NOT_AUTHORIZED)
        for user, password, topic, body in [
            ("dev1", "pw1", "fleet/dev1/pos", fix),
            ("alice", "pwa", "owntracks/alice/phone", location),
            ("dev1", "pw1", "fleet/dev1/pos", b"{not json"),  # dead-lettered by the gateway
        ]:
            assert await device_publish(secured.port, user, password, topic, body, V5) == (0, 0)
        async with asyncio.timeout(10):
            dead = await anext(watcher.messages)
            while not await _positions(http, "alice:phone"):
                await asyncio.sleep(0.02)
        assert str(dead.topic) == "fleet/deadletter/dev1"
        assert await _positions(http, "dev1") == [now - 5]
        assert await _positions(http, "dev2") == []


async def test_shipped_mosquitto_conf_serves_the_gateway_and_keeps_sessions() -> None:
    broker = ShippedBroker()
    broker.start()
    try:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        session = aiomqtt.Client(
            "127.0.0.1", broker.port, username="gateway", password=USERS["gateway"],
            identifier="gw-shipped", protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
            properties=props,
        )  # fmt: skip
        async with session:
            await session.subscribe("$share/g/fleet/+/pos", qos=1)
        fix = orjson.dumps({"ts": time.time(), "lat": 60.17, "lon": 24.94})
        assert await device_publish(broker.port, "dev1", "pw1", "fleet/dev1/pos", fix, V5) == (
            0, 0,
        )  # fmt: skip
        await asyncio.to_thread(broker.restart)  # persistence on: the queued fix survives
        async with session, asyncio.timeout(5):
            message = await anext(session.messages)
        assert (str(message.topic), message.payload) == ("fleet/dev1/pos", fix)
    finally:
        broker.close()


async def test_gateway_with_a_wrong_password_is_refused(secured: SecuredBroker) -> None:
    settings = gateway_settings(
        secured.gateway_url(password="wrong"), "fleet", mqtt_client_id="gw-acl-wrong"
    )
    async with running_gateway(settings, wait_connected=False) as runtime:
        await asyncio.sleep(1.0)  # a few connection attempts
        assert not runtime.ingest.connected.is_set()
        async with httpx.AsyncClient(base_url=settings.base_url, timeout=5) as http:
            assert (await http.get("/readyz")).status_code == 503
