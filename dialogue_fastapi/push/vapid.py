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
path of a file holding any of those, or as a key object. Keys are loaded, generated
and used for signing by py_vapid (pywebpush's own VAPID library, ``Vapid02``).

Each token is signed from a fresh claims dict: ``aud`` is the origin of that endpoint
(a push service accepts only its own), ``exp`` is 12 hours ahead (services refuse more
than 24 hours), ``sub`` is the contact (``mailto:`` or ``https:``). The signed header is
reused for the same push service for up to ten minutes (:class:`VapidSigner`).
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

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException, b64urlencode  # type: ignore[import-untyped]

VapidKey = str | Path | ec.EllipticCurvePrivateKey

#: how long a VAPID JWT is valid (push services refuse more than 24 hours)
VAPID_LIFETIME = 12 * 3600
#: how long a signed header is reused for the same push service (seconds)
VAPID_REUSE = 600.0

#: py_vapid's own checks of ``sub`` (a strict mailto regex, an https URL without a path)
#: are replaced by ours (any ``mailto:`` or ``https:`` contact); ``aud`` is still checked
_CONF = {"no-strict": True}
_MAX_CACHED = 256

_BAD_KEY = ("vapid_private_key is not a P-256 private key (PEM, base64url of the raw key "
            "or of DER, or a file holding one)")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding (raises ``ValueError``)."""
    text = text.strip()
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc


def load_vapid(key: VapidKey) -> Vapid02:
    """py_vapid's signer for any accepted form of the key; ``ValueError`` when it is not one.

    PEM (PKCS#8 or SEC1) goes through ``Vapid02.from_pem``, base64url text through
    ``Vapid02.from_string`` (32 bytes: the raw scalar, else DER), a file is read first
    (never ``Vapid02.from_file``: it writes a new key when the file is missing).
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        vapid = Vapid02(key, conf=_CONF)
    else:
        text = key.read_text() if isinstance(key, Path) else key
        if not text.lstrip().startswith("-----") and len(text) < 4096 and os.path.isfile(text):
            text = Path(text).read_text()
        text = text.strip()
        try:
            vapid = Vapid02.from_pem(text.encode()) if text.startswith("-----") else Vapid02.from_string(text)
        except (ValueError, TypeError, IndexError) as exc:
            raise ValueError(_BAD_KEY) from exc
        vapid.conf = _CONF
    private = vapid.private_key
    if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(private.curve, ec.SECP256R1):
        raise ValueError(_BAD_KEY)
    return vapid


def load_vapid_key(key: VapidKey) -> ec.EllipticCurvePrivateKey:
    """The private key from any accepted form; ``ValueError`` when it is not one."""
    private: ec.EllipticCurvePrivateKey = load_vapid(key).private_key
    return private


def generate_vapid_key() -> str:
    """A new VAPID private key as PKCS#8 PEM text (py_vapid's ``generate_keys``)."""
    vapid = Vapid02()
    vapid.generate_keys()
    pem: bytes = vapid.private_pem()
    return pem.decode()


def _public_key(vapid: Vapid02) -> str:
    point: bytes = vapid.public_key.public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint)
    encoded: str = b64urlencode(point)
    return encoded


def vapid_public_key(key: VapidKey) -> str:
    """The application server key browsers subscribe with: base64url of the uncompressed point."""
    return _public_key(load_vapid(key))


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
    """The ``Authorization: vapid t=<JWT>,k=<key>`` header, signed by py_vapid's ``Vapid02``.

    Each token is signed from a claims dict built for that call (pywebpush's ``webpush()``
    writes ``aud`` into the dict it is given, so a shared dict would carry one push
    service's audience to the next). A signed header is reused for the same audience for
    ``reuse`` seconds (0: sign every send): the token stays valid until its ``exp``, 12
    hours ahead, so a reused one still has more than 11 hours left. At most
    ``_MAX_CACHED`` audiences are remembered.
    """

    def __init__(self, key: VapidKey, subject: str, *, reuse: float = VAPID_REUSE,
                 clock: Callable[[], float] = time.time) -> None:
        if not subject.startswith(("mailto:", "https:")):
            raise ValueError("vapid_subject must be a mailto: or https: URL")
        if not 0 <= reuse <= 3600:
            raise ValueError("vapid reuse must be between 0 and 3600 seconds")
        self._vapid = load_vapid(key)
        self._subject = subject
        self._reuse = reuse
        self._clock = clock
        self._signed: dict[str, tuple[float, str]] = {}
        self.public_key = _public_key(self._vapid)

    def authorization(self, audience: str) -> str:
        """The header for a push service whose origin is ``audience`` (``ValueError`` if py_vapid
        refuses the claims)."""
        now = self._clock()
        cached = self._signed.get(audience)
        if cached is not None and now - cached[0] < self._reuse:
            return cached[1]
        claims = {"aud": audience, "exp": int(now) + VAPID_LIFETIME, "sub": self._subject}
        try:
            header: str = self._vapid.sign(claims)["Authorization"]
        except VapidException as exc:
            raise ValueError(f"vapid: {exc}") from exc
        if self._reuse:
            if len(self._signed) >= _MAX_CACHED:
                self._signed.clear()
            self._signed[audience] = (now, header)
        return header


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
