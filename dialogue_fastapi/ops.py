"""The WebSocket commands: one function per op, each returning the reply's result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

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
from .connection import Connection
from .errors import Forbidden, NotInRoom
from .runtime import Runtime
from .types import Position

Reply = Callable[[dict[str, Any]], None]
Op = Callable[[Runtime, Connection, dict[str, Any], Reply], Awaitable[dict[str, Any] | None]]


def _joined(conn: Connection, room_id: str, action: str) -> Any:
    membership = conn.rooms.get(room_id)
    if membership is None:
        raise NotInRoom(f"join room '{room_id}' before you {action}")
    return membership


async def op_join(rt: Runtime, conn: Connection, frame: dict[str, Any], reply: Reply) -> None:
    cmd: JoinCommand = parse(JoinCommand, frame)
    rt.admin.check_id(cmd.room)
    since = Position(cmd.since.seq, cmd.since.epoch) if cmd.since is not None else None
    await rt.membership.join(conn, cmd.room, subscriptions=cmd.subscriptions, since=since,
                             history=cmd.history, send_reply=reply)
    return None  # the reply was queued by join itself, before any live event


async def op_leave(rt: Runtime, conn: Connection, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: RoomCommand = parse(RoomCommand, frame)
    if not await rt.membership.leave(conn, cmd.room):
        raise NotInRoom(f"not in room '{cmd.room}'")
    return {}


async def op_subscribe(rt: Runtime, conn: Connection, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: SubscribeCommand = parse(SubscribeCommand, frame)
    membership = _joined(conn, cmd.room, "subscribe")
    room = rt.registry.get(cmd.room)
    events = rt.membership.subscriptions(room, cmd.events)
    membership.subscribe(events)
    return dict(membership.describe())


async def op_unsubscribe(rt: Runtime, conn: Connection, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: UnsubscribeCommand = parse(UnsubscribeCommand, frame)
    membership = _joined(conn, cmd.room, "unsubscribe")
    membership.unsubscribe(frozenset(cmd.events))
    return dict(membership.describe())


async def op_publish(rt: Runtime, conn: Connection, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: PublishCommand = parse(PublishCommand, frame)
    room = rt.registry.get(cmd.room)
    if conn.transport.kind not in room.config.channels:
        raise Forbidden(f"room '{cmd.room}' is not available over {conn.transport.kind}")
    outcome = await rt.publisher.publish(
        room, cmd.event, cmd.data, identity=conn.identity, transport=conn.transport.kind,
        client_id=conn.client_id, joined=cmd.room in conn.rooms, meta=cmd.meta,
        idempotency_key=cmd.idempotency_key, ip=conn.ip, tools=conn.tools,
    )
    if outcome.message is None:
        return {"seq": None, "ts": None, "dropped": True}
    result: dict[str, Any] = {"seq": outcome.message.seq, "ts": outcome.message.ts}
    if outcome.duplicate:
        result["duplicate"] = True
    return result


async def op_history(rt: Runtime, conn: Connection, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: HistoryCommand = parse(HistoryCommand, frame)
    room = rt.registry.get(cmd.room)
    _joined(conn, cmd.room, "read its history")
    events = await rt.history.page(room, event=cmd.event, limit=cmd.limit,
                                   before=cmd.before, after=cmd.after, sender=cmd.sender,
                                   since_ts=cmd.since_ts, until_ts=cmd.until_ts)
    position = await rt.broker.position(cmd.room)
    return {"events": [m.to_wire() for m in events], "position": position.to_dict()}


async def op_presence(rt: Runtime, conn: Connection, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: RoomCommand = parse(RoomCommand, frame)
    rt.registry.get(cmd.room)
    members = await rt.broker.presence.members(cmd.room)
    return {"count": len(members), "users": [m.to_dict() for m in members]}


async def op_rooms(rt: Runtime, conn: Connection, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    parse(EmptyCommand, frame)
    rooms = [r.info(await rt.broker.presence.count(r.id)) for r in rt.registry.all()]
    return {"rooms": rooms}


async def op_create_room(rt: Runtime, conn: Connection, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: CreateRoomCommand = parse(CreateRoomCommand, frame)
    if not rt.config.allow_client_rooms:
        raise Forbidden("clients may not create rooms on this server")
    config = rt.admin.config_from_client(
        cmd.name, cmd.description, cmd.max_size, cmd.events,
        presence_events=cmd.presence_events, sync_history_on_join=cmd.sync_history_on_join,
    )
    room = await rt.admin.create(cmd.room, config, created_by=conn.user_id)
    return room.info(0)


async def op_delete_room(rt: Runtime, conn: Connection, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    cmd: RoomCommand = parse(RoomCommand, frame)
    await rt.admin.delete(cmd.room, by=conn.identity)
    return {}


async def op_ping(rt: Runtime, conn: Connection, frame: dict[str, Any], _: Reply) -> dict[str, Any]:
    return {}


OPS: dict[str, Op] = {
    "join": op_join, "leave": op_leave, "subscribe": op_subscribe,
    "unsubscribe": op_unsubscribe, "publish": op_publish, "history": op_history,
    "presence": op_presence, "rooms": op_rooms, "create_room": op_create_room,
    "delete_room": op_delete_room, "ping": op_ping,
}
