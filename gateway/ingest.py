"""The only aiomqtt import: subscribe, process in batches, acknowledge afterwards.

At-least-once delivery needs three things aiomqtt 2.5 does not do by default
(FACTS.md, verified here):

* a persistent session: a stable client id, Clean Start off and a Session
  Expiry Interval on MQTT 5 (``clean_session=False`` on 3.1.1), or messages
  published while the gateway is down are lost;
* manual acknowledgement, switched on in paho *before* connecting, so PUBACK
  leaves only after a message's batch is stored, published and its dead letters
  sent;
* an unbounded aiomqtt queue: a bounded one silently drops messages. Flow
  control comes from the broker instead: MQTT 5 Receive Maximum (or the
  broker's ``max_inflight_messages`` on 3.1.1) caps the un-acked messages in
  flight, so a slow gateway pushes back on the broker rather than dropping.

On a lost connection the batch in hand is abandoned without acks and the
broker redelivers it on reconnect; duplicates are absorbed by (device, ts)
dedupe in the store. When the store fails (Redis down, or refusing writes) the
batch is held, un-acknowledged, and retried with back-off on the same
connection: the Receive Maximum window fills, the broker queues the rest, and
the gateway catches up when Redis returns (backpressure, not loss).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any

import aiomqtt
import orjson
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from redis.exceptions import RedisError

from gateway.cancel import raise_if_cancelling
from gateway.metrics import Counter, Gauge
from gateway.model import Event
from gateway.service import BatchResult, DeadLetter, Gateway, Inbound
from gateway.settings import Settings

log = logging.getLogger("fieldtrack.ingest")
SOCKET_WATCH_S = 1.0  # see _watch_socket
LEAVE_DRAIN_S = 30.0  # see MqttIngest.leave
LEAVE_QUIET_S = 1.0
PENDING_PUBLISHES_WARN = 10_000  # see MqttIngest._client


async def _watch_socket(client: aiomqtt.Client, every_s: float = SOCKET_WATCH_S) -> None:
    """Raise MqttError when the connection's socket has lost its peer.

    With uvloop, when the broker goes away mid-stream (a Mosquitto restart while
    acknowledgements are being written) the poll handle of the connection can end up
    closed ("unable to perform operation on <UVPoll closed=True>" from aiomqtt's
    add_writer): paho then never reads the EOF, believes it is connected, and nothing
    is ingested until a keep-alive timeout, if ever.  A TCP socket whose connection
    is gone has no peer address any more, so asking for it once per `every_s` tells
    without reading from the socket; `run` then reconnects.  The client is marked
    disconnected first: a graceful DISCONNECT over the dead link would wait forever.
    """
    paho_client = client._client
    while True:
        await asyncio.sleep(every_s)
        sock = paho_client.socket()
        if not isinstance(sock, socket.socket):
            continue
        try:
            sock.getpeername()
        except OSError as exc:
            if not client._disconnected.done():
                client._disconnected.set_result(None)
            raise aiomqtt.MqttError(f"MQTT connection lost ({exc.strerror})") from exc


class _StampingQueue(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's incoming queue, stamping each message with its receive time."""

    def put_nowait(self, item: aiomqtt.Message) -> None:
        item.received = time.time()  # type: ignore[attr-defined]
        super().put_nowait(item)


