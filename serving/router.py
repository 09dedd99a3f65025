"""Router deployment: the chat API's doors (WebSocket, HTTP, OpenAI, health).

Each door parses its request, checks the token (``_check_token``), runs the turn
(``serving.turn.TurnPipeline``) and writes its events in the door's format. Failures become
what a client is told in one place (``as_service_error``) and go out in one body shape per
protocol (``_refusal``).
"""

# No `from __future__ import annotations`: FastAPI must see the real Request/WebSocket types
# through Serve's class-based view.

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.requests import HTTPConnection

from serving.config import RouterSettings
from serving.errors import (
    ChatServiceError,
    GenerationError,
    InvalidRequestError,
    ServiceBusyError,
    UnauthorizedError,
)
from serving.events import DeltaEvent, DoneEvent, ErrorEvent, Event
from serving.metrics import ChatMetrics
from serving.model_handles import ServeModels
from serving.openai_api import (
    Completion,
    check_model,
    error_body,
    generation_options,
    model_card,
    model_list,
    parse_completion_request,
    split_conversation,
    sse,
    status_for,
)
from serving.protocol import parse_request
from serving.security import bearer, origin_allowed, token_matches
from serving.turn import TurnPipeline

logger = logging.getLogger("ray.serve")

api = FastAPI(title="Polyglot chat API", docs_url="/docs", redoc_url=None)


def as_service_error(exc: BaseException) -> ChatServiceError:
    """The one place where failures become what a client is told (details stay in the log)."""
    if isinstance(exc, RayTaskError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, ChatServiceError):
        return exc
    if isinstance(exc, BackPressureError):
        return ServiceBusyError("The service is busy right now. Try again in a few seconds.")
    if isinstance(exc, RayActorError):
        return GenerationError("A model worker stopped while answering. Try again in a moment.")
    logger.error("Unexpected failure while answering", exc_info=exc)
    return ChatServiceError("Something went wrong while answering. Please try again.")


def error_headers(error: ChatServiceError) -> dict[str, str] | None:
    if isinstance(error, ServiceBusyError):
        return {"Retry-After": "5"}
    if isinstance(error, UnauthorizedError):
        return {"WWW-Authenticate": "Bearer"}
    return None


async def _done(events: AsyncIterator[Event]) -> DoneEvent:
    """A turn's last event, once its deltas have gone by."""
    async for event in events:
        if isinstance(event, DoneEvent):
            return event
    raise GenerationError("The turn ended without a reply.")


