"""Push configuration: ``push=PushConfig(vapid_private_key=..., fcm=FCMConfig(...), apns=APNSConfig(...))``.

Each provider is on when its settings are given: Web Push with a VAPID key,
FCM with a service account, APNs with a provider key. Base URLs are settings
so that tests (and private deployments) can point the senders at local
services; ``allow_http_endpoints`` / ``allow_private_endpoints`` let a Web
Push endpoint be a local test service and must stay off in production.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")


class FCMConfig(_Frozen):
    """Firebase Cloud Messaging (HTTP v1) with a service account."""

    service_account: Any = Field(
        description="the service-account JSON: a file path, its dict, or google-auth credentials "
        "(e.g. firebase_admin.credentials.Certificate(...).get_credential())")
    project_id: str | None = Field(default=None, description="the Firebase project; None: the "
                                   "service account's")
    base_url: str = Field(default="https://fcm.googleapis.com", description="the FCM API's base URL")


class APNSConfig(_Frozen):
    """Apple Push Notification service with a provider token key (.p8)."""

    key: str = Field(description="the .p8 private key: its PEM text or a file path")
    key_id: str = Field(description="the key's id (10 characters)")
    team_id: str = Field(description="the Apple developer team id")
    topic: str = Field(description="the app's bundle id (apns-topic) when a device gives none")
    production_url: str = Field(default="https://api.push.apple.com", description="production host")
    sandbox_url: str = Field(default="https://api.sandbox.push.apple.com", description="sandbox host")
    verify: bool | str = Field(default=True, description="TLS verification: True, False or a CA file")


class PushConfig(_Frozen):
    """Push notifications for users who are not connected (the ``push`` extra)."""

    vapid_private_key: str | None = Field(
        default=None, description="Web Push: the VAPID private key (PEM, base64url or a file path); "
        "None: no Web Push")
    vapid_subject: str | None = Field(
        default=None, description="Web Push: a contact, 'mailto:ops@example.com' or an https URL")
    webpush_transport: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp", description="Web Push's HTTP client: aiohttp (pywebpush's own; about "
        "5x cheaper per send here) or httpx (HTTP/2 possible)")
    fcm: FCMConfig | None = Field(default=None, description="FCM settings; None: no FCM")
    apns: APNSConfig | None = Field(default=None, description="APNs settings; None: no APNs")
    when: Literal["offline", "always"] = Field(
        default="offline", description="'offline': members with no live connection in the room "
        "anywhere in the cluster; 'always': every member but the sender")
    grace_period: float = Field(
        default=3.0, ge=0, le=300, description="seconds a notification waits; cancelled if the user "
        "reads the event meanwhile, merged with the room's later events to the same device")
    ttl: int = Field(default=24 * 3600, ge=0, le=28 * 24 * 3600,
                     description="seconds a push service keeps an undelivered notification")
    max_registrations_per_user: int = Field(default=10, ge=1, le=1000,
                                            description="devices one user may register")
    allowed_hosts: list[str] | None = Field(
        default=None, description="Web Push endpoint hosts accepted (a host or its subdomains); "
        "None: any public host")
    allow_http_endpoints: bool = Field(default=False, description="tests only: http:// endpoints")
    allow_private_endpoints: bool = Field(
        default=False, description="tests only: endpoints on loopback or private addresses")
    queue_size: int = Field(default=10_000, ge=1, description="sends waiting on one node; then the "
                            "oldest notifications wait in the store (or are dropped without one)")
    concurrency: int = Field(default=16, ge=1, le=1000, description="sends in flight on one node")
    device_rate: str = Field(default="10/minute", description="notifications one device receives "
                             "at most (more collapse into the next one)")
    max_attempts: int = Field(default=5, ge=1, le=20, description="tries of one send (429 and 5xx "
                              "are retried with jittered backoff, honouring Retry-After)")
    claim_lease: float = Field(
        default=120.0, ge=1, le=3600, description="seconds a node holds the outbox rows it claimed "
        "(renewed while it is sending them); a node that died holding rows leaves them to the "
        "others when it runs out")

    @field_validator("vapid_subject")
    @classmethod
    def _subject(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("mailto:", "https://")):
            raise ValueError("vapid_subject must be 'mailto:...' or an https:// URL")
        return value

    @property
    def kinds(self) -> tuple[str, ...]:
        """The registration kinds this server accepts."""
        on = (("webpush", self.vapid_private_key is not None), ("fcm", self.fcm is not None),
              ("apns", self.apns is not None))
        return tuple(kind for kind, enabled in on if enabled)