class MqttIngest:
    """Runs forever: connect, subscribe, process, reconnect with jittered back-off."""

    def __init__(self, settings: Settings, gateway: Gateway) -> None:
        self.settings = settings
        self.gateway = gateway
        self.connected = asyncio.Event()
        self.protocol: str | None = None  # what the broker accepted, once known
        self._served = False  # reached the subscribed state since the last back-off
        self.holding = False  # a batch waits, un-acknowledged, for the store to come back
        # For leave(): the connection being served, and what it is doing.
        self._serving: aiomqtt.Client | None = None
        self._busy = False
        self._last_batch = time.monotonic()
        self._leaving = False
        self.held = Counter(
            "fieldtrack_ingest_held_total",
            "Batches held un-acknowledged because the store failed (retried, never dropped).",
        )
        holding = Gauge("fieldtrack_ingest_holding", "1 while a batch waits for the store.")
        holding.read = lambda: 1.0 if self.holding else 0.0
        gateway.metrics.extra += [self.held, holding]
        self._order = (
            ["5", "3.1.1"] if settings.mqtt_protocol == "auto" else [settings.mqtt_protocol]
        )
        gateway.metrics.broker_connected.read = lambda: 1.0 if self.connected.is_set() else 0.0

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._connect_and_serve()
            except* aiomqtt.MqttError as group:
                # A connection lost while serving arrives wrapped by _serve's TaskGroup.
                log.warning("MQTT connection lost or refused (%s); retrying", group.exceptions[0])
            raise_if_cancelling()  # an error while closing must not swallow a cancel
            if self._served:
                delay, self._served = 0.5, False
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 30.0)

    async def _connect_and_serve(self) -> None:
        last_error: aiomqtt.MqttError | None = None
        for protocol in self._order:
            client = self._client(protocol)
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as exc:
                last_error = exc
                continue
            try:
                if self.protocol != protocol:
                    log.info("connected to MQTT broker with protocol %s", protocol)
                self.protocol = protocol
                # Prefer what worked for the next reconnect.
                self._order.sort(key=lambda p: p != protocol)
                self._serving = client
                await self._serve(client)
            finally:
                self._serving = None
                self.connected.clear()
                if self._leaving and protocol == "5":
                    await _end_session(client)
                await client.__aexit__(None, None, None)
            return
        assert last_error is not None
        raise last_error

    def _client(self, protocol: str) -> aiomqtt.Client:
        url = self.settings.mqtt_url
        v5 = protocol == "5"
        properties = None
        if v5:
            properties = _properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
            properties.ReceiveMaximum = self.settings.mqtt_receive_maximum
        tls_context = None
        if url.tls:
            tls_context = ssl.create_default_context(cafile=self.settings.mqtt_ca_file)
        client = aiomqtt.Client(
            url.host,
            url.port,
            username=url.username,
            password=url.password.value if url.password else None,
            identifier=self.settings.mqtt_client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else False,
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            queue_type=_StampingQueue,
            max_queued_incoming_messages=0,
            tls_context=tls_context,
            timeout=10.0,
            keepalive=30,
        )
        # aiomqtt warns past 10 QoS 1 publishes awaiting their PUBACK; a batch's
        # outbound events and dead letters go out together (``_send``), hundreds at a
        # busy moment, which is flow, not trouble: an audit's 22 minutes logged 62 445
        # such lines. Past what the outbox holds (``Gateway.outbox``) it is trouble.
        client.pending_calls_threshold = PENDING_PUBLISHES_WARN
        # Must precede the connection (FACTS.md): acks leave only when we say so.
        client._client.manual_ack_set(True)
        return client

    async def _serve(self, client: aiomqtt.Client) -> None:
        topics = self.gateway.topics.subscriptions()
        await client.subscribe([(t, 1) for t in topics])
        self.connected.set()
        self._served = True
        log.info("subscribed to %s", ", ".join(topics))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._outbox(client), name="mqtt-outbox")
            tg.create_task(_watch_socket(client), name="mqtt-socket-watch")
            await self._receive(client)

    async def _receive(self, client: aiomqtt.Client) -> None:
        messages = client.messages
        queue: asyncio.Queue[aiomqtt.Message] = client._queue
        limit = self.settings.ingest_batch
        while True:
            batch = [await anext(messages)]
            # Drain what is already queued: one store round trip and one bus
            # publish for the lot, and no task per message.
            while len(batch) < limit:
                try:
                    batch.append(queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            self._busy = True
            try:
                await self._process_until_stored(client, batch)
            finally:
                self._busy = False
                self._last_batch = time.monotonic()

    async def leave(self, drain_s: float = LEAVE_DRAIN_S, quiet_s: float = LEAVE_QUIET_S) -> bool:
        """Leave the share group for good, before the ingest task is cancelled.

        Mosquitto keeps dealing a share to a durable session whose client is gone, so a
        worker id that is retired strands every Nth fix until its session expires (7
        days). Unsubscribing stops that; the messages already queued for this session
        keep coming and are ingested until none has come for ``quiet_s``; then the
        closing DISCONNECT ends the session (MQTT 5 Session Expiry 0). True once
        drained; False (session kept, for the same id to finish) if the broker was not
        connected or the queue did not drain within ``drain_s`` (the store away, say).
        """
        client = self._serving
        if client is None or not self.connected.is_set():
            log.warning("not connected: the share group's session stays for this id")
            return False
        await client.unsubscribe(self.gateway.topics.subscriptions())
        log.info("unsubscribed from the share group; draining what was queued for us")
        deadline = time.monotonic() + drain_s
        queue: asyncio.Queue[aiomqtt.Message] = client._queue
        while self._busy or not queue.empty() or time.monotonic() - self._last_batch < quiet_s:
            if time.monotonic() > deadline or self._serving is not client:
                log.warning("share group not drained after %.0f s: session kept", drain_s)
                return False
            await asyncio.sleep(0.05)
        self._leaving = True
        log.info("left the shared subscription: drained, the session ends on disconnect")
        return True

    async def _process_until_stored(
        self, client: aiomqtt.Client, batch: Sequence[aiomqtt.Message]
    ) -> None:
        """Retry a batch the store refused, without acking it, until the store is back.

        Ending the connection instead would only make the broker redeliver the
        same batch into the same outage; holding it keeps the session and lets
        the broker's in-flight window stop further deliveries meanwhile.
        """
        delay = 0.05
        try:
            while True:
                try:
                    return await self._process(client, batch)
                except RedisError as exc:
                    raise_if_cancelling()
                    if not self.holding:
                        log.warning("store failed (%s); holding %d messages", exc, len(batch))
                    self.holding = True
                    self.held.inc()
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 1.0)
        finally:
            # Processed, or abandoned with the connection (the broker redelivers).
            self.holding = False

    async def _outbox(self, client: aiomqtt.Client) -> None:
        """Publish events made outside a broker batch (HTTP calls, ticks), oldest first."""
        outbox, ready = self.gateway.outbox, self.gateway.outbox_ready
        while True:
            await ready.wait()
            while outbox:
                event = outbox[0]
                await self._outbound(client, event)
                raise_if_cancelling()
                outbox.popleft()  # only once the broker has it
            ready.clear()

    async def _process(self, client: aiomqtt.Client, batch: Sequence[aiomqtt.Message]) -> None:
        inbound = [
            Inbound(
                str(m.topic),
                _payload_bytes(m.payload),
                getattr(m, "received", time.time()),
            )
            for m in batch
        ]
        result = await self.gateway.handle_batch(inbound)
        await self._send(client, result)
        raise_if_cancelling()
        for m in batch:
            if m.qos > 0:
                client._client.ack(m.mid, m.qos)

    async def _send(self, client: aiomqtt.Client, result: BatchResult) -> None:
        sends = [self._dead_letter(client, d) for d in result.dead_letters]
        sends += [self._outbound(client, e) for e in result.outbound]
        if sends:
            await asyncio.gather(*sends)
        if result.dead_letters:
            self.gateway.metrics.dead_letters.inc(len(result.dead_letters))

    async def _dead_letter(self, client: aiomqtt.Client, dead: DeadLetter) -> None:
        if not self.settings.dead_letter:
            return
        topic = self.gateway.topics.dead_letter(dead.device_id)
        if self.protocol == "5":
            props = _properties(PacketTypes.PUBLISH)
            props.UserProperty = [
                ("reason", dead.reason[:512]), ("code", dead.code), ("topic", dead.topic),
            ]  # fmt: skip
            await client.publish(topic, dead.payload, qos=1, properties=props)
        else:
            await client.publish(topic, dead_letter_envelope(dead), qos=1)

    async def _outbound(self, client: aiomqtt.Client, event: Event) -> None:
        topic = self.gateway.topics.outbound(str(event["type"]))
        await client.publish(topic, orjson.dumps(event), qos=1)


async def _end_session(client: aiomqtt.Client) -> None:
    """DISCONNECT with Session Expiry 0: the broker forgets this client id's session."""
    props = _properties(PacketTypes.DISCONNECT)
    props.SessionExpiryInterval = 0
    if client._client.disconnect(properties=props) != paho.MQTT_ERR_SUCCESS:
        return
    with contextlib.suppress(TimeoutError, aiomqtt.MqttError):
        async with asyncio.timeout(5):
            await asyncio.shield(client._disconnected)


def dead_letter_envelope(dead: DeadLetter) -> bytes:
    """MQTT 3.1.1 has no user properties: the reason travels in a JSON envelope.

    ``payload`` is the original text when it is UTF-8, else ``payload_b64``.
    """
    body: dict[str, Any] = {"reason": dead.reason, "code": dead.code, "topic": dead.topic}
    try:
        body["payload"] = dead.payload.decode("utf-8")
    except UnicodeDecodeError:
        body["payload_b64"] = base64.b64encode(dead.payload).decode("ascii")
    return orjson.dumps(body)


def _properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()
