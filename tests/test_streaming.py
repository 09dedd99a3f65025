import asyncio
import time
from pathlib import Path

from serving.model_config import ModelSpec
from serving.streaming import stream_generate
from serving.weights import load


def test_closing_the_stream_stops_generate_within_a_few_tokens(tiny_causal: Path):
    lm = load(ModelSpec(source=str(tiny_causal)))
    steps = 0
    forward = lm.model.forward

    def counting_forward(*args, **kwargs):
        nonlocal steps
        steps += 1
        return forward(*args, **kwargs)

    lm.model.forward = counting_forward
    inputs = lm.tokenizer("Hello, how are you?", return_tensors="pt")

    async def read_a_little_then_leave() -> int:
        stream = stream_generate(
            lm, dict(inputs), {"max_new_tokens": 400, "min_new_tokens": 400, "do_sample": False}
        )
        async for _ in stream:
            break
        await stream.aclose()  # what Serve does when the client goes away
        return steps

    at_cancel = asyncio.run(read_a_little_then_leave())
    time.sleep(0.5)  # generate runs in its own thread: give it time to notice
    settled = steps
    time.sleep(0.5)
    assert steps == settled, "generate kept running after the consumer left"
    assert settled - at_cancel <= 3, f"{settled - at_cancel} tokens generated after the cancel"
    assert settled < 400


def test_a_failing_generate_raises_to_the_consumer(tiny_causal: Path):
    lm = load(ModelSpec(source=str(tiny_causal)))
    inputs = lm.tokenizer("Hello", return_tensors="pt")

    async def consume():
        return [p async for p in stream_generate(lm, dict(inputs), {"max_new_tokens": -5})]

    try:
        asyncio.run(asyncio.wait_for(consume(), timeout=30))
    except asyncio.TimeoutError as exc:  # pragma: no cover - the failure this test guards against
        raise AssertionError("the consumer hung when generate failed") from exc
    except ValueError:
        pass
    else:
        raise AssertionError("an invalid generate call did not raise")


def test_text_comes_token_by_token_and_equals_a_whole_decode(tiny_causal: Path):
    lm = load(ModelSpec(source=str(tiny_causal)))
    inputs = dict(lm.tokenizer("Bonjour, comment allez-vous ? 😀 café", return_tensors="pt"))
    settings = {"max_new_tokens": 200, "min_new_tokens": 200, "do_sample": False}

    async def streamed() -> list[str]:
        return [piece async for piece in stream_generate(lm, inputs, settings)]

    pieces = asyncio.run(streamed())
    generated = lm.model.generate(**inputs, **settings, pad_token_id=lm.tokenizer.pad_token_id)
    whole = lm.tokenizer.decode(
        generated[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    assert "".join(pieces) == whole
    # Random weights write symbols and split characters, which word-level streamers hold back.
    assert len(pieces) > 100, f"only {len(pieces)} pieces for 200 tokens"
