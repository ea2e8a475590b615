"""The WebSocket commands: parse the frame, call the use case, shape the reply.

Nothing here decides: the rules are in :mod:`dialogue_fastapi.usecases`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..core.types import Position
from ..node.connection import Connection
from ..usecases import (
    Caller,
    CreateRoomRequest,
    HistoryRequest,
    JoinRequest,
    PublishRequest,
    UseCases,
)
from .commands import (
    CreateRoomCommand,
    EmptyCommand,
    HistoryCommand,
    JoinCommand,
    PublishCommand,
    RoomCommand,
    SubscribeCommand,
    UnsubscribeCommand,
    parse,
)

Reply = Callable[[dict[str, Any]], None]
Op = Callable[[UseCases, Caller, dict[str, Any], Reply], Awaitable[dict[str, Any] | None]]


def live(caller: Caller) -> Connection:
    """The WebSocket connection of a command's caller."""
    assert caller.conn is not None, "WebSocket ops run for a live connection"
    return caller.conn


async def op_join(uc: UseCases, caller: Caller, frame: dict[str, Any], reply: Reply) -> None:
    cmd: JoinCommand = parse(JoinCommand, frame)
    since = Position(cmd.since.seq, cmd.since.epoch) if cmd.since is not None else None
    await uc.members.join(live(caller), JoinRequest(cmd.room, cmd.subscriptions, since, cmd.history), reply)
    return None  # the reply was queued by join itself, before any live event


async def op_leave(uc: UseCases, caller: Caller, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: RoomCommand = parse(RoomCommand, frame)
    await uc.members.leave(live(caller), cmd.room)
    return {}


async def op_subscribe(uc: UseCases, caller: Caller, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: SubscribeCommand = parse(SubscribeCommand, frame)
    return uc.members.subscribe(live(caller), cmd.room, cmd.events)


async def op_unsubscribe(uc: UseCases, caller: Caller, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: UnsubscribeCommand = parse(UnsubscribeCommand, frame)
    return uc.members.unsubscribe(live(caller), cmd.room, cmd.events)


async def op_publish(uc: UseCases, caller: Caller, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: PublishCommand = parse(PublishCommand, frame)
    request = PublishRequest(cmd.room, cmd.event, cmd.data, cmd.meta, cmd.idempotency_key)
    return (await uc.publishing.publish(caller, request)).ack()


async def op_history(uc: UseCases, caller: Caller, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: HistoryCommand = parse(HistoryCommand, frame)
    events, position = await uc.reading.history(caller, HistoryRequest(
        cmd.room, cmd.event, cmd.limit, cmd.before, cmd.after, cmd.sender, cmd.since_ts,
        cmd.until_ts))
    return {"events": [m.to_wire() for m in events], "position": position.to_dict()}


async def op_presence(uc: UseCases, caller: Caller, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: RoomCommand = parse(RoomCommand, frame)
    members = await uc.reading.presence(caller, cmd.room)
    return {"count": len(members), "users": [m.to_dict() for m in members]}


async def op_rooms(uc: UseCases, caller: Caller, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    parse(EmptyCommand, frame)
    return {"rooms": await uc.reading.rooms(caller)}


async def op_create_room(uc: UseCases, caller: Caller, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: CreateRoomCommand = parse(CreateRoomCommand, frame)
    room = await uc.rooms.create(caller, CreateRoomRequest(
        cmd.room, cmd.name, cmd.description, cmd.max_size, cmd.events,
        cmd.presence_events, cmd.sync_history_on_join))
    return room.info(0)


async def op_delete_room(uc: UseCases, caller: Caller, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: RoomCommand = parse(RoomCommand, frame)
    await uc.rooms.delete(caller, cmd.room)
    return {}


async def op_ping(uc: UseCases, caller: Caller, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    return {}


OPS: dict[str, Op] = {
    "join": op_join, "leave": op_leave, "subscribe": op_subscribe,
    "unsubscribe": op_unsubscribe, "publish": op_publish, "history": op_history,
    "presence": op_presence, "rooms": op_rooms, "create_room": op_create_room,
    "delete_room": op_delete_room, "ping": op_ping,
}
