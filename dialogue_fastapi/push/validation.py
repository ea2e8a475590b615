"""What a client may register: the SSRF guard of Web Push endpoints and the shapes of keys and tokens.

A Web Push endpoint is a URL the server will POST to, chosen by the client: left
unchecked it turns the server into a proxy into its own network. So an endpoint
must be ``https``, name a host (never an IP literal, never ``localhost`` or a
single-label name), use port 443, carry no credentials, and its host must resolve only to
public addresses; with ``allowed_hosts`` it must also be one of those hosts or
a subdomain of one. The sender never follows redirects. ``allow_http`` and
``allow_private`` exist for local push services in tests and are documented as
such; the node warns once when they are set.

Keys: ``p256dh`` is an uncompressed P-256 point (65 bytes, base64url) that must
lie on the curve; ``auth`` is 16 bytes. An FCM token is 32 to 4,096 characters
of ``[A-Za-z0-9_:-]``; an APNs token is 64 to 200 hex digits (an even count);
an APNs topic is a bundle id.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_ENDPOINT_LENGTH = 2048
FCM_TOKEN = re.compile(r"^[A-Za-z0-9_:\-]{32,4096}$")
APNS_TOKEN = re.compile(r"^(?:[0-9a-fA-F]{2}){32,100}$")
APNS_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,254}$")

#: a resolver: host -> its addresses (injectable so tests need no DNS)
Resolver = Callable[[str], Awaitable[Sequence[str]]]


class InvalidRegistration(ValueError):
    """A registration the server refuses; the message says what to fix."""


async def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (the event loop's resolver, in its thread pool)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    """Which Web Push endpoints are accepted (``PushConfig`` builds it)."""

    allowed_hosts: tuple[str, ...] | None = None
    allow_http: bool = False  # local push services in tests only
    allow_private: bool = False  # idem: loopback and private addresses, IP literals

    def host_allowed(self, host: str) -> bool:
        if self.allowed_hosts is None:
            return True
        return any(host == allowed or host.endswith("." + allowed) for allowed in self.allowed_hosts)

    async def check(self, endpoint: str, resolver: Resolver = resolve) -> str:
        """The endpoint, normalised, or :class:`InvalidRegistration` saying why not."""
        if len(endpoint) > MAX_ENDPOINT_LENGTH:
            raise InvalidRegistration(f"endpoint is longer than {MAX_ENDPOINT_LENGTH} characters")
        if not (endpoint.isascii() and endpoint.isprintable()) or " " in endpoint:
            raise InvalidRegistration("endpoint must be a URL of printable ASCII characters")
        try:
            parts = urlsplit(endpoint)
            port = parts.port
        except ValueError as exc:
            raise InvalidRegistration(f"endpoint is not a URL: {exc}") from None
        if parts.scheme != "https" and not (self.allow_http and parts.scheme == "http"):
            raise InvalidRegistration("endpoint must be an https:// URL")
        if parts.username or parts.password:
            raise InvalidRegistration("endpoint must not carry credentials")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise InvalidRegistration("endpoint has no host")
        if parts.fragment:
            raise InvalidRegistration("endpoint must not have a #fragment")
        literal = _ip(host)
        if not self.allow_private:
            if literal is not None:
                raise InvalidRegistration("endpoint host must be a name, not an IP address")
            if "." not in host or host == "localhost" or host.endswith((".localhost", ".local",
                                                                         ".internal")):
                raise InvalidRegistration(f"endpoint host {host} is not a public push service")
        if port not in (None, 443) and not self.allow_private:
            raise InvalidRegistration("endpoint must use the https port (443)")
        if not self.host_allowed(host):
            raise InvalidRegistration(f"endpoint host {host} is not an allowed push service")
        if not self.allow_private:
            try:
                addresses = await resolver(host)
            except OSError:
                raise InvalidRegistration(f"endpoint host {host} does not resolve") from None
            for address in addresses:
                ip = _ip(address)
                if ip is None or not ip.is_global:
                    raise InvalidRegistration(
                        f"endpoint host {host} resolves to a non-public address") from None
        return endpoint


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%")[0])
    except ValueError:
        return None


def b64url_bytes(text: str, what: str) -> bytes:
    """Decode base64url with or without padding (``+/`` accepted too, as some browsers send)."""
    if not re.fullmatch(r"[A-Za-z0-9_\-+/]+={0,2}", text or ""):
        raise InvalidRegistration(f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_").rstrip("=")
                                        + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise InvalidRegistration(f"{what} is not base64url") from None


def check_webpush_keys(p256dh: str, auth: str) -> None:
    """``p256dh``: a P-256 public key on the curve; ``auth``: 16 bytes."""
    point = b64url_bytes(p256dh, "keys.p256dh")
    if len(point) != 65 or point[0] != 4:
        raise InvalidRegistration("keys.p256dh must be an uncompressed P-256 public key (65 bytes)")
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise InvalidRegistration("keys.p256dh is not a point on the P-256 curve") from None
    if len(b64url_bytes(auth, "keys.auth")) != 16:
        raise InvalidRegistration("keys.auth must be 16 bytes")


def check_fcm_token(token: str) -> None:
    if not FCM_TOKEN.fullmatch(token):
        raise InvalidRegistration("token is not an FCM registration token "
                                  "(32 to 4096 characters of A-Z a-z 0-9 _ : -)")


def check_apns(token: str, topic: str | None) -> None:
    if not APNS_TOKEN.fullmatch(token):
        raise InvalidRegistration("token is not an APNs device token (64 to 200 hex digits)")
    if topic is not None and not APNS_TOPIC.fullmatch(topic):
        raise InvalidRegistration("topic is not a bundle id (letters, digits, '.' and '-')")
