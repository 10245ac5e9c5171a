"""`fieldtrack run` stopped by SIGTERM (systemd, docker stop) finishes its shutdown.

uvicorn's own signal handling re-raised SIGTERM once HTTP had stopped, which killed the
process before the rest of the shutdown ran: the ETA model's last save, leaving a share
group, closing Redis. The process must exit 0 with that done.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.procs import Mosquitto, free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_gateway_cleanly_and_saves_the_eta_model(
    broker: Mosquitto, prefix: str, tmp_path: Path, sig: signal.Signals
) -> None:
    snapshot = tmp_path / "eta.json"
    port = free_port()
    log = tmp_path / "gateway.log"
    args = [
        sys.executable, "-m", "gateway.cli", "run", "--mqtt", broker.url,
        "--mqtt-client-id", f"gw-{prefix}", "--topic-prefix", prefix,
        "--http", f"127.0.0.1:{port}", "--api-key", "shutdown-test-key-0123",
        "--eta-snapshot", str(snapshot), "--log-level", "INFO",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not _ready(port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
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


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
