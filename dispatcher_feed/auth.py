"""Who may call the dispatcher API: Bearer API keys, or a session cookie for browsers.

``EventSource`` cannot send headers (FACTS.md), so the dispatcher page trades
its API key for an HttpOnly cookie holding a signed, expiring session that
names the key by fingerprint (the key itself never goes into the cookie) and
carries a random session id. Signing out (``DELETE /session``) revokes that id in
the store, for every API node, until the session would have expired anyway:
a copy of the cookie stops working too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from gateway.settings import Secret
from gateway.store import Store

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
        return self._signer.sign(f"{_fingerprint(key)}.{secrets.token_urlsafe(12)}").decode()

    def session_id(self, cookie: str | None) -> str | None:
        """The id of the session a cookie holds, if its signature, age and key are good
        (whether it was signed out is the store's to say, ``Store.session_revoked``); ""
        for a session issued before sessions had ids."""
        if not cookie:
            return None
        try:
            value = self._signer.unsign(cookie, max_age=SESSION_MAX_AGE_S).decode()
        except (BadSignature, SignatureExpired, UnicodeDecodeError):
            return None
        fingerprint, _, sid = value.partition(".")
        # A session dies with its key: rotate a key out and its cookies stop working.
        return sid if fingerprint in self._fingerprints else None

    def check_session(self, cookie: str | None) -> bool:
        """Signature, age and key (not whether it was signed out)."""
        return self.session_id(cookie) is not None


async def session_valid(keys: ApiKeys, store: Store, cookie: str | None) -> bool:
    """A good session, and not signed out."""
    sid = keys.session_id(cookie)
    return sid is not None and not (sid and await store.session_revoked(sid))


def _fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]
