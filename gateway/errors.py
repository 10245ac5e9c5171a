"""The gateway's exception tree, split by what the caller does next.

* ``BadPayload``: one message (or one fix of a batch) cannot be used. The caller
  counts it by ``code``, dead-letters the original bytes with ``reason`` and goes on.
* ``Rejected``: a well-formed message that the current state refuses (an unknown
  job, an impossible status transition). Handled exactly like ``BadPayload``.
* ``ConfigError``: the settings cannot work; the process exits with the message.

Infrastructure failures (broker or Redis gone) are not wrapped: they end the
task group and the outer loop reconnects.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises."""


class BadPayload(GatewayError, ValueError):
    """A message or one fix in it is unusable.

    ``code`` is a short, bounded label (a metric label value); ``detail`` says
    which field and why, for the dead-letter reason and HTTP error bodies.
    """

    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code


class Rejected(BadPayload):
    """Valid on the wire, refused by the state it would change."""


class ConfigError(GatewayError, ValueError):
    """Settings that cannot work."""
