"""TCP_NODELAY is set on WebSocket connections even when the server's listening socket
was created without IPPROTO_TCP (uvicorn --workers, gunicorn), where asyncio does not."""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from fastapi import FastAPI

from dialogue_fastapi import Dialogue, RoomConfig
from dialogue_fastapi.testing import WsProbe
from dialogue_fastapi.websocket.nodelay import ensure_nodelay


async def test_websocket_sockets_get_nodelay_on_a_plain_listening_socket() -> None:
    dialogue = Dialogue(rooms={"r": RoomConfig(name="r")}, allow_anonymous=True)
    app = FastAPI()
    app.include_router(dialogue.router)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0, like uvicorn's own
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="websockets-sansio",
                                           lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        probe = await WsProbe.open(f"ws://127.0.0.1:{port}/ws")
        try:
            await probe.request("join", room="r")
            conns = list(dialogue._runtime.hub.connections.values())
            assert len(conns) == 1
            ws = conns[0].transport._ws  # type: ignore[attr-defined]
            sock = ws._receive.__self__.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        finally:
            await probe.close()
    finally:
        server.should_exit = True
        await task
        listener.close()


def test_without_a_server_socket_it_does_nothing() -> None:
    assert ensure_nodelay(None) is False
    assert ensure_nodelay(lambda: None) is False
