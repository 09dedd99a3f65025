"""Router deployment: the public chat API (WebSocket and HTTP) and the turn pipeline.

detect language -> translate French to English -> chat model (streaming) -> translate each
closed sentence back to French as soon as the English stream closes it.
"""

# No `from __future__ import annotations`: FastAPI must see the real Request/WebSocket types
# through Serve's class-based view.

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from serving.config import RouterSettings
from serving.errors import (
    ChatServiceError,
    GenerationError,
    InvalidRequestError,
    ServiceBusyError,
    UnauthorizedError,
)
from serving.metrics import ChatMetrics
from serving.openai_api import (
    Completion,
    error_body,
    generation_options,
    model_list,
    parse_completion_request,
    split_conversation,
    sse,
    status_for,
)
from serving.protocol import (
    ChatRequest,
    PromptInfo,
    ReplyInfo,
    Turn,
    delta_event,
    done_event,
    error_event,
    parse_request,
    start_event,
)
from serving.security import bearer, origin_allowed, token_matches
from serving.sentences import SentenceBuffer, separator_after


def english_separator(previous: str) -> str:
    """Between two English sentences as the chat model wrote them (a line end is kept)."""
    return "" if previous.endswith("\n") else " "


logger = logging.getLogger("ray.serve")


def _silent(seconds: float) -> GenerationError:
    return GenerationError(f"A model gave no answer for {seconds:.0f} s. Try again in a moment.")


async def answered(response: Awaitable[Any], seconds: float) -> Any:
    """A handle call's result, or ``GenerationError`` after ``seconds`` of waiting."""
    try:
        return await asyncio.wait_for(response, seconds)
    except asyncio.TimeoutError:
        raise _silent(seconds) from None


def _retrieve(task: asyncio.Future) -> None:
    """Read a left-behind step's end, so that asyncio logs no 'exception never retrieved'."""
    if not task.cancelled():
        task.exception()


async def within(stream: AsyncIterator[Any], seconds: float) -> AsyncIterator[Any]:
    """``stream``'s items, failing the turn when the next one takes longer than ``seconds``.

    A handle request to a replica that died, or that waits for a replica that never comes, can
    otherwise wait for ever: a client must get its reply or an error, never silence.
    """
    while True:
        step = asyncio.ensure_future(anext(stream))
        try:
            done, _ = await asyncio.wait({step}, timeout=seconds)
        finally:
            if not step.done():  # timed out, or this turn was cancelled meanwhile
                step.cancel()
                step.add_done_callback(_retrieve)
        if not done:
            raise _silent(seconds)
        try:
            item = step.result()
        except StopAsyncIteration:
            return
        yield item


# English versions of French texts this replica has seen (OpenAI clients send their history in
# French): a conversation's history is translated once, not at every turn.
ENGLISH_CACHE_SIZE = 4096

api = FastAPI(title="Polyglot chat API", docs_url="/docs", redoc_url=None)


def error_headers(error: ChatServiceError) -> dict[str, str] | None:
    if isinstance(error, ServiceBusyError):
        return {"Retry-After": "5"}
    if isinstance(error, UnauthorizedError):
        return {"WWW-Authenticate": "Bearer"}
    return None


def check_token(presented: str | None, token: str | None) -> None:
    if not token_matches(presented, token):
        raise UnauthorizedError(
            "This service needs its access token: send 'Authorization: Bearer <token>' "
            "(the token run.py printed, or security.api_token)."
        )


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


