"""Python client for dialogue-fastapi's WebSocket endpoint.

```python
from dialogue_fastapi.client import DialogueClient

async with DialogueClient("ws://127.0.0.1:8000/dialogue/ws", token="...") as client:
    room = await client.join("chat")
    room.on("message", print)
    await room.publish("message", {"text": "hi"})
```
"""

from .client import DialogueClient
from .errors import DialogueClientError
from .handlers import ConnectionState
from .room import ClientRoom

__all__ = ["ClientRoom", "ConnectionState", "DialogueClient", "DialogueClientError"]
