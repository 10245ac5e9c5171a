"""ApiKeys: Bearer checks and signed, expiring session cookies that name keys by fingerprint."""

from __future__ import annotations

import hashlib
import time

import pytest

from dispatcher_feed.auth import SESSION_MAX_AGE_S, ApiKeys
from gateway.settings import Secret

SIGNING = Secret("signing")


def keys(*values: str, signing: Secret = SIGNING) -> ApiKeys:
    return ApiKeys([Secret(v) for v in values], signing)


@pytest.mark.parametrize(
    ("candidate", "ok"),
    [("k1", True), ("k2", True), ("k3", False), ("", False), ("k1 ", False), ("K1", False)],
)
def test_check_key(candidate: str, ok: bool) -> None:
    assert keys("k1", "k2").check_key(candidate) is ok


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer k1", True),
        ("bearer k1", True),
        ("BEARER   k1  ", True),
        ("Bearer k2", False),
        ("Bearer", False),
        ("Bearer ", False),
        ("Basic k1", False),
        ("k1", False),
        ("", False),
        (None, False),
    ],
)
def test_check_bearer(header: str | None, ok: bool) -> None:
    assert keys("k1").check_bearer(header) is ok


def test_no_configured_keys_lets_nobody_in() -> None:
    assert keys().check_bearer("Bearer ") is False
    assert keys().check_key("") is False


def test_session_round_trip_without_the_key_in_the_cookie() -> None:
    k = keys("k1")
    cookie = k.issue_session("k1")
    # The cookie carries the key's fingerprint, never the key.
    assert cookie.split(".")[0] == hashlib.sha256(b"k1").hexdigest()[:16]
    assert k.check_session(cookie) is True


@pytest.mark.parametrize("cookie", [None, "", "garbage", "a.b.c"])
def test_bad_cookies(cookie: str | None) -> None:
    assert keys("k1").check_session(cookie) is False


def test_tampered_cookie() -> None:
    cookie = keys("k1").issue_session("k1")
    # Flip a character inside the signature: the last base64 character may only
    # carry padding bits, so changing it can leave the decoded bytes identical.
    i = len(cookie) - 10
    tampered = cookie[:i] + ("A" if cookie[i] != "A" else "B") + cookie[i + 1 :]
    assert keys("k1").check_session(tampered) is False


def test_cookie_signed_with_another_signing_key() -> None:
    cookie = keys("k1", signing=Secret("other")).issue_session("k1")
    assert keys("k1").check_session(cookie) is False


def test_session_dies_with_its_key() -> None:
    cookie = keys("k1", "k2").issue_session("k1")
    assert keys("k2").check_session(cookie) is False
    assert keys("k2", "k1").check_session(cookie) is True


def test_session_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    k = keys("k1")
    issued = int(time.time()) - SESSION_MAX_AGE_S - 5
    monkeypatch.setattr(k._signer, "get_timestamp", lambda: issued)
    stale = k.issue_session("k1")
    monkeypatch.undo()
    assert k.check_session(stale) is False
    assert k.check_session(k.issue_session("k1")) is True
