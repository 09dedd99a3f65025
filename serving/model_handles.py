"""The turn's models as Serve deployment handles (``serving.turn.TurnModels``)."""

from __future__ import annotations

from ray.serve.handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator


class ServeModels:
    """Calls the detector, the two translators and the chat model through their handles.

    A streamed call returns the handle's response generator: iterating it reads the stream, and
    ``cancel()`` stops the model's generation when the turn ends early.
    """

    def __init__(
        self,
        detector: DeploymentHandle,
        to_english: DeploymentHandle,
        from_english: DeploymentHandle,
        chat: DeploymentHandle,
    ) -> None:
        self.detector = detector
        self.english = to_english
        self.user = from_english.options(stream=True)
        self.chat_model = chat.options(stream=True)

    def detect(self, text: str) -> DeploymentResponse:
        return self.detector.read.remote(text)

    def to_english(self, text: str, language: str) -> DeploymentResponse:
        return self.english.translate.remote(text, language)

    def to_user(self, sentence: str, language: str) -> DeploymentResponseGenerator:
        return self.user.stream_sentence.remote(sentence, language)

    def chat(
        self, history: list[dict], message: str, options: dict | None
    ) -> DeploymentResponseGenerator:
        return self.chat_model.stream.remote(history, message, options)
