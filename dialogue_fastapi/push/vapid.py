"""VAPID (RFC 8292) for Web Push: the server's key pair and the ``Authorization`` header.

The application server key pair is a P-256 key. Generate one once and keep the private
key secret::

    python -m dialogue_fastapi.push.vapid --generate > vapid_private.pem

prints the private key (PEM) on stdout and the public key on stderr;
``python -m dialogue_fastapi.push.vapid --public-key vapid_private.pem`` prints the
public key again. The public key, base64url of the uncompressed point (87 characters),
is what ``GET /push/vapid-public-key`` answers and what the browser passes as
``applicationServerKey`` to ``pushManager.subscribe``; :func:`vapid_public_key` gives it.

A private key is accepted as PEM text (PKCS#8 or SEC1), as base64url of the raw 32-byte
scalar (the format of ``web-push generate-vapid-keys`` and py-vapid) or of DER, as the
path of a file holding any of those, or as a key object.

Each send gets a JWT made from a fresh claims dict: ``aud`` is the origin of that
endpoint (a push service accepts only its own), ``exp`` is 12 hours ahead (services
refuse more than 24 hours), ``sub`` is the contact (``mailto:`` or ``https:``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

VapidKey = str | Path | ec.EllipticCurvePrivateKey

#: how long a VAPID JWT is valid (push services refuse more than 24 hours)
VAPID_LIFETIME = 12 * 3600

_BAD_KEY = ("vapid_private_key is not a P-256 private key (PEM, base64url of the raw key "
            "or of DER, or a file holding one)")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding (raises ``ValueError``)."""
    text = text.strip()
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc


def load_vapid_key(key: VapidKey) -> ec.EllipticCurvePrivateKey:
    """The private key from any accepted form; ``ValueError`` when it is not one."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        loaded = key
    else:
        text = key.read_text() if isinstance(key, Path) else key
        if not text.lstrip().startswith("-----") and len(text) < 4096 and os.path.isfile(text):
            text = Path(text).read_text()
        loaded = _parse_key(text.strip())
    if not isinstance(loaded.curve, ec.SECP256R1):
        raise ValueError(_BAD_KEY)
    return loaded


def _parse_key(text: str) -> ec.EllipticCurvePrivateKey:
    try:
        if text.startswith("-----"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = b64url_decode(text)
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(_BAD_KEY) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(_BAD_KEY)
    return key


def generate_vapid_key() -> str:
    """A new VAPID private key as PKCS#8 PEM text."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def vapid_public_key(key: VapidKey) -> str:
    """The application server key browsers subscribe with: base64url of the uncompressed point."""
    public = load_vapid_key(key).public_key()
    return b64url(public.public_bytes(serialization.Encoding.X962,
                                      serialization.PublicFormat.UncompressedPoint))


def origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL (default port left out), or None."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if scheme not in ("http", "https") or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class VapidSigner:
    """Signs one ``Authorization: vapid t=..., k=...`` header per send."""

    def __init__(self, key: VapidKey, subject: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        if not subject.startswith(("mailto:", "https:")):
            raise ValueError("vapid_subject must be a mailto: or https: URL")
        self._key = load_vapid_key(key)
        self._subject = subject
        self._clock = clock
        self.public_key = vapid_public_key(self._key)

    def authorization(self, audience: str) -> str:
        """The header for a push service whose origin is ``audience``."""
        claims = {"aud": audience, "exp": int(self._clock()) + VAPID_LIFETIME, "sub": self._subject}
        token = jwt.encode(claims, self._key, algorithm="ES256")
        return f"vapid t={token}, k={self.public_key}"


def main(argv: list[str] | None = None) -> int:
    """``--generate``: a new key; ``--public-key KEY``: the public key of KEY (text or file)."""
    parser = argparse.ArgumentParser(prog="python -m dialogue_fastapi.push.vapid",
                                     description="VAPID keys for Web Push")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--generate", action="store_true",
                       help="print a new private key (PEM) on stdout, its public key on stderr")
    group.add_argument("--public-key", metavar="KEY", help="print the public key of KEY")
    args = parser.parse_args(argv)
    if args.generate:
        pem = generate_vapid_key()
        sys.stdout.write(pem)
        sys.stderr.write(f"application server key: {vapid_public_key(pem)}\n")
        return 0
    try:
        print(vapid_public_key(args.public_key))
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
