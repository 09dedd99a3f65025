"""A WebSocket client turn, as any API client would run it."""

import json


async def ws_turn(socket, message: str, history: list[dict]) -> list[dict]:
    """Send one turn and return its events, ``start`` to ``done`` (or ``error``)."""
    await socket.send(json.dumps({"message": message, "history": history}))
    events = []
    async for raw in socket:
        events.append(json.loads(raw))
        if events[-1]["type"] in ("done", "error"):
            return events
    raise AssertionError("the socket closed in the middle of a turn")
