"""Tracking tokens: round trip, tampering, expiry, wrong job, key rotation, no personal data."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeSerializer

from dispatcher_feed import links
from dispatcher_feed.links import ExpiredLink, InvalidLink, LinkClaims

NEW, OLD = "new-key-" + "n" * 24, "old-key-" + "o" * 24
T0 = 1_700_000_000.0


def payload_of(token: str) -> object:
    """What anyone holding the link can read (itsdangerous may zlib-compress it)."""
    return URLSafeSerializer("not the key").loads_unsafe(token)[1]


def test_round_trip_gives_the_claims() -> None:
    token = links.sign([NEW], "job-1", T0 + 0.1234, T0 + 3600)
    assert links.verify([NEW], token, T0 + 10) == LinkClaims("job-1", T0 + 0.123, T0 + 3600)


def test_token_carries_only_ids_and_times() -> None:
    token = links.sign([NEW], "job-1", T0, T0 + 3600)
    assert payload_of(token) == {"v": 1, "j": "job-1", "i": int(T0 * 1000), "x": int(T0 + 3600)}
    assert len(token) < 160


def flip(token: str, at: int) -> str:
    swapped = "A" if token[at] != "A" else "B"
    return token[:at] + swapped + token[at + 1 :]


@pytest.mark.parametrize(
    ("mangle", "why"),
    [
        (lambda t: flip(t, 5), "payload byte changed"),
        (lambda t: flip(t, len(t) - 3), "signature byte changed"),
        (lambda t: t[:-1], "truncated"),
        (lambda t: t.rpartition(".")[0], "no signature"),
        (lambda t: "", "empty"),
        (lambda t: "not-a-token", "garbage"),
        (lambda t: t + "." + t, "doubled"),
        (lambda t: "x" * 600, "too long"),
    ],
)
def test_tampered_tokens_are_invalid(mangle: Callable[[str], str], why: str) -> None:
    token = links.sign([NEW], "job-1", T0, T0 + 3600)
    with pytest.raises(InvalidLink):
        links.verify([NEW], mangle(token), T0 + 1)


def test_payload_of_another_job_with_this_signature_is_invalid() -> None:
    mine = links.sign([NEW], "job-1", T0, T0 + 3600)
    theirs = links.sign([NEW], "job-2", T0, T0 + 3600)
    spliced = theirs.rpartition(".")[0] + "." + mine.rpartition(".")[2]
    with pytest.raises(InvalidLink):
        links.verify([NEW], spliced, T0 + 1)
    assert links.verify([NEW], theirs, T0 + 1).job_id == "job-2"


def test_expiry_is_exact() -> None:
    token = links.sign([NEW], "job-1", T0, T0 + 3600)
    assert links.verify([NEW], token, T0 + 3599.9).job_id == "job-1"
    for now in (T0 + 3600, T0 + 86_400):
        with pytest.raises(ExpiredLink) as caught:
            links.verify([NEW], token, now)
        assert caught.value.gone is True


def test_key_rotation_newest_signs_all_verify() -> None:
    old_token = links.sign([OLD], "job-1", T0, T0 + 3600)
    new_token = links.sign([NEW, OLD], "job-1", T0, T0 + 3600)
    # The newest key signs: a verifier that only knows it accepts the new token.
    assert links.verify([NEW], new_token, T0).job_id == "job-1"
    assert links.verify([NEW, OLD], old_token, T0).job_id == "job-1"
    with pytest.raises(InvalidLink):
        links.verify([NEW], old_token, T0)  # the old key retired
    with pytest.raises(InvalidLink):
        links.verify([OLD], new_token, T0)


def test_session_cookie_signed_with_the_same_key_is_not_a_link() -> None:
    cookie = TimestampSigner(NEW, salt="fieldtrack.session").sign("abcdef0123456789").decode()
    with pytest.raises(InvalidLink):
        links.verify([NEW], cookie, T0)


@pytest.mark.parametrize(
    ("job_id", "issued", "expires"),
    [("bad id!", T0, T0 + 1), ("", T0, T0 + 1), ("x" * 65, T0, T0 + 1), ("job", T0, T0)],
)
def test_sign_refuses_bad_input(job_id: str, issued: float, expires: float) -> None:
    with pytest.raises(ValueError):
        links.sign([NEW], job_id, issued, expires)


def test_no_keys_is_an_error() -> None:
    with pytest.raises(ValueError):
        links.sign([], "job-1", T0, T0 + 1)


@given(
    job_id=st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True),
    ttl=st.integers(min_value=1, max_value=30 * 86_400),
)
def test_any_job_round_trips(job_id: str, ttl: int) -> None:
    token = links.sign([NEW, OLD], job_id, T0, T0 + ttl)
    assert links.verify([NEW, OLD], token, T0).job_id == job_id
