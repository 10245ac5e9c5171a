"""Shared fixtures: one private Mosquitto per session, a unique topic prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.procs import Mosquitto, mosquitto


@pytest.fixture(scope="session")
def broker() -> Iterator[Mosquitto]:
    with mosquitto() as b:
        yield b


@pytest.fixture
def prefix() -> str:
    """A topic prefix (and client-id stem) no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"
