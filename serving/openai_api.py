"""OpenAI-compatible chat completions: the request schema and the response shapes.

The routes live on the Router (``serving.router``); this module only converts, so it is tested
without Serve. A client of this API sends its history in its own language (the OpenAI protocol
has no English side), so the router translates history entries in a served language to English
itself.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from serving.errors import ChatServiceError, InvalidRequestError, ModelNotFoundError
from serving.protocol import read_json


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str


STOP_SEQUENCES = 4  # at most, as OpenAI's API takes
STOP_SEQUENCE_CHARS = 256  # each: the replica looks for them after every token


class CompletionRequest(BaseModel):
    """The fields this service acts on or refuses. Other OpenAI options (``seed``, the
    penalties, ``logit_bias``, ``user``) are accepted and ignored: the service's own sampling
    settings apply (docs/api.md, "OpenAI-compatible API")."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[OpenAIMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    tools: list[Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _text_or_texts(cls, value: Any) -> Any:
        texts = isinstance(value, list) and all(isinstance(item, str) for item in value)
        if value is None or isinstance(value, str) or texts:
            return value
        raise ValueError("give a string or a list of strings")

    @property
    def stop_sequences(self) -> list[str]:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return [sequence for sequence in stop if sequence]


def parse_completion_request(
    raw: bytes | str, model_id: str, max_bytes: int = 512_000
) -> CompletionRequest:
    """Validate a request or raise an error that names what to fix."""
    data = read_json(raw, max_bytes, "The request body must be a JSON object.")
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    try:
        request = CompletionRequest.model_validate(data)
    except ValidationError as exc:
        item = exc.errors()[0]
        where = ".".join(str(part) for part in item["loc"]) or "request"
        message = item["msg"].removeprefix("Value error, ")
        problem = "is missing" if item["type"] == "missing" else f"is not valid: {message}"
        raise InvalidRequestError(f"'{where}' {problem}.") from None
    check_model(request.model, model_id)
    if request.n != 1:
        raise InvalidRequestError("Only one choice per request is supported: set n to 1.")
    if request.tools:
        raise InvalidRequestError("Tools (function calling) are not supported by this service.")
    if request.logprobs or request.top_logprobs:
        raise InvalidRequestError(
            "Log probabilities are not supported by this service: leave out logprobs and "
            "top_logprobs."
        )
    if request.response_format and request.response_format.type != "text":
        raise InvalidRequestError(
            f"Only text replies are supported, not {request.response_format.type!r}: leave out "
            "response_format, or set its type to 'text'."
        )
    if len(request.stop_sequences) > STOP_SEQUENCES:
        raise InvalidRequestError(f"'stop' takes at most {STOP_SEQUENCES} sequences.")
    if any(len(sequence) > STOP_SEQUENCE_CHARS for sequence in request.stop_sequences):
        raise InvalidRequestError(
            f"Each 'stop' sequence may have at most {STOP_SEQUENCE_CHARS} characters."
        )
    return request


def _text(message: OpenAIMessage) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    for part in message.content:
        if part.type != "text":
            raise InvalidRequestError(
                f"Only text content is supported; this message has a {part.type!r} part."
            )
    return "".join(part.text or "" for part in message.content)


def split_conversation(request: CompletionRequest) -> tuple[list[dict[str, str]], str]:
    """(history, message) in the client's own language.

    System and developer messages are left out: the service's system prompt is set in its
    config, and the small default model drifts when it is given another one.
    """
    turns: list[dict[str, str]] = []
    for message in request.messages:
        if message.role == "tool":
            raise InvalidRequestError("Tool messages are not supported by this service.")
        if message.role in ("user", "assistant"):
            turns.append({"role": message.role, "content": _text(message)})
    if not turns or turns[-1]["role"] != "user":
        raise InvalidRequestError("The last message must be the user's (role 'user').")
    return turns[:-1], turns[-1]["content"]


def generation_options(request: CompletionRequest) -> dict[str, Any]:
    """What the client asked of the chat model's decoding (capped by the service's config).

    ``stop`` ends the model's English reply before the first sequence it writes: on a
    translated turn, the reply is the translation of the text before it."""
    options: dict[str, Any] = {}
    if limit := request.max_completion_tokens or request.max_tokens:
        options["max_new_tokens"] = limit
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if stop := request.stop_sequences:
        options["stop"] = stop
    return options


class Completion:
    """Builds one completion's response objects (same id and timestamp throughout)."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def _base(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self, text: str, finish_reason: str, usage: dict[str, int]) -> dict[str, Any]:
        return {
            **self._base("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage,
        }

    def chunk(self, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            **self._base("chat.completion.chunk"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def usage_chunk(self, usage: dict[str, int]) -> dict[str, Any]:
        return {**self._base("chat.completion.chunk"), "choices": [], "usage": usage}


def check_model(asked: str, model_id: str) -> None:
    if asked != model_id:
        raise ModelNotFoundError(
            f"The model {asked!r} does not exist here: use {model_id!r} (GET /v1/models lists it)."
        )


def model_card(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "polyglot"}


def model_list(model_id: str, created: int) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(model_id, created)]}


def error_body(error: ChatServiceError) -> dict[str, Any]:
    kind = "invalid_request_error" if error.http_status < 500 else "server_error"
    return {"error": {"message": error.message, "type": kind, "param": None, "code": error.code}}


def status_for(error: ChatServiceError) -> int:
    """OpenAI answers a request it cannot accept with 400 (ours says 422 elsewhere)."""
    return 400 if error.http_status == InvalidRequestError.http_status else error.http_status


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event in OpenAI's format (``data: [DONE]`` ends the stream)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"