@serve.ingress(api)
class Router:
    """The chat API: runs each request's turn and writes its events in the door's format."""

    def __init__(
        self,
        detector: DeploymentHandle,
        translator: DeploymentHandle,
        chat: DeploymentHandle,
        settings: RouterSettings,
        token: str | None = None,
    ) -> None:
        self.settings = settings
        self.token = token  # None: no credentials needed (loopback, or security.auth off)
        self.metrics = ChatMetrics()
        self.turns = TurnPipeline(ServeModels(detector, translator, chat), settings, self.metrics)
        self.started = int(time.time())

    def _check_token(self, connection: HTTPConnection) -> None:
        """Every door's access check: a bearer token, or on a WebSocket ``?token=`` (a browser
        cannot set a WebSocket's headers)."""
        presented = bearer(connection.headers.get("authorization"))
        if connection.scope["type"] == "websocket":
            presented = presented or connection.query_params.get("token")
        if not token_matches(presented, self.token):
            raise UnauthorizedError(
                "This service needs its access token: send 'Authorization: Bearer <token>' "
                "(the token run.py printed, or security.api_token)."
            )

    def _failed(self, exc: BaseException, api: str) -> ChatServiceError:
        """A failure as the client is told it, counted under its API."""
        error = as_service_error(exc)
        self.metrics.error(error.code, api)
        return error

    def _refusal(self, exc: BaseException, api: str) -> JSONResponse:
        """A failed HTTP request's response: OpenAI's error shape on its API, else ours."""
        error = self._failed(exc, api)
        if api == "openai":
            body, status = error_body(error), status_for(error)
        else:
            event = ErrorEvent(code=error.code, message=error.message)
            body, status = {"error": event.model_dump(exclude={"type"})}, error.http_status
        return JSONResponse(body, status_code=status, headers=error_headers(error))

    @api.websocket("/chat")
    async def chat_socket(self, websocket: WebSocket) -> None:
        """Many turns per connection; every failure is an ``error`` event, never a silent close.

        A reader task watches the socket while a turn streams: if the client leaves mid-reply,
        the turn is cancelled at once and the models stop, instead of writing to nobody.
        """
        origin, host = websocket.headers.get("origin"), websocket.headers.get("host")
        if not origin_allowed(origin, host, self.settings.allowed_origins):
            logger.warning("WebSocket from origin %s refused (router.allowed_origins)", origin)
            await websocket.close(code=1008)  # before accept: the handshake gets HTTP 403
            return
        try:
            self._check_token(websocket)
        except UnauthorizedError:
            await websocket.close(code=1008)  # 403: no or wrong access token
            return
        await websocket.accept()
        frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def read() -> None:
            while True:
                frame = await websocket.receive()
                frames.put_nowait(frame)
                if frame["type"] == "websocket.disconnect":
                    return

        reader = asyncio.create_task(read())
        try:
            while (frame := await frames.get())["type"] != "websocket.disconnect":
                turn = asyncio.create_task(self._answer(websocket, frame))
                await asyncio.wait({turn, reader}, return_when=asyncio.FIRST_COMPLETED)
                if not turn.done():  # the client left mid-turn
                    turn.cancel()
                    await asyncio.gather(turn, return_exceptions=True)
                    return
                turn.result()
        except WebSocketDisconnect:
            return
        finally:
            reader.cancel()

    async def _answer(self, websocket: WebSocket, frame: dict[str, Any]) -> None:
        """One turn on the socket: its events, or one ``error`` event."""
        try:
            if frame.get("text") is None:
                raise InvalidRequestError("Send each turn as a JSON text frame, not binary.")
            request = parse_request(frame["text"], self.settings)
            async for event in self.turns.run(request, "websocket"):
                await websocket.send_json(event.wire())
        except (WebSocketDisconnect, asyncio.CancelledError):
            raise
        except Exception as exc:
            error = self._failed(exc, "websocket")
            await websocket.send_json(ErrorEvent(code=error.code, message=error.message).wire())

    @api.post("/chat")
    async def chat_once(self, request: Request) -> JSONResponse:
        """The same turn as one JSON answer: the ``done`` event without ``type``."""
        try:
            self._check_token(request)
            turn = parse_request(await request.body(), self.settings)
            return JSONResponse((await _done(self.turns.run(turn, "http"))).answer())
        except Exception as exc:
            return self._refusal(exc, "http")

    @api.get("/v1/models")
    async def openai_models(self, request: Request) -> JSONResponse:
        """OpenAI-compatible: the one model this service answers as."""
        try:
            self._check_token(request)
        except UnauthorizedError as exc:
            return self._refusal(exc, "openai")
        return JSONResponse(model_list(self.settings.model_name, self.started))

    @api.get("/v1/models/{model:path}")
    async def openai_model(self, model: str, request: Request) -> JSONResponse:
        """OpenAI-compatible: the model by its id (``client.models.retrieve``), else 404."""
        try:
            self._check_token(request)
            check_model(model, self.settings.model_name)
        except Exception as exc:
            return self._refusal(exc, "openai")
        return JSONResponse(model_card(self.settings.model_name, self.started))

    @api.post("/v1/chat/completions")
    async def openai_chat(self, request: Request):
        """OpenAI-compatible chat completions, streamed as server-sent events or whole.

        Served languages are detected and translated as on the WebSocket. Failures before the first
        chunk are HTTP errors in OpenAI's shape; a failure mid-stream is an ``error`` event.
        """
        completion = Completion(self.settings.model_name)
        try:
            self._check_token(request)
            body = parse_completion_request(
                await request.body(), self.settings.model_name, self.settings.max_request_bytes
            )
            history, message = split_conversation(body)
            turn = parse_request({"message": message, "history": history}, self.settings)
            turn = await self.turns.in_english(turn)
            events = self.turns.run(turn, "openai", generation_options(body))
            await anext(events)  # the start event: refusals (busy, too long) are still HTTP
            if body.stream:
                usage = bool(body.stream_options and body.stream_options.include_usage)
                return StreamingResponse(
                    self._openai_chunks(events, completion, usage),
                    media_type="text/event-stream",
                )
            done = await _done(events)
            return JSONResponse(
                completion.whole(done.reply, done.finish_reason, done.usage.model_dump())
            )
        except Exception as exc:
            return self._refusal(exc, "openai")

    async def _openai_chunks(
        self, events: AsyncIterator[Event], completion: Completion, usage: bool
    ) -> AsyncIterator[str]:
        try:
            yield sse(completion.chunk({"role": "assistant", "content": ""}))
            async for event in events:
                if isinstance(event, DeltaEvent):
                    yield sse(completion.chunk({"content": event.text}))
                elif isinstance(event, DoneEvent):
                    yield sse(completion.chunk({}, event.finish_reason))
                    if usage:
                        yield sse(completion.usage_chunk(event.usage.model_dump()))
        except Exception as exc:
            yield sse(error_body(self._failed(exc, "openai")))
        yield sse("[DONE]")

    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        """200 when every deployment of every application is healthy, else 503; lists each."""
        status = await asyncio.to_thread(serve.status)
        deployments = {
            f"{app_name}/{name}": str(getattr(info.status, "value", info.status))
            for app_name, app in status.applications.items()
            for name, info in app.deployments.items()
        }
        healthy = bool(deployments) and all(state == "HEALTHY" for state in deployments.values())
        return JSONResponse(
            {"status": "ok" if healthy else "unhealthy", "deployments": deployments},
            status_code=200 if healthy else 503,
        )
