"""dialogue-fastapi: real-time rooms and typed events for FastAPI."""

from .config import DialogueConfig, Hooks, RateLimit, Retention, RoomConfig
from .dialogue import Dialogue
from .errors import CloseCode, DialogueError, Reject
from .events import EventDefinition, define_event
from .pipeline import PublishContext
from .types import EventMessage, Identity, Position, PresenceEntry

__all__ = [
    "CloseCode",
    "Dialogue",
    "DialogueConfig",
    "DialogueError",
    "EventDefinition",
    "EventMessage",
    "Hooks",
    "Identity",
    "Position",
    "PresenceEntry",
    "PublishContext",
    "RateLimit",
    "Reject",
    "Retention",
    "RoomConfig",
    "define_event",
]
