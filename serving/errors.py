"""Errors a person can act on.

Raised anywhere in the graph; converted in one place (``serving.router`` for API clients, ``ui``
for the page, ``run.py`` for the command line). Each carries a stable ``code`` for programs and a
``message`` for people. They subclass plain ``Exception`` so they survive Ray's wrapping.
"""

from __future__ import annotations


class ChatServiceError(Exception):
    """Base class: ``code`` is stable for clients, ``message`` is shown to a person."""

    code = "internal"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):  # keep the subclass and message across Ray's pickling
        return (type(self), (self.message,))


class InvalidRequestError(ChatServiceError):
    """The client sent something the API cannot accept (seen by API clients)."""

    code = "invalid_request"
    http_status = 422


class ModelNotFoundError(InvalidRequestError):
    """An OpenAI-style request named a model this service does not serve."""

    code = "model_not_found"
    http_status = 404


class UnauthorizedError(ChatServiceError):
    """The request lacks the access token the service asks for."""

    code = "unauthorized"
    http_status = 401


class ServiceBusyError(ChatServiceError):
    """Every replica's queue is full; the client should retry shortly."""

    code = "busy"
    http_status = 503


class ModelUnavailableError(ChatServiceError):
    """A configured model cannot be found or loaded (seen at start-up, by the operator)."""

    code = "model_unavailable"
    http_status = 503


class GenerationError(ChatServiceError):
    """A model failed while answering (seen by API clients; details go to the server log)."""

    code = "generation_failed"
    http_status = 500


class ConfigError(ChatServiceError):
    """The configuration file or a flag has a bad value (seen by the operator)."""

    code = "bad_config"
    http_status = 500
