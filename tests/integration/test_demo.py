"""`fieldtrack demo` as a user runs it: starts, streams positions within seconds, stops cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.procs import free_port
from tests.support.sse import sse_events

pytestmark = pytest.mark.integration
FIELDTRACK = str(Path(sys.executable).with_name("fieldtrack"))


async def read_banner(proc: asyncio.subprocess.Process) -> tuple[str, str, str]:
    url = key = link = None
    assert proc.stdout is not None
    async with asyncio.timeout(40):
        while url is None or key is None or link is None:
            line = (await proc.stdout.readline()).decode()
            assert line, "demo exited before printing its banner"
            if m := re.search(r"dispatcher\s+(http://\S+)/", line):
                url = m.group(1)
            if m := re.search(r"API key\s+(\S+)", line):
                key = m.group(1)
            if m := re.search(r"customer\s+(\S+)", line):
                link = m.group(1)
    return url, key, link


async def test_demo_streams_positions_and_exits_cleanly_on_ctrl_c() -> None:
    # A topic prefix of its own (the fleet must publish there too), and a public URL that
    # only links and the banner use (the demo's own calls go to its local port).
    env = {**os.environ, "FIELDTRACK_LOG_LEVEL": "warning", "FIELDTRACK_TOPIC_PREFIX": "acme"}
    local = f"http://127.0.0.1:{free_port()}"
    proc = await asyncio.create_subprocess_exec(
        FIELDTRACK, "demo", "--http", local.removeprefix("http://"),
        "--broker-port", str(free_port()), "--technicians", "20",
        "--public-url", "http://track.example.invalid",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        url, key, link = await read_banner(proc)
        assert url == "http://track.example.invalid"
        assert link.startswith("http://track.example.invalid/track/")
        async with httpx.AsyncClient(base_url=local, timeout=30) as http:
            # the customer's tracking page
            page = await http.get(link.removeprefix("http://track.example.invalid"))
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            async with asyncio.timeout(20):  # the fleet registers itself right after the banner
                while True:
                    r = await http.get(
                        "/api/v1/technicians", headers={"Authorization": f"Bearer {key}"}
                    )
                    assert r.status_code == 200
                    if len(r.json()) == 20:
                        break
                    await asyncio.sleep(0.2)
            async with http.stream(
                "GET", "/api/v1/feed", headers={"Authorization": f"Bearer {key}"}
            ) as feed:
                async with asyncio.timeout(30):
                    async for event in sse_events(feed):
                        if event.event == "position":
                            break
        assert event.data["technician_id"].startswith("tech-")
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(15):
            code = await proc.wait()
        assert code == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_demo_on_a_taken_port_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            FIELDTRACK, "demo", "--http", f"127.0.0.1:{free_port()}", "--broker-port", str(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with asyncio.timeout(20):
            out, _ = await proc.communicate()
    assert proc.returncode == 2
    assert out.decode().strip().splitlines()[-1] == (
        f"fieldtrack: broker port 127.0.0.1:{port}: Address already in use"
    )
    assert "Traceback" not in out.decode()
