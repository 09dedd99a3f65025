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
        fr_en: DeploymentHandle,
        en_fr: DeploymentHandle,
        chat: DeploymentHandle,
    ) -> None:
        self.detector = detector
        self.fr_en = fr_en
        self.en_fr = en_fr.options(stream=True)
        self.chat_model = chat.options(stream=True)

    def detect(self, text: str) -> DeploymentResponse:
        return self.detector.read.remote(text)

    def to_english(self, text: str) -> DeploymentResponse:
        return self.fr_en.translate.remote(text)

    def to_french(self, sentence: str) -> DeploymentResponseGenerator:
        return self.en_fr.stream_sentence.remote(sentence)

    def chat(
        self, history: list[dict], message: str, options: dict | None
    ) -> DeploymentResponseGenerator:
        return self.chat_model.stream.remote(history, message, options)
