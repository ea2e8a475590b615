"""Plain value types shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is: ``Identity(user_id, meta={})``."""

    user_id: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Position:
    """A resumable position in a room: the last ``seq`` in an ``epoch``."""

    seq: int
    epoch: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "epoch": self.epoch}


@dataclass(slots=True)
class EventMessage:
    """One event in a room: the envelope of protocol section 1.

    ``seq`` is 0 until the broker has assigned the room's next position.
    """

    room: str
    event: str
    data: Any
    from_: str = "server"
    ts: int = 0
    seq: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    #: the encoded ``to_wire()`` once a broker made it (fan-out sends it as is)
    frame: str | None = field(default=None, compare=False, repr=False)
    #: the W3C ``traceparent`` of its broker publish, with tracing on (never sent to clients)
    traceparent: str | None = field(default=None, compare=False, repr=False)

    def to_wire(self) -> dict[str, Any]:
        """The JSON object clients receive (``op: event``)."""
        return {
            "op": "event", "room": self.room, "event": self.event, "data": self.data,
            "from": self.from_, "ts": self.ts, "seq": self.seq, "meta": self.meta,
        }

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> EventMessage:
        return cls(
            room=obj["room"], event=obj["event"], data=obj.get("data"),
            from_=obj.get("from", "server"), ts=int(obj.get("ts", 0)),
            seq=int(obj.get("seq", 0)), meta=dict(obj.get("meta") or {}),
            idempotency_key=obj.get("idempotency_key"), traceparent=obj.get("traceparent"),
        )

    def to_record(self) -> dict[str, Any]:
        """The envelope plus internal fields, for brokers and stores."""
        record = self.to_wire()
        if self.idempotency_key is not None:
            record["idempotency_key"] = self.idempotency_key
        if self.traceparent is not None:  # nodes of older versions ignore it
            record["traceparent"] = self.traceparent
        return record


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    """One connection present in a room."""

    user_id: str
    client_id: str

    def to_dict(self) -> dict[str, str]:
        return {"user_id": self.user_id, "client_id": self.client_id}
