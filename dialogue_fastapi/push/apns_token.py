"""The APNs provider token: an ES256 JWT from the team's .p8 key, renewed within Apple's window.

Apple refuses a token older than an hour (``ExpiredProviderToken``) and one renewed
more often than every 20 minutes (``TooManyProviderTokenUpdates``). So one token is
shared by every send and renewed when it is 40 minutes old; the only earlier renewal
is when Apple rejects the current token (``ExpiredProviderToken`` or
``InvalidProviderToken``), and then only once for all the sends that saw it rejected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

#: renew the token when it is this old (Apple: between 20 and 60 minutes)
RENEW_AFTER = 40 * 60

ApnsKey = str | Path | ec.EllipticCurvePrivateKey


def load_apns_key(key: ApnsKey) -> ec.EllipticCurvePrivateKey:
    """The .p8 signing key from PEM text, the path of the .p8 file, or a key object."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key
    text = key.read_text() if isinstance(key, Path) else key
    if not text.lstrip().startswith("-----"):
        text = Path(text).read_text()
    loaded = serialization.load_pem_private_key(text.encode(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(loaded.curve, ec.SECP256R1):
        raise ValueError("the APNs key must be the P-256 .p8 key Apple issued")
    return loaded


class ProviderToken:
    """The current provider token; :meth:`current` renews it when it is due."""

    def __init__(self, key: ApnsKey, key_id: str, team_id: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        if not key_id or not team_id:
            raise ValueError("the APNs key id and team id are required")
        self._key = load_apns_key(key)
        self._key_id = key_id
        self._team_id = team_id
        self._clock = clock
        self._token = ""
        self._issued_at = 0.0

    def current(self) -> str:
        """The token to send now (a new one when the current one is 40 minutes old)."""
        if not self._token or self._clock() - self._issued_at >= RENEW_AFTER:
            self._renew()
        return self._token

    def rejected(self, token: str) -> None:
        """Apple rejected ``token``: renew, unless another send already did."""
        if token == self._token:
            self._renew()

    def _renew(self) -> None:
        now = self._clock()
        self._token = jwt.encode({"iss": self._team_id, "iat": int(now)}, self._key,
                                 algorithm="ES256", headers={"kid": self._key_id})
        self._issued_at = now
