"""`ClientRoom`: one joined room, its handlers, iterator and resume position."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from .errors import DialogueClientError
from .handlers import Frame, Handler, HandlerSet, Mailbox, invoke, logger

Subscriptions = list[str] | Literal["*"]


class RoomOwner(Protocol):
    """What a room needs from its client."""

    @property
    def connected(self) -> bool:
        """Whether the client is connected (and its rooms rejoined)."""

    async def request(self, op: str, /, **fields: Any) -> Frame:
        """Send a command and return its result."""

    async def _dispatch(self, job: Callable[[Frame], Awaitable[None]], arg: Frame) -> None:
        """Run ``job(arg)`` on the client's ordered handler task."""

    def _forget_room(self, room: ClientRoom) -> None:
        """Drop the room from the client's joined rooms."""


class ClientRoom:
    """A room this client has joined.

    Receive events with `on` (sync or async handlers) or ``async for msg in
    room`` (a bounded buffer that drops the oldest message when full; see
    `dropped`). Each event reaches the application once, in ``seq`` order,
    across reconnects. Iteration ends when the room is left, deleted, or the
    client is closed.
    """

    def __init__(self, owner: RoomOwner, room_id: str, *, queue_size: int = 1024) -> None:
        self.id = room_id
        self.info: Frame = {}
        self.subscriptions: Subscriptions | None = None
        self.excluded: frozenset[str] = frozenset()  # unsubscribed from "*"
        self._owner = owner
        self._seq: int | None = None
        self._epoch: str | None = None
        self._handlers: dict[str, HandlerSet[Frame]] = {}
        self._reset_handlers: HandlerSet[Frame] = HandlerSet()
        self._mailbox: Mailbox[Frame] = Mailbox(queue_size, f"dialogue room {room_id!r}")
        self._started = False
        self._backlog: list[Frame] = []
        self._flush_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<ClientRoom {self.id!r} seq={self._seq} closed={self.closed}>"

    @property
    def position(self) -> Frame:
        """The last position seen: ``{"seq": int, "epoch": str | None}``."""
        return {"seq": self._seq or 0, "epoch": self._epoch}

    @property
    def closed(self) -> bool:
        """True once the room was left, deleted, or its client closed."""
        return self._mailbox.closed

    @property
    def dropped(self) -> int:
        """How many messages the iterator buffer discarded because nobody read them."""
        return self._mailbox.dropped

    def on(self, event: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(envelope)`` for ``event`` (``"*"``: every event); returns its remover."""
        return self._handlers.setdefault(event, HandlerSet()).add(handler)

    def off(self, event: str, handler: Handler) -> None:
        """Stop calling ``handler`` for ``event``."""
        if event in self._handlers:
            self._handlers[event].remove(handler)

    def on_reset(self, handler: Handler) -> Callable[[], None]:
        """Call ``handler(position)`` when a reconnect could not recover missed events.

        ``position`` is ``{"seq", "epoch", "previous": {"seq", "epoch"}}``: live
        delivery continues after ``seq``; page `history` to fill the gap.
        """
        return self._reset_handlers.add(handler)

    async def publish(
        self, event: str, data: Any, *, meta: Frame | None = None, idempotency_key: str | None = None
    ) -> int | None:
        """Publish ``event`` with ``data``; returns the ``seq`` the server assigned,
        or None when a server middleware dropped the event (``dropped: true``)."""
        fields: Frame = {"event": event, "data": data}
        if meta is not None:
            fields["meta"] = meta
        if idempotency_key is not None:
            fields["idempotency_key"] = idempotency_key
        result = await self._request("publish", **fields)
        seq = result.get("seq")
        if seq is None and result.get("dropped"):
            return None
        if not isinstance(seq, int):
            raise DialogueClientError("INTERNAL", f"publish reply has no seq: {result!r}")
        return seq

    async def subscribe(self, events: list[str] | Literal["*"]) -> Subscriptions | None:
        """Receive these events too; returns the room's subscriptions now."""
        result = await self._request("subscribe", events=events)
        self._set_subscriptions(result.get("subscriptions"), result.get("excluded"))
        return self.subscriptions

    async def unsubscribe(self, events: list[str]) -> Subscriptions | None:
        """Stop receiving these events; returns the room's subscriptions now."""
        result = await self._request("unsubscribe", events=events)
        self._set_subscriptions(result.get("subscriptions"), result.get("excluded"))
        return self.subscriptions

    async def history(
        self,
        event: str | None = None,
        limit: int | None = None,
        before: int | None = None,
        after: int | None = None,
    ) -> list[Frame]:
        """Stored events, ascending ``seq`` (not delivered to handlers)."""
        query = {"event": event, "limit": limit, "before": before, "after": after}
        result = await self._request("history", **{k: v for k, v in query.items() if v is not None})
        events = result.get("events")
        return events if isinstance(events, list) else []

    async def presence(self) -> Frame:
        """Who is here: ``{"count", "users": [{"user_id", "client_id"}]}``."""
        return await self._request("presence")

    async def leave(self) -> None:
        """Leave the room; iteration ends and no rejoin happens after a reconnect."""
        if self.closed:
            return
        self._owner._forget_room(self)
        self._close()
        if not self._owner.connected:
            return  # the server forgot us with the old socket
        try:
            await self._owner.request("leave", room=self.id)
        except DialogueClientError as exc:
            if exc.code not in ("NOT_IN_ROOM", "ROOM_NOT_FOUND", "UNAVAILABLE"):
                raise

    def __aiter__(self) -> ClientRoom:
        return self

    async def __anext__(self) -> Frame:
        return await self._mailbox.get()

    # --- used by the client --------------------------------------------

    async def _request(self, op: str, **fields: Any) -> Frame:
        if self.closed:
            raise DialogueClientError("NOT_IN_ROOM", f"room {self.id!r} was left")
        return await self._owner.request(op, room=self.id, **fields)

    def _set_subscriptions(self, value: object, excluded: object = None) -> None:
        if value == "*":
            self.subscriptions = "*"
            self.excluded = frozenset(str(v) for v in excluded) if isinstance(excluded, list) else frozenset()
        elif isinstance(value, list):
            self.subscriptions = [str(v) for v in value]
            self.excluded = frozenset()

    def _since(self) -> Frame | None:
        if self._seq is None or self._epoch is None:
            return None
        return {"seq": self._seq, "epoch": self._epoch}

    async def _apply_join(self, result: Frame, *, since: Frame | None) -> None:
        """Apply a join reply on the reader task, before any later live event."""
        if isinstance(result.get("room"), dict):
            self.info = result["room"]
        self._set_subscriptions(result.get("subscriptions"), sorted(self.excluded))  # kept across rejoins
        position = result.get("position")
        seq = position.get("seq") if isinstance(position, dict) else None
        epoch = position.get("epoch") if isinstance(position, dict) else None
        recovered = result.get("recovered")
        if recovered is None and since is not None:
            recovered = since == {"seq": seq, "epoch": epoch}
        if since is not None and not recovered:
            previous = self.position
            self._seq = seq if isinstance(seq, int) else None
            self._epoch = epoch if isinstance(epoch, str) else None
            await self._owner._dispatch(self._run_reset, {**self.position, "previous": previous})
            return
        events = result.get("events")
        for envelope in events if isinstance(events, list) else []:
            if isinstance(envelope, dict):
                await self._deliver(envelope)
        if isinstance(seq, int) and (self._seq is None or seq > self._seq):
            self._seq = seq
        if isinstance(epoch, str):
            self._epoch = epoch

    async def _deliver(self, envelope: Frame) -> None:
        """Deliver one event unless it was seen already (``seq`` <= the last one)."""
        seq = envelope.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            if self._seq is not None and seq <= self._seq:
                logger.debug("room %r: skipping duplicate seq %d", self.id, seq)
                return
            self._seq = seq
        if self.closed or envelope.get("event") in self.excluded:
            return
        if not self._started:
            self._backlog.append(envelope)
            return
        await self._emit(envelope)

    def _start(self) -> None:
        """Begin delivery on the next loop turn, after `join` has returned the room."""
        self._flush_task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._backlog:
            await self._emit(self._backlog.pop(0))
        self._started = True

    async def _emit(self, envelope: Frame) -> None:
        self._mailbox.push(envelope)
        event = envelope.get("event")
        if (isinstance(event, str) and self._handlers.get(event)) or self._handlers.get("*"):
            await self._owner._dispatch(self._run_handlers, envelope)

    async def _run_handlers(self, envelope: Frame) -> None:
        event = envelope.get("event")
        for key in (event, "*") if isinstance(event, str) and event != "*" else ("*",):
            handlers = self._handlers.get(key)
            for handler in handlers.snapshot() if handlers else []:
                await invoke(handler, envelope)

    async def _run_reset(self, position: Frame) -> None:
        for handler in self._reset_handlers.snapshot():
            await invoke(handler, position)

    def _close(self) -> None:
        self._mailbox.close()
        self._backlog.clear()
        if self._flush_task is not None and not self._flush_task.done():
            self._flush_task.cancel()
