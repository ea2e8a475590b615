"""A lean receive path for subscribers, so the load generator is not the bottleneck.

The ``websockets`` client costs the load generator about as much CPU per
received frame as the server spends sending it, so with one core each the
benchmark measured the client. After the handshake, ``hello`` and ``join``
(all done by ``websockets``), a subscriber's transport is handed to this
protocol, which parses the server's (unmasked, unfragmented) frames directly
and decodes each text payload with orjson, like the ``websockets`` path does.
It answers pings (uvicorn pings every 20 s) and treats a close frame as the end.
"""

from __future__ import annotations

import asyncio
import struct
import time

import orjson
from _tally import Tally
from websockets.asyncio.client import ClientConnection

TEXT, CLOSE, PING = 0x1, 0x8, 0x9
_MASK0 = b"\x00\x00\x00\x00"  # a zero masking key is valid and leaves the payload as is


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A small masked client frame (payload < 126 bytes, as control frames are)."""
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + _MASK0 + payload


class FrameReader(asyncio.Protocol):
    """Counts ``event`` frames into a Tally; records latencies when the tally asks for them."""

    def __init__(self, transport: asyncio.Transport, tally: Tally) -> None:
        self.transport, self.tally = transport, tally
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos, end, tally, loads = 0, len(buf), self.tally, orjson.loads
        while end - pos >= 2:
            length, head = buf[pos + 1] & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                (length,), head = struct.unpack_from("!H", buf, pos + 2), 4
            elif length == 127:
                if end - pos < 10:
                    break
                (length,), head = struct.unpack_from("!Q", buf, pos + 2), 10
            stop = pos + head + length
            if stop > end:
                break
            opcode = buf[pos] & 0x0F
            if opcode == TEXT:
                msg = loads(buf[pos + head : stop])
                if msg.get("op") == "event":
                    tally.delivered += 1
                    if tally.record_from is not None and msg["data"]["i"] >= tally.record_from:
                        tally.latencies.append(time.time_ns() - msg["data"]["t"])
            elif opcode == PING:
                self.transport.write(client_frame(0xA, buf[pos + head : stop]))
            elif opcode == CLOSE:
                code = struct.unpack_from("!H", buf, pos + head)[0] if length >= 2 else None
                tally.closes[code] += 1
                self.transport.close()
                return
            pos = stop
        self.buf = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.buf = b""


def take_over(ws: ClientConnection, tally: Tally) -> FrameReader:
    """Detach a joined connection's transport from ``websockets`` and read it with a FrameReader."""
    transport = ws.transport
    reader = FrameReader(transport, tally)
    transport.set_protocol(reader)
    if not transport.is_reading():
        transport.resume_reading()
    return reader


async def keep_alive(readers: list[FrameReader], interval: float = 20.0) -> None:
    """Send ``ping`` now and then: dialogue closes connections silent for 3 heartbeats."""
    frame = client_frame(TEXT, b'{"op":"ping"}')
    while True:
        await asyncio.sleep(interval)
        for reader in readers:
            if not reader.transport.is_closing():
                reader.transport.write(frame)


def close_raw(reader: FrameReader) -> None:
    if not reader.transport.is_closing():
        reader.transport.write(client_frame(CLOSE, struct.pack("!H", 1000)))
        reader.transport.close()
