"""Clients for each layer of the stack, timed the same way, and the statistics of their samples."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from serving.events import ChatReply, DeltaEvent, DoneEvent, ErrorEvent, parse_event


@dataclass
class Sample:
    """One request: time to first text, the gaps between text pieces, total time, pieces."""

    ttft: float
    total: float
    gaps: list[float] = field(default_factory=list)
    pieces: int = 0


class _Clock:
    """Times text arriving: the first piece, the gaps between pieces, the total."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.first: float | None = None
        self.gaps: list[float] = []
        self.pieces = 0

    def tick(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now - self.start
        else:
            self.gaps.append(now - self.last)
        self.last, self.pieces = now, self.pieces + 1

    def sample(self) -> Sample:
        total = time.perf_counter() - self.start
        ttft = self.first if self.first is not None else total
        return Sample(ttft=ttft, total=total, gaps=self.gaps, pieces=self.pieces)


async def timed(stream: AsyncIterator[str]) -> Sample:
    """Time a stream of text pieces from now: the first non-empty piece is the first token."""
    clock = _Clock()
    async for piece in stream:
        if piece:
            clock.tick()
    return clock.sample()


def percentile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples: list[Sample], tokens_per_request: int) -> dict[str, float]:
    """p50/p95 of time to first token and total latency, median inter-token gap, tokens/s."""
    gaps = [gap for sample in samples for gap in sample.gaps]
    return {
        "requests": len(samples),
        "ttft_p50_ms": 1000 * percentile((s.ttft for s in samples), 0.5),
        "ttft_p95_ms": 1000 * percentile((s.ttft for s in samples), 0.95),
        "itl_p50_ms": 1000 * percentile(gaps, 0.5),
        "itl_mean_ms": 1000 * statistics.fmean(gaps) if gaps else float("nan"),
        "total_p50_s": percentile((s.total for s in samples), 0.5),
        "total_p95_s": percentile((s.total for s in samples), 0.95),
        "tokens_per_s": tokens_per_request * len(samples) / sum(s.total for s in samples),
        # After the first token: the engine's decoding speed as this layer's client sees it.
        "decode_tokens_per_s": (tokens_per_request - 1)
        * len(samples)
        / sum(max(s.total - s.ttft, 1e-9) for s in samples),
    }


async def direct_pieces(model, message: str) -> AsyncIterator[str]:
    """The limit: ``ChatModel.stream`` in this process, on the same engine as the replicas."""
    reply = ChatReply(model.stream([], message))
    await reply.prompt()
    async for piece in reply.texts():
        yield piece


async def handle_pieces(handle, message: str) -> AsyncIterator[str]:
    """Through a streaming DeploymentHandle to the ChatModel replica."""
    reply = ChatReply(handle.stream.remote([], message))
    await reply.prompt()
    async for piece in reply.texts():
        yield piece


async def socket_pieces(socket, message: str, events: list | None = None) -> AsyncIterator[str]:
    """Through the public WebSocket API (proxy, router, detector, chat model)."""
    await socket.send(json.dumps({"message": message, "history": []}))
    async for raw in socket:
        event = parse_event(raw)
        if events is not None:
            events.append(event)
        if isinstance(event, DeltaEvent):
            yield event.text
        elif isinstance(event, DoneEvent):
            return
        elif isinstance(event, ErrorEvent):
            raise RuntimeError(f"{event.code}: {event.message}")


def _text(message: dict) -> str:
    """A chat message's text: Gradio sends a string or a list of content parts."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def gradio_sample(client, message: str) -> Sample:
    """Through the page's own API (gradio_client): updates of the last chat message."""
    clock = _Clock()
    seen = ""
    for update in client.submit(message, [], api_name="/chat"):
        chat = update[0]
        text = _text(chat[-1]) if len(chat) >= 2 and chat[-1]["role"] == "assistant" else ""
        if len(text) > len(seen):
            clock.tick()
            seen = text
    return clock.sample()
