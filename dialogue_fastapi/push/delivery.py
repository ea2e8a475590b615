"""One notification to one device: the per-device rate limit, the concurrency limit, retries.

``concurrency`` sends are in flight on a node at once. A device receives at most
``device_rate`` notifications (a moving window in memory, per node); over it, the send is
not made and the caller keeps the notification for later (it collapses into the next
one). A ``RETRY`` answer (429, 5xx, no answer) is tried again after a jittered
exponential backoff, or after ``Retry-After`` when the service sent one, up to
``max_attempts`` tries, then given up. ``GONE`` prunes the registration, ``FAILED``
counts one failure on it, ``DELIVERED`` resets its failures. Every outcome is counted in
:class:`PushCounters`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import asdict, dataclass
from enum import StrEnum

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from ..core.metrics import NO_METRICS, Metrics
from .base import Device, Notification, Outcome, PushSender, SendResult
from .registrations import PushRegistrations, Registration

logger = logging.getLogger("dialogue_fastapi")


class Done(StrEnum):
    """How one device's send ended."""

    DELIVERED = "delivered"
    GONE = "gone"
    FAILED = "failed"
    GAVE_UP = "gave_up"  # every attempt answered retry
    LATER = "later"  # over the device's rate: not sent, try again later
    NO_SENDER = "no_sender"  # no sender for the registration's kind on this node


@dataclass(slots=True)
class PushCounters:
    """What the dispatcher did since start (the lead's metrics export these)."""

    sent: int = 0
    retried: int = 0
    gone: int = 0
    failed: int = 0
    gave_up: int = 0
    rate_limited: int = 0
    dropped: int = 0  # notifications refused by a full queue
    cancelled: int = 0  # notifications nobody needed when due (everyone online)
    collapsed: int = 0  # notifications merged into another one

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Delivery:
    """Sends through the node's senders with the limits of ``PushConfig``."""

    def __init__(self, senders: dict[str, PushSender], registrations: PushRegistrations, *,
                 concurrency: int, device_rate: str, max_attempts: int) -> None:
        self._senders = senders
        self._registrations = registrations
        self._slots = asyncio.Semaphore(concurrency)
        self._rate = parse(device_rate)
        self._window = MovingWindowRateLimiter(MemoryStorage())
        self.max_attempts = max_attempts
        self.backoff = 1.0  # seconds before the first retry (doubled each time, jittered)
        self.max_backoff = 60.0
        self.counters = PushCounters()
        self.in_flight = 0
        self.metrics: Metrics = NO_METRICS  # the runtime's (dialogue_push_sends_total)

    def use_registrations(self, registrations: PushRegistrations) -> None:
        self._registrations = registrations

    def wait_for_rate(self, registration_id: str) -> float:
        """Seconds until the device may receive again (0: now)."""
        if self._window.test(self._rate, "push", registration_id):
            return 0.0
        reset, _ = self._window.get_window_stats(self._rate, "push", registration_id)
        return max(float(reset) - time.time(), 0.05)

    async def send(self, registration: Registration, notification: Notification) -> Done:
        """Send, retrying as the answers say; the registration is updated (or pruned)."""
        sender = self._senders.get(registration.kind)
        if sender is None:
            logger.warning("push: no %s sender on this node", registration.kind)
            return Done.NO_SENDER
        if not self._window.hit(self._rate, "push", registration.id):
            self.counters.rate_limited += 1
            self.metrics.push_sent(registration.kind, "rate_limited", 0)
            return Done.LATER
        device = registration.device()
        for attempt in range(1, self.max_attempts + 1):
            result = await self._attempt(sender, device, notification)
            if result.outcome is not Outcome.RETRY:
                done = await self._final(registration, result)
                self.metrics.push_sent(registration.kind, done.value, attempt)
                return done
            if attempt == self.max_attempts:
                break
            self.counters.retried += 1
            await asyncio.sleep(self._delay(attempt, result.retry_after))
        self.counters.gave_up += 1
        self.metrics.push_sent(registration.kind, Done.GAVE_UP.value, self.max_attempts)
        logger.warning("push: gave up on registration %s after %d attempts",
                       registration.id, self.max_attempts)
        await self._registrations.sent(registration.id, ok=False)
        return Done.GAVE_UP

    async def _attempt(self, sender: PushSender, device: Device,
                       notification: Notification) -> SendResult:
        async with self._slots:
            self.in_flight += 1
            try:
                return await sender.send(device, notification)
            except Exception as exc:  # a sender's bug must not stop the dispatcher
                logger.exception("push: the %s sender raised", sender.kind)
                return SendResult(Outcome.FAILED, reason=repr(exc))
            finally:
                self.in_flight -= 1

    async def _final(self, registration: Registration, result: SendResult) -> Done:
        if result.outcome is Outcome.DELIVERED:
            self.counters.sent += 1
            await self._registrations.sent(registration.id, ok=True)
            return Done.DELIVERED
        if result.outcome is Outcome.GONE:
            self.counters.gone += 1
            await self._registrations.prune(registration.id)
            return Done.GONE
        self.counters.failed += 1
        logger.warning("push: send to %s failed: %s %s", registration.id, result.status,
                       result.reason)
        await self._registrations.sent(registration.id, ok=False)
        return Done.FAILED

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.backoff * 2.0 ** (attempt - 1), self.max_backoff)
        jittered = backoff * random.uniform(0.5, 1.5)
        if retry_after is not None:  # the service said when: never earlier, a little later
            return min(retry_after, 3600.0) + random.uniform(0, 0.1 * self.backoff)
        return jittered
