"""Thread identifiers: 12 letters and digits, unguessable, verifiable as minted here.

An identifier is 8 random characters followed by 4 check characters, the check being an HMAC of
the random part under the deployment's thread key. A forged, mistyped or truncated identifier
fails the check without any database lookup; a valid one still has to name a stored case.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
RANDOM_LENGTH = 8
CHECK_LENGTH = 4
LENGTH = RANDOM_LENGTH + CHECK_LENGTH
_DOMAIN = b"switchboard-thread-id/v1:"


class ThreadIds:
    """Mints and verifies identifiers with one secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the thread key must be at least 16 bytes")
        self._key = key

    def _check(self, random_part: str) -> str:
        digest = hmac.new(self._key, _DOMAIN + random_part.encode("ascii"), hashlib.sha256)
        number = int.from_bytes(digest.digest()[:8], "big")
        out = []
        for _ in range(CHECK_LENGTH):
            number, digit = divmod(number, len(ALPHABET))
            out.append(ALPHABET[digit])
        return "".join(out)

    def mint(self) -> str:
        random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
        return random_part + self._check(random_part)

    def verify(self, candidate: str) -> bool:
        value = candidate.strip().upper()
        if len(value) != LENGTH or any(c not in ALPHABET for c in value):
            return False
        return hmac.compare_digest(value[RANDOM_LENGTH:], self._check(value[:RANDOM_LENGTH]))
