"""TCP_NODELAY on a connection's socket, whatever socket the server listened on.

asyncio turns Nagle's algorithm off only for sockets accepted from a listening
socket created with protocol ``IPPROTO_TCP``. uvicorn's own pre-bound socket
(``--workers N``, ``--reload``, ``--fd``) and gunicorn's are created with
protocol 0, and then the second of two frames sent back to back waits about
40 ms for the peer's delayed ACK. ASGI gives the application no socket, so
this reaches it through the server's protocol object where the server has
one (uvicorn: the ``receive`` callable is a method of it); elsewhere it does
nothing.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any


def ensure_nodelay(receive: Callable[..., Any] | None) -> bool:
    """Set TCP_NODELAY on the socket behind an ASGI ``receive``; True if it is set."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    get_extra = getattr(transport, "get_extra_info", None)
    if get_extra is None:
        return False
    sock = get_extra("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return False
    return True
