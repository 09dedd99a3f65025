"""One typed configuration for the whole graph, loaded from a profile YAML plus user overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from serving.errors import ConfigError
from serving.model_config import (
    ActorOptions,
    BatchSettings,
    DeploymentSettings,
    GenerationSettings,
    ModelSpec,
    StrictModel,
)

PROFILES_DIR = Path(__file__).parent / "profiles"
DIRECTIONS = ("to_english", "from_english")


class LanguageModel(StrictModel):
    """A model of one language's own, in one direction (the seed profile's Marian models)."""

    model: ModelSpec
    prefix: str = Field(
        "",
        description=(
            "Put before each sentence, for a seq2seq model: a multi-target model's target token "
            "('>>por<< ') or a task prefix ('translate German to English: ')."
        ),
    )


class LanguageModels(StrictModel):
    """A language's own models; a direction left out uses the translator's ``model``."""

    to_english: LanguageModel | None = None
    from_english: LanguageModel | None = None


class TranslatorSettings(StrictModel):
    """The translator: every served language, to English and back, in one deployment.

    A language with a model of its own in ``per_language`` uses it; otherwise it uses ``model``,
    which a causal LM runs few-shot with the language's examples from serving/languages/ (no
    prompt is written per language here). Where languages and directions share a model, they
    share one engine: the offline profile loads one Gemma for all of them.
    """

    model: ModelSpec | None = Field(
        None, description="The model for every language and direction without one of its own."
    )
    per_language: dict[str, LanguageModels] = Field(
        default_factory=dict, description="Models for single languages, by ISO 639-1 code."
    )
    generation: GenerationSettings = Field(
        default_factory=lambda: GenerationSettings(max_new_tokens=96)
    )
    batching: BatchSettings = Field(default_factory=BatchSettings)
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)

    def setting_for(self, code: str, direction: str) -> str | None:
        """Which setting names the model that translates ``code`` in ``direction``
        ("to_english" or "from_english"): "model", "per_language.<code>.<direction>", or
        None when none does."""
        own = self.per_language.get(code)
        if own is not None and getattr(own, direction) is not None:
            return f"per_language.{code}.{direction}"
        return "model" if self.model is not None else None

    def for_language(self, code: str, direction: str) -> LanguageModel | None:
        """The model that translates ``code`` in ``direction``, with its prefix, or None."""
        setting = self.setting_for(code, direction)
        if setting is None:
            return None
        if setting == "model":
            return LanguageModel(model=self.model)
        return getattr(self.per_language[code], direction)


class Exchange(StrictModel):
    user: str = Field(min_length=1)
    assistant: str = Field(min_length=1)


class ChatSettings(StrictModel):
    model: ModelSpec
    system_prompt: str | None = Field(None, description="System message for chat-template models.")
    opening: list[Exchange] = Field(
        default_factory=list,
        description=(
            "Exchanges that every conversation starts with, after the system prompt "
            "(chat-template models; the page never shows them). A small model that a first "
            "message about France throws into French keeps to the language of these replies."
        ),
    )
    turn_separator: str = Field(
        "</s><s>", description="Joins history turns for seq2seq chat models (Blenderbot's)."
    )
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    stream_interval_s: float = Field(
        0.05,
        ge=0,
        le=1,
        description=(
            "Shortest time between two pieces of a reply: tokens that come sooner go out joined "
            "(the first at once). Fewer messages through Serve leave more CPU for decoding; "
            "0 sends each token alone, as far as stream_messages_per_s allows."
        ),
    )
    stream_messages_per_s: float = Field(
        50,
        ge=0,
        description=(
            "Most pieces a second that a replica sends over all the replies it streams: with "
            "many at once, each reply's pieces come further apart than stream_interval_s (8 "
            "replies at 50 a second: 160 ms). 0: no cap."
        ),
    )
    batching: BatchSettings = Field(default_factory=BatchSettings)
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)


class LightActorOptions(ActorOptions):
    """The detector's, the router's and the page's replicas: they mostly wait."""

    num_cpus: float = Field(0.1, ge=0, description="CPUs Ray reserves for each replica.")


class LightDeployment(DeploymentSettings):
    """The defaults of the three light deployments are their classes', not a default_factory's:
    a config that sets only some options (`ui: {deployment: {ray_actor_options: {num_cpus: 1}}}`)
    keeps the others, instead of falling back to the model deployments' (8 requests, 0.5 CPU)."""

    ray_actor_options: LightActorOptions = Field(default_factory=LightActorOptions)


