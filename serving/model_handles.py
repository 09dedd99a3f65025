"""The turn's models as Serve deployment handles (``serving.turn.TurnModels``)."""

from __future__ import annotations

from ray.serve.handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator

from serving.languages import ENGLISH


class ServeModels:
    """Calls the detector, the translator and the chat model through their handles.

    A streamed call returns the handle's response generator: iterating it reads the stream, and
    ``cancel()`` stops the model's generation when the turn ends early.
    """

    def __init__(
        self,
        detector: DeploymentHandle,
        translator: DeploymentHandle,
        chat: DeploymentHandle,
    ) -> None:
        self.detector = detector
        self.translator = translator
        self.translation = translator.options(stream=True)
        self.chat_model = chat.options(stream=True)

    def detect(self, text: str, conversation: str | None = None) -> DeploymentResponse:
        return self.detector.read.remote(text, conversation)

    def to_english(self, text: str, language: str) -> DeploymentResponse:
        return self.translator.translate.remote(text, language, ENGLISH)

    def to_user(self, sentence: str, language: str) -> DeploymentResponseGenerator:
        return self.translation.stream_sentence.remote(sentence, ENGLISH, language)

    def chat(
        self, history: list[dict], message: str, options: dict | None
    ) -> DeploymentResponseGenerator:
        return self.chat_model.stream.remote(history, message, options)
