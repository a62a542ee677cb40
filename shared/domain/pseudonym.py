"""Pseudonymous user ids: HMAC-SHA256 of the raw id under a secret key.

Applied where every stream consumer decodes an event (shared.services.ingest.check_record), so user
state, the ledger, push counters, the archive and the feedback log only ever hold the
pseudonym. The same key always maps a user to the same pseudonym, which keeps joins (feedback
with its decision) working; without the key a pseudonym cannot be linked back to the raw id.
The key must never change while data keyed by its pseudonyms exists.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PREFIX = "p:"
# A pseudonym passes through unchanged, so replaying archived (already pseudonymous) events is safe.
_PSEUDONYM = re.compile(r"^p:[0-9a-f]{64}$")
MIN_KEY_BYTES = 32


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the pseudonym key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def __call__(self, user_id: str) -> str:
        if _PSEUDONYM.match(user_id):
            return user_id
        return PREFIX + hmac.new(self._key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def is_pseudonym(user_id: str) -> bool:
    return bool(_PSEUDONYM.match(user_id))
