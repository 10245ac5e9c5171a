"""Who may call the dispatcher API: Bearer API keys, or a session cookie for browsers.

``EventSource`` cannot send headers (FACTS.md), so the dispatcher page trades
its API key for an HttpOnly cookie holding a signed, expiring session that
names the key by fingerprint (the key itself never goes into the cookie).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from gateway.settings import Secret

COOKIE = "fieldtrack_session"
SESSION_MAX_AGE_S = 12 * 3600


class ApiKeys:
    def __init__(self, keys: Sequence[Secret], signing_key: Secret) -> None:
        self._fingerprints = {_fingerprint(k.value): k.value for k in keys}
        self._signer = TimestampSigner(signing_key.value, salt="fieldtrack.session")

    def check_key(self, candidate: str) -> bool:
        ok = False
        for value in self._fingerprints.values():
            ok |= hmac.compare_digest(candidate.encode(), value.encode())
        return ok

    def check_bearer(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and self.check_key(token.strip())

    def issue_session(self, key: str) -> str:
        return self._signer.sign(_fingerprint(key)).decode()

    def check_session(self, cookie: str | None) -> bool:
        if not cookie:
            return False
        try:
            fingerprint = self._signer.unsign(cookie, max_age=SESSION_MAX_AGE_S).decode()
        except (BadSignature, SignatureExpired):
            return False
        # A session dies with its key: rotate a key out and its cookies stop working.
        return fingerprint in self._fingerprints


def _fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]
