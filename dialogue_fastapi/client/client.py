"""`DialogueClient`: the Python client for a dialogue-fastapi WebSocket endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from .handlers import Frame, Handler
from .notify import StateHandler
from .rest import RestClient
from .room import ClientRoom


class DialogueClient(RestClient):
    """A connection to ``ws://host/<prefix>/ws`` that joins rooms and survives drops.

    ``DialogueClient(url, *, token=None, headers=None, ack_timeout=10.0,
    reconnect=True, backoff_initial=0.25, backoff_max=10.0, heartbeat=None,
    queue_size=1024, token_in_query=False, http_url=None)``. ``token`` is sent as
    ``Authorization: Bearer`` only; ``token_in_query=True`` also puts it in
    the URL as ``?token=`` (for a server that reads only the query; URLs end
    up in access logs, so prefer the header). After an unexpected close the client reconnects with full
    jitter exponential backoff, rejoins its rooms from their last ``seq`` and
    delivers what was missed exactly once, in order. ``heartbeat`` overrides
    the server's ping interval (``0`` disables pings); ``queue_size`` bounds
    each room's iterator buffer. Use ``await client.connect()`` /
    ``await client.close()`` or ``async with DialogueClient(...) as client``.

    ``register_push`` / ``push_registrations`` / ``unregister_push`` call the REST API
    beside the endpoint (``http_url``, default: the ``ws`` URL without ``/ws``) with
    the same credentials.
    """

    async def request(self, op: str, /, **fields: Any) -> Frame:
        """Send ``{"op": op, "id": n, **fields}`` and return the reply's ``result``.

        Waits up to ``ack_timeout`` for a reconnect in progress. Raises
        `DialogueClientError` with the server's error code, ``TIMEOUT`` when
        no reply came within ``ack_timeout``, or ``UNAVAILABLE`` when the
        connection was lost or the client is closed.
        """
        conn = await self._ready_connection()
        return await conn.request({"op": op, **fields})

    async def join(
        self,
        room_id: str,
        subscriptions: list[str] | Literal["*"] | None = None,
        history: int | None = None,
    ) -> ClientRoom:
        """Join ``room_id`` and return its `ClientRoom` (the same object if already joined).

        ``subscriptions`` defaults to the room's defaults; ``history`` asks for
        the last N events, which reach the room's handlers and iterator first.
        Register handlers right after this returns, before the next ``await``.
        """
        if room_id in self._registry.rooms:
            return self._registry.rooms[room_id]
        frame: Frame = {"op": "join", "room": room_id}
        if subscriptions is not None:
            frame["subscriptions"] = subscriptions
        if history is not None:
            frame["history"] = history
        fresh = ClientRoom(self, room_id, queue_size=self.queue_size)
        joined: list[ClientRoom] = []

        async def apply(result: Frame) -> None:
            # Runs on the reader task: the room exists before its first live event.
            room = self._registry.rooms.setdefault(room_id, fresh)
            await room._apply_join(result, since=None)
            joined.append(room)

        conn = await self._ready_connection()
        await conn.request(frame, apply=apply)
        room = joined[0]
        if room is fresh:
            room._start()
        return room

    def room(self, room_id: str) -> ClientRoom | None:
        """The joined room ``room_id``, if any."""
        return self._registry.rooms.get(room_id)

    async def rooms(self) -> list[Frame]:
        """Every room's info object (``{"id", "name", "size", "events", ...}``)."""
        rooms = (await self.request("rooms")).get("rooms")
        return rooms if isinstance(rooms, list) else []

    async def create_room(
        self,
        room_id: str,
        name: str,
        description: str | None = None,
        max_size: int | None = None,
        events: list[str] | None = None,
        presence_events: bool | None = None,
        sync_history_on_join: int | None = None,
    ) -> Frame:
        """Create a runtime room; returns its info object.

        ``presence_events=True``: members get ``presence_join`` / ``presence_leave``
        frames; ``sync_history_on_join=N``: the newest N events come with each join.
        """
        optional = {"description": description, "max_size": max_size, "events": events,
                    "presence_events": presence_events,
                    "sync_history_on_join": sync_history_on_join}
        fields = {k: v for k, v in optional.items() if v is not None}
        return await self.request("create_room", room=room_id, name=name, **fields)

    async def delete_room(self, room_id: str) -> None:
        """Delete a runtime room (its members are removed from it)."""
        await self.request("delete_room", room=room_id)

    def on_state(self, handler: StateHandler) -> Callable[[], None]:
        """Call ``handler(state)`` on every state change; returns its remover."""
        return self._notify.add_state(handler)

    def on_direct(self, handler: Handler) -> Callable[[], None]:
        """Handle ``{"op": "direct", "event", "data", "from", "ts"}`` frames."""
        return self._notify.add("direct", handler)

    def on_presence(self, handler: Handler) -> Callable[[], None]:
        """Handle ``presence_join`` / ``presence_leave`` frames (``room``, ``user_id``, ``client_id``)."""
        return self._notify.add("presence", handler)

    def on_room_created(self, handler: Handler) -> Callable[[], None]:
        """Handle ``{"op": "room_created", "room": info}`` frames."""
        return self._notify.add("room_created", handler)

    def on_room_deleted(self, handler: Handler) -> Callable[[], None]:
        """Handle ``{"op": "room_deleted", "room": id}`` frames (a joined room ends first)."""
        return self._notify.add("room_deleted", handler)

    def on_error(self, handler: Handler) -> Callable[[], None]:
        """Handle ``{"op": "error", "error"}`` frames, and rooms lost on rejoin (with ``room``)."""
        return self._notify.add("error", handler)
