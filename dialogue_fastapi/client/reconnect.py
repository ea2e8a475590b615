"""The reconnect loop: watch a connection, decide, back off, reopen, rejoin."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .connection import Connection
from .handlers import logger
from .handshake import ConnectError
from .policy import RATE_LIMITED, Backoff, should_reconnect


class Supervisor:
    """Keeps a client connected until a close that must not be retried.

    ``open_`` makes a new `Connection` (raising `ConnectError`), ``rejoin``
    restores the rooms on it (False: try another connection), ``on_lost`` and
    ``on_ready`` tell the client a connection went away or is fully usable.
    """

    def __init__(
        self,
        backoff: Backoff,
        *,
        enabled: bool,
        open_: Callable[[], Awaitable[Connection]],
        rejoin: Callable[[Connection], Awaitable[bool]],
        on_lost: Callable[[int, str], None],
        on_ready: Callable[[Connection], None],
    ) -> None:
        self._backoff = backoff
        self._enabled = enabled
        self._open = open_
        self._rejoin = rejoin
        self._on_lost = on_lost
        self._on_ready = on_ready
        self.close_code: int | None = None
        self.close_reason = ""

    async def run(self, conn: Connection) -> None:
        """Return once the client has to stay closed (see `close_code`)."""
        while True:
            await conn.wait_done()
            self.close_code, self.close_reason = conn.close_code, conn.close_reason
            code = conn.close_code if conn.close_code is not None else 1006
            retry = conn.forced or should_reconnect(code, conn.advice)
            logger.info(
                "dialogue client: connection closed (%s %s), %s",
                code,
                conn.close_reason,
                "reconnecting" if retry and self._enabled else "not reconnecting",
            )
            if not (retry and self._enabled):
                return
            self._on_lost(code, conn.close_reason)
            if code == RATE_LIMITED:
                self._backoff.penalize()
            new = await self._reopen()
            if new is None:
                return
            conn = new

    async def _reopen(self) -> Connection | None:
        while True:
            delay = self._backoff.next_delay()
            await asyncio.sleep(delay)
            try:
                conn = await self._open()
            except ConnectError as exc:
                if exc.permanent:
                    self.close_code = exc.extra.get("close_code")
                    self.close_reason = exc.message
                    logger.warning("dialogue client: reconnect refused: %s", exc.message)
                    return None
                logger.info("dialogue client: reconnect failed (%s), retrying", exc.message)
                continue
            if await self._rejoin(conn):
                self._backoff.reset()
                self._on_ready(conn)
                return conn
            conn.abort()
            await conn.wait_done()