@serve.ingress(api)
class Router:
    """Runs one chat turn through the graph and streams events to API clients."""

    def __init__(
        self,
        detector: DeploymentHandle,
        fr_en: DeploymentHandle,
        en_fr: DeploymentHandle,
        chat: DeploymentHandle,
        settings: RouterSettings,
        token: str | None = None,
    ) -> None:
        self.detector = detector
        self.fr_en = fr_en
        self.en_fr = en_fr.options(stream=True)
        self.chat = chat.options(stream=True)
        self.settings = settings
        self.token = token  # None: no credentials needed (loopback, or security.auth off)
        self.metrics = ChatMetrics()
        self.started = int(time.time())
        self._english: OrderedDict[str, str] = OrderedDict()

    async def run_turn(
        self, request: ChatRequest, api: str, options: dict[str, Any] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Events of one turn: start, deltas in the user's language, done.

        ``api`` tags the metrics; ``options`` are a client's decoding options (OpenAI API).
        """
        started = time.monotonic()
        silence = self.settings.model_silence_s
        language = await answered(self.detector.detect.remote(request.message), silence)
        self.metrics.turn(language, api)
        if language == "fr":
            message_en = await answered(self.fr_en.translate.remote(request.message), silence)
            self.metrics.translation.observe(
                time.monotonic() - started, tags={"direction": "fr-en"}
            )
        else:
            message_en = request.message
        history = [turn.model_dump() for turn in request.history]
        english = self.chat.stream.remote(history, message_en, options)
        replies = within(english, silence)
        end: list[ReplyInfo] = []
        try:
            prompt: PromptInfo = await anext(replies)
            yield start_event(language, message_en, prompt.history_dropped)
            reply_en: list[str] = []
            reply: list[str] = []
            texts = self._texts(replies, end)
            deltas = (
                self._relay(texts, reply_en)
                if language == "en"
                else self._to_french(texts, reply_en)
            )
            async for delta in deltas:
                if not reply:
                    self.metrics.time_to_first_token.observe(
                        time.monotonic() - started, tags={"language": language}
                    )
                reply.append(delta["text"])
                yield delta
        except BaseException:
            # The client left or a step failed: a handle stream is not cancelled by our own
            # cancellation, so stop the chat model's generate explicitly.
            english.cancel()
            raise
        info = end[0] if end else ReplyInfo(0, "stop")
        if info.completion_tokens:
            self.metrics.generated_tokens.inc(info.completion_tokens)
        reply_text, reply_en_text = "".join(reply).strip(), "".join(reply_en).strip()
        if language == "fr":
            self._remember(request.message, message_en)
            self._remember(reply_text, reply_en_text)
        yield done_event(
            reply_text,
            reply_en_text,
            message_en,
            language,
            prompt.history_dropped,
            usage={
                "prompt_tokens": prompt.prompt_tokens,
                "completion_tokens": info.completion_tokens,
                "total_tokens": prompt.prompt_tokens + info.completion_tokens,
            },
            finish_reason=info.finish_reason,
        )

    @staticmethod
    async def _texts(english: AsyncIterator[Any], end: list[ReplyInfo]) -> AsyncIterator[str]:
        """The reply's text pieces; the stream's closing ``ReplyInfo`` goes to ``end``."""
        async for item in english:
            if isinstance(item, ReplyInfo):
                end.append(item)
            else:
                yield item

    def _remember(self, text: str, english: str) -> None:
        self._english[text] = english
        self._english.move_to_end(text)
        while len(self._english) > ENGLISH_CACHE_SIZE:
            self._english.popitem(last=False)

    async def _to_english(self, text: str) -> str:
        """A history entry in English: known already, detected English, or translated."""
        if (known := self._english.get(text)) is not None:
            return known
        if not text.strip() or await self.detector.detect.remote(text) != "fr":
            return text
        english = await self.fr_en.translate.remote(text)
        self._remember(text, english)
        return english

    @staticmethod
    async def _relay(english: AsyncIterator[str], sink: list[str]) -> AsyncIterator[dict]:
        async for piece in english:
            if not sink:
                piece = piece.lstrip()
            sink.append(piece)
            if piece:
                yield delta_event(piece)

    async def _to_french(self, english: AsyncIterator[str], sink: list[str]) -> AsyncIterator[dict]:
        """Translate each English sentence once it closes, while the chat model keeps going.

        The first delta of each sentence also carries that sentence in English (``text_en``), so
        a client that stops mid-reply still knows what the model said up to there.
        """
        sentences: asyncio.Queue[str | BaseException | None] = asyncio.Queue()

        async def cut() -> None:
            buffer = SentenceBuffer(self.settings.max_sentence_chars)
            try:
                async for piece in english:
                    sink.append(piece)
                    for sentence in buffer.feed(piece):
                        sentences.put_nowait(sentence)
                if rest := buffer.flush():
                    sentences.put_nowait(rest)
                sentences.put_nowait(None)
            except Exception as exc:  # handed to the consumer, which raises it in order
                sentences.put_nowait(exc)

        cutter = asyncio.create_task(cut())
        try:
            previous = None
            while (item := await sentences.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                text_en = item if previous is None else english_separator(previous) + item
                separator = "" if previous is None else separator_after(previous)
                asked = time.monotonic()
                french = self.en_fr.stream.remote(item)
                try:
                    async for piece in within(french, self.settings.model_silence_s):
                        yield delta_event(separator + piece, text_en)
                        separator, text_en = "", None
                except BaseException:
                    french.cancel()
                    raise
                self.metrics.translation.observe(
                    time.monotonic() - asked, tags={"direction": "en-fr"}
                )
                previous = item
        finally:
            cutter.cancel()

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
        presented = bearer(websocket.headers.get("authorization"))
        if not token_matches(presented or websocket.query_params.get("token"), self.token):
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
            async for event in self.run_turn(request, "websocket"):
                await websocket.send_json(event)
        except (WebSocketDisconnect, asyncio.CancelledError):
            raise
        except Exception as exc:
            error = as_service_error(exc)
            self.metrics.error(error.code, "websocket")
            await websocket.send_json(error_event(error.code, error.message))

    @api.post("/chat")
    async def chat_once(self, request: Request) -> JSONResponse:
        """The same turn as one JSON answer: the ``done`` event without ``type``."""
        try:
            check_token(bearer(request.headers.get("authorization")), self.token)
            turn = parse_request(await request.body(), self.settings)
            async for event in self.run_turn(turn, "http"):
                if event["type"] == "done":
                    del event["type"]
                    return JSONResponse(event)
            raise GenerationError("The turn ended without a reply.")
        except Exception as exc:
            error = as_service_error(exc)
            self.metrics.error(error.code, "http")
            return JSONResponse(
                {"error": {"code": error.code, "message": error.message}},
                status_code=error.http_status,
                headers=error_headers(error),
            )

    @api.get("/v1/models")
    async def openai_models(self, request: Request) -> JSONResponse:
        """OpenAI-compatible: the one model this service answers as."""
        try:
            check_token(bearer(request.headers.get("authorization")), self.token)
        except UnauthorizedError as error:
            return JSONResponse(
                error_body(error), status_code=error.http_status, headers=error_headers(error)
            )
        return JSONResponse(model_list(self.settings.model_name, self.started))

    @api.post("/v1/chat/completions")
    async def openai_chat(self, request: Request):
        """OpenAI-compatible chat completions, streamed as server-sent events or whole.

        French is detected and translated as on the WebSocket. Failures before the first
        chunk are HTTP errors in OpenAI's shape; a failure mid-stream is an ``error`` event.
        """
        completion = Completion(self.settings.model_name)
        try:
            check_token(bearer(request.headers.get("authorization")), self.token)
            body = parse_completion_request(
                await request.body(), self.settings.model_name, self.settings.max_request_bytes
            )
            history, message = split_conversation(body)
            turn = parse_request({"message": message, "history": history}, self.settings)
            english = await asyncio.gather(*(self._to_english(t.content) for t in turn.history))
            history_en = [
                Turn(role=t.role, content=text)
                for t, text in zip(turn.history, english, strict=True)
            ]
            turn = ChatRequest(message=turn.message, history=history_en)
            events = self.run_turn(turn, "openai", generation_options(body))
            await anext(events)  # the start event: refusals (busy, too long) are still HTTP
            if body.stream:
                usage = bool(body.stream_options and body.stream_options.include_usage)
                return StreamingResponse(
                    self._openai_chunks(events, completion, usage),
                    media_type="text/event-stream",
                )
            async for event in events:
                if event["type"] == "done":
                    return JSONResponse(
                        completion.whole(event["reply"], event["finish_reason"], event["usage"])
                    )
            raise GenerationError("The turn ended without a reply.")
        except Exception as exc:
            error = as_service_error(exc)
            self.metrics.error(error.code, "openai")
            return JSONResponse(
                error_body(error), status_code=status_for(error), headers=error_headers(error)
            )

    async def _openai_chunks(
        self, events: AsyncIterator[dict[str, Any]], completion: Completion, usage: bool
    ) -> AsyncIterator[str]:
        try:
            yield sse(completion.chunk({"role": "assistant", "content": ""}))
            async for event in events:
                if event["type"] == "delta":
                    yield sse(completion.chunk({"content": event["text"]}))
                elif event["type"] == "done":
                    yield sse(completion.chunk({}, event["finish_reason"]))
                    if usage:
                        yield sse(completion.usage_chunk(event["usage"]))
        except Exception as exc:
            error = as_service_error(exc)
            self.metrics.error(error.code, "openai")
            yield sse(error_body(error))
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
