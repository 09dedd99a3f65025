"""The page's client for the router's WebSocket API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import websockets

from serving.errors import ChatServiceError
from serving.events import DoneEvent, ErrorEvent, Event, parse_event


class ApiError(ChatServiceError):
    """An ``error`` event from the API, or the API being unreachable (shown on the page)."""

    def __init__(self, message: str, code: str = "unavailable") -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self):
        return (type(self), (self.message, self.code))


async def stream_turn(
    api_url: str,
    message: str,
    history_en: list[dict[str, str]],
    token: str | None = None,
    language: str | None = None,
) -> AsyncIterator[Event]:
    """Send one turn and yield the API's events until ``done``; raise ``ApiError`` on ``error``.

    ``token``: the API's access token, when it asks for one. ``language``: the conversation's
    so far, which a message too short to tell its own continues in.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        async with websockets.connect(
            api_url, open_timeout=10, max_size=None, additional_headers=headers
        ) as socket:
            request = {"message": message, "history": history_en, "language": language}
            await socket.send(json.dumps(request))
            async for raw in socket:
                event = parse_event(raw)
                if isinstance(event, ErrorEvent):
                    raise ApiError(event.message, event.code)
                yield event
                if isinstance(event, DoneEvent):
                    return
    except (OSError, websockets.exceptions.WebSocketException) as exc:
        raise ApiError(
            "The chat service cannot be reached right now (it may still be starting). "
            "Try again in a moment."
        ) from exc
    raise ApiError(
        "The chat service closed the connection before the reply was complete. Try again."
    )


def health_url(api_url: str) -> str:
    """ws://host:port/api/chat -> http://host:port/api/healthz"""
    http = api_url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
    return http.rsplit("/", 1)[0] + "/healthz"


async def api_ready(api_url: str) -> bool:
    """True when the API answers that every deployment is healthy."""
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(health_url(api_url))).status_code == 200
    except httpx.HTTPError:
        return False