class DetectorDeployment(LightDeployment):
    max_ongoing_requests: int = Field(32, ge=1, description="Messages one replica reads at once.")


class RouterDeployment(LightDeployment):
    max_ongoing_requests: int = Field(
        64, ge=1, description="Turns (and API requests) one replica relays at once."
    )


class UIDeployment(LightDeployment):
    max_ongoing_requests: int = Field(
        1024,
        ge=1,
        description=(
            "Requests the page's replica holds at once. Each open tab holds one for as long as "
            "it is open (Gradio's heartbeat), and one more while a reply streams; they wait, "
            "they do not work. At the limit, new tabs and messages wait for a tab to close."
        ),
    )


# Latin-script languages that a short message in a served one is most often taken for (and
# the reverse): ~25 MB of memory each in the detector (docs/languages.md).
DETECTOR_KNOWN = ["ca", "cs", "da", "de", "es", "fi", "hu", "it", "nb", "nl", "pl", "pt", "ro"]
DETECTOR_KNOWN += ["sv", "tr"]


class DetectorSettings(StrictModel):
    known: list[str] = Field(
        default_factory=lambda: list(DETECTOR_KNOWN),
        description=(
            "ISO 639-1 codes the detector tells apart besides English and the served languages: "
            "a message in one of them is read as English, not taken for a served language."
        ),
    )

    min_confidence: float = Field(
        0.5,
        ge=0,
        le=1,
        description=(
            "Below this confidence a message is too short or too mixed to tell, and is "
            "read as English (`make eval` measures what it does to short messages)."
        ),
    )
    lead: float = Field(
        1.4,
        ge=1,
        description=(
            "A message of `lead_min_words` words or more is read as a served language under "
            "`min_confidence` when that language is the likeliest, at `lead_min_confidence` or "
            "more and this many times as likely as the next: lingua shares its confidence "
            "among close languages (0.32 Italian, 0.22 Catalan for a plain Italian question). "
            "English that leads so ends a conversation in another language; under it, a "
            "message continues in the conversation's language."
        ),
    )
    lead_min_confidence: float = Field(0.25, ge=0, le=1, description="See `lead`.")
    lead_min_words: int = Field(3, ge=1, description="See `lead`.")
    deployment: DetectorDeployment = Field(default_factory=DetectorDeployment)

    @field_validator("known")
    @classmethod
    def _lingua_knows(cls, codes: list[str]) -> list[str]:
        from lingua import IsoCode639_1

        unknown = [code for code in codes if not hasattr(IsoCode639_1, code.upper())]
        if unknown:
            raise ValueError(f"lingua knows no language {', '.join(unknown)} (ISO 639-1 codes)")
        return codes


class RouterSettings(StrictModel):
    allowed_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Browser origins (https://example.com) allowed to open the chat WebSocket besides "
            "the service's own; '*' allows any. Clients that send no Origin are not browsers."
        ),
    )
    model_name: str = Field(
        "polyglot-chat", description="The model id of the OpenAI-compatible API (/api/v1)."
    )
    max_message_chars: int = Field(4000, ge=1, description="Longest accepted user message.")
    max_history_turns: int = Field(200, ge=0, description="Most history entries accepted.")
    max_request_bytes: int = Field(
        512_000, ge=1024, description="Largest request (a WebSocket frame or an HTTP body)."
    )
    max_sentence_chars: int = Field(
        300,
        ge=20,
        description=(
            "Translated replies go sentence by sentence as the English streams; a "
            "sentence still open after this many characters is translated in clauses."
        ),
    )
    model_silence_s: float = Field(
        25,
        gt=0,
        description=(
            "A turn whose model says nothing for this long (a replica that died, a request "
            "that never reaches one) ends with a generation_failed error instead of going "
            "quiet. A replica that is only slow sends a sign of life every 5 s meanwhile "
            "(events.WORKING_EVERY_S), so keep this well above that."
        ),
    )
    deployment: RouterDeployment = Field(default_factory=RouterDeployment)


class UISettings(StrictModel):
    title: str = Field("Polyglot chat", description="Page title.")
    api_url: str | None = Field(
        None, description="WebSocket URL of the chat API; default ws://127.0.0.1:<port>/api/chat."
    )
    storage_secret: str | None = Field(
        None,
        description=(
            "Key that encrypts the conversation kept in the browser's localStorage; default: a "
            "random key made once and kept in the cache folder, so reloads and restarts keep it."
        ),
    )
    browser_storage_kib: int = Field(
        1536,
        ge=4,
        le=2048,
        description=(
            "Most JSON the list of conversations may take in the browser's storage (about 5 "
            "million characters per site, encryption adds a third); past it the oldest "
            "conversations go, with a notice."
        ),
    )
    deployment: UIDeployment = Field(default_factory=UIDeployment)


