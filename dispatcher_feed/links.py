"""Sign and verify customer tracking tokens (pure: keys and the time are passed in).

A token is an itsdangerous URL-safe serialisation of ``{"v", "j", "i", "x"}``
(version, job id, issued-at in ms, expiry in epoch seconds), HMAC-SHA256 signed.
It names the job by its opaque id and carries no personal data: anyone can
base64-decode it, nobody can change it. Keys rotate: ``keys`` is newest first,
the newest signs, every key verifies, so a key can be retired once the links it
signed have expired. The salt keeps these tokens apart from the dispatcher's
session cookies, which share the signing key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

from gateway.model import valid_id

SALT = "fieldtrack.tracking-link"
VERSION = 1


class LinkError(Exception):
    """A token that opens nothing; ``gone`` says whether it was ever good (410) or not (404)."""

    gone = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidLink(LinkError, ValueError):
    """Forged, tampered, truncated or malformed: answered 404."""


class ExpiredLink(LinkError):
    """Genuine but past its expiry: answered 410."""

    gone = True


@dataclass(frozen=True, slots=True)
class LinkClaims:
    job_id: str
    issued_at: float
    expires_at: float


def _serializer(keys: Sequence[str]) -> URLSafeSerializer:
    if not keys:
        raise ValueError("at least one signing key is needed")
    # itsdangerous signs with the *last* key of the list and tries them all.
    return URLSafeSerializer(
        list(reversed(keys)), salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
    )


def sign(keys: Sequence[str], job_id: str, issued_at: float, expires_at: float) -> str:
    """A token for ``job_id``, valid until ``expires_at`` (epoch seconds)."""
    if not valid_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    if expires_at <= issued_at:
        raise ValueError("a link must expire after it is issued")
    payload = {"v": VERSION, "j": job_id, "i": round(issued_at * 1000), "x": int(expires_at)}
    token: str = _serializer(keys).dumps(payload)
    return token


def verify(keys: Sequence[str], token: str, now: float) -> LinkClaims:
    """The claims of a genuine, unexpired token; ``InvalidLink`` or ``ExpiredLink`` otherwise."""
    if len(token) > 512:
        raise InvalidLink("token too long")
    try:
        payload: Any = _serializer(keys).loads(token)
    except BadData:
        raise InvalidLink("bad signature") from None
    claims = _claims(payload)
    if now >= claims.expires_at:
        raise ExpiredLink("link expired")
    return claims


def _claims(payload: Any) -> LinkClaims:
    # A valid signature over a wrong shape can only come from a bug or a future
    # version; it opens nothing either way.
    if not isinstance(payload, dict) or payload.get("v") != VERSION:
        raise InvalidLink("unknown token version")
    job_id, issued, expires = payload.get("j"), payload.get("i"), payload.get("x")
    if not isinstance(job_id, str) or not valid_id(job_id):
        raise InvalidLink("malformed job id")
    if not isinstance(issued, int) or not isinstance(expires, int):
        raise InvalidLink("malformed times")
    return LinkClaims(job_id, issued / 1000, float(expires))
