"""The geofence package's one exception: a fence definition that cannot be used.

`FenceError` is a `ValueError` (as h3-py's errors are) so callers that only care
about "bad input" can catch the builtin; `reason` is a short human-readable text
the HTTP layer can return as is.
"""

from __future__ import annotations


class FenceError(ValueError):
    """A geofence definition was rejected; `reason` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