class HttpSettings(StrictModel):
    host: str = Field("127.0.0.1", description="Serve HTTP bind address; loopback by default.")
    port: int = Field(8000, ge=1, le=65535, description="Serve HTTP port.")
    metrics_port: int = Field(
        8080,
        ge=1,
        le=65535,
        description=(
            "Ray's Prometheus endpoint (http://<node>:<port>/metrics) when run.py starts Ray; "
            "a cluster at RAY_ADDRESS keeps its own."
        ),
    )


class SecuritySettings(StrictModel):
    auth: Literal["auto", "on", "off"] = Field(
        "auto",
        description=(
            "Credentials for the page and the API: 'auto' requires them when http.host is not "
            "loopback; serving a network without them takes an explicit 'off'."
        ),
    )
    api_token: str | None = Field(
        None,
        description=(
            "The API's bearer token and the page's password; default: made once and kept in "
            "the cache folder (run.py prints it)."
        ),
    )


class AppConfig(StrictModel):
    profile: str = Field("offline", description="Name of the profile these settings started from.")
    http: HttpSettings = Field(default_factory=HttpSettings)
    ui: UISettings = Field(default_factory=UISettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    languages: list[str] = Field(
        default_factory=lambda: ["fr"],
        description=(
            "The user languages served besides English (the chat model's), ISO 639-1 codes; "
            "each needs a file in serving/languages/ and a translator both ways."
        ),
    )
    translator: TranslatorSettings
    chat: ChatSettings

    @field_validator("languages")
    @classmethod
    def _known(cls, codes: list[str]) -> list[str]:
        from serving.languages import known_languages

        for code in codes:
            if code not in known_languages():
                raise ValueError(
                    f"'{code}' is not a language this service knows (serving/languages/ has "
                    f"{', '.join(known_languages())})"
                )
        if len(set(codes)) != len(codes):
            raise ValueError("a language is listed twice")
        return codes

    @model_validator(mode="after")
    def _translated(self) -> AppConfig:
        from serving.languages import known_languages

        for code in self.translator.per_language:
            if code not in known_languages():
                raise ValueError(
                    f"translator.per_language: '{code}' is not a language this service knows "
                    f"(serving/languages/ has {', '.join(known_languages())})"
                )
        for code in self.languages:
            for direction in DIRECTIONS:
                if self.translator.for_language(code, direction) is None:
                    raise ValueError(
                        f"languages: '{code}' has no translator {direction[:-8]} English: "
                        f"set translator.model (every language) or "
                        f"translator.per_language.{code}.{direction}"
                    )
        return self

    @property
    def api_url(self) -> str:
        return self.ui.api_url or f"ws://127.0.0.1:{self.http.port}/api/chat"

    def models(self) -> dict[str, ModelSpec]:
        """Every model the graph loads, by where its settings are: the chat model, the
        translator's shared model, and each served language's own
        (``translator.per_language.de.to_english``)."""
        models = {"chat": self.chat.model}
        for code in self.languages:
            for direction in DIRECTIONS:
                setting = self.translator.setting_for(code, direction)
                if setting is not None:
                    chosen = self.translator.for_language(code, direction)
                    models["translator" if setting == "model" else f"translator.{setting}"] = (
                        chosen.model
                    )
        return models


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}.") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of settings at the top level.")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"Invalid configuration ({source}):"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<top level>"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown setting (check the spelling)")
        elif not item["loc"]:  # a check across settings: its message names them
            lines.append(f"  {item['msg'].removeprefix('Value error, ')}")
        elif item["type"] == "missing":
            lines.append(f"  {key}: required setting is missing")
        else:
            lines.append(f"  {key}: has value {item.get('input')!r}. {item['msg']}.")
    return "\n".join(lines)


def load_config(
    profile: str | None = None,
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> AppConfig:
    """Profile defaults, then the user's YAML file, then explicit overrides (CLI flags)."""
    user = _read_yaml(Path(path)) if path else {}
    name = profile or user.get("profile") or "offline"
    profile_path = PROFILES_DIR / f"{name}.yaml"
    if not profile_path.exists():
        raise ConfigError(
            f"Profile {name!r} does not exist. Choose one of: {', '.join(available_profiles())}."
        )
    data = deep_merge(_read_yaml(profile_path), user)
    data = deep_merge(data, overrides or {})
    data["profile"] = name
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path or profile_path))) from None
