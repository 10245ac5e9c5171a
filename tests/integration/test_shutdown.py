"""`fieldtrack run` stopped by SIGTERM (systemd, docker stop) finishes its shutdown.

uvicorn's own signal handling re-raised SIGTERM once HTTP had stopped, which killed the
process before the rest of the shutdown ran: the ETA model's last save, leaving a share
group, closing Redis. The process must exit 0 with that done.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.procs import Mosquitto, free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
KEY = "shutdown-test-key-0123"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_gateway_cleanly_and_saves_the_eta_model(
    broker: Mosquitto, prefix: str, tmp_path: Path, sig: signal.Signals
) -> None:
    snapshot = tmp_path / "eta.json"
    port = free_port()
    log = tmp_path / "gateway.log"
    proc = _start(broker, prefix, port, log, "--eta-snapshot", str(snapshot))
    try:
        assert not snapshot.exists()  # the first periodic save is a minute away
        proc.send_signal(sig)
        assert proc.wait(15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert f"{sig.name}: shutting down" in text
    assert "Traceback" not in text
    saved = orjson.loads(snapshot.read_bytes())
    assert isinstance(saved, dict) and saved


def test_open_streams_end_cleanly_and_do_not_hold_the_shutdown(
    broker: Mosquitto, prefix: str, tmp_path: Path
) -> None:
    """A dispatcher map and a customer page open: on SIGTERM their responses finish
    (curl-like clients see a complete body), with no traceback and no wait for uvicorn's
    graceful-shutdown timeout (which then cancelled each stream with a traceback)."""
    port = free_port()
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {KEY}"}
    log = tmp_path / "gateway.log"
    proc = _start(broker, prefix, port, log)
    ended: dict[str, bytes | BaseException] = {}

    def read(name: str, url: str, headers: dict[str, str]) -> None:
        try:
            with httpx.stream("GET", url, headers=headers, timeout=30) as response:
                ended[name] = b"".join(response.iter_bytes())
        except BaseException as exc:  # what the assertion below reports
            ended[name] = exc

    try:
        deadline = time.monotonic() + 15
        httpx.put(f"{base}/api/v1/technicians/t1", json={"name": "Ann"}, headers=auth)
        job = {"technician_id": "t1", "site": {"lat": 60.2, "lon": 24.9}}
        httpx.put(f"{base}/api/v1/jobs/j1", json=job, headers=auth)
        link = httpx.post(f"{base}/api/v1/jobs/j1/tracking-link", headers=auth).json()
        readers = [
            threading.Thread(target=read, args=("feed", f"{base}/api/v1/feed", auth)),
            threading.Thread(target=read, args=("customer", f"{link['url']}/events", {})),
        ]
        for reader in readers:
            reader.start()
        while _sse_clients(port) < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()
        for reader in readers:
            reader.join(5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text
    assert isinstance(ended["feed"], bytes) and ended["feed"].startswith(b"retry: ")
    assert isinstance(ended["customer"], bytes) and b"event: snapshot" in ended["customer"]


def _sse_clients(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
    line = next(x for x in text.splitlines() if x.startswith("fieldtrack_sse_clients "))
    return float(line.split()[1])


def _start(
    broker: Mosquitto, prefix: str, port: int, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """``fieldtrack run`` in a process of its own, once it answers /readyz."""
    args = [
        sys.executable, "-m", "gateway.cli", "run", "--mqtt", broker.url,
        "--mqtt-client-id", f"gw-{prefix}", "--topic-prefix", prefix,
        "--http", f"127.0.0.1:{port}", "--api-key", KEY, "--log-level", "INFO", *extra,
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while not _ready(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(log.read_text())
        time.sleep(0.05)
    return proc


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_run_on_a_taken_http_port_says_so_in_one_line(broker: Mosquitto, prefix: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [
            sys.executable, "-m", "gateway.cli", "run", "--mqtt", broker.url,
            "--topic-prefix", prefix, "--http", f"127.0.0.1:{port}", "--api-key", KEY,
        ]  # fmt: skip
        done = subprocess.run(args, cwd=REPO, capture_output=True, timeout=30, check=False)
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == [
        f"fieldtrack: http port 127.0.0.1:{port}: Address already in use"
    ]
