"""The push service of one node: its settings, where registrations live, and the senders.

Built by the runtime when ``push=`` is configured. Registrations (and users' push
preferences) go to the SQL
store when the app has one (``SqlStore``), else to memory. Senders are made
from the settings of each provider that is on, or given directly (a
``PushSender`` per kind: the seam tests and custom providers use).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..core.push_config import PushConfig
from .base import PushSender
from .preferences import MemoryPreferences, PreferenceGate, PushPreferences
from .registrations import MemoryRegistrations, PushRegistrations
from .validation import EndpointPolicy, Resolver, resolve

logger = logging.getLogger("dialogue_fastapi")


class PushService:
    """Registrations, endpoint policy and senders of one node."""

    def __init__(self, config: PushConfig, senders: Mapping[str, PushSender] | None = None) -> None:
        self.config = config
        self.endpoints = EndpointPolicy(
            tuple(config.allowed_hosts) if config.allowed_hosts is not None else None,
            allow_http=config.allow_http_endpoints, allow_private=config.allow_private_endpoints)
        if config.allow_http_endpoints or config.allow_private_endpoints:
            logger.warning("push: Web Push endpoints over http or on private addresses are "
                           "accepted (allow_http_endpoints/allow_private_endpoints): tests only")
        #: how endpoint hosts are resolved for the SSRF check (a seam: tests resolve without DNS)
        self.resolver: Resolver = resolve
        self.registrations: PushRegistrations = MemoryRegistrations()
        #: quiet hours and muted rooms: the store and the dispatcher's check
        self.preferences = PreferenceGate(MemoryPreferences())
        self.senders: dict[str, PushSender] = dict(senders or {})
        self.vapid_public_key: str | None = None
        if config.vapid_private_key is not None:
            from .vapid import vapid_public_key

            self.vapid_public_key = vapid_public_key(config.vapid_private_key)

    def use_registrations(self, registrations: PushRegistrations) -> None:
        """Keep registrations in the store (the runtime calls it once the store has started)."""
        self.registrations = registrations

    def use_preferences(self, preferences: PushPreferences) -> None:
        """Keep push preferences in the store (the runtime calls it with a SQL store)."""
        self.preferences.store = preferences

    def build_senders(self) -> None:
        """A sender for each configured provider that was not given one."""
        c = self.config
        if c.vapid_private_key is not None and "webpush" not in self.senders:
            from .webpush import WebPushSender

            self.senders["webpush"] = WebPushSender(c.vapid_private_key, c.vapid_subject or "",
                                                    transport=c.webpush_transport)
        if c.fcm is not None and "fcm" not in self.senders:
            from .fcm import FcmSender

            self.senders["fcm"] = FcmSender(c.fcm.service_account, project_id=c.fcm.project_id,
                                            base_url=c.fcm.base_url)
        if c.apns is not None and "apns" not in self.senders:
            from .apns import ApnsSender

            a = c.apns
            self.senders["apns"] = ApnsSender(
                a.key, key_id=a.key_id, team_id=a.team_id, topic=a.topic,
                production_url=a.production_url, sandbox_url=a.sandbox_url, verify=a.verify)

    async def close(self) -> None:
        for sender in self.senders.values():
            try:
                await sender.close()
            except Exception as exc:  # closing must not stop the shutdown
                logger.warning("push: closing the %s sender failed: %s", sender.kind, exc)

    def describe(self) -> dict[str, Any]:
        return {"kinds": list(self.config.kinds), "when": self.config.when}
